import pino from 'pino';
import { startVigil } from '../app.js';
import { UsageError, parse, untilSignal } from './common.js';
import type { ControlTokenSpec } from '../domain/control-auth.js';
import { hashToken } from '../domain/tokens.js';
import { loadOrCreateControlToken } from './control-token.js';
import { readControlTokensFile } from './control-tokens-file.js';
import { SERVE_SETTINGS, resolveServeConfig } from './serve-config.js';

export function serveHelp(): string {
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
    'Control tokens: VIGIL_CONTROL_TOKEN (admin) and/or --control-tokens FILE; with neither, one is',
    'generated on first start into DATA_DIR/control-token (mode 0600).',
  ].join('\n');
}

export async function serveCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    ...Object.fromEntries(SERVE_SETTINGS.map((s) => [s.flag, { type: 'string' as const }])),
    help: { type: 'boolean', short: 'h' },
  });
  if (values['help'] === true) {
    process.stdout.write(`${serveHelp()}\n`);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError('vigil serve takes no arguments');
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
  const controlTokens: ControlTokenSpec[] = [];
  const { controlToken, controlTokensFile } = resolved.config;
  if (controlToken !== undefined) {
    controlTokens.push({ name: 'env', scope: 'admin', hash: hashToken(controlToken) });
  }
  if (controlTokensFile !== undefined) {
    const { specs, errors } = readControlTokensFile(controlTokensFile);
    if (errors.length > 0) {
      for (const error of errors) process.stderr.write(`vigil serve: --control-tokens: ${error}\n`);
      return 2;
    }
    controlTokens.push(...specs);
    logger.info(
      { file: controlTokensFile, names: specs.map((t) => t.name) },
      'loaded control tokens',
    );
  }
  if (controlTokens.length === 0) {
    const loaded = loadOrCreateControlToken(settings.dataDir);
    controlTokens.push({ name: 'generated', scope: 'admin', hash: hashToken(loaded.token) });
    logger.info(
      { file: loaded.file, created: loaded.created },
      loaded.created ? 'generated a control token' : 'using the control token file',
    );
  }
  const stop = untilSignal();
  const vigil = await startVigil({ ...settings, controlTokens }, { logger });
  const signal = await stop.done;
  logger.info({ signal }, 'shutting down');
  const firstSignalAt = Date.now();
  // A second signal cuts the graceful stop short. One arriving at once is the
  // same stop delivered twice (Ctrl-C reaches npm and this process, and npm
  // forwards it; systemd signals the whole control group), not a second request.
  const force = () => {
    if (Date.now() - firstSignalAt < DUPLICATE_SIGNAL_MS) return;
    logger.warn('second signal: exiting now');
    process.exit(1);
  };
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  // Health NOT_SERVING, watch streams end UNAVAILABLE, unary calls get 4 s, the database closes last.
  await vigil.stop(SHUTDOWN_GRACE_MS);
  process.off('SIGINT', force);
  process.off('SIGTERM', force);
  // Everything is closed; do not let a stray library timer hold the exit up.
  setTimeout(() => process.exit(0), 500).unref();
  return 0;
}

/** A signal this soon after the first is the same request delivered twice. */
const DUPLICATE_SIGNAL_MS = 1_000;

/** In-flight calls get this long; with the rest of the stop, exit comes within 5 s. */
const SHUTDOWN_GRACE_MS = 4_000;
