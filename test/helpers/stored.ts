import Database from 'better-sqlite3';
import { Etcd3 } from 'etcd3';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Harness } from './harness.js';
import { suiteEtcdDataDir } from './suite-store.js';
import type { Scrape } from './prometheus-text.js';

/**
 * What the store holds durably for one workspace, read past the server —
 * from the SQLite file, or from the etcd keys — in the `workspaces` row's
 * column names. What lives only in the server's memory is not here.
 */
export async function storedRow(h: Harness, id: string): Promise<Record<string, unknown>> {
  if (!h.etcd) {
    const db = new Database(h.vigil.databaseFile, { readonly: true, fileMustExist: true });
    try {
      return db.prepare('SELECT * FROM workspaces WHERE id = ?').get(id) as Record<string, unknown>;
    } finally {
      db.close();
    }
  }
  const client = new Etcd3({ hosts: [...h.etcd.endpoints] });
  try {
    const get = async (key: string) => {
      const text = await client.get(h.etcd!.prefix + key).string();
      return text === null ? undefined : (JSON.parse(text) as Record<string, unknown>);
    };
    const ws = await get(`ws/${id}`);
    const st = await get(`st/${id}`);
    const hb = await get(`hb/${id}`);
    if (!ws || !st) return {};
    const report = (hb?.['report'] ?? {}) as Record<string, unknown>;
    const beats = [hb?.['lastHeartbeatAt'], st['lastHeartbeatAt']].filter(
      (v): v is number => typeof v === 'number',
    );
    return {
      status: st['status'],
      agent_card: ws['agentCard'],
      last_heartbeat_at: beats.length > 0 ? Math.max(...beats) : null,
      last_registered_at: st['lastRegisteredAt'],
      last_register_failure_at: st['lastRegisterFailureAt'],
      active_tasks: report['activeTasks'] ?? 0,
      current_task: report['currentTask'] ?? '',
      uptime_seconds: report['uptimeSeconds'] ?? 0,
    };
  } finally {
    client.close();
  }
}

/** Requests the store made, from a /metrics scrape: SQL statements, or etcd requests. */
export function storeRequests(h: Harness, m: Scrape): number {
  if (!h.etcd) return m.value('vigil_sql_statements_total') ?? NaN;
  return ['txn', 'range'].reduce(
    (sum, op) => sum + (m.value('vigil_etcd_requests_total', { op }) ?? 0),
    0,
  );
}

/** Every file under `dir`, recursively (etcd's WAL and snapshot directories). */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(path) : [path];
  });
}

/**
 * Everything the store holds, as raw bytes (latin1), past the server: the
 * SQLite file and its WAL; on etcd every key and value under the harness's
 * prefix plus every file etcd wrote to disk (its WAL holds each put ever made,
 * the bbolt file every live revision).
 */
export async function rawStorage(h: Harness): Promise<{ what: string; text: string }[]> {
  if (!h.etcd) {
    const dir = dirname(h.vigil.databaseFile);
    return readdirSync(dir)
      .filter((f) => f.startsWith('vigil.db'))
      .map((f) => ({ what: f, text: readFileSync(join(dir, f)).toString('latin1') }));
  }
  const client = new Etcd3({ hosts: [...h.etcd.endpoints] });
  try {
    const all = await client.getAll().prefix(h.etcd.prefix).buffers();
    const kv = Object.entries(all)
      .map(([key, value]) => `${key}=${value.toString('latin1')}`)
      .join('\n');
    const dataDir = await suiteEtcdDataDir();
    const files = dataDir
      ? filesUnder(dataDir).map((f) => ({ what: f, text: readFileSync(f).toString('latin1') }))
      : [];
    return [{ what: `etcd keys under ${h.etcd.prefix}`, text: kv }, ...files];
  } finally {
    client.close();
  }
}

/** Copies one stored ciphertext over another workspace's secret, past the server (a row swap). */
export async function copySealedSecret(
  h: Harness,
  from: { workspaceId: string; name: string },
  to: { workspaceId: string; name: string },
): Promise<void> {
  if (!h.etcd) {
    const db = new Database(h.vigil.databaseFile, { fileMustExist: true });
    try {
      db.prepare(
        `UPDATE workspace_secrets SET ciphertext =
           (SELECT ciphertext FROM workspace_secrets WHERE workspace_id = @fromId AND name = @fromName)
         WHERE workspace_id = @toId AND name = @toName`,
      ).run({
        fromId: from.workspaceId,
        fromName: from.name,
        toId: to.workspaceId,
        toName: to.name,
      });
    } finally {
      db.close();
    }
    return;
  }
  const client = new Etcd3({ hosts: [...h.etcd.endpoints] });
  try {
    const key = (s: { workspaceId: string; name: string }) =>
      `${h.etcd!.prefix}sec/${s.workspaceId}/${s.name}`;
    const source = (await client.get(key(from)).json()) as { sealed: string } | null;
    const target = (await client.get(key(to)).json()) as Record<string, unknown> | null;
    if (!source || !target) throw new Error('both secrets must be stored');
    await client.put(key(to)).value(JSON.stringify({ ...target, sealed: source.sealed }));
  } finally {
    client.close();
  }
}

/** How many sealed secrets and data keys the store still holds for a workspace. */
export async function storedKeyMaterial(
  h: Harness,
  id: string,
): Promise<{ secrets: number; dataKeys: number }> {
  if (!h.etcd) {
    const db = new Database(h.vigil.databaseFile, { readonly: true, fileMustExist: true });
    try {
      const count = (table: string) =>
        (
          db.prepare(`SELECT count(*) AS n FROM ${table} WHERE workspace_id = ?`).get(id) as {
            n: number;
          }
        ).n;
      return { secrets: count('workspace_secrets'), dataKeys: count('workspace_keys') };
    } finally {
      db.close();
    }
  }
  const client = new Etcd3({ hosts: [...h.etcd.endpoints] });
  try {
    const secrets = await client.getAll().prefix(`${h.etcd.prefix}sec/${id}/`).count();
    const dataKey = await client.get(`${h.etcd.prefix}pk/${id}`).string();
    return { secrets, dataKeys: dataKey === null ? 0 : 1 };
  } finally {
    client.close();
  }
}
