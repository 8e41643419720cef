import type { Database } from 'better-sqlite3';

/**
 * Numbered schema migrations. Each runs in its own IMMEDIATE transaction that
 * also bumps `PRAGMA user_version`, so a crash mid-migration leaves the
 * database at the previous version. Append only: never edit a released one.
 */
const MIGRATIONS: readonly string[] = [
  // 1: workspaces, their token hashes, the transition log.
  `
  CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN
      ('PROVISIONING', 'ONLINE', 'DEGRADED', 'OFFLINE', 'FAILED', 'REMOVED')),
    url TEXT NOT NULL DEFAULT '',
    delivery_mode TEXT NOT NULL DEFAULT 'PUSH' CHECK (delivery_mode IN ('PUSH', 'POLL')),
    agent_card TEXT,
    last_heartbeat_at INTEGER,
    last_registered_at INTEGER,
    last_register_failure_at INTEGER,
    -- max(created, last register, last heartbeat): what the liveness sweep scans.
    last_seen_at INTEGER NOT NULL,
    error_rate REAL NOT NULL DEFAULT 0,
    sample_error TEXT NOT NULL DEFAULT '',
    active_tasks INTEGER NOT NULL DEFAULT 0,
    uptime_seconds INTEGER NOT NULL DEFAULT 0,
    current_task TEXT NOT NULL DEFAULT '',
    runtime_state TEXT NOT NULL DEFAULT 'HEALTHY' CHECK (runtime_state IN ('HEALTHY', 'WEDGED')),
    native_status_management INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    status_changed_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX workspaces_status_id ON workspaces (status, id);
  CREATE INDEX workspaces_status_last_seen ON workspaces (status, last_seen_at);
  CREATE INDEX workspaces_status_created ON workspaces (status, created_at);

  CREATE TABLE workspace_tokens (
    token_hash BLOB PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    created_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX workspace_tokens_workspace ON workspace_tokens (workspace_id);

  CREATE TABLE transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    from_status TEXT,
    to_status TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX transitions_workspace_seq ON transitions (workspace_id, seq);

  -- Small named counters, such as how far the transition log was compacted.
  CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  ) STRICT;
  `,
  // 2: token lifecycle — rotation overlap, revocation, last use.
  `
  ALTER TABLE workspace_tokens ADD COLUMN expires_at INTEGER;
  ALTER TABLE workspace_tokens ADD COLUMN last_used_at INTEGER;
  ALTER TABLE workspaces ADD COLUMN token_last_used_at INTEGER;
  `,
  // 3: the runtime projection — data keys, sealed secrets, runtime configs, versions, audit.
  `
  CREATE TABLE workspace_keys (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces (id),
    kek_id TEXT NOT NULL,
    wrapped_dek BLOB NOT NULL,
    created_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX workspace_keys_kek ON workspace_keys (kek_id);

  -- Values only as 0x01 ‖ nonce ‖ ciphertext ‖ tag under the workspace's data key.
  CREATE TABLE workspace_secrets (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    name TEXT NOT NULL,
    ciphertext BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (workspace_id, name)
  ) STRICT;

  CREATE TABLE workspace_runtime_config (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces (id),
    adapter TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    base_url TEXT NOT NULL,
    env_json TEXT NOT NULL,
    reload_policy TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  ) STRICT;

  -- Desired and applied versions, and what the projection came to (digest or !REASON).
  CREATE TABLE workspace_projection (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces (id),
    config_version INTEGER NOT NULL,
    applied_config_version INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  ) STRICT;

  CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    config_version INTEGER NOT NULL DEFAULT 0,
    fingerprint TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
  ) STRICT;
  CREATE INDEX audit_events_workspace ON audit_events (workspace_id, seq);
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Applies every migration newer than the database's `user_version`, in order. */
export function migrate(db: Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > SCHEMA_VERSION) {
    throw new Error(
      `the database has schema version ${current}, newer than this Vigil knows (${SCHEMA_VERSION}); upgrade Vigil`,
    );
  }
  MIGRATIONS.slice(current).forEach((sql, index) => {
    const version = current + index + 1;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${version}`);
    }).immediate();
  });
}
