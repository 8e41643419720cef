import type { ICompare, IKeyValue } from 'etcd3';
import { VigilError, workspaceNotFound, workspaceRemoved } from '../../domain/errors.js';
import { WORKSPACE_STATUSES } from '../../domain/model.js';
import type {
  AgentCard,
  HeartbeatReport,
  Transition,
  Workspace,
  WorkspaceStatus,
} from '../../domain/model.js';
import type {
  Applied,
  Decide,
  HeartbeatApplied,
  RegistryStore,
  TransitionsQuery,
  WorkspaceState,
} from '../../domain/registry-store.js';
import type { Decision, MachineState } from '../../domain/status-machine.js';
import { createCommitListeners } from '../commit-listeners.js';
import {
  createCommitter,
  type ReadView,
  type WriteBuilder,
  type WriteJob,
} from './etcd-committer.js';
import type { EtcdConnection, EtcdRequestCounts } from './etcd-connection.js';
import {
  createEtcdKeys,
  decode,
  encode,
  prefixEnd,
  revision,
  toTransition,
  type EtcdKeys,
  type HeartbeatDoc,
  type LogDoc,
  type StateDoc,
  type TokenDoc,
  type WorkspaceDoc,
} from './etcd-keys.js';
import { createEtcdWatch, type Listing, type RevisionEvents } from './etcd-watch.js';

export interface EtcdStoreOptions {
  readonly connection: EtcdConnection;
  /** Key prefix of this Vigil cell (default `vigil/`). */
  readonly prefix: string;
  /** This replica: recorded with every transition it commits. */
  readonly replicaId: string;
  /** Told when a commit listener throws (the write itself stands). */
  readonly onListenerError?: (error: unknown) => void;
  /** Told when the watch stream failed and is being reopened. */
  readonly onWatchError?: (error: unknown) => void;
  /**
   * Adds writes to the transaction that moves a workspace to REMOVED (the
   * projection's crypto-shred of its data key and sealed secrets).
   */
  readonly inDeleteTransaction?: (workspaceId: string, write: WriteBuilder) => void;
}

/**
 * Told of what the replica's one watch delivers, after the store's own caches
 * took it: every listing (at start and after a compaction) and every
 * revision, in revision order. Lets another store on the same connection (the
 * projection) keep its caches and tell its listeners without a second watch.
 */
export interface RevisionObserver {
  listing(listing: Listing): void;
  revision(events: RevisionEvents): void;
}

/**
 * What fences the store's writes in the name of this replica (its
 * ownership of workspaces and its leadership), and what it is told of the
 * cluster keys the watch delivers.
 */
export interface StoreFencing {
  owns(id: string): boolean;
  ownerFence(id: string): ICompare[];
  leaderFence(): ICompare[];
  observe(kv: IKeyValue, deleted: boolean): void;
}

/** The etcd store, plus what only it can tell. */
export interface EtcdStore extends RegistryStore {
  /** Fences owner and leader writes from now on; call before `start`. */
  attach(fencing: StoreFencing): void;
  /** ONLINE/DEGRADED workspace ids, from the watch-fed cache. */
  liveIds(): Iterable<string>;
  /** Lists the cached keys and starts the watch; call once before use. */
  start(): Promise<void>;
  /** etcd requests sent so far, by operation. */
  requests(): EtcdRequestCounts;
  readonly keys: EtcdKeys;
  /**
   * Commits a job through the replica's one committer (guarded, group
   * committed, settled only after the watch delivered it): for another store
   * on the same connection (the projection).
   */
  submit<T>(job: WriteJob<T>): Promise<T>;
  /** Observes the watch from the next listing or revision on; call before `start`. */
  observe(observer: RevisionObserver): () => void;
  /** The etcd connection (its requests counted), for reads of another store. */
  readonly connection: EtcdConnection;
}

interface CachedState {
  readonly doc: StateDoc;
  readonly modRevision: number;
}

const HEALTH_DEFAULTS: HeartbeatReport = {
  errorRate: 0,
  sampleError: '',
  activeTasks: 0,
  uptimeSeconds: 0,
  currentTask: '',
  runtimeState: 'HEALTHY',
  nativeStatusManagement: false,
};

/** Range ops per read transaction (etcd allows 128 by default). */
const READ_OPS = 120;
/** Keys per Range while a snapshot walks the states. */
const SNAPSHOT_RANGE = 1_000;
const LOG_PAGE = 1_000;

/**
 * The RegistryStore on etcd. Every write is a guarded transaction built by
 * one committer per replica (see etcd-committer.ts); every replica runs one
 * prefix watch that keeps its caches (status states, tokens, the seq head)
 * current and that alone tells the commit listeners — for this replica's
 * commits and every other's alike, in revision order, which is seq order. A
 * write settles only after the watch has delivered it, so listeners have
 * heard of a commit before its writer's promise settles, as the boundary
 * requires.
 */
export function createEtcdStore(options: EtcdStoreOptions): EtcdStore {
  const { connection } = options;
  const keys = createEtcdKeys(options.prefix);
  const listeners = createCommitListeners(
    options.onListenerError ??
      ((error: unknown) => {
        console.error('vigil: a commit listener failed', error);
      }),
  );
  const states = new Map<string, CachedState>();
  const tokens = new Map<string, TokenDoc>();
  const tokensOf = new Map<string, Set<string>>();
  let head = 0;
  let floor = 0;
  let sortedIds: string[] | undefined;
  let fencing: StoreFencing | undefined;
  const ownerFence = (ids: readonly string[]) => () =>
    fencing ? ids.flatMap((id) => fencing?.ownerFence(id) ?? []) : [];
  const leaderFence = () => fencing?.leaderFence() ?? [];

  const watch = createEtcdWatch({
    connection,
    prefix: options.prefix,
    listed: [...keys.cached.map((sub) => options.prefix + sub), keys.seq, keys.logFloor],
    onListing: (listing) => relisted(listing),
    onRevision: (events) => {
      applied(events);
    },
    ...(options.onWatchError ? { onError: options.onWatchError } : {}),
  });
  const committer = createCommitter({
    connection,
    txnKey: keys.txn(options.replicaId),
    seqKey: keys.seq,
    published: (rev) => watch.reached(rev),
  });

  const tokenListeners = new Set<(workspaceId: string) => void>();
  const observers = new Set<RevisionObserver>();
  const tellObservers = (tell: (observer: RevisionObserver) => void) => {
    for (const observer of observers) {
      try {
        tell(observer);
      } catch (error) {
        (options.onListenerError ?? console.error)(error);
      }
    }
  };

  function cacheToken(hashHex: string, doc: TokenDoc | undefined): void {
    const old = tokens.get(hashHex);
    if (old) {
      tokensOf.get(old.workspaceId)?.delete(hashHex);
      // A token changed (expiry set, revoked, pruned), here or on another replica.
      for (const listener of tokenListeners) listener(old.workspaceId);
    }
    if (!doc) {
      tokens.delete(hashHex);
      return;
    }
    tokens.set(hashHex, doc);
    let set = tokensOf.get(doc.workspaceId);
    if (!set) tokensOf.set(doc.workspaceId, (set = new Set()));
    set.add(hashHex);
  }

  /** Updates the caches from one key; returns the workspace state it wrote, if any. */
  function cacheKv(kv: IKeyValue, deleted: boolean): WorkspaceState | undefined {
    const key = kv.key.toString();
    const st = keys.idAfter(key, 'st/');
    if (st !== undefined) {
      if (deleted) {
        states.delete(st);
        sortedIds = undefined;
        return undefined;
      }
      const doc = decode<StateDoc>(kv.value);
      if (!states.has(st)) sortedIds = undefined;
      states.set(st, { doc, modRevision: revision(kv.mod_revision) });
      return stateOf(st, doc);
    }
    const tok = keys.idAfter(key, 'tok/');
    if (tok !== undefined) {
      cacheToken(tok, deleted ? undefined : decode<TokenDoc>(kv.value));
      return undefined;
    }
    if (
      keys.idAfter(key, 'own/') !== undefined ||
      keys.idAfter(key, 'replicas/') !== undefined ||
      key.startsWith(keys.election)
    ) {
      fencing?.observe(kv, deleted);
      return undefined;
    }
    if (key === keys.seq && !deleted) head = Math.max(head, Number(kv.value.toString()));
    if (key === keys.logFloor && !deleted) floor = Math.max(floor, Number(kv.value.toString()));
    return undefined;
  }

  function applied({ revision: rev, events }: RevisionEvents): void {
    const transitions: Transition[] = [];
    const written: WorkspaceState[] = [];
    for (const event of events) {
      const state = cacheKv(event.kv, event.type === 'Delete');
      if (state) written.push(state);
      const key = event.kv.key.toString();
      if (event.type === 'Put' && keys.idAfter(key, 'log/') !== undefined) {
        transitions.push(toTransition(decode<LogDoc>(event.kv.value)));
      }
    }
    transitions.sort((a, b) => a.seq - b.seq);
    listeners.publish({ transitions, states: written });
    tellObservers((observer) => {
      observer.revision({ revision: rev, events });
    });
  }

  async function relisted(listing: Listing): Promise<void> {
    const before = head;
    const seen = new Set<string>();
    const written: WorkspaceState[] = [];
    states.clear();
    tokens.clear();
    tokensOf.clear();
    sortedIds = undefined;
    for (const kv of listing.kvs) {
      const state = cacheKv(kv, false);
      if (state) {
        written.push(state);
        seen.add(state.id);
      }
    }
    tellObservers((observer) => {
      observer.listing(listing);
    });
    if (before === 0) return; // The first listing: nothing was published yet.
    // A compaction skipped events: publish the transitions committed meanwhile, then the states.
    const missed: Transition[] = [];
    for (let after = before; after < head;) {
      const page = await readLog(after, Math.min(LOG_PAGE, head - after), listing.revision);
      if (page.length === 0) break;
      missed.push(...page);
      after = page.at(-1)?.seq ?? head;
    }
    listeners.publish({ transitions: missed, states: written });
  }

  async function readLog(after: number, limit: number, atRevision?: number): Promise<Transition[]> {
    const response = await connection.range({
      key: Buffer.from(keys.log(after + 1)),
      range_end: prefixEnd(`${options.prefix}log/`),
      limit,
      ...(atRevision ? { revision: atRevision } : {}),
    });
    return response.kvs.map((kv) => toTransition(decode<LogDoc>(kv.value)));
  }

  function stateOf(id: string, doc: StateDoc): WorkspaceState {
    return { id, ...machineState(doc), hasCard: doc.hasCard };
  }

  /** Reads one workspace's state from what the committer read; throws unless it is live. */
  function liveState(view: ReadView, id: string): { doc: StateDoc } {
    const { value } = view.get(keys.st(id));
    if (!value) throw workspaceNotFound(id);
    const doc = decode<StateDoc>(value);
    if (doc.status === 'REMOVED') throw workspaceRemoved(id);
    return { doc };
  }

  function workspaceDoc(view: ReadView, id: string): WorkspaceDoc {
    const { value } = view.get(keys.ws(id));
    if (!value) throw new Error(`workspace ${id} has a state but no document`);
    return decode<WorkspaceDoc>(value);
  }

  /** Applies a decision: the new state and, when the status changes, its transition. */
  function decideInto(
    write: WriteBuilder,
    id: string,
    state: StateDoc,
    decide: Decide,
    now: number,
    detail: string,
  ): { state: StateDoc; transition: Transition | undefined } {
    const decision = decide(machineState(state), id);
    if (!decision) return { state, transition: undefined };
    const next: StateDoc = { ...state, status: decision.to, statusChangedAt: now, updatedAt: now };
    return {
      state: next,
      transition: logTransition(write, id, state.status, decision, now, detail),
    };
  }

  function logTransition(
    write: WriteBuilder,
    id: string,
    from: WorkspaceStatus | null,
    decision: Decision,
    at: number,
    detail: string,
  ): Transition {
    const seq = write.nextSeq();
    const doc: LogDoc = {
      seq,
      workspaceId: id,
      from,
      to: decision.to,
      reason: decision.reason,
      detail,
      at,
      by: options.replicaId,
      txid: write.txid,
    };
    const value = encode(doc);
    write.put(keys.log(seq), value);
    write.put(keys.wslog(id, seq), value);
    return toTransition(doc);
  }

  function putState(write: WriteBuilder, id: string, state: StateDoc): void {
    write.put(keys.st(id), encode({ ...state, txid: write.txid }));
  }

  const submit = <T>(job: WriteJob<T>) => committer.submit(job);

  /** A job on one workspace's state (and document) that applies a decision. */
  function stateJob(
    id: string,
    withDoc: boolean,
    body: (view: ReadView, write: WriteBuilder) => (revision: number) => Applied,
    fence?: () => readonly ICompare[],
  ): Promise<Applied> {
    return submit({
      keys: withDoc ? [keys.st(id), keys.ws(id)] : [keys.st(id)],
      build: body,
      ...(fence ? { fence } : {}),
    });
  }

  /**
   * The workspaces of `ids` that exist, read in id order (at `atRevision`,
   * when given); with `maxBytes`, stops once the documents read hold that many
   * bytes (in small chunks, so little more than the bound is ever in memory).
   */
  async function readWorkspaces(
    ids: readonly string[],
    maxBytes?: number,
    atRevision?: number,
  ): Promise<Map<string, Workspace>> {
    const found = new Map<string, Workspace>();
    const perId = 4;
    const chunkSize = maxBytes === undefined ? Math.floor(READ_OPS / perId) : 4;
    let bytes = 0;
    for (let i = 0; i < ids.length; i += chunkSize) {
      if (maxBytes !== undefined && bytes >= maxBytes) break;
      const chunk = ids.slice(i, i + chunkSize);
      const response = await connection.txn(
        [],
        chunk.flatMap((id) =>
          [keys.ws(id), keys.st(id), keys.hb(id), keys.use(id)].map((key) => ({
            request_range: {
              key: Buffer.from(key),
              ...(atRevision ? { revision: atRevision } : {}),
            },
          })),
        ),
      );
      chunk.forEach((id, index) => {
        const kv = (n: number) => response.responses[index * perId + n]?.response_range.kvs[0];
        const ws = kv(0);
        const st = kv(1);
        if (!ws || !st) return;
        const hb = kv(2);
        const use = kv(3);
        if (maxBytes !== undefined && bytes >= maxBytes) return;
        bytes += ws.value.length;
        found.set(
          id,
          toWorkspace(
            id,
            decode<WorkspaceDoc>(ws.value),
            decode<StateDoc>(st.value),
            hb ? decode<HeartbeatDoc>(hb.value) : undefined,
            use ? Number(use.value.toString()) : undefined,
          ),
        );
      });
    }
    return found;
  }

  function sorted(): string[] {
    sortedIds ??= [...states.keys()].sort();
    return sortedIds;
  }

  return {
    keys,
    attach(f) {
      fencing = f;
    },
    *liveIds() {
      for (const [id, s] of states) {
        if (s.doc.status === 'ONLINE' || s.doc.status === 'DEGRADED') yield id;
      }
    },
    requests: () => connection.requests(),
    connection,
    submit,
    observe(observer) {
      observers.add(observer);
      return () => {
        observers.delete(observer);
      };
    },
    start: () => watch.start(),
    subscribe: (listener) => listeners.subscribe(listener),
    onTokensChanged(listener) {
      tokenListeners.add(listener);
      return () => {
        tokenListeners.delete(listener);
      };
    },

    createWorkspace: (input) =>
      submit({
        keys: [keys.st(input.id), keys.ws(input.id)],
        build(view, write) {
          if (view.get(keys.st(input.id)).value) {
            throw new VigilError('WORKSPACE_EXISTS', `workspace ${input.id} already exists`, {
              workspaceId: input.id,
            });
          }
          const doc: WorkspaceDoc = {
            name: input.name,
            url: '',
            deliveryMode: 'PUSH',
            agentCard: null,
            createdAt: input.now,
            updatedAt: input.now,
          };
          const state: StateDoc = {
            status: 'PROVISIONING',
            lastHeartbeatAt: null,
            lastRegisteredAt: null,
            lastRegisterFailureAt: null,
            createdAt: input.now,
            hasCard: false,
            statusChangedAt: input.now,
            updatedAt: input.now,
            txid: write.txid,
          };
          const hash = Buffer.from(input.tokenHash).toString('hex');
          const token: TokenDoc = { workspaceId: input.id, createdAt: input.now, expiresAt: null };
          write.put(keys.ws(input.id), encode(doc));
          putState(write, input.id, state);
          write.put(keys.tok(hash), encode(token));
          write.put(keys.wstok(input.id, hash), Buffer.alloc(0));
          const transition = logTransition(
            write,
            input.id,
            null,
            { to: 'PROVISIONING', reason: 'CREATED' },
            input.now,
            '',
          );
          return () => ({ workspace: toWorkspace(input.id, doc, state), transition });
        },
      }),

    async getWorkspace(id) {
      return (await readWorkspaces([id])).get(id);
    },

    async listWorkspaces(query) {
      const wanted = new Set(query.statuses);
      const only = query.workspaceIds.length > 0 ? new Set(query.workspaceIds) : undefined;
      const ids = sorted();
      let lo = 0;
      let hi = ids.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((ids[mid] ?? '') <= query.afterId) lo = mid + 1;
        else hi = mid;
      }
      const chosen: string[] = [];
      for (const id of ids.slice(lo)) {
        if (chosen.length >= query.limit) break;
        const status = states.get(id)?.doc.status;
        if (status === undefined || !wanted.has(status)) continue;
        if (only && !only.has(id)) continue;
        chosen.push(id);
      }
      const found = await readWorkspaces(chosen, query.maxBytes);
      // With a byte bound, a prefix of `chosen` was read: the page ends at the first id not read.
      const readThrough =
        query.maxBytes === undefined
          ? chosen
          : chosen.slice(0, Math.max(0, ...chosen.map((id, i) => (found.has(id) ? i + 1 : 0))));
      return readThrough.flatMap((id) => {
        const workspace = found.get(id);
        return workspace && wanted.has(workspace.status) ? [workspace] : [];
      });
    },

    async snapshot() {
      // The seq at one revision, then every page at that revision: one instant.
      const at = await connection.range({ key: Buffer.from(keys.seq) });
      const rev = revision(at.header.revision);
      const seqKv = at.kvs[0];
      const stPrefix = `${options.prefix}st/`;
      return {
        head: seqKv ? Number(seqKv.value.toString()) : 0,
        async list(query) {
          const wanted = new Set(query.statuses);
          if (query.workspaceIds.length > 0) {
            // Named ids: read in order until the page is full (some may not exist at this revision).
            const named = [...new Set(query.workspaceIds)]
              .filter((id) => id > query.afterId)
              .sort();
            const listed: Workspace[] = [];
            for (let i = 0; i < named.length && listed.length < query.limit; i += query.limit) {
              const chunk = named.slice(i, i + query.limit);
              const found = await readWorkspaces(chunk, query.maxBytes, rev);
              for (const id of chunk) {
                const workspace = found.get(id);
                if (workspace && wanted.has(workspace.status) && listed.length < query.limit) {
                  listed.push(workspace);
                }
              }
              // A byte-bounded read may have stopped inside the chunk: the page ends there.
              if (query.maxBytes !== undefined && listed.length > 0) break;
            }
            return listed;
          }
          const chosen: string[] = [];
          let from = keys.st(query.afterId) + (query.afterId === '' ? '' : '\0');
          for (;;) {
            const page = await connection.range({
              key: Buffer.from(from),
              range_end: prefixEnd(stPrefix),
              limit: SNAPSHOT_RANGE,
              revision: rev,
            });
            for (const kv of page.kvs) {
              const id = keys.idAfter(kv.key.toString(), 'st/');
              if (id === undefined || chosen.length >= query.limit) continue;
              if (wanted.has(decode<StateDoc>(kv.value).status)) chosen.push(id);
            }
            const last = page.kvs.at(-1);
            if (!page.more || !last || chosen.length >= query.limit) break;
            from = `${last.key.toString()}\0`;
          }
          // Every state read at `rev` has its document at `rev`: nothing drops out here.
          const found = await readWorkspaces(chosen, query.maxBytes, rev);
          return chosen.flatMap((id) => {
            const workspace = found.get(id);
            return workspace ? [workspace] : [];
          });
        },
      };
    },

    deleteWorkspace: (id, now, decide) =>
      stateJob(id, true, (view, write) => {
        const { value } = view.get(keys.st(id));
        if (!value) throw workspaceNotFound(id);
        const before = decode<StateDoc>(value);
        const doc = workspaceDoc(view, id);
        const { state, transition } = decideInto(write, id, before, decide, now, '');
        if (transition) putState(write, id, state);
        if (transition && state.status === 'REMOVED') options.inDeleteTransaction?.(id, write);
        return () => ({ workspace: toWorkspace(id, doc, state), transition });
      }),

    addToken: (id, tokenHash, now, previousExpireAt) =>
      submit({
        keys: [keys.st(id)],
        prefixes: [keys.wstok(id)],
        build(view, write) {
          const { doc } = liveState(view, id);
          expireTokens(view, write, id, previousExpireAt);
          const hash = Buffer.from(tokenHash).toString('hex');
          write.put(keys.tok(hash), encode({ workspaceId: id, createdAt: now, expiresAt: null }));
          write.put(keys.wstok(id, hash), Buffer.alloc(0));
          // Rewritten unchanged: token changes of one workspace are serialised on its state key.
          putState(write, id, doc);
          return () => undefined;
        },
      }),

    revokeTokens: (id, now) =>
      submit({
        keys: [keys.st(id)],
        prefixes: [keys.wstok(id)],
        build(view, write) {
          const { value } = view.get(keys.st(id));
          if (!value) throw workspaceNotFound(id);
          const revoked = expireTokens(view, write, id, now);
          putState(write, id, decode<StateDoc>(value));
          return () => revoked;
        },
      }),

    async findToken(tokenHash, now) {
      const hash = Buffer.from(tokenHash).toString('hex');
      let doc = tokens.get(hash);
      if (!doc) {
        // Not cached yet (created a moment ago on another replica): ask etcd itself.
        const response = await connection.range({ key: Buffer.from(keys.tok(hash)) });
        const kv = response.kvs[0];
        doc = kv ? decode<TokenDoc>(kv.value) : undefined;
      }
      if (!doc || (doc.expiresAt !== null && doc.expiresAt <= now)) return undefined;
      return { workspaceId: doc.workspaceId, expiresAt: doc.expiresAt ?? undefined };
    },

    async touchTokens(uses) {
      const latest = new Map<string, number>();
      for (const use of uses) {
        latest.set(use.workspaceId, Math.max(latest.get(use.workspaceId) ?? 0, use.at));
      }
      const ids = [...latest.keys()];
      for (let i = 0; i < ids.length; i += 40) {
        const chunk = ids.slice(i, i + 40);
        await submit({
          keys: chunk.map((id) => keys.use(id)),
          build(view, write) {
            for (const id of chunk) {
              const { value } = view.get(keys.use(id));
              const at = latest.get(id) ?? 0;
              if (!value || Number(value.toString()) < at)
                write.put(keys.use(id), Buffer.from(String(at)));
            }
            return () => undefined;
          },
        });
      }
    },

    async pruneExpiredTokens(before) {
      const expired = [...tokens.entries()].filter(
        ([, doc]) => doc.expiresAt !== null && doc.expiresAt < before,
      );
      let pruned = 0;
      for (let i = 0; i < expired.length; i += 50) {
        const chunk = expired.slice(i, i + 50);
        pruned += await submit({
          keys: chunk.map(([hash]) => keys.tok(hash)),
          fence: leaderFence,
          build(view, write) {
            let n = 0;
            for (const [hash, doc] of chunk) {
              const { value } = view.get(keys.tok(hash));
              if (!value) continue;
              const current = decode<TokenDoc>(value);
              if (current.expiresAt === null || current.expiresAt >= before) continue;
              write.del(keys.tok(hash));
              write.del(keys.wstok(doc.workspaceId, hash));
              n += 1;
            }
            return () => n;
          },
        });
      }
      return pruned;
    },

    applyRegister: (input, decide) =>
      stateJob(
        input.id,
        true,
        (view, write) => {
          const { doc: before } = liveState(view, input.id);
          const doc: WorkspaceDoc = {
            ...workspaceDoc(view, input.id),
            url: input.url,
            deliveryMode: input.deliveryMode,
            agentCard: input.agentCard,
            updatedAt: input.now,
          };
          const registered: StateDoc = {
            ...before,
            lastRegisterFailureAt: null,
            lastRegisteredAt: input.now,
            hasCard: true,
            updatedAt: input.now,
          };
          const { state, transition } = decideInto(
            write,
            input.id,
            registered,
            decide,
            input.now,
            '',
          );
          write.put(keys.ws(input.id), encode(doc));
          putState(write, input.id, state);
          return () => ({ workspace: toWorkspace(input.id, doc, state), transition });
        },
        ownerFence([input.id]),
      ),

    applyRegisterFailure: (input, decide) =>
      stateJob(
        input.id,
        true,
        (view, write) => {
          const { doc: before } = liveState(view, input.id);
          const doc = workspaceDoc(view, input.id);
          const stamped: StateDoc = {
            ...before,
            lastRegisterFailureAt: input.now,
            updatedAt: input.now,
          };
          const { state, transition } = decideInto(
            write,
            input.id,
            stamped,
            decide,
            input.now,
            input.detail,
          );
          putState(write, input.id, state);
          return () => ({ workspace: toWorkspace(input.id, doc, state), transition });
        },
        ownerFence([input.id]),
      ),

    applyHeartbeat: (input, decide) =>
      submit<HeartbeatApplied>({
        keys: [keys.st(input.id), keys.ws(input.id)],
        fence: ownerFence([input.id]),
        build(view, write) {
          const { id, now } = input;
          const { doc: before } = liveState(view, id);
          let state: StateDoc = { ...before, lastHeartbeatAt: now, updatedAt: now };
          write.put(keys.hb(id), encode({ lastHeartbeatAt: now, report: input.report }));
          let cardBackfillChanges = 0;
          let markerClearChanges = 0;
          if (input.agentCard !== undefined) {
            // Backfill only where no card is stored yet (its own key) …
            if (!state.hasCard) {
              const doc = workspaceDoc(view, id);
              if (doc.agentCard === null) {
                write.put(keys.ws(id), encode({ ...doc, agentCard: input.agentCard }));
                cardBackfillChanges = 1;
              }
              state = { ...state, hasCard: true };
            }
            // … and, separately, clear the marker: a stored card must not stop recovery.
            if (state.lastRegisterFailureAt !== null) {
              state = { ...state, lastRegisterFailureAt: null };
              markerClearChanges = 1;
            }
          }
          const decided = decideInto(write, id, state, decide, now, '');
          putState(write, id, decided.state);
          return () => ({
            status: decided.state.status,
            transition: decided.transition,
            cardBackfillChanges,
            markerClearChanges,
          });
        },
      }),

    async sweep(input, decide) {
      const provisioning = [...states.entries()]
        .filter(([, s]) => s.doc.status === 'PROVISIONING' && s.doc.createdAt < input.createdBefore)
        .sort((a, b) => a[1].doc.createdAt - b[1].doc.createdAt)
        .slice(0, input.limit)
        .map(([id]) => id);
      const candidates = [...new Set([...input.silent, ...provisioning])];
      const all: Transition[] = [];
      for (let i = 0; i < candidates.length; i += 40) {
        const chunk = candidates.slice(i, i + 40);
        const ownerDecided: string[] = [];
        let leaderDecided = false;
        const committed = await submit<Transition[]>({
          keys: chunk.map((id) => keys.st(id)),
          fence: () => [...ownerFence(ownerDecided)(), ...(leaderDecided ? leaderFence() : [])],
          build(view, write) {
            ownerDecided.length = 0;
            leaderDecided = false;
            const transitions: Transition[] = [];
            for (const id of chunk) {
              const { value } = view.get(keys.st(id));
              if (!value) continue;
              const before = decode<StateDoc>(value);
              const silent = before.status === 'ONLINE' || before.status === 'DEGRADED';
              const expired =
                before.status === 'PROVISIONING' && before.createdAt < input.createdBefore;
              if (!silent && !expired) continue;
              // Silence is the owner's to judge, a provision timeout the leader's.
              if (silent && fencing && !fencing.owns(id)) continue;
              const { state, transition } = decideInto(write, id, before, decide, input.now, '');
              if (!transition) continue;
              if (silent) ownerDecided.push(id);
              else leaderDecided = true;
              putState(write, id, state);
              transitions.push(transition);
            }
            return () => transitions;
          },
        });
        all.push(...committed);
      }
      return all;
    },

    workspaceState(id) {
      const cached = states.get(id);
      return Promise.resolve(cached ? stateOf(id, cached.doc) : undefined);
    },
    liveStates: () =>
      Promise.resolve(
        [...states.entries()]
          .filter(([, s]) => s.doc.status === 'ONLINE' || s.doc.status === 'DEGRADED')
          .map(([id, s]) => stateOf(id, s.doc)),
      ),

    async recordLiveness(records) {
      const live = records.filter((r) => {
        const status = states.get(r.id)?.doc.status;
        return status !== undefined && status !== 'REMOVED' && (fencing?.owns(r.id) ?? true);
      });
      for (let i = 0; i < live.length; i += 100) {
        const chunk = live.slice(i, i + 100);
        await submit({
          keys: [],
          fence: ownerFence(chunk.map((r) => r.id)),
          build(_view, write) {
            for (const { id, lastHeartbeatAt, report } of chunk) {
              write.put(keys.hb(id), encode({ lastHeartbeatAt, report }));
            }
            return () => undefined;
          },
        });
      }
    },

    async readTransitions(query: TransitionsQuery) {
      if (query.workspaceIds.length === 0) return readLog(query.afterSeq, query.limit);
      const merged: Transition[] = [];
      for (const id of new Set(query.workspaceIds)) {
        const response = await connection.range({
          key: Buffer.from(keys.wslog(id, query.afterSeq + 1)),
          range_end: prefixEnd(keys.wslog(id)),
          limit: query.limit,
        });
        merged.push(...response.kvs.map((kv) => toTransition(decode<LogDoc>(kv.value))));
      }
      return merged.sort((a, b) => a.seq - b.seq).slice(0, query.limit);
    },

    headSeq: () => Promise.resolve(head),

    countByStatus() {
      const counts = Object.fromEntries(WORKSPACE_STATUSES.map((s) => [s, 0])) as Record<
        WorkspaceStatus,
        number
      >;
      for (const { doc } of states.values()) counts[doc.status] += 1;
      return Promise.resolve(counts);
    },

    async compactTransitions(before, limit) {
      const page = await readLog(floor, Math.min(limit, LOG_PAGE));
      let through = 0;
      const byWorkspace = new Set<string>();
      for (const t of page) {
        if (t.at >= before || byWorkspace.size >= 100) break;
        through = t.seq;
        byWorkspace.add(t.workspaceId);
      }
      if (through === 0) return 0;
      const from = floor;
      await submit({
        keys: [keys.logFloor],
        fence: leaderFence,
        build(view, write) {
          const current = Number(view.get(keys.logFloor).value?.toString() ?? '0');
          if (current >= through) return () => undefined;
          write.del(keys.log(from + 1), Buffer.from(keys.log(through + 1)));
          for (const id of byWorkspace) {
            write.del(keys.wslog(id, 0), Buffer.from(keys.wslog(id, through + 1)));
          }
          write.put(keys.logFloor, Buffer.from(String(through)));
          return () => undefined;
        },
      });
      return page.filter((t) => t.seq <= through).length;
    },

    compactedThrough: () => Promise.resolve(floor),

    close() {
      watch.stop();
      connection.close();
      return Promise.resolve();
    },
  };

  /** Makes every token of `id` expire at `at` (or earlier, if it already would); returns how many changed. */
  function expireTokens(view: ReadView, write: WriteBuilder, id: string, at: number): number {
    let changed = 0;
    for (const kv of view.list(keys.wstok(id))) {
      const hash = kv.key.toString().slice(keys.wstok(id).length);
      const doc = tokens.get(hash);
      if (!doc || (doc.expiresAt !== null && doc.expiresAt <= at)) continue;
      write.put(keys.tok(hash), encode({ ...doc, expiresAt: at }));
      changed += 1;
    }
    return changed;
  }
}

function machineState(doc: StateDoc): MachineState {
  return {
    status: doc.status,
    lastHeartbeatAt: doc.lastHeartbeatAt ?? undefined,
    lastRegisteredAt: doc.lastRegisteredAt ?? undefined,
    lastRegisterFailureAt: doc.lastRegisterFailureAt ?? undefined,
    createdAt: doc.createdAt,
  };
}

function toWorkspace(
  id: string,
  doc: WorkspaceDoc,
  state: StateDoc,
  heartbeat?: HeartbeatDoc,
  tokenLastUsedAt?: number,
): Workspace {
  const report = heartbeat?.report ?? HEALTH_DEFAULTS;
  const lastHeartbeatAt = Math.max(heartbeat?.lastHeartbeatAt ?? 0, state.lastHeartbeatAt ?? 0);
  return {
    id,
    name: doc.name,
    status: state.status,
    url: doc.url,
    deliveryMode: doc.deliveryMode,
    agentCard: doc.agentCard === null ? undefined : (JSON.parse(doc.agentCard) as AgentCard),
    lastHeartbeatAt: lastHeartbeatAt === 0 ? undefined : lastHeartbeatAt,
    lastRegisteredAt: state.lastRegisteredAt ?? undefined,
    lastRegisterFailureAt: state.lastRegisterFailureAt ?? undefined,
    createdAt: state.createdAt,
    updatedAt: Math.max(doc.updatedAt, state.updatedAt, heartbeat?.lastHeartbeatAt ?? 0),
    statusChangedAt: state.statusChangedAt,
    ...report,
    tokenLastUsedAt,
  };
}
