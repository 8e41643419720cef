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
   * Resolves `'advanced'` once head > `after`, `'idle'` after `timeoutMs`
   * without that, `'aborted'` when `signal` aborts. Listeners and timers are
   * removed when it settles.
   */
  waitBeyond(
    after: number,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<'advanced' | 'idle' | 'aborted'>;
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
}

export function createTransitionHub(options: HubOptions): TransitionHub {
  const capacity = options.tailCapacity ?? 10_000;
  let head = options.initialHead;
  // Contiguous recent transitions: tail covers (tail[0].seq - 1, head].
  let tail: Transition[] = [];
  let next = deferred();

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
    if (advanced) {
      const current = next;
      next = deferred();
      current.resolve();
    }
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

  async function waitBeyond(
    after: number,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<'advanced' | 'idle' | 'aborted'> {
    if (head > after) return 'advanced';
    if (signal.aborted) return 'aborted';
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      return await Promise.race([
        next.promise.then(() => 'advanced' as const),
        new Promise<'idle'>((resolve) => {
          timer = setTimeout(() => {
            resolve('idle');
          }, timeoutMs);
        }),
        new Promise<'aborted'>((resolve) => {
          onAbort = () => {
            resolve('aborted');
          };
          signal.addEventListener('abort', onAbort, { once: true });
        }),
      ]);
    } finally {
      clearTimeout(timer);
      if (onAbort) signal.removeEventListener('abort', onAbort);
    }
  }

  return {
    publish,
    head: () => head,
    read,
    waitBeyond,
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

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
