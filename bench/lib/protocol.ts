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

export interface LoadItem {
  readonly payload: Uint8Array;
  /** Bearer token sent as `authorization` metadata; '' sends none. */
  readonly token: string;
}

/**
 * What a long-lived bidi stream carries and how its answers are checked:
 * - `heartbeat`: Vigil's HeartbeatStream; requests are HeartbeatStreamRequest
 *   {request_id, heartbeat = payload}, answers decoded HeartbeatStreamResponses;
 * - `echo`: the bare baseline's EchoStream, sent the same bytes as `heartbeat`;
 *   an answer is good when it starts with the request's request_id field;
 * - `lease`: etcd's Lease/LeaseKeepAlive; the payload is an encoded
 *   LeaseKeepAliveRequest sent as is, an answer is good when its TTL is > 0.
 */
export type DuplexProtocol = 'heartbeat' | 'echo' | 'lease';

/**
 * Opens one bidi stream per item into a named set and sends one request on
 * each (at most `openConcurrency` unanswered at a time). Resolves once every
 * stream answered its first request: the streams are then open and idle.
 */
export interface DuplexOpenTask {
  readonly kind: 'duplex-open';
  readonly set: string;
  readonly address: string;
  /** Full method path, e.g. /vigil.v1.RuntimeService/HeartbeatStream. */
  readonly path: string;
  readonly protocol: DuplexProtocol;
  readonly channels: number;
  readonly items: readonly LoadItem[];
  /** Extra metadata on every stream (e.g. the echo's reply size). */
  readonly metadata?: Readonly<Record<string, string>>;
  readonly openConcurrency: number;
  readonly timeoutMs: number;
}

export interface DuplexOpenResult {
  readonly primed: number;
  readonly failed: number;
  readonly errorSamples: readonly string[];
  readonly ms: number;
  /** Size of the last first answer received, bytes. */
  readonly answerBytes: number;
}

/**
 * Closed loop over an open set: from `startAt`, every stream keeps `pipeline`
 * requests outstanding, sending the next as each answer arrives; answers
 * after `warmupMs` and before the end count. Then sending stops and the last
 * answers are awaited (bounded); the streams stay open.
 */
export interface DuplexRunTask {
  readonly kind: 'duplex-run';
  readonly set: string;
  readonly pipeline: number;
  /** Wall-clock epoch ms at which every worker starts together. */
  readonly startAt: number;
  readonly warmupMs: number;
  readonly durationMs: number;
}

export interface DuplexCloseTask {
  readonly kind: 'duplex-close';
  readonly set: string;
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

/** Heartbeats every stream every `intervalMs`, each with a random phase. */
export interface FleetRunTask {
  readonly kind: 'fleet-run';
  /** An open `heartbeat` set (see {@link DuplexOpenTask}). */
  readonly set: string;
  readonly startAt: number;
  readonly intervalMs: number;
  readonly durationMs: number;
  /** A stream with this many unanswered heartbeats skips its turn (and counts it). */
  readonly maxOutstanding: number;
  /** How long to wait for the last answers after the run. */
  readonly drainMs: number;
}

export interface FleetRunResult {
  /** Turns that came due during the run (sent + skipped + turns of failed streams). */
  readonly offered: number;
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

export interface TaskResults {
  unary: LoadResult;
  'duplex-open': DuplexOpenResult;
  'duplex-run': LoadResult;
  'duplex-close': null;
  'watch-open': WatchOpenResult;
  'watch-arm': null;
  'watch-collect': WatchCollectResult;
  'watch-close': null;
  'fleet-run': FleetRunResult;
}

export type WorkerTask =
  | UnaryLoadTask
  | DuplexOpenTask
  | DuplexRunTask
  | DuplexCloseTask
  | WatchOpenTask
  | WatchArmTask
  | WatchCollectTask
  | WatchCloseTask
  | FleetRunTask;

export interface WorkerRequest {
  readonly id: number;
  readonly task: WorkerTask;
}

export type WorkerReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: string };
