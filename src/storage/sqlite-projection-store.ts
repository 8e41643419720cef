import type { Database } from 'better-sqlite3';
import { VigilError, workspaceNotFound } from '../domain/errors.js';
import type { ReloadPolicy, RuntimeConfig, AdapterName } from '../domain/projection.js';
import type {
  AuditEntry,
  AuditEvent,
  PlanChange,
  ProjectionListener,
  ProjectionRecord,
  ProjectionStore,
  ProjectionVersions,
  StoredSecret,
} from '../domain/projection-store.js';
import type { WrappedKey } from '../domain/secret-cipher.js';

/** SQLite error codes that mean "the storage cannot take writes right now". */
const UNAVAILABLE_CODES = /^SQLITE_(BUSY|LOCKED|READONLY|FULL|IOERR|CANTOPEN|NOMEM)/;

interface ConfigRow {
  adapter: string;
  model: string;
  provider: string;
  base_url: string;
  env_json: string;
  reload_policy: string;
}

interface AuditRow {
  seq: number;
  at: number;
  actor: string;
  action: AuditEntry['action'];
  workspace_id: string;
  name: string;
  config_version: number;
  fingerprint: string;
  detail: string;
}

/** The SQLite ProjectionStore, plus the crypto-shred the workspace store runs in its delete transaction. */
export interface SqliteProjectionStore extends ProjectionStore {
  /**
   * Deletes a workspace's data key and sealed secrets. Synchronous: the
   * SQLite RegistryStore calls it inside the very transaction that moves the
   * workspace to REMOVED.
   */
  shred(workspaceId: string): void;
}

/**
 * The projection tables in the same SQLite database as the workspaces (so a
 * workspace's deletion and the shredding of its keys share a transaction).
 * Every write is one IMMEDIATE better-sqlite3 transaction over statements
 * prepared once; listeners hear of a commit after it.
 */
export function createSqliteProjectionStore(db: Database): SqliteProjectionStore {
  const listeners = new Set<ProjectionListener>();
  const stmt = {
    workspaceStatus: db.prepare<[string], { status: string }>(
      'SELECT status FROM workspaces WHERE id = ?',
    ),
    key: db.prepare<[string], { kek_id: string; wrapped_dek: Uint8Array }>(
      'SELECT kek_id, wrapped_dek FROM workspace_keys WHERE workspace_id = ?',
    ),
    secrets: db.prepare<
      [string],
      {
        name: string;
        ciphertext: Uint8Array;
        fingerprint: string;
        updated_at: number;
        updated_by: string;
      }
    >(
      `SELECT name, ciphertext, fingerprint, updated_at, updated_by FROM workspace_secrets
       WHERE workspace_id = ? ORDER BY name`,
    ),
    config: db.prepare<[string], ConfigRow>(
      `SELECT adapter, model, provider, base_url, env_json, reload_policy
       FROM workspace_runtime_config WHERE workspace_id = ?`,
    ),
    projection: db.prepare<
      [string],
      { config_version: number; applied_config_version: number; state: string }
    >(
      'SELECT config_version, applied_config_version, state FROM workspace_projection WHERE workspace_id = ?',
    ),
    insertKey: db.prepare(
      `INSERT INTO workspace_keys (workspace_id, kek_id, wrapped_dek, created_at)
       VALUES (@workspaceId, @kekId, @wrapped, @now)`,
    ),
    putSecret: db.prepare(
      `INSERT INTO workspace_secrets (workspace_id, name, ciphertext, fingerprint, updated_at, updated_by)
       VALUES (@workspaceId, @name, @sealed, @fingerprint, @updatedAt, @updatedBy)
       ON CONFLICT (workspace_id, name) DO UPDATE SET ciphertext = excluded.ciphertext,
         fingerprint = excluded.fingerprint, updated_at = excluded.updated_at,
         updated_by = excluded.updated_by`,
    ),
    deleteSecret: db.prepare('DELETE FROM workspace_secrets WHERE workspace_id = ? AND name = ?'),
    putConfig: db.prepare(
      `INSERT INTO workspace_runtime_config
         (workspace_id, adapter, model, provider, base_url, env_json, reload_policy, updated_at)
       VALUES (@workspaceId, @adapter, @model, @provider, @baseUrl, @env, @reload, @now)
       ON CONFLICT (workspace_id) DO UPDATE SET adapter = excluded.adapter, model = excluded.model,
         provider = excluded.provider, base_url = excluded.base_url, env_json = excluded.env_json,
         reload_policy = excluded.reload_policy, updated_at = excluded.updated_at`,
    ),
    nextVersion: db.prepare<[], { value: number }>(
      `INSERT INTO meta (key, value) VALUES ('config_version', 1)
       ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value`,
    ),
    putProjection: db.prepare(
      `INSERT INTO workspace_projection (workspace_id, config_version, state, updated_at)
       VALUES (@workspaceId, @version, @state, @now)
       ON CONFLICT (workspace_id) DO UPDATE SET config_version = excluded.config_version,
         state = excluded.state, updated_at = excluded.updated_at`,
    ),
    setApplied: db.prepare(
      `UPDATE workspace_projection SET applied_config_version = @version
       WHERE workspace_id = @workspaceId AND applied_config_version <> @version`,
    ),
    insertAudit: db.prepare(
      `INSERT INTO audit_events (at, actor, action, workspace_id, name, config_version, fingerprint, detail)
       VALUES (@at, @actor, @action, @workspaceId, @name, @configVersion, @fingerprint, @detail)`,
    ),
    audit: db.prepare<{ after: number; limit: number }, AuditRow>(
      'SELECT * FROM audit_events WHERE seq > @after ORDER BY seq LIMIT @limit',
    ),
    auditFor: db.prepare<{ after: number; limit: number; workspaceId: string }, AuditRow>(
      `SELECT * FROM audit_events WHERE workspace_id = @workspaceId AND seq > @after
       ORDER BY seq LIMIT @limit`,
    ),
    versions: db.prepare<
      [],
      {
        workspace_id: string;
        config_version: number;
        applied_config_version: number;
        state: string;
      }
    >(
      'SELECT workspace_id, config_version, applied_config_version, state FROM workspace_projection',
    ),
    keyUsage: db.prepare<[], { kek_id: string; n: number }>(
      'SELECT kek_id, count(*) AS n FROM workspace_keys GROUP BY kek_id',
    ),
    keysNotUnder: db.prepare<
      { kekId: string; limit: number },
      { workspace_id: string; kek_id: string; wrapped_dek: Uint8Array }
    >(
      'SELECT workspace_id, kek_id, wrapped_dek FROM workspace_keys WHERE kek_id <> @kekId LIMIT @limit',
    ),
    rewrap: db.prepare(
      `UPDATE workspace_keys SET kek_id = @kekId, wrapped_dek = @wrapped
       WHERE workspace_id = @workspaceId AND kek_id = @previousKekId AND wrapped_dek = @previous`,
    ),
    shredSecrets: db.prepare('DELETE FROM workspace_secrets WHERE workspace_id = ?'),
    shredKey: db.prepare('DELETE FROM workspace_keys WHERE workspace_id = ?'),
  };

  function readRecord(workspaceId: string): ProjectionRecord | undefined {
    const workspace = stmt.workspaceStatus.get(workspaceId);
    if (!workspace) return undefined;
    const key = stmt.key.get(workspaceId);
    const config = stmt.config.get(workspaceId);
    const projection = stmt.projection.get(workspaceId);
    return {
      workspaceId,
      removed: workspace.status === 'REMOVED',
      key: key ? { kekId: key.kek_id, wrapped: key.wrapped_dek } : undefined,
      secrets: stmt.secrets.all(workspaceId).map((row): StoredSecret => ({
        name: row.name,
        sealed: row.ciphertext,
        fingerprint: row.fingerprint,
        updatedAt: row.updated_at,
        updatedBy: row.updated_by,
      })),
      config: config ? toConfig(config) : undefined,
      configVersion: projection?.config_version ?? 0,
      appliedConfigVersion: projection?.applied_config_version ?? 0,
      state: projection?.state ?? '',
    };
  }

  function tell(versions: ProjectionVersions, bumped: boolean): void {
    for (const listener of listeners) {
      try {
        listener(versions, bumped);
      } catch (error) {
        console.error('vigil: a projection listener failed', error);
      }
    }
  }

  function insertAudit(entry: AuditEntry, configVersion: number, at: number): void {
    stmt.insertAudit.run({
      at,
      actor: entry.actor,
      action: entry.action,
      workspaceId: entry.workspaceId,
      name: entry.name ?? '',
      configVersion,
      fingerprint: entry.fingerprint ?? '',
      detail: entry.detail ?? '',
    });
  }

  const changeTx = db.transaction(
    (
      workspaceId: string,
      now: number,
      plan: PlanChange,
    ): { record: ProjectionRecord; bumped: boolean; written: boolean } => {
      const before = readRecord(workspaceId);
      if (!before) throw workspaceNotFound(workspaceId);
      const change = plan(before);
      if (!change) return { record: before, bumped: false, written: false };
      if (change.key && !before.key) {
        stmt.insertKey.run({
          workspaceId,
          kekId: change.key.kekId,
          wrapped: change.key.wrapped,
          now,
        });
      }
      if (change.putSecret) stmt.putSecret.run({ workspaceId, ...change.putSecret });
      if (change.deleteSecret !== undefined)
        stmt.deleteSecret.run(workspaceId, change.deleteSecret);
      if (change.config) stmt.putConfig.run({ workspaceId, now, ...configParams(change.config) });
      const version = change.bump ? (stmt.nextVersion.get()?.value ?? 0) : before.configVersion;
      stmt.putProjection.run({ workspaceId, version, state: change.state, now });
      if (change.audit) insertAudit(change.audit, version, now);
      const after = readRecord(workspaceId);
      if (!after) throw new Error(`workspace ${workspaceId} vanished inside its own transaction`);
      return { record: after, bumped: change.bump, written: true };
    },
  );

  const rewrapTx = db.transaction(
    (workspaceId: string, previous: WrappedKey, next: WrappedKey, now: number): boolean => {
      const changed = stmt.rewrap.run({
        workspaceId,
        kekId: next.kekId,
        wrapped: next.wrapped,
        previousKekId: previous.kekId,
        previous: previous.wrapped,
      }).changes;
      if (changed === 0) return false;
      const version = stmt.projection.get(workspaceId)?.config_version ?? 0;
      insertAudit(
        {
          actor: 'vigil',
          action: 'keyring.rewrap',
          workspaceId,
          detail: `${previous.kekId} -> ${next.kekId}`,
        },
        version,
        now,
      );
      return true;
    },
  );

  function run<T>(operation: () => T): Promise<T> {
    try {
      return Promise.resolve(operation());
    } catch (error) {
      return Promise.reject(mapStorageError(error));
    }
  }

  return {
    subscribe(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    read: (workspaceId) => run(() => readRecord(workspaceId)),
    change: (workspaceId, now, plan) =>
      run(() => {
        const { record, bumped, written } = changeTx.immediate(workspaceId, now, plan);
        // After the commit, never inside it.
        if (written) tell(versionsOf(record), bumped);
        return record;
      }),
    recordApplied: (workspaceId, version) =>
      run(() => {
        if (stmt.setApplied.run({ workspaceId, version }).changes === 0) return;
        const row = stmt.projection.get(workspaceId);
        if (row) {
          tell(
            {
              workspaceId,
              configVersion: row.config_version,
              appliedConfigVersion: row.applied_config_version,
              state: row.state,
            },
            false,
          );
        }
      }),
    appendAudit: (entry, configVersion, now) =>
      run(() => {
        insertAudit(entry, configVersion, now);
      }),
    listAudit: (query) =>
      run(() =>
        (query.workspaceId === ''
          ? stmt.audit.all({ after: query.afterSeq, limit: query.limit })
          : stmt.auditFor.all({
              after: query.afterSeq,
              limit: query.limit,
              workspaceId: query.workspaceId,
            })
        ).map((row): AuditEvent => ({
          seq: row.seq,
          at: row.at,
          actor: row.actor,
          action: row.action,
          workspaceId: row.workspace_id,
          name: row.name,
          configVersion: row.config_version,
          fingerprint: row.fingerprint,
          detail: row.detail,
        })),
      ),
    versions: () =>
      run(() =>
        stmt.versions.all().map((row): ProjectionVersions => ({
          workspaceId: row.workspace_id,
          configVersion: row.config_version,
          appliedConfigVersion: row.applied_config_version,
          state: row.state,
        })),
      ),
    keyUsage: () => run(() => new Map(stmt.keyUsage.all().map((row) => [row.kek_id, row.n]))),
    keysNotUnder: (kekId, limit) =>
      run(() =>
        stmt.keysNotUnder.all({ kekId, limit }).map((row) => ({
          workspaceId: row.workspace_id,
          key: { kekId: row.kek_id, wrapped: row.wrapped_dek },
        })),
      ),
    rewrapKey: (workspaceId, previous, next, now) =>
      run(() => rewrapTx.immediate(workspaceId, previous, next, now)),
    shred(workspaceId) {
      stmt.shredSecrets.run(workspaceId);
      stmt.shredKey.run(workspaceId);
    },
    // The database belongs to the workspace store, which closes it.
    close: () => Promise.resolve(),
  };
}

function versionsOf(record: ProjectionRecord): ProjectionVersions {
  return {
    workspaceId: record.workspaceId,
    configVersion: record.configVersion,
    appliedConfigVersion: record.appliedConfigVersion,
    state: record.state,
  };
}

function configParams(config: RuntimeConfig) {
  return {
    adapter: config.adapter,
    model: config.model,
    provider: config.provider,
    baseUrl: config.baseUrl,
    env: JSON.stringify(config.env),
    reload: JSON.stringify(config.reloadPolicy),
  };
}

function toConfig(row: ConfigRow): RuntimeConfig {
  return {
    adapter: row.adapter as AdapterName,
    model: row.model,
    provider: row.provider,
    baseUrl: row.base_url,
    env: JSON.parse(row.env_json) as Record<string, string>,
    reloadPolicy: JSON.parse(row.reload_policy) as ReloadPolicy,
  };
}

function mapStorageError(error: unknown): Error {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && UNAVAILABLE_CODES.test(code)) {
    return new VigilError(
      'STORE_UNAVAILABLE',
      'the database cannot take this request right now',
      { sqliteCode: code },
      { cause: error },
    );
  }
  return error instanceof Error ? error : new Error(String(error));
}
