/**
 * The IPC protocol between the bench driver and its load-worker processes.
 * The driver sends one {@link WorkerRequest} at a time per task and the worker
 * answers with one {@link WorkerReply} carrying the same `id`. Messages travel
 * with Node's `advanced` serialization, so typed arrays and Buffers pass as is.
 */

/** Runs unary calls with a fixed number in flight for a fixed time. */
export interface UnaryLoadTask {
  readonly kind: 'unary';
  readonly address: string;
  /** Full method path, e.g. /vigil.v1.RuntimeService/Heartbeat. */
  readonly path: string;
  readonly channels: number;
  /** Calls kept in flight on each channel. */
  readonly concurrencyPerChannel: number;
  /** Request bytes and bearer token; calls cycle through them. */
  readonly items: readonly LoadItem[];
  /** Wall-clock epoch ms at which every worker starts together. */
  readonly startAt: number;
  readonly warmupMs: number;
  readonly durationMs: number;
}

/** Heartbeats pipelined over one HeartbeatStream per item. */
export interface StreamLoadTask {
  readonly kind: 'stream';
  readonly address: string;
  readonly channels: number;
  /** One stream per item; `payload` is an encoded HeartbeatRequest. */
  readonly items: readonly LoadItem[];
  /** Requests kept outstanding on each stream. */
  readonly pipeline: number;
  readonly startAt: number;
  readonly warmupMs: number;
  readonly durationMs: number;
}

export interface LoadItem {
  readonly payload: Uint8Array;
  readonly token: string;
}

/** What a throughput run measured in one worker. */
export interface LoadResult {
  /** Successful calls (or heartbeat responses) completed inside the measured window. */
  readonly ok: number;
  /** Failed calls (or `error` responses) inside the window. */
  readonly errors: number;
  /** Failures anywhere in the run, including warm-up and drain. */
  readonly errorsTotal: number;
  /** Streams that ended with an error (stream runs only). */
  readonly streamErrors: number;
  /** A few error descriptions, for the report. */
  readonly errorSamples: readonly string[];
  /** Latency of each successful call in the window, ms (possibly a uniform sample). */
  readonly latenciesMs: Float64Array;
  readonly windowMs: number;
  /** CPU time the worker used during the run, ms (user + system). */
  readonly cpuMs: number;
}

/** Opens server streams (WatchStatus, or the baseline Subscribe) into a named set. */
export interface WatchOpenTask {
  readonly kind: 'watch-open';
  readonly set: string;
  readonly address: string;
  readonly path: string;
  /** Encoded request message. */
  readonly request: Uint8Array;
  readonly token: string;
  readonly channels: number;
  readonly streams: number;
  /** Streams opened at a time; the next batch waits for their first frames. */
  readonly openBatch: number;
  readonly timeoutMs: number;
}

export interface WatchOpenResult {
  readonly ready: number;
  readonly ms: number;
}

/** Starts a trial: every stream of the set waits for its next trigger frame. */
export interface WatchArmTask {
  readonly kind: 'watch-arm';
  readonly set: string;
  /** The workspace id the trigger transition must carry ('' = do not check). */
  readonly expectWorkspaceId: string;
}

/** Waits until every stream of the set saw the trigger frame, or the timeout. */
export interface WatchCollectTask {
  readonly kind: 'watch-collect';
  readonly set: string;
  readonly timeoutMs: number;
}

export interface WatchCollectResult {
  readonly received: number;
  readonly streams: number;
  /** Wall-clock epoch ms of the first and the last arrival. */
  readonly firstArrival: number;
  readonly lastArrival: number;
  /** Frames whose decoded workspace id was not the expected one. */
  readonly mismatches: number;
  /** Streams of the set that have ended or failed so far. */
  readonly failed: number;
}

export interface WatchCloseTask {
  readonly kind: 'watch-close';
  readonly set: string;
}

/** Opens one HeartbeatStream per workspace and sends one heartbeat on each. */
export interface FleetOpenTask {
  readonly kind: 'fleet-open';
  readonly address: string;
  readonly channels: number;
  readonly items: readonly LoadItem[];
  /** Streams being opened (first heartbeat unanswered) at a time. */
  readonly openConcurrency: number;
  readonly timeoutMs: number;
}

export interface FleetOpenResult {
  readonly primed: number;
  readonly failed: number;
  readonly errorSamples: readonly string[];
  readonly ms: number;
}

/** Heartbeats every stream every `intervalMs`, each with a random phase. */
export interface FleetRunTask {
  readonly kind: 'fleet-run';
  readonly startAt: number;
  readonly intervalMs: number;
  readonly durationMs: number;
  /** A stream with this many unanswered heartbeats skips its turn (and counts it). */
  readonly maxOutstanding: number;
  /** How long to wait for the last answers after the run. */
  readonly drainMs: number;
}

export interface FleetRunResult {
  readonly sent: number;
  readonly acked: number;
  readonly errors: number;
  readonly streamErrors: number;
  readonly skipped: number;
  readonly unanswered: number;
  readonly errorSamples: readonly string[];
  readonly latenciesMs: Float64Array;
  /** Largest delay between a heartbeat's scheduled time and its send, ms (client lag). */
  readonly maxSendLagMs: number;
  readonly cpuMs: number;
}

export interface FleetCloseTask {
  readonly kind: 'fleet-close';
}

export interface TaskResults {
  unary: LoadResult;
  stream: LoadResult;
  'watch-open': WatchOpenResult;
  'watch-arm': null;
  'watch-collect': WatchCollectResult;
  'watch-close': null;
  'fleet-open': FleetOpenResult;
  'fleet-run': FleetRunResult;
  'fleet-close': null;
}

export type WorkerTask =
  | UnaryLoadTask
  | StreamLoadTask
  | WatchOpenTask
  | WatchArmTask
  | WatchCollectTask
  | WatchCloseTask
  | FleetOpenTask
  | FleetRunTask
  | FleetCloseTask;

export interface WorkerRequest {
  readonly id: number;
  readonly task: WorkerTask;
}

export type WorkerReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: string };
