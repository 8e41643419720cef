import type { Clock } from '../domain/clock.js';
import type { Transition } from '../domain/model.js';
import type { RegistryStore } from '../domain/registry-store.js';

/**
 * The fan-out point for committed transitions. Writers publish after commit;
 * any number of watchers read from a shared in-memory tail of recent
 * transitions, each with its own cursor, and fall back to the store when their
 * cursor is older than the tail. Nothing is queued per watcher: a slow watcher
 * costs no memory here and never blocks a writer or another watcher.
 */
export interface TransitionHub {
  /** Called after COMMIT with committed transitions, in `seq` order. */
  publish(transitions: readonly Transition[]): void;
  /** The highest `seq` published (or read from the store at start). */
  head(): number;
  /**
   * Transitions with `seq > after` (only of `workspaceIds` unless empty), at
   * most `limit`, in order; `through` is the `seq` the read is complete up
   * to, the cursor to continue from even when nothing matched.
   */
  read(after: number, limit: number, workspaceIds: ReadonlySet<string>): Promise<HubRead>;
  /**
   * A waiter for one reader: waits end `'advanced'` once head > `after`,
   * `'idle'` after about `timeoutMs` without that, `'aborted'` when `signal`
   * aborts. One per stream: no timer or listener is created per wait, so
   * waking ten thousand readers costs ten thousand promise resolutions.
   */
  waiter(signal: AbortSignal): HubWaiter;
}

export type WaitOutcome = 'advanced' | 'idle' | 'aborted';

export interface HubWaiter {
  waitBeyond(after: number, timeoutMs: number): Promise<WaitOutcome>;
}

export interface HubRead {
  readonly transitions: Transition[];
  readonly through: number;
  /** True when history after `after` was compacted away: the reader must start over from a snapshot. */
  readonly reset: boolean;
}

export interface HubOptions {
  readonly store: RegistryStore;
  /** `seq` of the last committed transition when the hub starts. */
  readonly initialHead: number;
  /** How many recent transitions stay in memory. */
  readonly tailCapacity?: number;
  /** Time for idle waits (a shared real-time ticker checks it). */
  readonly clock: Clock;
}

export function createTransitionHub(options: HubOptions): TransitionHub {
  const capacity = options.tailCapacity ?? 10_000;
  let head = options.initialHead;
  // Contiguous recent transitions: tail covers (tail[0].seq - 1, head].
  let tail: Transition[] = [];

  function publish(transitions: readonly Transition[]): void {
    let advanced = false;
    for (const transition of transitions) {
      if (transition.seq <= head) continue;
      if (transition.seq !== head + 1 && tail.length > 0) {
        // Something committed that this hub did not see: the tail is no longer
        // contiguous, so start it afresh; older cursors read from the store.
        tail = [];
      }
      tail.push(transition);
      head = transition.seq;
      advanced = true;
    }
    if (tail.length > 2 * capacity) tail = tail.slice(-capacity);
    if (advanced) wakeAll();
  }

  async function read(
    after: number,
    limit: number,
    workspaceIds: ReadonlySet<string>,
  ): Promise<HubRead> {
    // Nothing new: no read at all, whatever the tail holds.
    if (after >= head) return { transitions: [], through: after, reset: false };
    const first = tail[0];
    if (first && after >= first.seq - 1) return readTail(after, limit, workspaceIds);
    const headBefore = head;
    if (after < (await options.store.compactedThrough())) {
      return { transitions: [], through: after, reset: true };
    }
    const transitions = await options.store.readTransitions({
      afterSeq: after,
      limit,
      workspaceIds: [...workspaceIds],
    });
    const last = transitions.at(-1)?.seq ?? after;
    // A short read saw everything committed when it ran, which includes headBefore.
    return {
      transitions,
      through: transitions.length === limit ? last : Math.max(last, headBefore),
      reset: false,
    };
  }

  function readTail(after: number, limit: number, workspaceIds: ReadonlySet<string>): HubRead {
    const transitions: Transition[] = [];
    let through = Math.max(after, 0);
    for (let i = lowerBound(tail, after + 1); i < tail.length; i += 1) {
      const transition = tail[i];
      if (!transition) break;
      if (workspaceIds.size === 0 || workspaceIds.has(transition.workspaceId)) {
        transitions.push(transition);
      }
      through = transition.seq;
      if (transitions.length === limit) break;
    }
    return { transitions, through, reset: false };
  }

  // Readers waiting for the head to move, each with the time it goes idle.
  interface Pending {
    resolve: (outcome: WaitOutcome) => void;
    idleAt: number;
  }
  const pending = new Set<Pending>();
  let ticker: NodeJS.Timeout | undefined;
  let tickMs = 1_000;

  /** One shared timer ends idle waits; it runs only while someone waits. */
  function ensureTicker(timeoutMs: number): void {
    const wanted = Math.max(10, Math.min(1_000, Math.floor(timeoutMs / 2)));
    if (ticker && wanted >= tickMs) return;
    clearInterval(ticker);
    tickMs = Math.min(tickMs, wanted);
    ticker = setInterval(() => {
      const now = options.clock.now();
      for (const p of pending) {
        if (p.idleAt <= now) {
          pending.delete(p);
          p.resolve('idle');
        }
      }
      if (pending.size === 0) {
        clearInterval(ticker);
        ticker = undefined;
      }
    }, tickMs);
    ticker.unref();
  }

  function wakeAll(): void {
    const woken = [...pending];
    pending.clear();
    for (const p of woken) p.resolve('advanced');
  }

  function waiter(signal: AbortSignal): HubWaiter {
    let current: Pending | undefined;
    signal.addEventListener(
      'abort',
      () => {
        if (!current) return;
        pending.delete(current);
        current.resolve('aborted');
        current = undefined;
      },
      { once: true },
    );
    return {
      waitBeyond(after, timeoutMs) {
        if (head > after) return Promise.resolve('advanced');
        if (signal.aborted) return Promise.resolve('aborted');
        return new Promise<WaitOutcome>((resolve) => {
          const entry: Pending = {
            resolve: (outcome) => {
              current = undefined;
              resolve(outcome);
            },
            idleAt: options.clock.now() + timeoutMs,
          };
          current = entry;
          pending.add(entry);
          ensureTicker(timeoutMs);
        });
      },
    };
  }

  return {
    publish,
    head: () => head,
    read,
    waiter,
  };
}

/** Index of the first transition with seq >= target. */
function lowerBound(list: readonly Transition[], target: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const item = list[mid];
    if (item && item.seq < target) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
