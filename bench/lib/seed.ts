import { randomBytes } from 'node:crypto';
import type { Decide } from '../../src/domain/registry-store.js';
import { hashToken } from '../../src/domain/tokens.js';
import { openDatabase } from '../../src/storage/database.js';
import { createSqliteStore } from '../../src/storage/sqlite-store.js';

/**
 * Bulk seeding through the project's own storage layer (openDatabase +
 * createSqliteStore), before the server starts, so the rows, token hashes and
 * transition log are exactly what the server writes itself. Batches of calls
 * run inside one outer transaction: while the SQLite store is synchronous
 * underneath its promises, each batch commits once (the store's own
 * transactions nest as savepoints); were it ever asynchronous, the calls would
 * simply commit one by one. Each phase (create, register, fail or delete) is
 * awaited before the next, and every promise is awaited, so any failure surfaces.
 */

/** What happens to a seeded workspace after CreateWorkspace. */
export type SeedFate = 'provisioning' | 'online' | 'degraded' | 'removed';

export interface SeedOptions {
  readonly file: string;
  readonly count: number;
  /** Workspace id of index i. */
  readonly id: (index: number) => string;
  /** Workspace token of index i (only its SHA-256 is stored). Random when absent. */
  readonly token?: (index: number) => string;
  readonly fate: (index: number) => SeedFate;
  /** Agent card stored by the simulated Register. */
  readonly card: (id: string) => Record<string, unknown>;
  readonly url: string;
  readonly batch?: number;
}

export interface SeedResult {
  readonly ms: number;
  readonly counts: Record<SeedFate, number>;
}

const decide =
  (to: 'ONLINE' | 'DEGRADED' | 'REMOVED', reason: 'REGISTERED' | 'REGISTER_FAILED' | 'DELETED') =>
  (): ReturnType<Decide> => ({ to, reason });

export async function seedDatabase(options: SeedOptions): Promise<SeedResult> {
  const started = Date.now();
  const db = openDatabase(options.file, { synchronous: 'NORMAL' });
  const store = createSqliteStore(db);
  const counts: Record<SeedFate, number> = { provisioning: 0, online: 0, degraded: 0, removed: 0 };
  const batchSize = options.batch ?? 5_000;
  /** Runs `step` for every index of the batch inside one outer transaction, then awaits all. */
  const phase = async (from: number, to: number, step: (i: number) => Promise<unknown>[]) => {
    const pending: Promise<unknown>[] = [];
    db.transaction(() => {
      for (let i = from; i < to; i += 1) pending.push(...step(i));
    }).immediate();
    await Promise.all(pending);
  };
  try {
    for (let from = 0; from < options.count; from += batchSize) {
      const to = Math.min(options.count, from + batchSize);
      const now = Date.now();
      // Phases in order (create, register, then failure or delete), each awaited before the next.
      await phase(from, to, (i) => {
        const id = options.id(i);
        const token = options.token?.(i) ?? `vgw_${randomBytes(32).toString('base64url')}`;
        counts[options.fate(i)] += 1;
        return [store.createWorkspace({ id, name: id, tokenHash: hashToken(token), now })];
      });
      await phase(from, to, (i) => {
        if (options.fate(i) === 'provisioning') return [];
        const id = options.id(i);
        const input = {
          id,
          url: options.url,
          deliveryMode: 'PUSH' as const,
          agentCard: JSON.stringify(options.card(id)),
          now,
        };
        return [store.applyRegister(input, decide('ONLINE', 'REGISTERED'))];
      });
      await phase(from, to, (i) => {
        const id = options.id(i);
        switch (options.fate(i)) {
          case 'degraded':
            return [
              store.applyRegisterFailure(
                { id, detail: 'seeded register failure', now },
                decide('DEGRADED', 'REGISTER_FAILED'),
              ),
            ];
          case 'removed':
            return [store.deleteWorkspace(id, now, decide('REMOVED', 'DELETED'))];
          default:
            return [];
        }
      });
    }
  } finally {
    await store.close();
  }
  return { ms: Date.now() - started, counts };
}
