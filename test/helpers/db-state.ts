import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { expect } from 'chai';

/** Reads a Vigil database file through a second, read-only connection (WAL allows it). */
function withDb<T>(file: string, read: (db: Database.Database) => T): T {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

/** A digest of everything a call could write: workspaces, tokens, transitions. */
export function stateDigest(file: string): string {
  return withDb(file, (db) => {
    const hash = createHash('sha256');
    for (const table of ['workspaces', 'workspace_tokens', 'transitions']) {
      for (const row of db.prepare(`SELECT * FROM ${table} ORDER BY rowid`).raw().all()) {
        hash.update(
          JSON.stringify(row, (_, v: unknown) => (Buffer.isBuffer(v) ? v.toString('hex') : v)),
        );
      }
    }
    return hash.digest('hex');
  });
}

/**
 * The database invariants: SQLite's integrity check passes; seqs strictly
 * increase and never pass the AUTOINCREMENT high-water mark; every workspace
 * has a creation transition and its current status is the `to` of its latest
 * transition (every status change has its row).
 */
export function expectConsistent(file: string): void {
  withDb(file, (db) => {
    expect(db.pragma('integrity_check', { simple: true })).to.equal('ok');
    const seqs = db.prepare('SELECT seq FROM transitions ORDER BY rowid').pluck().all() as number[];
    seqs.forEach((seq, i) => {
      if (i > 0) expect(seq, 'seq strictly increases').to.be.above(seqs[i - 1]!);
    });
    const high = db
      .prepare("SELECT seq FROM sqlite_sequence WHERE name = 'transitions'")
      .pluck()
      .get() as number | undefined;
    expect(seqs.at(-1) ?? 0).to.equal(high ?? 0);
    const mismatched = db
      .prepare(
        `SELECT w.id, w.status, t.to_status FROM workspaces w
         JOIN transitions t ON t.seq = (SELECT max(seq) FROM transitions WHERE workspace_id = w.id)
         WHERE t.to_status <> w.status`,
      )
      .all();
    expect(mismatched, 'status without its transition row').to.deep.equal([]);
    const uncreated = db
      .prepare(
        `SELECT id FROM workspaces w WHERE NOT EXISTS
           (SELECT 1 FROM transitions t WHERE t.workspace_id = w.id AND t.reason = 'CREATED')`,
      )
      .all();
    expect(uncreated, 'workspaces without a CREATED transition').to.deep.equal([]);
  });
}
