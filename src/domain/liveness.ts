import type { Clock } from './clock.js';
import type { Timings } from './config.js';
import { createLivenessTracker, type LivenessEntry } from './liveness-tracker.js';
import type { HeartbeatReport, Transition, Workspace } from './model.js';
import type { Ownership } from './ownership.js';
import type { RegistryStore } from './registry-store.js';
import { nextStatus } from './status-machine.js';

/**
 * Liveness: who is alive, decided in memory, and the periodic work that
 * follows from it — the sweep (ONLINE/DEGRADED → OFFLINE, PROVISIONING →
 * FAILED), the lazy flush of last-seen times, and compaction of the
 * transition log.
 *
 * The one liveness rule, here and nowhere else: a workspace goes OFFLINE when
 * `now − max(lastSeen, ownedSince) > offline_after`, where ownedSince is when
 * this process took charge of the workspace's liveness (in single-node mode,
 * the server start). So downtime of Vigil itself never counts, and losing the
 * unflushed last-seen times in a crash is harmless.
 */
export interface Liveness {
  /**
   * Takes charge of the liveness of every ONLINE/DEGRADED workspace (loading
   * their state) and starts the periodic sweep, flush and compaction. Call
   * once, before serving.
   */
  start(): Promise<void>;
  /** Stops the periodic work and writes every unflushed last-seen time (failures go to `onError`). */
  stop(): Promise<void>;
  /** What this process knows of a workspace's liveness, when it tracks it. */
  entry(id: string): LivenessEntry | undefined;
  /**
   * Makes sure this process owns the workspace's liveness (claiming it when
   * another process or nobody does) and tracks it; resolves with its entry,
   * or undefined when the workspace is not live (missing or REMOVED).
   */
  take(id: string): Promise<LivenessEntry | undefined>;
  /** Records a heartbeat that reached this process at `now`. */
  beat(id: string, now: number, report: HeartbeatReport): void;
  /** Copies in the last heartbeat and health this process knows and the store may not have yet. */
  withLiveness(workspace: Workspace): Workspace;
  /**
   * One sweep, decided from memory inside the store's transaction (so a
   * heartbeat that arrived meanwhile counts). Returns the committed transitions.
   */
  sweep(): Promise<Transition[]>;
  /**
   * Writes last-seen times and health that have waited for the flush
   * interval, or all of them with `all`, in batches with the event loop free
   * between two. Returns how many workspaces were written.
   */
  flush(all?: boolean): Promise<number>;
  /** Drops transitions older than the retention (watchers behind it get a reset snapshot). */
  compactHistory(): Promise<number>;
}

export interface LivenessOptions {
  readonly store: RegistryStore;
  readonly clock: Clock;
  readonly timings: Timings;
  /** Who owns which workspace's liveness, and who leads (single-node: this process, from its start). */
  readonly ownership: Ownership;
  /** How often the sweep runs; derived from offline_after when unset. */
  readonly sweepIntervalMs?: number | undefined;
  /** Extra work for each tick (such as flushing token uses). */
  readonly onTick?: () => Promise<void>;
  /** Told when a tick's work failed (it is retried on the next tick). */
  readonly onError?: (error: unknown) => void;
  /** Told when compaction dropped transitions. */
  readonly onCompacted?: (deleted: number) => void;
}

/** Each workspace's last-seen time and health reach the store about this often. */
export const LIVENESS_FLUSH_MS = 60_000;
/** How often the transition log is compacted (it runs with a sweep). */
const COMPACTION_EVERY_MS = 60_000;
const SWEEP_BATCH = 500;
/** Rows written per flush transaction. */
const FLUSH_BATCH = 1_000;

export function createLiveness(options: LivenessOptions): Liveness {
  const { store, clock, timings } = options;
  const { ownership } = options;
  const tracker = createLivenessTracker(ownership);
  // The tracker mirrors every commit, told by the store itself, in commit order.
  const unsubscribe = store.subscribe((commit) => {
    tracker.observe(commit.states);
  });
  const unsubscribeLost = ownership.onLost((ids) => {
    tracker.forget(ids);
  });
  const taking = new Map<string, Promise<LivenessEntry | undefined>>();

  async function takeNow(id: string): Promise<LivenessEntry | undefined> {
    const ownedSince = await ownership.claim(id);
    const state = await store.workspaceState(id);
    if (!state || state.status === 'REMOVED') return undefined;
    tracker.adopt(state, ownedSince);
    return tracker.get(id);
  }

  function take(id: string): Promise<LivenessEntry | undefined> {
    const entry = tracker.get(id);
    if (entry && ownership.owns(id)) return Promise.resolve(entry);
    // One claim per workspace at a time: concurrent heartbeats share it.
    let pending = taking.get(id);
    if (!pending) {
      pending = takeNow(id).finally(() => taking.delete(id));
      taking.set(id, pending);
    }
    return pending;
  }

  /**
   * The leader adopts live workspaces nobody owns, counting their silence from
   * now. All at once (the claims share transactions); one that somebody owns
   * by the time the claim lands stays with its owner.
   */
  async function adoptOrphans(): Promise<void> {
    await Promise.all(
      ownership.orphans(SWEEP_BATCH).map(async (id) => {
        const ownedSince = await ownership.adopt(id);
        if (ownedSince === undefined) return;
        const state = await store.workspaceState(id);
        if (state && state.status !== 'REMOVED') tracker.adopt(state, ownedSince);
      }),
    );
  }
  let timer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;
  let lastCompaction = 0;

  async function sweep(): Promise<Transition[]> {
    const all: Transition[] = [];
    for (;;) {
      const now = clock.now();
      const silent = tracker.expired(now, timings.offlineAfterMs, SWEEP_BATCH);
      const provisionCutoff = now - timings.provisionTimeoutMs;
      // Provision timeouts are the leader's, counted from max(created_at, leaderSince).
      const leaderSince = ownership.leaderSince();
      const batch = await store.sweep(
        {
          now,
          silent,
          createdBefore:
            leaderSince !== undefined && leaderSince < provisionCutoff
              ? provisionCutoff
              : Number.MIN_SAFE_INTEGER,
          limit: SWEEP_BATCH,
        },
        (state, id) => {
          const entry = tracker.get(id);
          return nextStatus(
            state,
            {
              type: 'SWEEP',
              // Never from before this process last began serving (its own downtime).
              ownedSince: Math.max(
                entry?.ownedSince ?? leaderSince ?? now,
                ownership.servingSince(),
              ),
              lastSeen: entry?.lastSeen,
            },
            now,
            timings,
          );
        },
      );
      all.push(...batch);
      const provisioned = batch.filter((t) => t.reason === 'PROVISION_TIMEOUT').length;
      // Silent candidates the machine left alone were told to the tracker as stored; a batch that
      // moved nothing ends the loop either way.
      if ((silent.length < SWEEP_BATCH && provisioned < SWEEP_BATCH) || batch.length === 0) {
        return all;
      }
    }
  }

  async function flush(all = true): Promise<number> {
    const cutoff = all ? Infinity : clock.now() - LIVENESS_FLUSH_MS;
    let written = 0;
    for (;;) {
      const records = tracker.takeDirty(cutoff, FLUSH_BATCH);
      if (records.length === 0) return written;
      try {
        await store.recordLiveness(records);
      } catch (error) {
        tracker.restore(records);
        throw error;
      }
      written += records.length;
      if (records.length < FLUSH_BATCH) return written;
      // Let heartbeats in between two batches: a flush must not stall the replies.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  async function compactHistory(): Promise<number> {
    let total = 0;
    for (;;) {
      const deleted = await store.compactTransitions(clock.now() - timings.retentionMs, 10_000);
      total += deleted;
      if (deleted < 10_000) break;
    }
    // Expired tokens are invalid already; removing them only keeps the table small.
    await store.pruneExpiredTokens(clock.now());
    return total;
  }

  async function tick(): Promise<void> {
    if (ownership.isLeader()) await adoptOrphans();
    await sweep();
    await flush(false);
    await options.onTick?.();
    if (ownership.isLeader() && clock.now() - lastCompaction >= COMPACTION_EVERY_MS) {
      lastCompaction = clock.now();
      const deleted = await compactHistory();
      if (deleted > 0) options.onCompacted?.(deleted);
    }
  }

  return {
    async start() {
      tracker.observe(await store.liveStates());
      const every =
        options.sweepIntervalMs ?? Math.max(250, Math.min(5_000, timings.offlineAfterMs / 4));
      timer = setInterval(() => {
        if (ticking) return;
        ticking = tick()
          .catch((error: unknown) => options.onError?.(error))
          .finally(() => {
            ticking = undefined;
          });
      }, every);
      timer.unref();
    },
    async stop() {
      clearInterval(timer);
      timer = undefined;
      await ticking;
      await flush(true).catch((error: unknown) => options.onError?.(error));
      unsubscribe();
      unsubscribeLost();
    },
    entry: (id) => tracker.get(id),
    take,
    beat: (id, now, report) => {
      tracker.beat(id, now, report);
    },
    withLiveness(workspace) {
      const entry = tracker.get(workspace.id);
      const at = entry?.lastHeartbeatAt;
      if (!entry?.health || at === undefined || at <= (workspace.lastHeartbeatAt ?? 0)) {
        return workspace;
      }
      return {
        ...workspace,
        ...entry.health,
        lastHeartbeatAt: at,
        updatedAt: Math.max(workspace.updatedAt, at),
      };
    },
    sweep,
    flush,
    compactHistory,
  };
}
