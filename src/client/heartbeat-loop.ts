import { status } from '@grpc/grpc-js';
import type { HeartbeatRequest, HeartbeatResponse } from '../../gen/vigil/v1/runtime_service.js';
import { DeliveryMode, WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { backoffDelay, sleep } from './backoff.js';
import { VigilClientError } from './errors.js';
import { ANSWER_TIMEOUT, type HeartbeatStream } from './heartbeat-stream.js';
import type { HeartbeatInput } from './call-settings.js';
import type { RuntimeClient } from './runtime-client.js';
import { statusName, type StatusName } from './names.js';

/** What a sidecar reports about its runtime on each heartbeat. */
export type HealthReport = Partial<
  Pick<
    HeartbeatRequest,
    | 'errorRate'
    | 'sampleError'
    | 'activeTasks'
    | 'uptimeSeconds'
    | 'currentTask'
    | 'runtimeState'
    | 'nativeStatusManagement'
    | 'appliedConfigVersion'
  >
>;

export type SidecarEvent =
  | {
      readonly type: 'registered';
      readonly status: WorkspaceStatus;
      /** `status` by name, e.g. `'ONLINE'`. */
      readonly statusName: StatusName;
      readonly intervalMs: number;
    }
  | {
      readonly type: 'register-failed';
      readonly error: VigilClientError;
      /** The same Register will be tried again (the server was unreachable). */
      readonly willRetry: boolean;
      /** The loop stops: the token is not valid for this workspace. */
      readonly fatal: boolean;
    }
  | {
      readonly type: 'heartbeat';
      readonly status: WorkspaceStatus;
      /** `status` by name, e.g. `'DEGRADED'`. */
      readonly statusName: StatusName;
      readonly intervalMs: number;
      /** Whether it went over a HeartbeatStream or a unary call. */
      readonly via: 'stream' | 'unary';
    }
  | {
      readonly type: 'heartbeat-failed';
      readonly error: VigilClientError;
      readonly retryInMs: number;
    };

export interface HeartbeatLoopOptions {
  readonly client: RuntimeClient;
  readonly workspaceId: string;
  /** The URL to advertise; may be empty for POLL delivery. */
  readonly url: string;
  /** The A2A agent card, sent with Register and with every heartbeat. */
  readonly agentCard: Record<string, unknown>;
  readonly deliveryMode?: DeliveryMode;
  /** Called before each heartbeat for the runtime's current health. */
  readonly report?: () => HealthReport;
  /**
   * `stream` (the default) sends heartbeats over one HeartbeatStream and falls
   * back to unary calls when the server does not implement it; `unary` never
   * streams.
   */
  readonly transport?: 'stream' | 'unary';
  /** Used until the server hints an interval; default 10 s. */
  readonly initialIntervalMs?: number;
  /** Stops the loop; `run` then resolves. */
  readonly signal: AbortSignal;
  readonly onEvent?: (event: SidecarEvent) => void;
  /**
   * Told when a Register or heartbeat answer hints a projection version other
   * than the last one hinted (the first answer included): fetch or watch the
   * projection then. Report what was applied with `report().appliedConfigVersion`.
   */
  readonly onProjection?: (configVersion: number) => void;
  readonly random?: () => number;
}

/**
 * The sidecar's loop: register, then heartbeat on the server's hinted
 * interval, always carrying the agent card, until `signal` aborts.
 *
 * A Register the server rejects as invalid (for example an advertised URL it
 * cannot resolve) is not retried — retrying would stamp a fresh failure
 * marker each time — but heartbeats go on: the card they carry is what lets
 * the workspace recover. A Register that failed because the server was
 * unreachable is retried with backoff between heartbeats.
 */
export async function runHeartbeatLoop(options: HeartbeatLoopOptions): Promise<void> {
  const { client, signal } = options;
  const random = options.random ?? Math.random;
  let intervalMs = options.initialIntervalMs ?? 10_000;
  let registered = false;
  let registerAttempts = 0;
  let nextRegisterAt = 0;
  let failures = 0;
  const emit = (event: SidecarEvent) => options.onEvent?.(event);
  let hinted: number | undefined;
  const hint = (configVersion: number) => {
    if (configVersion === hinted) return;
    hinted = configVersion;
    options.onProjection?.(configVersion);
  };

  /** Registers; returns whether to stop trying. */
  const register = async (): Promise<boolean> => {
    try {
      const response = await client.register({
        workspaceId: options.workspaceId,
        url: options.url,
        agentCard: options.agentCard,
        deliveryMode: options.deliveryMode ?? DeliveryMode.DELIVERY_MODE_PUSH,
      });
      intervalMs = hintMs(response.heartbeatInterval, intervalMs);
      hint(response.configVersion);
      const status = response.workspace?.status ?? WorkspaceStatus.WORKSPACE_STATUS_UNSPECIFIED;
      emit({ type: 'registered', status, statusName: statusName(status), intervalMs });
      return true;
    } catch (error) {
      const clientError = asClientError(error);
      // Only retry what may succeed unchanged: the same request would fail the same way.
      const willRetry = clientError.retryable;
      registerAttempts += 1;
      nextRegisterAt = Date.now() + backoffDelay(registerAttempts, { random, maxMs: 30_000 });
      const fatal = isFatal(clientError);
      emit({ type: 'register-failed', error: clientError, willRetry, fatal });
      if (fatal) throw clientError;
      return !willRetry;
    }
  };
  const stopped = () => signal.aborted;
  let useStream = options.transport !== 'unary';
  let stream: HeartbeatStream | undefined;

  const sendHeartbeat = async (
    request: HeartbeatInput,
  ): Promise<{ response: HeartbeatResponse; via: 'stream' | 'unary' }> => {
    if (useStream) {
      // An answer later than an interval (at least 2 s, at most 10 s) gives the stream up.
      const answerTimeoutMs = Math.max(2_000, Math.min(intervalMs, 10_000));
      if (!stream || stream.closed) stream = client.openHeartbeatStream({ answerTimeoutMs });
      try {
        return { response: await stream.send(request), via: 'stream' };
      } catch (error) {
        // A server that stopped answering (paused, cut off) still holds the connection:
        // a new one (through a balancer, to another replica) is the way out.
        if (error instanceof VigilClientError && error.reason === ANSWER_TIMEOUT) {
          client.reconnect();
        }
        if (!(error instanceof VigilClientError) || error.code !== status.UNIMPLEMENTED)
          throw error;
        // An older server: unary calls have the same semantics.
        useStream = false;
        stream.close();
      }
    }
    return { response: await client.heartbeat(request), via: 'unary' };
  };

  try {
    await loop();
  } finally {
    stream?.close();
  }

  async function loop(): Promise<void> {
    while (!stopped()) {
      if (!registered && Date.now() >= nextRegisterAt) registered = await register();
      if (stopped()) break;
      let waitMs: number;
      try {
        const { response, via } = await sendHeartbeat({
          workspaceId: options.workspaceId,
          agentCard: options.agentCard,
          ...options.report?.(),
        });
        failures = 0;
        intervalMs = hintMs(response.heartbeatInterval, intervalMs);
        hint(response.configVersion);
        waitMs = intervalMs;
        emit({
          type: 'heartbeat',
          status: response.status,
          statusName: statusName(response.status),
          intervalMs,
          via,
        });
      } catch (error) {
        const clientError = asClientError(error);
        // A removed workspace (FAILED_PRECONDITION) will never take heartbeats again.
        if (isFatal(clientError) || clientError.code === status.FAILED_PRECONDITION) {
          throw clientError;
        }
        failures += 1;
        waitMs = clientError.retryable
          ? // Unavailable: retry sooner than a full interval, but never hammer a struggling server.
            Math.min(intervalMs, backoffDelay(failures, { random, baseMs: 500, maxMs: intervalMs }))
          : // Rejected (say, an invalid card): the same heartbeat fails the same way until
            // the cause goes, so back off from one interval, doubling up to 5 minutes.
            rejectedBackoff(failures, intervalMs, random);
        emit({ type: 'heartbeat-failed', error: clientError, retryInMs: waitMs });
      }
      await sleep(waitMs, signal);
    }
  }
}

/** Longest wait between heartbeats the server keeps rejecting. */
export const REJECTED_MAX_MS = 300_000;

/**
 * The wait after the `failures`-th rejected heartbeat in a row: "equal jitter"
 * around min(5 min, interval · 2^(failures−1)), i.e. between half of it and all
 * of it, so sidecars rejected together spread out but none retries at once.
 */
export function rejectedBackoff(
  failures: number,
  intervalMs: number,
  random: () => number,
): number {
  const cap = Math.min(REJECTED_MAX_MS, intervalMs * 2 ** Math.min(failures - 1, 30));
  return Math.round(cap / 2 + (random() * cap) / 2);
}

/** Failures no retry can fix: the token is wrong for this workspace. */
function isFatal(error: VigilClientError): boolean {
  return error.code === status.UNAUTHENTICATED || error.code === status.PERMISSION_DENIED;
}

function hintMs(hint: { seconds: number; nanos: number } | undefined, fallback: number): number {
  if (!hint) return fallback;
  const ms = hint.seconds * 1000 + Math.floor(hint.nanos / 1e6);
  return ms > 0 ? ms : fallback;
}

function asClientError(error: unknown): VigilClientError {
  if (error instanceof VigilClientError) return error;
  return new VigilClientError(
    status.UNKNOWN,
    '',
    error instanceof Error ? error.message : String(error),
    {},
  );
}
