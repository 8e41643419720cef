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
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    migrate(db);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}
