import Database from 'better-sqlite3';
import { chmodSync, copyFileSync, existsSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UsageError, out, parse } from './common.js';
import { lockDataDir } from './data-dir-lock.js';

const DATABASE_FILE = 'vigil.db';

export const BACKUP_HELP = `Usage: vigil backup FILE [--data-dir DIR]

Copies DIR/vigil.db to FILE while the server runs (SQLite's online backup API:
one consistent snapshot, every transition committed before it began included),
then checks the copy with PRAGMA integrity_check. FILE must not exist.

Flags:
  --data-dir DIR   the server's data directory [env VIGIL_DATA_DIR, default ./data]
  -h, --help       this help`;

export const RESTORE_HELP = `Usage: vigil restore FILE [--data-dir DIR]

Replaces DIR/vigil.db with the backup FILE. The server must be stopped (the data
directory's lock says whether it is). The database it replaces is kept beside it as
vigil.db.replaced-TIMESTAMP. Start the same or a newer Vigil on it afterwards:
migrations only go forward.

Flags:
  --data-dir DIR   the server's data directory [env VIGIL_DATA_DIR, default ./data]
  -h, --help       this help`;

function dataDirOf(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return flag ?? env['VIGIL_DATA_DIR'] ?? './data';
}

function oneFile(positionals: string[], command: string): string {
  const [file] = positionals;
  if (positionals.length !== 1 || file === undefined || file === '') {
    throw new UsageError(`vigil ${command} takes one FILE; see vigil ${command} --help`);
  }
  return file;
}

/** Checks `file` is an intact Vigil database; returns its newest transition seq. */
function checkCopy(file: string): { headSeq: number; schema: number } {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const check = db.pragma('integrity_check', { simple: true }) as string;
    if (check !== 'ok') throw new Error(`${file} fails integrity_check: ${check}`);
    const schema = db.pragma('user_version', { simple: true }) as number;
    if (schema === 0) throw new Error(`${file} is not a Vigil database (no schema version)`);
    const row = db.prepare('SELECT COALESCE(MAX(seq), 0) AS head FROM transitions').get() as {
      head: number;
    };
    return { headSeq: row.head, schema };
  } finally {
    db.close();
  }
}

export async function backupCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parse(args, {
    'data-dir': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help === true) {
    out(BACKUP_HELP);
    return 0;
  }
  const target = resolve(oneFile(positionals, 'backup'));
  const source = join(dataDirOf(values['data-dir'], env), DATABASE_FILE);
  if (!existsSync(source)) throw new UsageError(`no database at ${source}; see --data-dir`);
  if (existsSync(target)) throw new UsageError(`${target} exists; back up to a new file`);
  const partial = `${target}.partial`;
  const db = new Database(source, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    // All remaining pages in one step: one read transaction, so a writer committing
    // meanwhile neither restarts the copy nor lands half in it.
    await db.backup(partial, { progress: () => 0x7fffffff });
  } catch (error) {
    rmSync(partial, { force: true });
    throw error;
  } finally {
    db.close();
  }
  chmodSync(partial, 0o600);
  let checked;
  try {
    checked = checkCopy(partial);
  } catch (error) {
    rmSync(partial, { force: true });
    throw error;
  }
  renameSync(partial, target);
  out(
    `backed up ${source} to ${target} (schema ${checked.schema}, transitions through seq ${checked.headSeq}); integrity_check ok`,
  );
  return 0;
}

export function restoreCommand(args: string[], env: NodeJS.ProcessEnv): number {
  const { values, positionals } = parse(args, {
    'data-dir': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help === true) {
    out(RESTORE_HELP);
    return 0;
  }
  const backup = resolve(oneFile(positionals, 'restore'));
  const dir = dataDirOf(values['data-dir'], env);
  if (!existsSync(backup)) throw new UsageError(`no backup at ${backup}`);
  if (!existsSync(dir)) throw new UsageError(`no data directory at ${dir}; see --data-dir`);
  const checked = checkCopy(backup);
  // Throws DataDirLockedError, naming the server, while one runs on this directory.
  const lock = lockDataDir(dir);
  try {
    const current = join(dir, DATABASE_FILE);
    const incoming = `${current}.restoring`;
    copyFileSync(backup, incoming);
    chmodSync(incoming, 0o600);
    let kept = '';
    if (existsSync(current)) {
      // Fold the WAL into the file so the kept copy is whole on its own.
      const old = new Database(current, { fileMustExist: true });
      try {
        old.pragma('wal_checkpoint(TRUNCATE)');
      } finally {
        old.close();
      }
      kept = `${current}.replaced-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      renameSync(current, kept);
      for (const suffix of ['-wal', '-shm']) rmSync(current + suffix, { force: true });
    }
    renameSync(incoming, current);
    out(
      `restored ${backup} into ${current} (schema ${checked.schema}, transitions through seq ${checked.headSeq})` +
        (kept === '' ? '' : `; the previous database is kept as ${kept}`),
    );
    return 0;
  } finally {
    lock.release();
  }
}
