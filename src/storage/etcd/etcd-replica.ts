import type { ICompare, IKeyValue } from 'etcd3';
import type { Clock } from '../../domain/clock.js';
import { VigilError } from '../../domain/errors.js';
import type { Ownership } from '../../domain/ownership.js';
import type { EtcdConnection } from './etcd-connection.js';
import {
  decode,
  encode,
  revision,
  type EtcdKeys,
  type OwnerDoc,
  type ReplicaDoc,
} from './etcd-keys.js';

export interface EtcdReplicaOptions {
  readonly connection: EtcdConnection;
  readonly keys: EtcdKeys;
  readonly replicaId: string;
  /** HOST:PORT other replicas forward heartbeats to. */
  readonly advertise: string;
  /** TTL of the replica's lease: its presence, its ownership keys and its campaign. */
  readonly leaseTtlSeconds: number;
  /** The domain clock (ownedSince, leaderSince). */
  readonly clock: Clock;
  /** ONLINE/DEGRADED workspaces known to the store (for orphan adoption). */
  readonly liveIds: () => Iterable<string>;
  readonly version: string;
  /** Told when this replica stops (false) or starts again (true) being able to vouch for its lease. */
  readonly onServing?: (serving: boolean) => void;
  readonly onError?: (error: unknown) => void;
}

/**
 * One Vigil replica in the cell: its lease (kept alive on one stream), its
 * presence key, the workspaces it owns and its leadership campaign — the
 * cluster-mode Ownership. Ownership of a workspace is `own/<id>` on the
 * replica's lease; leadership is the etcd election recipe: `leader/<rid>` on
 * the lease, the lowest create revision leads. Writes made under either are
 * fenced on those keys (`ownerFence`, `leaderFence`), so after its lease
 * expired (a crash, a pause, a partition) a replica commits nothing in their
 * name: the keys are gone, the compare fails.
 *
 * Fed by the store's watch (`observe`): a take-over by another replica or the
 * loss of the lease is told through `onLost`.
 */
export interface EtcdReplica extends Ownership {
  start(): Promise<void>;
  /** Revokes the lease: ownership and leadership pass at once, not after the TTL. */
  stop(): Promise<void>;
  observe(kv: IKeyValue, deleted: boolean): void;
  /** Compares that hold only while this replica owns `id`; throws when it does not. */
  ownerFence(id: string): ICompare[];
  /** Compares that hold only while this replica leads; throws when it does not. */
  leaderFence(): ICompare[];
  /** The address of the live replica that owns `id`, when it is another one. */
  ownerAddress(id: string): string | undefined;
  /** Whether this replica can vouch for its lease (it serves only while so). */
  serving(): boolean;
  /**
   * Where other replicas reach this one from now on (the port actually bound,
   * when it was asked for port 0); its presence key is rewritten.
   */
  advertiseAt(address: string): Promise<void>;
}

interface Claimed {
  readonly since: number;
  readonly modRevision: number;
}

const CLAIM_BATCH = 100;
const ORPHANED_CAP = 1_000_000;
/**
 * A claim waits this long for etcd, then goes again (to another member: the
 * connection passes over one that stopped answering). Shorter than a
 * sidecar's patience with an unanswered heartbeat, so a paused etcd member
 * costs a take-over one retry, not the sidecar's move to yet another replica.
 */
const CLAIM_TIMEOUT_MS = 1_200;
const CLAIM_ATTEMPTS = 5;

/** etcd did not answer (the connection's STORE_UNAVAILABLE): the outcome is unknown. */
const unanswered = (error: unknown): boolean =>
  error instanceof VigilError && error.reason === 'STORE_UNAVAILABLE';

export function createEtcdReplica(options: EtcdReplicaOptions): EtcdReplica {
  const { connection, keys, replicaId, clock } = options;
  const ttlMs = options.leaseTtlSeconds * 1000;
  const owners = new Map<string, { replica: string; modRevision: number }>();
  const owned = new Map<string, Claimed>();
  // When this replica saw an owner key go (its owner's lease expired or was revoked):
  // an adopted orphan's silence counts from then, not from when the leader got to it.
  const orphanedAt = new Map<string, number>();
  const replicas = new Map<string, ReplicaDoc>();
  const candidates = new Map<string, number>(); // leader/<rid> → create revision
  const lostListeners = new Set<(ids: readonly string[]) => void>();
  let lease: string | undefined;
  let campaignRevision = 0;
  let leadingSince: number | undefined;
  let lastKeptAlive = 0;
  let serving = false;
  // When this replica last turned SERVING: silence before it is not the sidecars' (see Ownership).
  let servingSince = clock.now();
  let stopped = false;
  let advertise = options.advertise;
  const startedAt = clock.now();
  const presenceDoc = (): ReplicaDoc => ({
    address: advertise,
    startedAt,
    version: options.version,
  });
  const isStopped = () => stopped;
  let keepAliveTimer: NodeJS.Timeout | undefined;
  let keepAlive: Awaited<ReturnType<EtcdConnection['leaseKeepAlive']>>['stream'] | undefined;
  let keepAliveMember = '';
  // Since when the keepalive stream owes an answer (undefined: it owes none).
  let keepAliveOwedSince: number | undefined;
  /**
   * A keepalive unanswered this long means its member is paused or cut off:
   * the stream moves to another member well before half the TTL (when the
   * replica would stop serving), instead of waiting for gRPC keepalive.
   */
  const keepAliveAnswerMs = Math.max(200, ttlMs / 5);
  let renewing: Promise<void> | undefined;
  /**
   * Claims waiting for the next batch. `take` takes the key over from whoever
   * holds it (a sidecar is here now); `adopt` only takes a key nobody holds
   * (the leader adopting orphans from its possibly late view must never take
   * a workspace from a live owner) and resolves undefined when someone does.
   */
  const claimQueue: {
    id: string;
    mode: 'take' | 'adopt';
    resolve: (since: number | undefined) => void;
    reject: (e: unknown) => void;
  }[] = [];
  let claimScheduled = false;

  function lose(ids: readonly string[]): void {
    if (ids.length === 0) return;
    for (const listener of lostListeners) {
      try {
        listener(ids);
      } catch (error) {
        options.onError?.(error);
      }
    }
  }

  function setServing(next: boolean): void {
    if (serving === next) return;
    serving = next;
    if (next) servingSince = clock.now();
    options.onServing?.(next);
  }

  function updateLeadership(): void {
    let lowest: [string, number] | undefined;
    for (const [rid, rev] of candidates) {
      if (!lowest || rev < lowest[1]) lowest = [rid, rev];
    }
    const leads =
      lowest?.[0] === replicaId && campaignRevision !== 0 && lowest[1] === campaignRevision;
    if (leads && leadingSince === undefined) leadingSince = clock.now();
    if (!leads) leadingSince = undefined;
  }

  async function grant(): Promise<void> {
    const id = await connection.leaseGrant(options.leaseTtlSeconds);
    const presence = presenceDoc();
    const campaignKey = Buffer.from(keys.election + replicaId);
    let response: Awaited<ReturnType<EtcdConnection['txn']>>;
    try {
      response = await connection.txn(
        [{ key: campaignKey, target: 'Create', result: 'Equal', create_revision: 0 }],
        [
          {
            request_put: {
              key: Buffer.from(keys.replica(replicaId)),
              value: encode(presence),
              lease: id,
            },
          },
          { request_put: { key: campaignKey, value: Buffer.from(advertise), lease: id } },
        ],
        [{ request_range: { key: campaignKey } }],
      );
    } catch (error) {
      // Unknown outcome: a lease nobody keeps alive expires; revoking it now is only quicker.
      connection.leaseRevoke(id).catch(() => undefined);
      throw error;
    }
    if (!response.succeeded) {
      // The lease is held only once presence and campaign are on it: a replica never runs on a
      // lease others cannot see (no presence key, no campaign).
      connection.leaseRevoke(id).catch(() => undefined);
      // A campaign key of an earlier lease of ours is still there: it will expire with that lease.
      const kv = response.responses[0]?.response_range.kvs[0];
      throw new VigilError(
        'STORE_UNAVAILABLE',
        `replica id ${replicaId} is already campaigning in this cell (lease ${kv?.lease ?? '?'}); is another replica using the same --replica-id?`,
      );
    }
    lease = id;
    lastKeptAlive = Date.now();
    campaignRevision = revision(response.header.revision);
    candidates.set(replicaId, campaignRevision);
    updateLeadership();
    setServing(true);
    // A stream opened before there was a lease has nothing to renew yet: renew at once.
    sendKeepAlive();
  }

  /** The lease is gone (expired while we could not reach etcd): give up everything, then get a new one. */
  function leaseLost(): void {
    // Given up here, so revoked too (best effort): its campaign and ownership keys go now, not
    // when etcd's own TTL runs out, and the next grant is not refused for the old campaign.
    const abandoned = lease;
    if (abandoned !== undefined) connection.leaseRevoke(abandoned).catch(() => undefined);
    lease = undefined;
    campaignRevision = 0;
    leadingSince = undefined;
    candidates.delete(replicaId);
    setServing(false);
    const ids = [...owned.keys()];
    owned.clear();
    lose(ids);
    renew();
  }

  function renew(): void {
    if (renewing || stopped) return;
    renewing = (async () => {
      // `stop()` and a successful grant end the loop (both change state across the await).
      while (!isStopped() && lease === undefined) {
        try {
          await grant();
        } catch (error) {
          options.onError?.(error);
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      }
    })().finally(() => {
      renewing = undefined;
    });
  }

  async function openKeepAlive(): Promise<void> {
    try {
      const { stream, member } = await connection.leaseKeepAlive();
      if (stopped) {
        stream.cancel();
        return;
      }
      keepAlive = stream;
      keepAliveMember = member;
      keepAliveOwedSince = undefined;
      stream.on('data', (response) => {
        if (keepAlive !== stream) return;
        keepAliveOwedSince = undefined;
        if (response.ID !== lease) return;
        if (Number(response.TTL) <= 0) {
          leaseLost();
          return;
        }
        lastKeptAlive = Date.now();
        setServing(true);
      });
      const reopen = () => {
        if (keepAlive !== stream) return;
        keepAlive = undefined;
        if (!stopped) setTimeout(() => void openKeepAlive(), 200);
      };
      stream.on('error', reopen);
      stream.on('end', reopen);
      // Renew at once: a stream opened to replace a stalled one must not wait for the next tick.
      if (lease !== undefined) sendKeepAlive();
    } catch (error) {
      options.onError?.(error);
      if (!stopped) setTimeout(() => void openKeepAlive(), 200);
    }
  }

  function sendKeepAlive(): void {
    const stream = keepAlive;
    if (!stream || lease === undefined) return;
    try {
      stream.write({ ID: lease });
    } catch (error) {
      options.onError?.(error);
      return;
    }
    if (keepAliveOwedSince !== undefined) return;
    keepAliveOwedSince = Date.now();
    setTimeout(() => {
      if (keepAlive !== stream || keepAliveOwedSince === undefined) return;
      if (Date.now() - keepAliveOwedSince < keepAliveAnswerMs) return;
      // Unanswered: leave this member, and tell the connection so writes avoid it too.
      options.onError?.(
        new Error(
          `etcd lease keepalive on ${keepAliveMember} unanswered for ${keepAliveAnswerMs} ms`,
        ),
      );
      keepAlive = undefined;
      stream.cancel();
      connection.suspect(keepAliveMember);
      void openKeepAlive();
    }, keepAliveAnswerMs).unref();
  }

  /** The connection found the member serving the keepalive stream unresponsive: move now. */
  function leaveSuspected(member: string): void {
    const stream = keepAlive;
    if (!stream || member !== keepAliveMember || stopped) return;
    keepAlive = undefined;
    stream.cancel();
    // Not from inside the connection's own call: it is choosing a member right now.
    setImmediate(() => void openKeepAlive());
  }
  let unsubscribeSuspect: (() => void) | undefined;

  function tick(): void {
    const silentMs = Date.now() - lastKeptAlive;
    if (lease !== undefined) {
      if (silentMs > ttlMs) {
        leaseLost();
        return;
      }
      // Past half the TTL without a confirmation: stop vouching, so sidecars move first.
      if (silentMs > ttlMs / 2) setServing(false);
      sendKeepAlive();
    }
  }

  function flushClaims(): void {
    claimScheduled = false;
    const batch = claimQueue.splice(0, CLAIM_BATCH);
    if (claimQueue.length > 0) {
      claimScheduled = true;
      setImmediate(flushClaims);
    }
    const takes = batch.filter((c) => c.mode === 'take');
    const adoptions = batch.filter((c) => c.mode === 'adopt');
    if (takes.length > 0) void claimBatch(takes, 'take');
    if (adoptions.length > 0) void claimBatch(adoptions, 'adopt');
  }

  /**
   * Learns who holds `own/<id>` as of `atRevision` (the key's mod_revision,
   * or the revision a read found it absent at), unless something newer is known
   * already: the watch and Txn answers arrive in either order.
   */
  function learnOwner(id: string, doc: OwnerDoc | undefined, atRevision: number): void {
    const known = owners.get(id);
    if (known && known.modRevision > atRevision) return;
    if (doc) {
      owners.set(id, { replica: doc.replica, modRevision: atRevision });
      orphanedAt.delete(id);
    } else {
      // Bounded: past the cap (removed workspaces leave entries) adoption counts from now again.
      if (orphanedAt.size >= ORPHANED_CAP) orphanedAt.clear();
      if (known) orphanedAt.set(id, clock.now());
      owners.delete(id);
    }
  }

  function enqueueClaim(id: string, mode: 'take' | 'adopt'): Promise<number | undefined> {
    const mine = owned.get(id);
    if (mine) return Promise.resolve(mine.since);
    return new Promise<number | undefined>((resolve, reject) => {
      claimQueue.push({ id, mode, resolve, reject });
      if (!claimScheduled) {
        claimScheduled = true;
        setImmediate(flushClaims);
      }
    });
  }

  async function claimBatch(batch: typeof claimQueue, mode: 'take' | 'adopt'): Promise<void> {
    const current = lease;
    if (current === undefined) {
      const error = new VigilError(
        'STORE_UNAVAILABLE',
        'this replica has no lease in etcd right now; retry',
      );
      for (const c of batch) c.reject(error);
      return;
    }
    let ids = [...new Set(batch.map((c) => c.id))];
    const doc: OwnerDoc = { replica: replicaId, claimedAt: clock.now() };
    const outcome = new Map<string, number | undefined>();
    const take = (id: string, rev: number) => {
      const now = clock.now();
      // An orphan counts from when it lost its owner, but never from before this leader led.
      const since =
        mode === 'adopt'
          ? Math.min(now, Math.max(orphanedAt.get(id) ?? now, leadingSince ?? now))
          : now;
      learnOwner(id, doc, rev);
      // The watch may already have shown a later take-over of this key: then it is not ours.
      if (owners.get(id)?.replica !== replicaId) return;
      owned.set(id, { since, modRevision: rev });
      outcome.set(id, since);
    };
    try {
      for (let attempt = 0; attempt < CLAIM_ATTEMPTS && ids.length > 0; attempt += 1) {
        let response: Awaited<ReturnType<EtcdConnection['txn']>>;
        try {
          response = await connection.txn(
            ids.map((id) =>
              mode === 'take'
                ? {
                    key: Buffer.from(keys.own(id)),
                    target: 'Mod' as const,
                    result: 'Equal' as const,
                    mod_revision: owners.get(id)?.modRevision ?? 0,
                  }
                : {
                    // Adoption: only a key nobody holds.
                    key: Buffer.from(keys.own(id)),
                    target: 'Create' as const,
                    result: 'Equal' as const,
                    create_revision: 0,
                  },
            ),
            ids.map((id) => ({
              request_put: { key: Buffer.from(keys.own(id)), value: encode(doc), lease: current },
            })),
            ids.map((id) => ({ request_range: { key: Buffer.from(keys.own(id)) } })),
            { timeoutMs: CLAIM_TIMEOUT_MS },
          );
        } catch (error) {
          // No answer (a paused member, say, now passed over): a guarded claim is safe to send
          // again; if the first one landed after all, the answer below shows the key is ours.
          if (!unanswered(error) || attempt + 1 >= CLAIM_ATTEMPTS || lease !== current) throw error;
          continue;
        }
        const rev = revision(response.header.revision);
        if (response.succeeded) {
          for (const id of ids) take(id, rev);
          ids = [];
          break;
        }
        // Someone moved an owner key meanwhile (or an earlier attempt of ours, unanswered,
        // landed): learn the current holders and try again.
        const landed = new Set<string>();
        response.responses.forEach((op, index) => {
          const kv = op.response_range.kvs[0];
          const id = ids[index];
          if (id === undefined) return;
          const holder = kv ? decode<OwnerDoc>(kv.value) : undefined;
          if (kv && holder?.replica === replicaId && kv.lease === current) {
            take(id, revision(kv.mod_revision));
            landed.add(id);
            return;
          }
          learnOwner(id, holder, kv ? revision(kv.mod_revision) : rev);
        });
        ids = ids.filter((id) => !landed.has(id));
        // An adoption gives up the keys somebody holds now; the rest are tried again.
        if (mode === 'adopt') ids = ids.filter((id) => !owners.has(id));
      }
    } catch (error) {
      for (const c of batch) if (!outcome.has(c.id)) c.reject(error);
      for (const c of batch) if (outcome.has(c.id)) c.resolve(outcome.get(c.id));
      return;
    }
    const lost = new VigilError(
      'STORE_UNAVAILABLE',
      'could not take ownership of the workspace (another replica moved it meanwhile); retry',
    );
    for (const c of batch) {
      if (outcome.has(c.id)) c.resolve(outcome.get(c.id));
      else if (mode === 'adopt') c.resolve(undefined);
      else c.reject(lost);
    }
  }

  return {
    async start() {
      unsubscribeSuspect = connection.onSuspect(leaveSuspected);
      await grant();
      await openKeepAlive();
      keepAliveTimer = setInterval(tick, Math.max(250, ttlMs / 3));
      keepAliveTimer.unref();
    },
    async stop() {
      stopped = true;
      unsubscribeSuspect?.();
      clearInterval(keepAliveTimer);
      keepAlive?.cancel();
      const current = lease;
      lease = undefined;
      leadingSince = undefined;
      setServing(false);
      if (current !== undefined) {
        await connection.leaseRevoke(current).catch((error: unknown) => options.onError?.(error));
      }
    },
    observe(kv, deleted) {
      const key = kv.key.toString();
      const own = keys.idAfter(key, 'own/');
      if (own !== undefined) {
        const doc = deleted ? undefined : decode<OwnerDoc>(kv.value);
        learnOwner(own, doc, revision(kv.mod_revision));
        const mine = owned.get(own);
        // Ours until another write (a take-over, or the expiry of our lease) moved the key.
        if (mine && revision(kv.mod_revision) > mine.modRevision && doc?.replica !== replicaId) {
          owned.delete(own);
          lose([own]);
        }
        return;
      }
      const rid = keys.idAfter(key, 'replicas/');
      if (rid !== undefined) {
        if (deleted) replicas.delete(rid);
        else replicas.set(rid, decode<ReplicaDoc>(kv.value));
        return;
      }
      if (key.startsWith(keys.election)) {
        const candidate = key.slice(keys.election.length);
        if (deleted) candidates.delete(candidate);
        else candidates.set(candidate, revision(kv.create_revision));
        updateLeadership();
      }
    },
    owns: (id) => owned.has(id),
    ownedSince: (id) => owned.get(id)?.since,
    servingSince: () => servingSince,
    async claim(id) {
      const since = await enqueueClaim(id, 'take');
      if (since === undefined) throw new Error('a take-over resolved without ownership');
      return since;
    },
    adopt: (id) => enqueueClaim(id, 'adopt'),
    isLeader: () => leadingSince !== undefined,
    leaderSince: () => leadingSince,
    orphans(limit) {
      if (leadingSince === undefined) return [];
      const found: string[] = [];
      for (const id of options.liveIds()) {
        if (found.length >= limit) break;
        if (!owners.has(id)) found.push(id);
      }
      return found;
    },
    onLost(listener) {
      lostListeners.add(listener);
      return () => {
        lostListeners.delete(listener);
      };
    },
    ownerFence(id) {
      const mine = owned.get(id);
      if (!mine) {
        throw new VigilError(
          'STORE_UNAVAILABLE',
          `this replica no longer owns workspace ${id}; retry (another replica has it)`,
          { workspaceId: id },
        );
      }
      return [
        {
          key: Buffer.from(keys.own(id)),
          target: 'Mod',
          result: 'Equal',
          mod_revision: mine.modRevision,
        },
      ];
    },
    leaderFence() {
      if (leadingSince === undefined || campaignRevision === 0) {
        throw new VigilError('STORE_UNAVAILABLE', 'this replica is not the leader');
      }
      return [
        {
          key: Buffer.from(keys.election + replicaId),
          target: 'Create',
          result: 'Equal',
          create_revision: campaignRevision,
        },
      ];
    },
    ownerAddress(id) {
      const owner = owners.get(id)?.replica;
      if (owner === undefined || owner === replicaId) return undefined;
      return replicas.get(owner)?.address;
    },
    serving: () => serving,
    async advertiseAt(address) {
      advertise = address;
      const current = lease;
      // Without a lease the next grant writes the new address.
      if (current === undefined) return;
      await connection.txn(
        [],
        [
          {
            request_put: {
              key: Buffer.from(keys.replica(replicaId)),
              value: encode(presenceDoc()),
              lease: current,
            },
          },
        ],
      );
    },
  };
}
