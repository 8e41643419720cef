import type { RuntimeConfig } from './projection.js';
import type { WrappedKey } from './secret-cipher.js';

/**
 * The storage boundary of the runtime projection: secrets (ciphertext only),
 * runtime configs, data keys, versions and the audit log. Kept apart from
 * RegistryStore so the heartbeat store stays as it is; a backend implements
 * both. Every write and its audit row commit in one transaction, and every
 * write that changes a projection takes its `config_version` from one global
 * monotonic counter in that same transaction.
 */

/** One stored secret: its sealed value and metadata, never the plaintext. */
export interface StoredSecret {
  readonly name: string;
  readonly sealed: Uint8Array;
  readonly fingerprint: string;
  readonly updatedAt: number;
  readonly updatedBy: string;
}

/** Everything the projection of one workspace is computed from, as one transaction read it. */
export interface ProjectionRecord {
  readonly workspaceId: string;
  readonly removed: boolean;
  /** The workspace's wrapped data key; undefined until its first secret. */
  readonly key: WrappedKey | undefined;
  /** By name. */
  readonly secrets: readonly StoredSecret[];
  /** Undefined when none was ever set. */
  readonly config: RuntimeConfig | undefined;
  /** 0 when nothing was ever written. */
  readonly configVersion: number;
  readonly appliedConfigVersion: number;
  /**
   * What the projection came to when it was last computed: its digest, or
   * `!REASON` when it failed. Compared to tell whether a recomputation (say,
   * after a providers-file change) changed anything.
   */
  readonly state: string;
}

/** An audit row as a use-case asks for it; the store adds seq, time and version. */
export interface AuditEntry {
  readonly actor: string;
  readonly action:
    | 'secret.set'
    | 'secret.delete'
    | 'config.set'
    | 'projection.delivered'
    | 'projection.denied'
    | 'keyring.rewrap';
  readonly workspaceId: string;
  readonly name?: string;
  readonly fingerprint?: string;
  readonly detail?: string;
}

export interface AuditEvent extends Required<AuditEntry> {
  readonly seq: number;
  readonly at: number;
  readonly configVersion: number;
}

/** What one write changes; computed from the record read inside the transaction. */
export interface ProjectionChange {
  /** A new data key (stored only when the workspace has none). */
  readonly key?: WrappedKey;
  readonly putSecret?: StoredSecret;
  readonly deleteSecret?: string;
  readonly config?: RuntimeConfig;
  /** The projection's state after the change (see ProjectionRecord.state). */
  readonly state: string;
  /** False: the state is recorded without a new version (nothing a runtime sees changed). */
  readonly bump: boolean;
  /** Written in the same transaction, with the new version. */
  readonly audit: AuditEntry | undefined;
}

/**
 * Plans a write from the record as the transaction read it. Pure and
 * synchronous (a backend may run it more than once, on retry); it may throw
 * a VigilError to refuse, and nothing is written then. Returns undefined to
 * write nothing.
 */
export type PlanChange = (record: ProjectionRecord) => ProjectionChange | undefined;

/**
 * Told after each commit that changed a workspace's versions or projection
 * state, in commit order — on a cluster store, on every replica, whichever
 * replica committed. `bumped`: the commit took a new config_version (what a
 * runtime sees changed); otherwise only the state or the applied version moved.
 */
export type ProjectionListener = (versions: ProjectionVersions, bumped: boolean) => void;

/** Where the runtime of a workspace stands: what the heartbeat hint and Workspace show. */
export interface ProjectionVersions {
  readonly workspaceId: string;
  readonly configVersion: number;
  readonly appliedConfigVersion: number;
  readonly state: string;
}

export interface AuditQuery {
  /** Empty: every workspace. */
  readonly workspaceId: string;
  readonly afterSeq: number;
  readonly limit: number;
}

export interface ProjectionStore {
  subscribe(listener: ProjectionListener): () => void;
  /** The record of a workspace; undefined when the workspace does not exist. */
  read(workspaceId: string): Promise<ProjectionRecord | undefined>;
  /**
   * One transaction: reads the record, plans, writes the change (and a new
   * version from the global counter when `bump`), and its audit row. Throws
   * WORKSPACE_NOT_FOUND; the plan decides what a REMOVED workspace gets.
   * Returns the record as the commit left it.
   */
  change(workspaceId: string, now: number, plan: PlanChange): Promise<ProjectionRecord>;
  /** Records the version a runtime reported applying (no audit: a report, not a write of config). */
  recordApplied(workspaceId: string, version: number): Promise<void>;
  /** Appends one audit row on its own (deliveries and denials: no other write goes with them). */
  appendAudit(entry: AuditEntry, configVersion: number, now: number): Promise<void>;
  listAudit(query: AuditQuery): Promise<AuditEvent[]>;
  /** The versions of every workspace that has a projection row. */
  versions(): Promise<ProjectionVersions[]>;
  /** How many data keys each KEK wraps. */
  keyUsage(): Promise<Map<string, number>>;
  /** Workspaces whose data key is wrapped under another KEK than `activeKekId`, at most `limit`. */
  keysNotUnder(
    activeKekId: string,
    limit: number,
  ): Promise<{ workspaceId: string; key: WrappedKey }[]>;
  /**
   * Replaces a data key's wrapping, if it is still `previous` (a compare and
   * set), with its `keyring.rewrap` audit row in the same transaction.
   */
  rewrapKey(
    workspaceId: string,
    previous: WrappedKey,
    next: WrappedKey,
    now: number,
  ): Promise<boolean>;
  /**
   * Stores shared by several processes (cluster mode): records the check value
   * of each keyring key not recorded yet and returns the ids whose recorded
   * value differs — this process holds another key under that id than the
   * processes that recorded it. A store only one process opens has no need.
   */
  checkKeyring?(checks: ReadonlyMap<string, string>): Promise<string[]>;
  close(): Promise<void>;
}
