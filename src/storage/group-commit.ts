/**
 * Group commit: work items arriving in the same event-loop turn are run as
 * one batch (one transaction, in the backends that use this), at most
 * `maxBatch` at a time and one batch after another, so commit order is
 * arrival order. Each item gets its own outcome; `runBatch` reports per-item
 * failures in their slots and throws only when the whole batch failed.
 */
export type Outcome<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

export interface GroupCommit<I, T> {
  /** Queues one item; settles with its outcome after the batch it joined has run. */
  submit(item: I): Promise<T>;
}

interface Pending<I, T> {
  readonly item: I;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function createGroupCommit<I, T>(
  runBatch: (items: readonly I[]) => Outcome<T>[],
  maxBatch: number,
): GroupCommit<I, T> {
  let queue: Pending<I, T>[] = [];
  let scheduled = false;

  function flush(): void {
    scheduled = false;
    const taken = queue;
    queue = [];
    for (let i = 0; i < taken.length; i += maxBatch) {
      const chunk = taken.slice(i, i + maxBatch);
      let outcomes: Outcome<T>[];
      try {
        outcomes = runBatch(chunk.map((p) => p.item));
      } catch (error) {
        for (const p of chunk) p.reject(error);
        continue;
      }
      chunk.forEach((p, index) => {
        const outcome = outcomes[index];
        if (!outcome) p.reject(new Error('group commit returned no outcome for an item'));
        else if (outcome.ok) p.resolve(outcome.value);
        else p.reject(outcome.error);
      });
    }
  }

  return {
    submit(item) {
      return new Promise<T>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
  };
}
