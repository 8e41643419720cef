import type { HeartbeatReport, WorkspaceStatus } from './model.js';
import type { Ownership } from './ownership.js';
import type { LivenessRecord, WorkspaceState } from './registry-store.js';
import { silentTooLong } from './status-machine.js';

/**
 * Liveness in memory. The process that owns a workspace's liveness (in
 * single-node mode: this server, for every workspace) keeps, per workspace,
 * when it was last seen, the health it last reported and since when this
 * process owns it, next to a mirror of the durable state the status machine
 * reads. A heartbeat that changes no status, marker or card is answered from
 * here and writes nothing before its reply; last-seen times reach the store
 * lazily, in batches, for display and continuity only. Losing the unflushed
 * ones in a crash is harmless: the sweep counts from
 * `max(lastSeen, ownedSince)`, and ownedSince is the (re)start.
 */

/** One tracked workspace. Mutable: the tracker is its only writer. */
export interface LivenessEntry {
  readonly id: string;
  status: WorkspaceStatus;
  lastRegisteredAt: number | undefined;
  lastRegisterFailureAt: number | undefined;
  createdAt: number;
  hasCard: boolean;
  /** Latest of the last heartbeat and the last successful Register, as far as this process knows. */
  lastSeen: number;
  /** When this process took charge of the workspace's liveness. */
  ownedSince: number;
  /** Last heartbeat seen by this process, and what it reported (undefined before the first). */
  lastHeartbeatAt: number | undefined;
  health: HeartbeatReport | undefined;
  /** Fingerprint of the raw bytes of the last agent card accepted from this workspace. */
  cardFingerprint: string | undefined;
  /** True while `lastHeartbeatAt`/`health` are newer than what the store holds. */
  dirty: boolean;
  /**
   * Heartbeat writes of this workspace waiting for their commit. While any
   * is, the mirror may be behind what they will commit, so no heartbeat is
   * answered from memory.
   */
  writesInFlight: number;
  /** When it last became dirty. */
  dirtySince: number;
}

export interface LivenessTracker {
  /** The entry of a workspace, when this process tracks it. */
  get(id: string): LivenessEntry | undefined;
  /**
   * Mirrors committed states (call it from the store's commit hook, in commit
   * order). A REMOVED workspace is forgotten; a new one is tracked when this
   * process owns it, from its ownedSince.
   */
  observe(states: readonly WorkspaceState[]): void;
  /** Tracks a workspace this process just took charge of, from `ownedSince`. */
  adopt(state: WorkspaceState, ownedSince: number): void;
  /** Stops tracking workspaces this process no longer owns (their unflushed liveness is dropped). */
  forget(ids: readonly string[]): void;
  /** Records a heartbeat that reached this process at `now` (for a tracked workspace). */
  beat(id: string, now: number, report: HeartbeatReport): void;
  /**
   * ONLINE/DEGRADED workspaces with `now − max(lastSeen, ownedSince) > offlineAfterMs`
   * (ownedSince never before the ownership's servingSince), at most `limit`, oldest first.
   */
  expired(now: number, offlineAfterMs: number, limit: number): string[];
  /**
   * Takes up to `limit` entries whose liveness the store has not seen and
   * that became dirty at or before `dirtySince` (oldest first), clearing their
   * mark. Flushing with a cutoff of "now − interval" spreads the writes evenly:
   * each workspace is written about once per interval, not all at once.
   */
  takeDirty(dirtySince: number, limit: number): LivenessRecord[];
  /** Marks records dirty again (their flush failed), unless newer heartbeats superseded them. */
  restore(records: readonly LivenessRecord[]): void;
  /** Number of tracked workspaces. */
  readonly size: number;
}

export function createLivenessTracker(ownership: Ownership): LivenessTracker {
  const entries = new Map<string, LivenessEntry>();
  // Ids with unflushed liveness, in the order they became dirty.
  const dirty = new Set<string>();

  function track(state: WorkspaceState, ownedSince: number): void {
    entries.set(state.id, {
      id: state.id,
      status: state.status,
      lastRegisteredAt: state.lastRegisteredAt,
      lastRegisterFailureAt: state.lastRegisterFailureAt,
      createdAt: state.createdAt,
      hasCard: state.hasCard,
      lastSeen: Math.max(state.lastHeartbeatAt ?? 0, state.lastRegisteredAt ?? 0),
      ownedSince,
      lastHeartbeatAt: undefined,
      health: undefined,
      cardFingerprint: undefined,
      dirty: false,
      dirtySince: 0,
      writesInFlight: 0,
    });
  }

  function observe(states: readonly WorkspaceState[]): void {
    for (const state of states) {
      if (state.status === 'REMOVED') {
        entries.delete(state.id);
        dirty.delete(state.id);
        continue;
      }
      const seen = Math.max(state.lastHeartbeatAt ?? 0, state.lastRegisteredAt ?? 0);
      const entry = entries.get(state.id);
      if (entry) {
        entry.status = state.status;
        entry.lastRegisteredAt = state.lastRegisteredAt;
        entry.lastRegisterFailureAt = state.lastRegisterFailureAt;
        entry.createdAt = state.createdAt;
        entry.hasCard = state.hasCard;
        if (seen > entry.lastSeen) entry.lastSeen = seen;
      } else {
        const since = ownership.ownedSince(state.id);
        if (since !== undefined) track(state, since);
      }
    }
  }

  return {
    get: (id) => entries.get(id),
    observe,
    adopt(state, ownedSince) {
      const entry = entries.get(state.id);
      if (entry) {
        entry.ownedSince = ownedSince;
        observe([state]);
      } else if (state.status !== 'REMOVED') {
        track(state, ownedSince);
      }
    },
    forget(ids) {
      for (const id of ids) {
        entries.delete(id);
        dirty.delete(id);
      }
    },
    beat(id, now, report) {
      const entry = entries.get(id);
      if (!entry) return;
      if (now >= entry.lastSeen) entry.lastSeen = now;
      if (entry.lastHeartbeatAt === undefined || now >= entry.lastHeartbeatAt) {
        entry.lastHeartbeatAt = now;
        // Copied into the entry's own object: a new object per heartbeat would live until the
        // next one, survive young-generation GCs and be promoted, feeding major GCs.
        if (entry.health) Object.assign(entry.health, report);
        else entry.health = { ...report };
        if (!entry.dirty) {
          entry.dirty = true;
          entry.dirtySince = now;
          dirty.add(id);
        }
      }
    },
    expired(now, offlineAfterMs, limit) {
      const found: LivenessEntry[] = [];
      const servingSince = ownership.servingSince();
      for (const entry of entries.values()) {
        if (entry.status !== 'ONLINE' && entry.status !== 'DEGRADED') continue;
        const since = Math.max(entry.ownedSince, servingSince);
        if (silentTooLong(now, entry.lastSeen, since, offlineAfterMs)) found.push(entry);
      }
      return found
        .sort((a, b) => Math.max(a.lastSeen, a.ownedSince) - Math.max(b.lastSeen, b.ownedSince))
        .slice(0, limit)
        .map((entry) => entry.id);
    },
    takeDirty(dirtySince, limit) {
      const taken: LivenessRecord[] = [];
      // Insertion order is the order entries became dirty.
      for (const id of dirty) {
        if (taken.length >= limit) break;
        const entry = entries.get(id);
        if (entry?.dirty && entry.dirtySince > dirtySince) break;
        dirty.delete(id);
        if (!entry?.dirty || entry.lastHeartbeatAt === undefined || !entry.health) continue;
        entry.dirty = false;
        taken.push({ id, lastHeartbeatAt: entry.lastHeartbeatAt, report: { ...entry.health } });
      }
      return taken;
    },
    restore(records) {
      for (const record of records) {
        const entry = entries.get(record.id);
        if (!entry || entry.dirty) continue;
        entry.dirty = true;
        entry.dirtySince = record.lastHeartbeatAt;
        dirty.add(record.id);
      }
    },
    get size() {
      return entries.size;
    },
  };
}
