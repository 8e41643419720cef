import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
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

/** Creates `dir` (and missing parents) 0700 whatever the umask, unless it exists. */
export function createPrivateDirectory(dir: string): void {
  if (existsSync(dir)) return;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // mkdir's mode is filtered by the umask; chmod's is not.
  chmodSync(dir, 0o700);
}

/**
 * Creates what is missing for `file` so that only its owner can read it,
 * whatever the umask: the directory 0700, the file 0600. SQLite gives the
 * `-wal` and `-shm` files it creates later the main file's mode. Existing
 * directories and files keep the mode their operator gave them.
 */
function createPrivately(file: string): void {
  createPrivateDirectory(dirname(file));
  if (!existsSync(file)) {
    closeSync(openSync(file, 'a', 0o600));
    chmodSync(file, 0o600);
  }
}

/** Opens (creating if needed) and migrates the database file, with WAL and foreign keys on. */
export function openDatabase(file: string, options: OpenOptions = {}): Database.Database {
  let db: Database.Database | undefined;
  try {
    if (file !== ':memory:') createPrivately(file);
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    // A damaged file must stop the start, not fail requests one by one later.
    const check = db.pragma('quick_check', { simple: true }) as string;
    if (check !== 'ok') throw new CorruptDatabaseError(file, check);
    migrate(db);
    // A file this process may only read opens without complaint (SQLite falls back to
    // read-only): one write now says so at start, not at the first heartbeat.
    const version = db.pragma('user_version', { simple: true }) as number;
    db.pragma(`user_version = ${String(version)}`);
    return db;
  } catch (error) {
    db?.close();
    const code = (error as { code?: unknown }).code;
    if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
      throw new CorruptDatabaseError(file, (error as Error).message);
    }
    if (typeof code === 'string' && UNWRITABLE.has(code)) {
      throw new UnwritableDatabaseError(file, (error as Error).message);
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

/** Errors that mean the file or its directory cannot be written by this process. */
const UNWRITABLE = new Set([
  'SQLITE_READONLY',
  'SQLITE_READONLY_DIRECTORY',
  'SQLITE_READONLY_DBMOVED',
  'SQLITE_CANTOPEN',
  'SQLITE_PERM',
  'EACCES',
  'EPERM',
  'EROFS',
]);

/** The database file, its directory or its WAL cannot be written. */
export class UnwritableDatabaseError extends Error {
  override readonly name = 'UnwritableDatabaseError';

  constructor(
    readonly file: string,
    detail: string,
  ) {
    super(
      `cannot open the database ${file} for writing (${detail.replace(/\s*\n\s*/g, '; ')}); ` +
        'the file and its directory must be writable by the user running Vigil',
    );
  }
}
