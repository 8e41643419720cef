import { VigilError } from '../domain/errors.js';

/**
 * When the server stops answering, as seen by open calls: for good when it
 * shuts down, or for a while when a cluster replica cannot vouch for its etcd
 * lease (NOT_SERVING: its sidecars and watchers must move before it is fenced).
 * Each long-lived stream registers one callback and removes it when it ends;
 * both are O(1) (a Set), where listeners on one shared AbortSignal cost O(n)
 * each (EventTarget walks its list to refuse duplicates), which made opening n
 * streams O(n²).
 */
export interface Shutdown {
  /** True while calls are refused: shutdown has begun, or the replica is not serving. */
  readonly started: boolean;
  /** The error refused and ended calls get (UNAVAILABLE: SHUTTING_DOWN or NOT_SERVING). */
  refusal(): VigilError;
  /** Calls `callback` once when calls start being refused (at once, if they are); returns its removal. */
  onShutdown(callback: () => void): () => void;
}

export interface ShutdownControl extends Shutdown {
  /** Begins shutdown, for good: every registered callback runs once. */
  begin(): void;
  /**
   * Not serving (`false`): every registered callback runs once and new calls
   * are refused, until `setServing(true)`. No effect once shutdown has begun.
   */
  setServing(serving: boolean): void;
}

export function createShutdown(): ShutdownControl {
  const callbacks = new Set<() => void>();
  let shuttingDown = false;
  let serving = true;
  const endAll = () => {
    const pending = [...callbacks];
    callbacks.clear();
    for (const callback of pending) callback();
  };
  return {
    get started() {
      return shuttingDown || !serving;
    },
    refusal() {
      return shuttingDown || serving
        ? new VigilError('SHUTTING_DOWN', 'the server is shutting down; resume from your last seq')
        : new VigilError(
            'NOT_SERVING',
            'this replica cannot confirm its etcd lease; call another replica (resume from your last seq)',
          );
    },
    onShutdown(callback) {
      if (shuttingDown || !serving) {
        callback();
        return () => undefined;
      }
      callbacks.add(callback);
      return () => {
        callbacks.delete(callback);
      };
    },
    begin() {
      if (shuttingDown) return;
      shuttingDown = true;
      endAll();
    },
    setServing(next) {
      if (shuttingDown || serving === next) return;
      serving = next;
      if (!next) endAll();
    },
  };
}
