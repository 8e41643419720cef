import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ExplainProjectionResponse,
  ListWorkspaceSecretsResponse,
} from '../../gen/vigil/v1/control_service.js';
import {
  Projection,
  ReloadAction,
  SecretUse,
  type RuntimeConfig,
} from '../../gen/vigil/v1/projection.js';
import { createControlClient } from '../client/control-client.js';
import { createRuntimeClient } from '../client/runtime-client.js';
import { addActiveKey, readKeyring, removeKey } from '../crypto/keyring-file.js';
import {
  CLIENT_FLAGS_HELP,
  CLIENT_OPTIONS,
  UsageError,
  connectOptions,
  controlToken,
  out,
  parse,
  when,
} from './common.js';

/**
 * `vigil secrets`, `vigil config`, `vigil projection` and `vigil keyring`:
 * the operator's side of the runtime projection. Secret values are read
 * from a file or stdin, never from the command line (argv shows in `ps`).
 */

export const SECRETS_HELP = `Usage: vigil secrets <subcommand> [flags]

Subcommands:
  set WORKSPACE NAME (--from-file FILE | --stdin) [--expected-version N]
                        store a secret; the value comes from FILE or stdin (one
                        trailing newline is dropped), never from the command line
  delete WORKSPACE NAME [--expected-version N]
  list WORKSPACE        names, fingerprints and uses; never values

${CLIENT_FLAGS_HELP}`;

export const CONFIG_HELP = `Usage: vigil config set WORKSPACE --adapter A [flags]

  --adapter A           claude-code | openai-compatible | generic
  --model M             the model, such as MiniMax-M2.7
  --provider P          a provider of the catalog (empty: derived from the model)
  --base-url URL        overrides the provider's base URL
  --env NAME=VALUE      a plain, non-secret variable (repeatable)
  --reload POLICY       restart (default) | signal:SIGHUP | none
  --expected-version N  write only if the workspace is still at config_version N

${CLIENT_FLAGS_HELP}`;

export const PROJECTION_HELP = `Usage: vigil projection <subcommand> [flags]

Subcommands:
  explain WORKSPACE     which rule produced which variable (values redacted)
  get WORKSPACE --token-file FILE
                        the projection itself, with the workspace's own token
                        (prints the values: for debugging a runtime's host)

${CLIENT_FLAGS_HELP}`;

export const KEYRING_HELP = `Usage: vigil keyring <subcommand> [--secrets-keyring FILE]

Subcommands:
  rotate                add a new key and make it active; the server re-wraps every
                        data key under it at its next start (the old key stays)
  remove ID             remove a key that is no longer active; the server refuses to
                        start if a stored data key still needs it
  list                  key ids and which is active (never the keys)

  --secrets-keyring FILE  default DATA_DIR/secrets-keyring [env VIGIL_SECRETS_KEYRING]
  --data-dir DIR          [env VIGIL_DATA_DIR, default ./data]`;

function readValue(values: { 'from-file'?: string; stdin?: boolean }): string {
  if ((values['from-file'] === undefined) === (values.stdin !== true)) {
    throw new UsageError('give the value with exactly one of --from-file FILE or --stdin');
  }
  let text: string;
  try {
    text = readFileSync(values['from-file'] ?? 0, 'utf8');
  } catch {
    throw new UsageError(`cannot read the value from ${values['from-file'] ?? 'stdin'}`);
  }
  return text.replace(/\r?\n$/, '');
}

function expectedVersion(text: string | undefined): number {
  if (text === undefined) return 0;
  if (!/^\d+$/.test(text)) throw new UsageError(`--expected-version: "${text}" is not a number`);
  return Number(text);
}

function useName(use: SecretUse): string {
  return SecretUse[use].replace(/^SECRET_USE_/, '');
}

export async function secretsCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parse(args, {
    ...CLIENT_OPTIONS,
    'from-file': { type: 'string' },
    stdin: { type: 'boolean' },
    'expected-version': { type: 'string' },
  });
  const [subcommand, workspaceId, name, ...extra] = positionals;
  if (values.help) {
    out(SECRETS_HELP);
    return 0;
  }
  if (subcommand === undefined || workspaceId === undefined || extra.length > 0) {
    process.stderr.write(`${SECRETS_HELP}\n`);
    return 2;
  }
  const json = values.json ?? false;
  const needName = (): string => {
    if (name === undefined) throw new UsageError(`vigil secrets ${subcommand} needs NAME`);
    return name;
  };
  if (subcommand !== 'set' && subcommand !== 'delete' && subcommand !== 'list') {
    throw new UsageError(`unknown subcommand "${subcommand}"; run "vigil secrets --help"`);
  }
  const value = subcommand === 'set' ? readValue(values) : '';
  const client = createControlClient(
    connectOptions(values, env, controlToken(values['data-dir'], env)),
  );
  try {
    switch (subcommand) {
      case 'set': {
        const set = await client.setWorkspaceSecret({
          workspaceId,
          name: needName(),
          value,
          expectedConfigVersion: expectedVersion(values['expected-version']),
        });
        if (json) {
          out(
            JSON.stringify({
              name: set.secret?.name,
              fingerprint: set.secret?.fingerprint,
              configVersion: set.configVersion,
            }),
          );
        } else {
          out(
            `secret ${set.secret?.name ?? ''} set (fingerprint ${set.secret?.fingerprint ?? ''}); config_version ${set.configVersion}`,
          );
        }
        return 0;
      }
      case 'delete': {
        const deleted = await client.deleteWorkspaceSecret({
          workspaceId,
          name: needName(),
          expectedConfigVersion: expectedVersion(values['expected-version']),
        });
        if (json) out(JSON.stringify(deleted));
        else out(`secret ${needName()} deleted; config_version ${deleted.configVersion}`);
        return 0;
      }
      case 'list': {
        if (name !== undefined) throw new UsageError('vigil secrets list takes only WORKSPACE');
        const listed = await client.listWorkspaceSecrets(workspaceId);
        if (json) {
          out(JSON.stringify(ListWorkspaceSecretsResponse.toJSON(listed)));
          return 0;
        }
        out(`config_version ${listed.configVersion}`);
        for (const s of listed.secrets) {
          out(
            `${s.name}  ${s.fingerprint}  ${useName(s.use)}  ${when(s.updateTime)}  by ${s.updatedBy}`,
          );
        }
        return 0;
      }
    }
  } finally {
    client.close();
  }
}

function reloadPolicy(text: string | undefined): RuntimeConfig['reloadPolicy'] {
  const policy = text ?? 'restart';
  if (policy === 'restart') return { action: ReloadAction.RELOAD_ACTION_RESTART, signal: '' };
  if (policy === 'none') return { action: ReloadAction.RELOAD_ACTION_NONE, signal: '' };
  const match = /^signal:(SIG[A-Z0-9]+)$/.exec(policy);
  if (match?.[1]) return { action: ReloadAction.RELOAD_ACTION_SIGNAL, signal: match[1] };
  throw new UsageError(`--reload: "${policy}" is not restart, none or signal:SIGNAME`);
}

export async function configCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parse(args, {
    ...CLIENT_OPTIONS,
    adapter: { type: 'string' },
    model: { type: 'string' },
    provider: { type: 'string' },
    'base-url': { type: 'string' },
    env: { type: 'string', multiple: true },
    reload: { type: 'string' },
    'expected-version': { type: 'string' },
  });
  if (values.help) {
    out(CONFIG_HELP);
    return 0;
  }
  const [subcommand, workspaceId, ...extra] = positionals;
  if (subcommand !== 'set' || workspaceId === undefined || extra.length > 0) {
    process.stderr.write(`${CONFIG_HELP}\n`);
    return 2;
  }
  if (values.adapter === undefined) throw new UsageError('--adapter is required');
  const plain: Record<string, string> = {};
  for (const pair of values.env ?? []) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new UsageError(`--env: "${pair}" is not NAME=VALUE`);
    plain[pair.slice(0, at)] = pair.slice(at + 1);
  }
  const client = createControlClient(
    connectOptions(values, env, controlToken(values['data-dir'], env)),
  );
  try {
    const set = await client.setWorkspaceRuntimeConfig({
      workspaceId,
      config: {
        adapter: values.adapter,
        model: values.model ?? '',
        provider: values.provider ?? '',
        baseUrl: values['base-url'] ?? '',
        env: plain,
        reloadPolicy: reloadPolicy(values.reload),
      },
      expectedConfigVersion: expectedVersion(values['expected-version']),
    });
    if (values.json) out(JSON.stringify(set));
    else out(`runtime config set; config_version ${set.configVersion}`);
    return 0;
  } finally {
    client.close();
  }
}

export async function projectionCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parse(args, {
    ...CLIENT_OPTIONS,
    'token-file': { type: 'string' },
  });
  if (values.help) {
    out(PROJECTION_HELP);
    return 0;
  }
  const [subcommand, workspaceId, ...extra] = positionals;
  if (subcommand === undefined || workspaceId === undefined || extra.length > 0) {
    process.stderr.write(`${PROJECTION_HELP}\n`);
    return 2;
  }
  const json = values.json ?? false;
  if (subcommand === 'explain') {
    const client = createControlClient(
      connectOptions(values, env, controlToken(values['data-dir'], env)),
    );
    try {
      const e = await client.explainProjection(workspaceId);
      if (json) {
        out(JSON.stringify(ExplainProjectionResponse.toJSON(e)));
        return 0;
      }
      out(
        `config_version ${e.configVersion} (applied ${e.appliedConfigVersion}); ${e.ready ? `ready, provider ${e.resolvedProvider}, digest ${e.digest}` : 'NOT READY'}`,
      );
      if (e.error) {
        const detail = Object.entries(e.error.metadata)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ');
        out(`error: ${e.error.reason} ${detail}: ${e.error.message}`);
      }
      for (const v of e.variables)
        out(`${v.name}  ${v.source}${v.fingerprint === '' ? '' : `  ${v.fingerprint}`}`);
      for (const d of e.dropped)
        out(
          `${d.name}  ${useName(d.use)} (${d.source})${d.fingerprint === '' ? '' : `  ${d.fingerprint}`}`,
        );
      return 0;
    } finally {
      client.close();
    }
  }
  if (subcommand === 'get') {
    const file = values['token-file'];
    if (file === undefined) throw new UsageError('vigil projection get needs --token-file');
    let token: string;
    try {
      token = readFileSync(file, 'utf8').trim();
    } catch {
      throw new UsageError(`--token-file: cannot read ${file}`);
    }
    const client = createRuntimeClient(connectOptions(values, env, token));
    try {
      const p = await client.getProjection(workspaceId);
      if (json) out(JSON.stringify(Projection.toJSON(p)));
      else {
        out(
          `# config_version ${p.configVersion}, provider ${p.resolvedProvider}, digest ${p.digest}`,
        );
        for (const [name, value] of Object.entries(p.env).sort(([a], [b]) => (a < b ? -1 : 1))) {
          out(`${name}=${value}`);
        }
      }
      return 0;
    } finally {
      client.close();
    }
  }
  throw new UsageError(`unknown subcommand "${subcommand}"; run "vigil projection --help"`);
}

export function keyringCommand(args: string[], env: NodeJS.ProcessEnv): number {
  const { values, positionals } = parse(args, {
    'secrets-keyring': { type: 'string' },
    'data-dir': { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    out(KEYRING_HELP);
    return 0;
  }
  const file =
    values['secrets-keyring'] ??
    env['VIGIL_SECRETS_KEYRING'] ??
    join(values['data-dir'] ?? env['VIGIL_DATA_DIR'] ?? './data', 'secrets-keyring');
  const [subcommand, id, ...extra] = positionals;
  switch (subcommand) {
    case 'rotate': {
      if (id !== undefined) throw new UsageError('vigil keyring rotate takes no arguments');
      const created = addActiveKey(file);
      out(
        values.json
          ? JSON.stringify({ active: created })
          : `key ${created} added and active; restart the server to re-wrap the data keys`,
      );
      return 0;
    }
    case 'remove': {
      if (id === undefined || extra.length > 0)
        throw new UsageError('vigil keyring remove takes one ID');
      removeKey(file, id);
      out(values.json ? JSON.stringify({ removed: id }) : `key ${id} removed`);
      return 0;
    }
    case 'list': {
      const keyring = readKeyring(file);
      const ids = [...keyring.keys.keys()];
      out(
        values.json
          ? JSON.stringify({ active: keyring.active, keys: ids })
          : ids.map((k) => (k === keyring.active ? `${k} (active)` : k)).join('\n'),
      );
      return 0;
    }
    default:
      process.stderr.write(`${KEYRING_HELP}\n`);
      return 2;
  }
}
