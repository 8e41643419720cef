import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { migrate } from './migrations.js';

export type Synchronous = 'FULL' | 'NORMAL';

export interface OpenOptions {
  /**
   * SQLite `synchronous`: FULL (the default) makes every commit durable
   * across power loss; NORMAL in WAL mode is durable across process crashes
   * only, and is much faster.
   */
  readonly synchronous?: Synchronous;
}

/** Opens (creating if needed) and migrates the database file, with WAL and foreign keys on. */
export function openDatabase(file: string, options: OpenOptions = {}): Database.Database {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  let db: Database.Database | undefined;
  try {
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    // A damaged file must stop the start, not fail requests one by one later.
    const check = db.pragma('quick_check', { simple: true }) as string;
    if (check !== 'ok') throw new CorruptDatabaseError(file, check);
    migrate(db);
    return db;
  } catch (error) {
    db?.close();
    const code = (error as { code?: unknown }).code;
    if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
      throw new CorruptDatabaseError(file, (error as Error).message);
    }
    throw error;
  }
}

/** The database file is damaged or is not an SQLite database. */
export class CorruptDatabaseError extends Error {
  override readonly name = 'CorruptDatabaseError';

  constructor(
    readonly file: string,
    detail: string,
  ) {
    super(
      `the database ${file} is damaged or not a Vigil database (${detail.replace(/\s*\n\s*/g, '; ')}); ` +
        'restore it from a backup, or move it away to start with an empty one',
    );
  }
}
