/**
 * Who decides a workspace's liveness. Exactly one process owns each
 * workspace's liveness at a time (its in-memory tracker entry and its sweep);
 * one process — the leader — does the work nobody owns: provision timeouts,
 * adopting live workspaces that have no owner, retention and token pruning.
 *
 * In single-node mode the server owns every workspace and leads from its
 * start. In cluster mode ownership is a key in etcd held on the replica's
 * lease, and leadership an etcd election; both fence the writes made under
 * them, so a replica that lost either commits nothing in its name.
 */
export interface Ownership {
  /** Whether this process owns the workspace's liveness now. */
  owns(id: string): boolean;
  /** When this process took charge of the workspace, while it owns it. */
  ownedSince(id: string): number | undefined;
  /**
   * Since when this process has been taking heartbeats without a break: its
   * start, or in cluster mode the moment it last turned SERVING again (while
   * NOT_SERVING it ended every stream and refused every call, so the silence
   * of that time is its own downtime and never counts, like a restart).
   */
  servingSince(): number;
  /**
   * Takes charge of the workspace (a sidecar stream, a Register or a
   * heartbeat reached this process), taking it over from another owner.
   * Resolves with ownedSince.
   */
  claim(id: string): Promise<number>;
  /**
   * Takes charge of a workspace only if nobody owns it (the leader adopting an
   * orphan, from a view that may be late). Resolves with ownedSince, or
   * undefined when another process owns it.
   */
  adopt(id: string): Promise<number | undefined>;
  /** Whether this process is the leader now. */
  isLeader(): boolean;
  /** Since when this process leads; undefined when it does not. */
  leaderSince(): number | undefined;
  /** ONLINE/DEGRADED workspaces that nobody owns (the leader adopts them); empty unless leader. */
  orphans(limit: number): string[];
  /** Told the ids this process no longer owns (taken over, or its lease was lost). */
  onLost(listener: (ids: readonly string[]) => void): () => void;
}

/** Single-node mode: this process owns every workspace and leads, from `since`. */
export function ownsEverything(since: number): Ownership {
  return {
    owns: () => true,
    ownedSince: () => since,
    servingSince: () => since,
    claim: () => Promise.resolve(since),
    adopt: () => Promise.resolve(since),
    isLeader: () => true,
    leaderSince: () => since,
    orphans: () => [],
    onLost: () => () => undefined,
  };
}
