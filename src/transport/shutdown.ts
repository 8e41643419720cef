/**
 * Server shutdown as seen by open calls. Each long-lived stream registers one
 * callback and removes it when it ends; both are O(1) (a Set), where
 * listeners on one shared AbortSignal cost O(n) each (EventTarget walks its
 * list to refuse duplicates), which made opening n streams O(n²).
 */
export interface Shutdown {
  /** True once shutdown has begun. */
  readonly started: boolean;
  /** Calls `callback` once when shutdown begins (at once, if it has); returns its removal. */
  onShutdown(callback: () => void): () => void;
}

export interface ShutdownControl extends Shutdown {
  /** Begins shutdown: every registered callback runs once. */
  begin(): void;
}

export function createShutdown(): ShutdownControl {
  const callbacks = new Set<() => void>();
  let started = false;
  return {
    get started() {
      return started;
    },
    onShutdown(callback) {
      if (started) {
        callback();
        return () => undefined;
      }
      callbacks.add(callback);
      return () => {
        callbacks.delete(callback);
      };
    },
    begin() {
      if (started) return;
      started = true;
      const pending = [...callbacks];
      callbacks.clear();
      for (const callback of pending) callback();
    },
  };
}
