#!/usr/bin/env node
import { VIGIL_VERSION } from './app.js';
import { backupCommand, restoreCommand } from './cli/backup-command.js';
import { UsageError, describeFailure } from './cli/common.js';
import {
  configCommand,
  keyringCommand,
  projectionCommand,
  secretsCommand,
} from './cli/projection-command.js';
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
  sidecar     register and heartbeat for one runtime (--exec: and run it)
  secrets     set, delete, list a workspace's secrets (values from a file or stdin)
  config      set a workspace's runtime config
  projection  explain or get a workspace's runtime projection
  keyring     rotate the secrets keyring, remove or list its keys
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
    case 'secrets':
      return secretsCommand(rest, process.env);
    case 'config':
      return configCommand(rest, process.env);
    case 'projection':
      return projectionCommand(rest, process.env);
    case 'keyring':
      return keyringCommand(rest, process.env);
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
