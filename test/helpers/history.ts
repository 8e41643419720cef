import { appendFileSync, existsSync, readFileSync } from 'node:fs';

/**
 * A Jepsen-style history of a cluster test: what every client invoked and how
 * it ended, every frame every replica's WatchStatus stream delivered, and what
 * etcd itself recorded about commits and replica leases. Times are
 * CLOCK_MONOTONIC milliseconds (`process.hrtime`), the same clock in every
 * process of the machine, so histories written by child processes merge.
 */

/** Milliseconds on the machine-wide monotonic clock. */
export function monoNow(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** The transition a client operation is expected to cause when it succeeds. */
export interface ExpectedTransition {
  readonly ws: string;
  readonly to: string;
  readonly reason: string;
}

/**
 * A client operation: `invoke`, then exactly one of `ok` (acknowledged),
 * `fail` (definitely not applied) or `info` (indeterminate: a timeout, a lost
 * connection) with the same `op` id.
 */
export interface OpEvent {
  readonly kind: 'op';
  readonly type: 'invoke' | 'ok' | 'fail' | 'info';
  /** Unique per history (process-prefixed). */
  readonly op: string;
  readonly f: 'create' | 'register' | 'heartbeat' | 'delete';
  readonly ws: string;
  /** Which replica the call went to (HOST:PORT, or 'round-robin'). */
  readonly target: string;
  readonly t: number;
  /** On invoke: the transition an acknowledged call must have committed. */
  readonly expect?: ExpectedTransition;
  /** On fail/info: the gRPC code or error text. */
  readonly error?: string;
}

/** One frame of one observer's WatchStatus stream, or the (re)opening of it. */
export interface WatchEvent {
  readonly kind: 'watch';
  /** One logical stream across its reconnects (e.g. `watch-r1`). */
  readonly observer: string;
  readonly replica: string;
  readonly frame: 'open' | 'transition' | 'progress' | 'snapshot-end' | 'reset' | 'error';
  readonly t: number;
  /** open: the cursor resumed from; transition/progress/snapshot-end: the seq. */
  readonly seq: number;
  readonly ws?: string;
  readonly from?: string | null;
  readonly to?: string;
  readonly reason?: string;
  readonly at?: number;
}

/** The last seq an observer reached when the test stopped (all must agree). */
export interface WatchEndEvent {
  readonly kind: 'watch-end';
  readonly observer: string;
  readonly seq: number;
  readonly t: number;
}

/** A committed transition as etcd holds it: which replica's transaction wrote it, at which revision. */
export interface CommitEvent {
  readonly kind: 'commit';
  readonly seq: number;
  readonly by: string;
  readonly revision: number;
  /** The transition's reason: CREATED and DELETED are control-plane writes, not owner or leader work. */
  readonly reason: string;
}

/** One lifetime of a replica's lease: its presence key from creation to deletion (revisions). */
export interface LeaseEvent {
  readonly kind: 'lease';
  readonly replica: string;
  readonly from: number;
  /** Revision of the deletion (expiry or revoke); undefined while it lives. */
  readonly to?: number;
}

/**
 * Wall clock minus monotonic clock (ms) on this machine, measured once: turns
 * a replica's wall-clock transition time (`at`) into the history's clock.
 */
export interface ClockEvent {
  readonly kind: 'clock';
  readonly wallMinusMono: number;
}

/** A fault the test injected (for reading a failed history, not checked). */
export interface FaultEvent {
  readonly kind: 'fault';
  readonly what: string;
  readonly t: number;
}

export type HistoryEvent =
  OpEvent | WatchEvent | WatchEndEvent | CommitEvent | LeaseEvent | ClockEvent | FaultEvent;

export interface History {
  readonly events: HistoryEvent[];
  add(event: HistoryEvent): void;
  /** Appends every event of a JSON-lines history file (a child process's). */
  merge(file: string): void;
  /** Writes the whole history as JSON lines (kept when a test fails). */
  save(file: string): void;
}

export function createHistory(): History {
  const events: HistoryEvent[] = [];
  return {
    events,
    add(event) {
      events.push(event);
    },
    merge(file) {
      if (!existsSync(file)) return;
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        if (line.trim() !== '') events.push(JSON.parse(line) as HistoryEvent);
      }
    },
    save(file) {
      appendFileSync(file, events.map((e) => JSON.stringify(e)).join('\n') + '\n');
    },
  };
}

/**
 * A history writer for a child process: buffers events and appends them to
 * `file` as JSON lines every `flushMs` and on `flush()`.
 */
export function createHistoryFile(file: string, flushMs = 500) {
  let buffer: string[] = [];
  const flush = () => {
    if (buffer.length === 0) return;
    appendFileSync(file, buffer.join('\n') + '\n');
    buffer = [];
  };
  const timer = setInterval(flush, flushMs);
  timer.unref();
  return {
    add(event: HistoryEvent) {
      buffer.push(JSON.stringify(event));
    },
    flush,
    close() {
      clearInterval(timer);
      flush();
    },
  };
}
