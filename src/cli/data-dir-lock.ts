import { flockSync } from 'fs-ext';
import { closeSync, constants, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

export const LOCK_FILE = 'vigil.lock';

/** An exclusive hold on a data directory, for as long as this process keeps it. */
export interface DataDirLock {
  readonly file: string;
  /** Gives the directory up (the OS also does so when the process exits or crashes). */
  release(): void;
}

/** Another live process holds the data directory. */
export class DataDirLockedError extends Error {
  override readonly name = 'DataDirLockedError';

  constructor(
    readonly dir: string,
    readonly file: string,
    readonly holder: string,
  ) {
    super(
      `data directory ${dir} is in use by ${holder === '' ? 'another process' : holder} ` +
        `(lock ${file}); stop that server or give this one another --data-dir`,
    );
  }
}

/**
 * Takes DIR/vigil.lock with flock(2), exclusive and non-blocking, and writes
 * who holds it (pid, host, since) into the file for the next one to read. The
 * lock belongs to the open file description: the kernel drops it when the
 * process exits, however it exits, so a crash leaves no stale lock. The file
 * itself stays: unlinking a lock file lets two processes lock two inodes.
 * The directory must exist.
 */
export function lockDataDir(dir: string): DataDirLock {
  const file = join(dir, LOCK_FILE);
  const fd = openSync(file, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    flockSync(fd, 'exnb');
  } catch (error) {
    closeSync(fd);
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
      throw new DataDirLockedError(dir, file, describeHolder(file));
    }
    throw error;
  }
  const holder = JSON.stringify({
    pid: process.pid,
    host: hostname(),
    since: new Date().toISOString(),
  });
  ftruncateSync(fd, 0);
  writeSync(fd, `${holder}\n`, 0);
  let held = true;
  return {
    file,
    release() {
      if (!held) return;
      held = false;
      ftruncateSync(fd, 0);
      flockSync(fd, 'un');
      closeSync(fd);
    },
  };
}

function describeHolder(file: string): string {
  try {
    const holder = JSON.parse(readFileSync(file, 'utf8')) as {
      pid?: unknown;
      host?: unknown;
      since?: unknown;
    };
    return `pid ${String(holder.pid)} on ${String(holder.host)} since ${String(holder.since)}`;
  } catch {
    // The holder is between taking the lock and writing its name.
    return '';
  }
}
