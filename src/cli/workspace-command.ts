import { CreateWorkspaceResponse } from '../../gen/vigil/v1/control_service.js';
import {
  Workspace,
  WorkspaceStatus,
  workspaceStatusFromJSON,
} from '../../gen/vigil/v1/workspace.js';
import { createControlClient } from '../client/control-client.js';
import { statusName } from '../client/names.js';
import {
  CLIENT_FLAGS_HELP,
  CLIENT_OPTIONS,
  UsageError,
  controlToken,
  out,
  parse,
  connectOptions,
  when,
} from './common.js';

export const WORKSPACE_HELP = `Usage: vigil workspace <subcommand> [flags]

Subcommands:
  create [ID] [--name NAME]     create a workspace (no ID: the server picks a UUID);
                                prints its token, which is shown only once
  get ID                        show one workspace
  list [--status STATUS]...     list workspaces (default: every status but REMOVED)
  delete ID                     delete a workspace (it stays as a REMOVED tombstone)
  rotate-token ID [--revoke-previous]
                                issue a new workspace token; the previous ones keep
                                working for the server's rotation overlap (60 s by
                                default) unless --revoke-previous ends them now
  revoke-tokens ID              end every token of the workspace now

STATUS is one of PROVISIONING, ONLINE, DEGRADED, OFFLINE, FAILED, REMOVED.

${CLIENT_FLAGS_HELP}`;

export async function workspaceCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parse(args, {
    ...CLIENT_OPTIONS,
    name: { type: 'string' },
    status: { type: 'string', multiple: true },
    'revoke-previous': { type: 'boolean' },
  });
  const [subcommand, ...rest] = positionals;
  if (values.help) {
    out(WORKSPACE_HELP);
    return 0;
  }
  if (subcommand === undefined) {
    process.stderr.write(`${WORKSPACE_HELP}\n`);
    return 2;
  }
  const needId = (): string => {
    const [id, ...extra] = rest;
    if (id === undefined || extra.length > 0)
      throw new UsageError(`vigil workspace ${subcommand} takes exactly one ID`);
    return id;
  };
  const client = createControlClient(
    connectOptions(values, env, controlToken(values['data-dir'], env)),
  );
  const json = values.json ?? false;
  try {
    switch (subcommand) {
      case 'create': {
        if (rest.length > 1) throw new UsageError('vigil workspace create takes at most one ID');
        const created = await client.createWorkspace(rest[0] ?? '', values.name ?? '');
        if (json) out(JSON.stringify(CreateWorkspaceResponse.toJSON(created)));
        else {
          out(
            `workspace ${created.workspace?.id ?? ''} created (${statusName(created.workspace?.status)})`,
          );
          out(`token: ${created.workspaceToken}`);
          out(
            'The token is shown only once: store it now (the sidecar reads it with --token-file).',
          );
        }
        return 0;
      }
      case 'get': {
        const workspace = await client.getWorkspace(needId());
        if (json) out(JSON.stringify(Workspace.toJSON(workspace)));
        else printWorkspace(workspace);
        return 0;
      }
      case 'list': {
        if (rest.length > 0) throw new UsageError('vigil workspace list takes no arguments');
        const statuses = (values.status ?? []).map(parseStatus);
        const all: Workspace[] = [];
        for await (const workspace of client.allWorkspaces(statuses)) all.push(workspace);
        if (json) out(JSON.stringify(all.map((w) => Workspace.toJSON(w))));
        else printTable(all);
        return 0;
      }
      case 'delete': {
        const workspace = await client.deleteWorkspace(needId());
        if (json) out(JSON.stringify(Workspace.toJSON(workspace)));
        else out(`workspace ${workspace.id} deleted (${statusName(workspace.status)})`);
        return 0;
      }
      case 'rotate-token': {
        const id = needId();
        const revokePrevious = values['revoke-previous'] ?? false;
        const token = await client.rotateWorkspaceToken(id, { revokePrevious });
        if (json) out(JSON.stringify({ workspaceId: id, workspaceToken: token }));
        else {
          out(`token: ${token}`);
          out(
            revokePrevious
              ? 'The previous tokens no longer work. The new one is shown only once.'
              : "The previous tokens work until the server's rotation overlap ends. The new one is shown only once.",
          );
        }
        return 0;
      }
      case 'revoke-tokens': {
        const id = needId();
        const revoked = await client.revokeWorkspaceTokens(id);
        if (json) out(JSON.stringify({ workspaceId: id, revokedCount: revoked }));
        else out(`revoked ${revoked} token(s) of workspace ${id}`);
        return 0;
      }
      default:
        throw new UsageError(
          `unknown subcommand "${subcommand}" (create, get, list, delete, rotate-token, revoke-tokens)`,
        );
    }
  } finally {
    client.close();
  }
}

function parseStatus(text: string): WorkspaceStatus {
  const status = workspaceStatusFromJSON(`WORKSPACE_STATUS_${text.toUpperCase()}`) as
    WorkspaceStatus | -1;
  if (status === -1 || status === WorkspaceStatus.WORKSPACE_STATUS_UNSPECIFIED) {
    throw new UsageError(`--status: "${text}" is not a workspace status`);
  }
  return status;
}

function printWorkspace(w: Workspace): void {
  const rows: [string, string][] = [
    ['id', w.id],
    ['name', w.name],
    ['status', statusName(w.status)],
    ['status changed', when(w.statusChangedAt)],
    ['url', w.url || '-'],
    ['agent card', cardName(w.agentCard)],
    ['last heartbeat', when(w.lastHeartbeatAt)],
    ['last registered', when(w.lastRegisteredAt)],
    ['register failure', when(w.lastRegisterFailureAt)],
    ['error rate', String(w.errorRate)],
    ['active tasks', String(w.activeTasks)],
    ['created', when(w.createdAt)],
  ];
  for (const [key, value] of rows) out(`${key.padEnd(17)} ${value}`);
}

function cardName(card: Record<string, unknown> | undefined): string {
  if (!card) return '-';
  const name = card['name'];
  return typeof name === 'string' ? name : '(unnamed)';
}

function printTable(workspaces: readonly Workspace[]): void {
  const rows = [
    ['ID', 'STATUS', 'LAST HEARTBEAT', 'URL'],
    ...workspaces.map((w) => [w.id, statusName(w.status), when(w.lastHeartbeatAt), w.url || '-']),
  ];
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const row of rows)
    out(
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    );
}
