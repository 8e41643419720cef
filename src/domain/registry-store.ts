import type { Decision, MachineState } from './status-machine.js';
import type {
  DeliveryMode,
  HeartbeatReport,
  Transition,
  Workspace,
  WorkspaceStatus,
} from './model.js';

/**
 * Operations that may change a status take a `decide` function (the status
 * machine, closed over the event and the time). The store calls it with the
 * state it read inside the transaction (and the workspace id) and, when it
 * returns a decision, applies a guarded status update and writes the
 * transition row in that same transaction. Every returned transition is
 * committed.
 */
export type Decide = (state: MachineState, id: string) => Decision | undefined;

/** The durable state of one workspace as a commit left it. */
export interface WorkspaceState extends MachineState {
  readonly id: string;
  /** Whether an agent card is stored (the NULL-scoped backfill has nothing to do when so). */
  readonly hasCard: boolean;
}

/** What the lazy liveness flush writes for one workspace. */
export interface LivenessRecord {
  readonly id: string;
  readonly lastHeartbeatAt: number;
  readonly report: HeartbeatReport;
}

/** What one commit changed, as the store tells its listeners. */
export interface Commit {
  /** The transitions it committed, in `seq` order. */
  readonly transitions: readonly Transition[];
  /**
   * The state, as it now stands, of every workspace whose status, marker,
   * card or registration the commit wrote (and of every workspace a
   * heartbeat went through the transaction for).
   */
  readonly states: readonly WorkspaceState[];
}

/**
 * Told about every commit, synchronously after it, exactly once, in commit
 * order. A listener that throws is reported and skipped: it never fails the
 * write, delays its reply or stops later commits from being told.
 */
export type CommitListener = (commit: Commit) => void;

/** The outcome of one write. */
export interface Applied {
  readonly workspace: Workspace;
  /** The committed transition, when the status changed. */
  readonly transition: Transition | undefined;
}

/**
 * What a heartbeat changed, row by row. Only the status is returned, not the
 * whole workspace: heartbeats are the hot path and their callers need no more.
 */
export interface HeartbeatApplied {
  /** The status after the heartbeat. */
  readonly status: WorkspaceStatus;
  /** The committed transition, when the status changed. */
  readonly transition: Transition | undefined;
  /** Rows changed by the NULL-scoped agent card backfill (0 or 1). */
  readonly cardBackfillChanges: number;
  /** Rows changed by the register-failure marker clear (0 or 1). */
  readonly markerClearChanges: number;
}

export interface CreateWorkspaceInput {
  readonly id: string;
  readonly name: string;
  readonly tokenHash: Uint8Array;
  readonly now: number;
}

export interface RegisterInput {
  readonly id: string;
  readonly url: string;
  readonly deliveryMode: DeliveryMode;
  /** Serialized, validated agent card. */
  readonly agentCard: string;
  readonly now: number;
}

export interface RegisterFailureInput {
  readonly id: string;
  /** Why validation failed; kept as the transition detail. */
  readonly detail: string;
  readonly now: number;
}

export interface HeartbeatInput {
  readonly id: string;
  readonly report: HeartbeatReport;
  /** Serialized, validated agent card, when the heartbeat carried one. */
  readonly agentCard: string | undefined;
  readonly now: number;
}

export interface TokenRecord {
  readonly workspaceId: string;
  /** When it stops working; undefined when it does not expire. */
  readonly expiresAt: number | undefined;
}

export interface TokenUse {
  readonly tokenHash: Uint8Array;
  readonly workspaceId: string;
  readonly at: number;
}

export interface SweepInput {
  readonly now: number;
  /** ONLINE/DEGRADED workspaces the caller's liveness says may have gone silent. */
  readonly silent: readonly string[];
  /** PROVISIONING workspaces created before this are candidates. */
  readonly createdBefore: number;
  /** At most this many PROVISIONING candidates per call. */
  readonly limit: number;
}

export interface ListWorkspacesQuery {
  readonly statuses: readonly WorkspaceStatus[];
  /** Only these workspaces; empty means all. */
  readonly workspaceIds: readonly string[];
  /** Return ids strictly greater than this. */
  readonly afterId: string;
  readonly limit: number;
  /**
   * Stops early, once the rows returned hold at least this many bytes of
   * stored workspace (card and URL above all); always returns at least one
   * row when there is one. A caller that pages on must then continue until
   * a page comes back empty. No byte bound when unset.
   */
  readonly maxBytes?: number;
}

/**
 * The workspaces as they stood at one instant, read page by page: `head` is
 * the seq of the last transition committed by then, and every page shows the
 * state as of that same instant, however long the reader takes.
 */
export interface StoreSnapshot {
  readonly head: number;
  list(query: ListWorkspacesQuery): Promise<Workspace[]>;
}

export interface TransitionsQuery {
  /** Return transitions with `seq` strictly greater than this. */
  readonly afterSeq: number;
  readonly limit: number;
  /** Only these workspaces; empty means all. */
  readonly workspaceIds: readonly string[];
}

/**
 * The storage boundary. Each operation is one whole use-case transaction and
 * returns a promise, so a networked backend can implement it; nothing above
 * this interface may assume the store is in-process or that `seq` comes from
 * SQLite.
 *
 * The store owns what happens at commit: every committed transition (and the
 * workspace states a commit wrote) reaches the listeners registered with
 * `subscribe` exactly once, in commit order, from the write path itself —
 * before the write's promise settles. No caller publishes by hand. Group
 * commit is the store's too: concurrent heartbeats share commits.
 */
export interface RegistryStore {
  /** Adds a commit listener; returns its removal. */
  subscribe(listener: CommitListener): () => void;
  /**
   * Stores shared by several processes (cluster mode): tells `listener` when
   * a token changed — rotated, revoked or pruned, by any replica — so cached
   * sessions are checked again (and the workspace's open projection streams
   * check theirs). A store only this process writes has no need.
   */
  onTokensChanged?(listener: (workspaceId: string) => void): () => void;
  /** Creates a PROVISIONING workspace and its first token. Throws WORKSPACE_EXISTS. */
  createWorkspace(input: CreateWorkspaceInput): Promise<Applied>;
  getWorkspace(id: string): Promise<Workspace | undefined>;
  listWorkspaces(query: ListWorkspacesQuery): Promise<Workspace[]>;
  /**
   * A consistent snapshot (etcd: every page read at one revision). A store
   * without it serves WatchStatus snapshots page by page from the current
   * state, after taking the head: a page may then already show what a
   * following transition reports again.
   */
  snapshot?(): Promise<StoreSnapshot>;
  /** Moves a workspace to REMOVED. Throws WORKSPACE_NOT_FOUND. */
  deleteWorkspace(id: string, now: number, decide: Decide): Promise<Applied>;
  /**
   * Adds a new token and makes every earlier token of the workspace expire at
   * `previousExpireAt` (or earlier, if it already would). Throws
   * WORKSPACE_NOT_FOUND / WORKSPACE_REMOVED.
   */
  addToken(id: string, tokenHash: Uint8Array, now: number, previousExpireAt: number): Promise<void>;
  /** Ends every token of a workspace now; returns how many were still valid. Throws WORKSPACE_NOT_FOUND. */
  revokeTokens(id: string, now: number): Promise<number>;
  /** The token with this hash, if it is valid at `now`; compared in constant time. */
  findToken(tokenHash: Uint8Array, now: number): Promise<TokenRecord | undefined>;
  /** Records when tokens were last used (never moving a time backwards). */
  touchTokens(uses: readonly TokenUse[]): Promise<void>;
  /** Deletes tokens that expired before `before`. */
  pruneExpiredTokens(before: number): Promise<number>;

  /** Stores URL and card, clears the marker, applies the decision. Throws WORKSPACE_NOT_FOUND / WORKSPACE_REMOVED. */
  applyRegister(input: RegisterInput, decide: Decide): Promise<Applied>;
  /** Stamps the register-failure marker and applies the decision. */
  applyRegisterFailure(input: RegisterFailureInput, decide: Decide): Promise<Applied>;
  /**
   * One transaction: liveness update; the NULL-scoped card backfill; the
   * marker clear as its own guarded update; then the decision on the state
   * read after those, with a guarded status update and the transition row.
   * Heartbeats arriving together share one commit (group commit), each
   * isolated from the others: a failing one writes nothing and fails alone.
   * Settles after the commit.
   */
  applyHeartbeat(input: HeartbeatInput, decide: Decide): Promise<HeartbeatApplied>;
  /**
   * Applies the decision to each silent candidate and to PROVISIONING
   * workspaces created before the cutoff (at most `limit` of those), in one
   * transaction; returns the committed transitions in order.
   */
  sweep(input: SweepInput, decide: Decide): Promise<Transition[]>;
  /** The durable state of one workspace, or undefined when there is none. */
  workspaceState(id: string): Promise<WorkspaceState | undefined>;
  /** The state of every ONLINE or DEGRADED workspace: where a new owner of their liveness starts. */
  liveStates(): Promise<WorkspaceState[]>;
  /**
   * Writes lazily flushed liveness (last heartbeat time and reported health),
   * never moving a time backwards and never touching a REMOVED workspace.
   * Changes no status; tells no listener.
   */
  recordLiveness(records: readonly LivenessRecord[]): Promise<void>;

  /** Committed transitions in `seq` order. */
  readTransitions(query: TransitionsQuery): Promise<Transition[]>;
  /** The highest committed `seq` (0 when none). */
  headSeq(): Promise<number>;
  /** How many workspaces are in each status. */
  countByStatus(): Promise<Record<WorkspaceStatus, number>>;
  /**
   * Deletes the oldest transitions committed before `before` — a prefix of the
   * log, at most `limit` rows — and records how far the log was compacted.
   * Returns how many were deleted.
   */
  compactTransitions(before: number, limit: number): Promise<number>;
  /** Transitions up to this `seq` may have been compacted away (0 when none were). */
  compactedThrough(): Promise<number>;

  close(): Promise<void>;
}
