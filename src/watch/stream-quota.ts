import { VigilError } from '../domain/errors.js';

/**
 * Open watch streams per control token: WatchStatus and the web console's event
 * stream count against one quota, so a console costs what any watch stream costs.
 */
export interface StreamQuota {
  /** Counts one more open stream for `key`; returns its release. Throws WATCH_LIMIT past the cap. */
  acquire(key: string): () => void;
}

/** Caps open streams per key (a control token's name). */
export function createStreamQuota(max: number): StreamQuota {
  const open = new Map<string, number>();
  return {
    acquire(key) {
      const count = open.get(key) ?? 0;
      if (max > 0 && count >= max) {
        throw new VigilError(
          'WATCH_LIMIT',
          `the control token "${key}" already has ${count} open watch streams (the limit)`,
          { tokenName: key, limit: String(max), retryAfterMs: '5000' },
          { retryAfterMs: 5_000 },
        );
      }
      open.set(key, count + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (open.get(key) ?? 1) - 1;
        if (left === 0) open.delete(key);
        else open.set(key, left);
      };
    },
  };
}
