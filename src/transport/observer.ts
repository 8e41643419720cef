import { status } from '@grpc/grpc-js';
import type { Logger } from 'pino';

/**
 * What transport reports about calls, for metrics. Transport knows nothing of
 * the metrics library; the wiring plugs one in.
 */
export interface CallObserver {
  /** A call finished with `code` after `seconds` (streams: from open to end). */
  callFinished(method: string, code: status, seconds: number): void;
  /**
   * One message of a pipelined bidi stream (a streamed heartbeat) was answered with
   * `code` (OK, or the in-band refusal's code) `seconds` after it arrived.
   */
  messageAnswered(method: string, code: status, seconds: number): void;
  /** A heartbeat arrived (valid or not). */
  heartbeatReceived(): void;
  /** A watch stream opened, starting after `afterSeq` (0: at the head); the tracker follows it until it closes. */
  watchOpened(afterSeq: number): WatchTracker;
}

export interface WatchTracker {
  /** The stream has sent (or, filtered, passed over) everything up to `seq`. */
  delivered(seq: number): void;
  /** The stream ended (its code is reported through `callFinished`). */
  closed(): void;
}

/**
 * `observer`, plus one debug log line per finished call (method, code,
 * duration) when the logger is at debug level or finer; `observer` itself otherwise.
 */
export function withCallLog(observer: CallObserver, logger: Logger): CallObserver {
  if (!logger.isLevelEnabled('debug')) return observer;
  return {
    ...observer,
    callFinished(method, code, seconds) {
      logger.debug(
        { method, code: status[code], ms: Math.round(seconds * 100_000) / 100 },
        'rpc finished',
      );
      observer.callFinished(method, code, seconds);
    },
  };
}
