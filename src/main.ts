#!/usr/bin/env node
import { parseArgs } from 'node:util';
import pino from 'pino';
import { startVigil } from './app.js';
import { loadOrCreateControlToken } from './cli/control-token.js';
import { SERVE_SETTINGS, resolveServeConfig } from './cli/serve-config.js';

/** The `vigil` command. */

function serveHelp(): string {
  const rows = SERVE_SETTINGS.map(
    (s) =>
      `  --${s.flag.padEnd(26)} ${s.description}\n  ${''.padEnd(28)} [env ${s.env}, default ${s.defaultText}]`,
  );
  return [
    'Usage: vigil serve [flags]',
    '',
    'Runs the Vigil gRPC server with its embedded SQLite database.',
    '',
    'Flags (flags override environment, which overrides defaults):',
    ...rows,
    '',
    'Control token: VIGIL_CONTROL_TOKEN, or generated on first start into DATA_DIR/control-token (mode 0600).',
  ].join('\n');
}

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ...Object.fromEntries(SERVE_SETTINGS.map((s) => [s.flag, { type: 'string' as const }])),
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${serveHelp()}\n`);
    return 0;
  }
  const flags = Object.fromEntries(
    Object.entries(values as Record<string, unknown>).filter(
      (e): e is [string, string] => typeof e[1] === 'string',
    ),
  );
  const resolved = resolveServeConfig(flags, process.env);
  if (!resolved.config) {
    for (const error of resolved.errors) process.stderr.write(`vigil serve: ${error}\n`);
    return 2;
  }
  const { settings, logLevel } = resolved.config;
  const logger = pino({ name: 'vigil', level: logLevel });
  let controlToken = resolved.config.controlToken;
  if (controlToken === undefined) {
    const loaded = loadOrCreateControlToken(settings.dataDir);
    controlToken = loaded.token;
    logger.info(
      { file: loaded.file, created: loaded.created },
      loaded.created ? 'generated a control token' : 'using the control token file',
    );
  }
  const vigil = await startVigil({ ...settings, controlTokens: [controlToken] }, { logger });

  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info({ signal }, 'shutting down');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await vigil.stop();
  return 0;
}

const USAGE = `Usage: vigil <command> [flags]

Commands:
  serve    run the Vigil server (vigil serve --help lists its settings)
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`vigil: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`vigil: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
