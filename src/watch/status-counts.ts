import { WORKSPACE_STATUSES, type Transition, type WorkspaceStatus } from '../domain/model.js';

/**
 * Workspaces per status, kept in memory from the committed transitions: read
 * from the store once at start, then moved by every transition the store's
 * commit listener hears of, in the same listener that publishes to the watch
 * hub. So a read beside `hub.head()` is exact as of that seq, and costs
 * nothing, whatever the fleet's size.
 */
export interface StatusCounts {
  /** Applies committed transitions, in seq order (from → to; a creation has no from). */
  apply(transitions: readonly Transition[]): void;
  /** The counts now (a copy). */
  snapshot(): Record<WorkspaceStatus, number>;
}

export function createStatusCounts(initial: Record<WorkspaceStatus, number>): StatusCounts {
  const counts = Object.fromEntries(WORKSPACE_STATUSES.map((s) => [s, initial[s]])) as Record<
    WorkspaceStatus,
    number
  >;
  return {
    apply(transitions) {
      for (const t of transitions) {
        if (t.fromStatus !== undefined) counts[t.fromStatus] -= 1;
        counts[t.toStatus] += 1;
      }
    },
    snapshot: () => ({ ...counts }),
  };
}
