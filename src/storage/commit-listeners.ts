import type { Commit, CommitListener } from '../domain/registry-store.js';

/**
 * The listeners of one store. Every backend tells them about each commit
 * through `publish`, right after the commit and before the write settles.
 * A listener that throws is reported through `onError` and skipped, so it can
 * never fail a write, hold back its reply or silence later commits.
 */
export interface CommitListeners {
  subscribe(listener: CommitListener): () => void;
  publish(commit: Commit): void;
}

export function createCommitListeners(onError: (error: unknown) => void): CommitListeners {
  const listeners = new Set<CommitListener>();
  return {
    subscribe(listener) {
      // Wrapped, so the same function subscribed twice is told twice and removed once per subscription.
      const entry: CommitListener = (commit) => {
        listener(commit);
      };
      listeners.add(entry);
      return () => {
        listeners.delete(entry);
      };
    },
    publish(commit) {
      if (commit.transitions.length === 0 && commit.states.length === 0) return;
      for (const listener of listeners) {
        try {
          listener(commit);
        } catch (error) {
          try {
            onError(error);
          } catch {
            // Reporting must not break publication either.
          }
        }
      }
    },
  };
}
