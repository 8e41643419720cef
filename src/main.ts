#!/usr/bin/env node
import { VIGIL_VERSION } from './app.js';
import { backupCommand, restoreCommand } from './cli/backup-command.js';
import { UsageError, describeFailure } from './cli/common.js';
import { serveCommand } from './cli/serve-command.js';
import { sidecarCommand } from './cli/sidecar-command.js';
import { watchCommand } from './cli/watch-command.js';
import { workspaceCommand } from './cli/workspace-command.js';

/** The `vigil` command: the server, an operator's client, and a sidecar. */

const USAGE = `Usage: vigil <command> [flags]

Commands:
  serve       run the Vigil server
  workspace   create, get, list, delete workspaces and rotate their tokens
  watch       follow status transitions as they commit
  sidecar     register and heartbeat for one runtime
  backup      copy the database consistently while the server runs
  restore     put a backup in place (server stopped)
  version     print this build's version (also --version)

Run "vigil <command> --help" for a command's flags.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serveCommand(rest);
    case 'workspace':
      return workspaceCommand(rest, process.env);
    case 'watch':
      return watchCommand(rest, process.env);
    case 'sidecar':
      return sidecarCommand(rest, process.env);
    case 'backup':
      return backupCommand(rest, process.env);
    case 'restore':
      return restoreCommand(rest, process.env);
    case '--version':
    case '-v':
    case 'version':
      process.stdout.write(`vigil ${VIGIL_VERSION}\n`);
      return 0;
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    case undefined:
      process.stderr.write(`${USAGE}\n`);
      return 2;
    default:
      throw new UsageError(`unknown command "${command}"; run "vigil --help"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`vigil: ${describeFailure(error)}\n`);
    process.exitCode = error instanceof UsageError ? 2 : 1;
  },
);
