import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DEFAULT_SERVER, tlsCredentials, type ConnectOptions } from '../client/channel.js';
import { VigilClientError } from '../client/errors.js';
import { CONTROL_TOKEN_FILE } from './control-token.js';

/** A mistake in how the command was called: exit code 2 with usage. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags every client command takes. */
export const CLIENT_OPTIONS = {
  server: { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
} as const satisfies Options;

export const CLIENT_FLAGS_HELP = `Common flags:
  --server HOST:PORT   Vigil server [env VIGIL_SERVER, default ${DEFAULT_SERVER}]
  --data-dir DIR       where to find the control token file DIR/control-token when
                       VIGIL_CONTROL_TOKEN is unset [env VIGIL_DATA_DIR, default ./data]
  --tls-ca FILE        connect with TLS, trusting this PEM CA bundle [env VIGIL_CLIENT_TLS_CA]
  --tls-cert FILE      client certificate for mTLS (with --tls-key) [env VIGIL_CLIENT_TLS_CERT]
  --tls-key FILE       its private key [env VIGIL_CLIENT_TLS_KEY]
  --json               machine-readable output (one JSON document, or JSON lines for streams)
  -h, --help           this help`;

/** parseArgs with strict checking; parse errors become UsageError. */
export function parse<O extends Options>(
  args: string[],
  options: O,
): ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: true }>
> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError(describeParseError(error, options));
  }
}

/** node:util's parse errors, said in one line an operator can act on. */
function describeParseError(error: unknown, options: Options): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown }).code;
  const option = /'(-{1,2}[^' ]+)/.exec(message)?.[1] ?? '';
  const known = Object.keys(options)
    .map((name) => `--${name}`)
    .join(', ');
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    return `unknown flag ${option}; the flags are ${known} (--help says what each does)`;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    return message.includes('does not take an argument')
      ? `${option} takes no value`
      : `${option} needs a value (--help says which)`;
  }
  return message;
}

export function serverAddress(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return flag ?? env['VIGIL_SERVER'] ?? DEFAULT_SERVER;
}

/** VIGIL_CONTROL_TOKEN, else the token file in the data directory. */
export function controlToken(dataDirFlag: string | undefined, env: NodeJS.ProcessEnv): string {
  const fromEnv = env['VIGIL_CONTROL_TOKEN'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const file = join(dataDirFlag ?? env['VIGIL_DATA_DIR'] ?? './data', CONTROL_TOKEN_FILE);
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    throw new UsageError(
      `no control token: set VIGIL_CONTROL_TOKEN or point --data-dir at a directory with ${CONTROL_TOKEN_FILE} (tried ${file})`,
    );
  }
}

/** One line that says why a command failed. */
export function describeFailure(error: unknown): string {
  if (error instanceof VigilClientError) {
    const reason = error.reason === '' ? '' : ` ${error.reason}`;
    return `${error.codeName}${reason}: ${error.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Writes one line to stdout. */
export function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Resolves when SIGINT or SIGTERM arrives; the returned signal aborts then too. */
export function untilSignal(): { signal: AbortSignal; done: Promise<NodeJS.Signals> } {
  const controller = new AbortController();
  const done = new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (name: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      controller.abort();
      resolve(name);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  return { signal: controller.signal, done };
}

/** Formats a protobuf timestamp for humans. */
export function when(date: Date | undefined): string {
  return date ? date.toISOString() : '-';
}

/** Where and how to connect, from the common flags and the environment. */
export function connectOptions(
  values: { server?: string; 'tls-ca'?: string; 'tls-cert'?: string; 'tls-key'?: string },
  env: NodeJS.ProcessEnv,
  token: string,
): ConnectOptions {
  const file = (flag: string | undefined, name: string, variable: string): Buffer | undefined => {
    const path = flag ?? env[variable];
    if (path === undefined || path === '') return undefined;
    try {
      return readFileSync(path);
    } catch {
      throw new UsageError(`--${name}: cannot read ${path}`);
    }
  };
  const ca = file(values['tls-ca'], 'tls-ca', 'VIGIL_CLIENT_TLS_CA');
  const cert = file(values['tls-cert'], 'tls-cert', 'VIGIL_CLIENT_TLS_CERT');
  const key = file(values['tls-key'], 'tls-key', 'VIGIL_CLIENT_TLS_KEY');
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError('--tls-cert and --tls-key go together');
  }
  const tls = ca !== undefined || cert !== undefined;
  return {
    server: serverAddress(values.server, env),
    token,
    ...(tls
      ? {
          credentials: tlsCredentials({
            ...(ca ? { ca } : {}),
            ...(cert ? { cert } : {}),
            ...(key ? { key } : {}),
          }),
        }
      : {}),
  };
}
