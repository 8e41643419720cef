import type { Logger } from 'pino';

/**
 * The log of calls refused before authentication, bounded: a flood of calls
 * without a valid token must not become a flood of log lines (a synchronous
 * write each, the largest cost of a refused call in a CPU profile). The first
 * refusal of each reason in a window is logged as it happens; the others are
 * only counted, and the count is logged (`suppressed`) when the window ends.
 * Every refusal is still counted in `vigil_rpc_requests_total`. Hand-written:
 * pino has no sampling of its own, and this is a counter and a timer.
 */
export interface RefusalLog {
  refused(reason: string, entry: Record<string, unknown>): void;
  /** Logs the counts still held, and stops the timer. */
  close(): void;
}

export function createRefusalLog(logger: Logger, windowMs = 1_000): RefusalLog {
  // Refusals since the last line, by reason; a reason present means its window is open.
  const held = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;

  function flush(): void {
    timer = undefined;
    for (const [reason, suppressed] of held) {
      if (suppressed > 0) {
        logger.info(
          { reason, suppressed, windowMs },
          'unauthenticated calls refused (not logged one by one)',
        );
      }
    }
    held.clear();
  }

  return {
    refused(reason, entry) {
      const count = held.get(reason);
      if (count !== undefined) {
        held.set(reason, count + 1);
        return;
      }
      held.set(reason, 0);
      logger.info(entry, 'rpc failed');
      timer ??= setTimeout(flush, windowMs).unref();
    },
    close() {
      if (timer) clearTimeout(timer);
      flush();
    },
  };
}
