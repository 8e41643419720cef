import { readFileSync } from 'node:fs';
import { DeliveryMode } from '../../gen/vigil/v1/workspace.js';
import { runHeartbeatLoop, type SidecarEvent } from '../client/heartbeat-loop.js';
import { createRuntimeClient } from '../client/runtime-client.js';
import {
  CLIENT_OPTIONS,
  UsageError,
  describeFailure,
  out,
  parse,
  connectOptions,
  untilSignal,
} from './common.js';
import { statusName } from '../client/names.js';
import { RuntimeState } from '../../gen/vigil/v1/workspace.js';
import { superviseChild, type Supervisor, type SupervisorEvent } from './exec-supervisor.js';

export const SIDECAR_HELP = `Usage: vigil sidecar --workspace ID --token-file FILE --url URL --card FILE [flags] [--exec -- CMD ARGS...]

Runs a runtime's sidecar: registers the advertised URL and agent card, then
heartbeats on the interval the server hints, always carrying the card. When
Register is rejected (say the URL does not resolve from the control plane) it
keeps heartbeating, which is what lets the workspace recover. Stops cleanly on
SIGTERM / Ctrl-C.

With --exec it also runs the runtime: it fetches the workspace's projection
(WatchProjection) and starts CMD with exactly that environment (plus PATH,
HOME, LANG, TZ, TMPDIR, USER, SHELL of its own). On a projection error the
child is not started and the heartbeat reports the runtime WEDGED with the
reason; a new version is applied by the reload policy (restart, signal, none);
heartbeats report the version the child runs with (applied_config_version).

Flags:
  --workspace ID         the workspace to run as
  --token-file FILE      file holding the workspace token
  --url URL              URL to advertise (may be empty with --delivery-mode poll)
  --card FILE            the A2A agent card, a JSON file
  --delivery-mode MODE   push (default) or poll
  --exec                 run the command after -- with the projected environment
  --server HOST:PORT     Vigil server [env VIGIL_SERVER, default 127.0.0.1:50051]
  --tls-ca FILE          connect with TLS, trusting this PEM CA [env VIGIL_CLIENT_TLS_CA]
  --tls-cert FILE        client certificate for mTLS [env VIGIL_CLIENT_TLS_CERT]
  --tls-key FILE         its private key [env VIGIL_CLIENT_TLS_KEY]
  --json                 one JSON object per event
  -h, --help             this help`;

export async function sidecarCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parse(args, {
    ...CLIENT_OPTIONS,
    workspace: { type: 'string' },
    'token-file': { type: 'string' },
    url: { type: 'string' },
    card: { type: 'string' },
    'delivery-mode': { type: 'string' },
    exec: { type: 'boolean' },
  });
  if (values.help) {
    out(SIDECAR_HELP);
    return 0;
  }
  const exec = values.exec ?? false;
  if (!exec && positionals.length > 0) {
    throw new UsageError(
      'vigil sidecar takes no arguments (run a command with --exec -- CMD ARGS)',
    );
  }
  const [command, ...commandArgs] = positionals;
  if (exec && command === undefined) throw new UsageError('--exec needs a command after --');
  const workspaceId = required(values.workspace, '--workspace');
  const token = readFile(required(values['token-file'], '--token-file'), '--token-file').trim();
  const mode = (values['delivery-mode'] ?? 'push').toLowerCase();
  if (mode !== 'push' && mode !== 'poll')
    throw new UsageError(`--delivery-mode: "${mode}" is not push or poll`);
  const url = values.url ?? '';
  if (mode === 'push' && url === '') throw new UsageError('--url is required for push delivery');
  const cardFile = required(values.card, '--card');
  let agentCard: unknown;
  try {
    agentCard = JSON.parse(readFile(cardFile, '--card'));
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`--card: ${cardFile} is not valid JSON`);
  }
  if (typeof agentCard !== 'object' || agentCard === null || Array.isArray(agentCard)) {
    throw new UsageError(`--card: ${cardFile} must hold a JSON object`);
  }

  const client = createRuntimeClient(connectOptions(values, env, token));
  const stop = untilSignal();
  // Ends the loop and the child together: on SIGTERM, or when either one ends.
  const halt = new AbortController();
  stop.signal.addEventListener('abort', () => {
    halt.abort();
  });
  const json = values.json ?? false;
  const started = Date.now();
  let supervisor: Supervisor | undefined;
  if (exec && command !== undefined) {
    supervisor = superviseChild({
      command,
      args: commandArgs,
      events: client.watchProjection({ workspaceId, signal: halt.signal }),
      signal: halt.signal,
      onEvent: (event) => {
        out(json ? JSON.stringify(supervisorJson(event)) : supervisorText(event));
      },
    });
  }
  const supervised = supervisor;
  const report = () => {
    const uptimeSeconds = Math.floor((Date.now() - started) / 1000);
    if (!supervised) return { uptimeSeconds };
    const problem = supervised.problem();
    return {
      uptimeSeconds,
      appliedConfigVersion: supervised.applied(),
      ...(problem !== undefined && supervised.applied() === 0
        ? { runtimeState: RuntimeState.RUNTIME_STATE_WEDGED, sampleError: `projection: ${problem}` }
        : {}),
    };
  };
  try {
    const shown: ShownState = { state: '', failures: 0 };
    const loop = runHeartbeatLoop({
      client,
      workspaceId,
      url,
      agentCard: agentCard as Record<string, unknown>,
      deliveryMode:
        mode === 'poll' ? DeliveryMode.DELIVERY_MODE_POLL : DeliveryMode.DELIVERY_MODE_PUSH,
      report,
      signal: halt.signal,
      onEvent: (event) => {
        if (json) {
          out(JSON.stringify(eventJson(event)));
          return;
        }
        // One line per change of state, not one per heartbeat.
        const line = changeLine(event, shown);
        if (line !== undefined) out(line);
      },
    });
    // Either ending (a fatal projection error, a removed workspace) ends both.
    await Promise.race([loop, supervised?.done ?? loop]).finally(() => {
      halt.abort();
    });
    await Promise.allSettled([loop, supervised?.done]);
    await loop;
    await supervised?.done;
    return 0;
  } finally {
    client.close();
  }
}

function supervisorJson(event: SupervisorEvent): Record<string, unknown> {
  return { at: new Date().toISOString(), event: event.type, ...event, type: undefined };
}

function supervisorText(event: SupervisorEvent): string {
  switch (event.type) {
    case 'child-started':
      return `child started: pid ${event.pid}, config_version ${event.configVersion}`;
    case 'child-exited':
      return `child exited: ${event.signal ?? `code ${String(event.code)}`}${
        event.restartInMs === undefined ? '' : ` (restarting in ${event.restartInMs} ms)`
      }`;
    case 'child-signalled':
      return `child sent ${event.signal} for config_version ${event.configVersion}`;
    case 'projection-error': {
      const detail = Object.entries(event.metadata)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ');
      return `projection error: ${event.reason} ${detail} (config_version ${event.configVersion}; child not started with it)`;
    }
  }
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required`);
  return value;
}

function readFile(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    throw new UsageError(`${flag}: cannot read ${file}`);
  }
}

function eventJson(event: SidecarEvent): Record<string, unknown> {
  const at = new Date().toISOString();
  switch (event.type) {
    case 'registered':
    case 'heartbeat':
      return {
        at,
        event: event.type,
        status: statusName(event.status),
        intervalMs: event.intervalMs,
      };
    case 'register-failed':
      return {
        at,
        event: event.type,
        code: event.error.codeName,
        reason: event.error.reason,
        message: event.error.message,
        willRetry: event.willRetry,
        fatal: event.fatal,
      };
    case 'heartbeat-failed':
      return {
        at,
        event: event.type,
        code: event.error.codeName,
        reason: event.error.reason,
        message: event.error.message,
        retryInMs: event.retryInMs,
      };
  }
}

/** What the text output last said, so it speaks only when that changes. */
interface ShownState {
  state: string;
  /** Heartbeats rejected or failed in a row since the last one that went through. */
  failures: number;
}

/** The line for `event` when it changes what the output last said; undefined otherwise. */
export function changeLine(event: SidecarEvent, shown: ShownState): string | undefined {
  let state: string;
  switch (event.type) {
    case 'heartbeat':
      state = `ok ${statusName(event.status)} ${String(event.intervalMs)}`;
      break;
    case 'heartbeat-failed':
      shown.failures += 1;
      state = `failed ${event.error.codeName} ${event.error.reason}`;
      break;
    default:
      state = event.type;
  }
  if (state === shown.state) return undefined;
  const after = shown.failures;
  shown.state = state;
  if (event.type === 'heartbeat') {
    shown.failures = 0;
    const text = eventText(event);
    return after > 0 ? `${text} (recovered after ${after} failed heartbeats)` : text;
  }
  return eventText(event);
}

/** Durations for people: `250ms` below a second, else seconds with one decimal (`10.1s`). */
export function seconds(ms: number): string {
  return ms < 1_000 ? `${String(Math.round(ms))}ms` : `${(ms / 1_000).toFixed(1)}s`;
}

function eventText(event: SidecarEvent): string {
  switch (event.type) {
    case 'registered':
      return `registered: ${statusName(event.status)}; heartbeating every ${seconds(event.intervalMs)}`;
    case 'heartbeat':
      return `heartbeat: ${statusName(event.status)}, every ${seconds(event.intervalMs)}`;
    case 'register-failed':
      return `register failed: ${describeFailure(event.error)} (${
        event.fatal ? 'stopping' : event.willRetry ? 'will retry' : 'heartbeating on'
      })`;
    case 'heartbeat-failed':
      return `heartbeat failed: ${describeFailure(event.error)} (retrying with backoff, first in ${seconds(event.retryInMs)}; said once until it changes)`;
  }
}
