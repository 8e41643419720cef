import type { Transition } from './model.js';
import type { Decide, HeartbeatApplied, HeartbeatInput, RegistryStore } from './registry-store.js';

/**
 * Group commit for heartbeats. Heartbeats arriving in the same event-loop turn
 * are applied in one store call — each with its full semantics, isolated from
 * the others (one failing writes nothing and does not affect the rest) — and
 * every caller is answered only after that shared commit, so nothing that
 * changes a status, a marker or a card is acknowledged before it is durable.
 * Transitions are published after commit, in seq order.
 */
export interface HeartbeatBatcher {
  apply(input: HeartbeatInput, decide: Decide): Promise<HeartbeatApplied>;
}

interface Pending {
  readonly input: HeartbeatInput;
  readonly decide: Decide;
  resolve(applied: HeartbeatApplied): void;
  reject(error: unknown): void;
}

/** Largest number of heartbeats one transaction applies. */
const MAX_BATCH = 2_000;

export function createHeartbeatBatcher(
  store: RegistryStore,
  onCommitted: (transitions: readonly Transition[]) => void,
): HeartbeatBatcher {
  let queue: Pending[] = [];
  let scheduled = false;
  // Flushes run one after another, so publication order follows commit order.
  let flushing: Promise<void> = Promise.resolve();

  async function flush(batch: readonly Pending[]): Promise<void> {
    let outcomes;
    try {
      outcomes = await store.applyHeartbeats(batch.map(({ input, decide }) => ({ input, decide })));
    } catch (error) {
      for (const p of batch) p.reject(error);
      return;
    }
    const committed: Transition[] = [];
    for (const outcome of outcomes) {
      if (outcome.ok && outcome.applied.transition) committed.push(outcome.applied.transition);
    }
    if (committed.length > 0) onCommitted(committed);
    outcomes.forEach((outcome, i) => {
      const p = batch[i];
      if (!p) return;
      if (outcome.ok) p.resolve(outcome.applied);
      else p.reject(outcome.error);
    });
  }

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      const taken = queue;
      queue = [];
      for (let i = 0; i < taken.length; i += MAX_BATCH) {
        const chunk = taken.slice(i, i + MAX_BATCH);
        flushing = flushing.then(() => flush(chunk));
      }
    });
  }

  return {
    apply(input, decide) {
      return new Promise<HeartbeatApplied>((resolve, reject) => {
        queue.push({ input, decide, resolve, reject });
        schedule();
      });
    },
  };
}
