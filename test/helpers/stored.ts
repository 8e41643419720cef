import Database from 'better-sqlite3';
import { Etcd3 } from 'etcd3';
import type { Harness } from './harness.js';
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
