import { existsSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';

/**
 * What a failed `vigil serve` start must not leave behind: it checks the
 * addresses before anything is written, and takes back the files and
 * directories that this start created (never one that existed before).
 */

/** Why HOST:PORT cannot be listened on right now; undefined when it can. */
export async function listenProblem(hostPort: string): Promise<string | undefined> {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(hostPort);
  if (!match) return `"${hostPort}" is not HOST:PORT`;
  const host = match[1] ?? match[2] ?? '';
  const port = Number(match[3]);
  const server = createServer();
  return new Promise((done) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      done(describeListenError(hostPort, error));
    });
    server.listen({ host, port, exclusive: true }, () => {
      server.close(() => {
        done(undefined);
      });
    });
  });
}

function describeListenError(hostPort: string, error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'EADDRINUSE':
      return `cannot listen on ${hostPort}: the address is already in use (another server? pick another port)`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${hostPort}: no network interface of this machine has that address`;
    case 'EACCES':
      return `cannot listen on ${hostPort}: permission denied (ports below 1024 need privileges)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot listen on ${hostPort}: the host does not resolve`;
    default:
      return `cannot listen on ${hostPort}: ${error.message}`;
  }
}

/** Files and directories one start creates, to be removed if the start fails. */
export interface StartRollback {
  /** Notes that `path` is about to be created by this start, if it does not exist yet. */
  willCreate(path: string): void;
  /**
   * Notes an SQLite `-wal` or `-shm` file the database may create beside an
   * existing database: removed only while it holds nothing the database needs
   * (an `-shm` is an index SQLite rebuilds; a `-wal` only when empty).
   */
  willCreateScratch(path: string): void;
  /** Notes the missing directories on the way to `dir`, before it is created. */
  willCreateDirectory(dir: string): void;
  /** Removes what was noted, newest first (directories only when empty). */
  undo(): void;
}

export function createStartRollback(): StartRollback {
  const files: string[] = [];
  const scratch: string[] = [];
  const dirs: string[] = [];
  return {
    willCreate(path) {
      if (!existsSync(path)) files.push(path);
    },
    willCreateScratch(path) {
      if (!existsSync(path)) scratch.push(path);
    },
    willCreateDirectory(dir) {
      const missing: string[] = [];
      for (let d = resolve(dir); !existsSync(d); d = dirname(d)) missing.push(d);
      dirs.push(...missing);
    },
    undo() {
      for (const file of scratch) {
        const wal = file.endsWith('-wal');
        if (!wal || (existsSync(file) && statSync(file).size === 0)) rmSync(file, { force: true });
      }
      for (const file of files.reverse()) rmSync(file, { force: true });
      // Innermost first; one that something else filled is left alone.
      for (const dir of dirs) {
        try {
          rmdirSync(dir);
        } catch {
          return;
        }
      }
    },
  };
}
