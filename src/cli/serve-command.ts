import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { LOG_REDACTIONS, VIGIL_VERSION, startVigil, type RunningVigil } from '../app.js';
import { UsageError, parse, untilSignal } from './common.js';
import type { ControlTokenSpec } from '../domain/control-auth.js';
import { hashToken } from '../domain/tokens.js';
import {
  CorruptDatabaseError,
  UnwritableDatabaseError,
  createPrivateDirectory,
} from '../storage/database.js';
import { CONTROL_TOKEN_FILE, loadOrCreateControlToken } from './control-token.js';
import { readControlTokensFile } from './control-tokens-file.js';
import { DataDirLockedError, LOCK_FILE, lockDataDir, type DataDirLock } from './data-dir-lock.js';
import {
  SERVE_SETTINGS,
  describeSettings,
  resolveServeConfig,
  settingSource,
} from './serve-config.js';
import { createStartRollback, listenProblem } from './start-guard.js';

const DATABASE_FILE = 'vigil.db';

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
  const logger = pino({ name: 'vigil', level: logLevel, redact: [...LOG_REDACTIONS] });
  const fail = (line: string): number => {
    process.stderr.write(`vigil serve: ${line}\n`);
    return 1;
  };
  const controlTokens: ControlTokenSpec[] = [];
  const { controlToken, controlTokensFile } = resolved.config;
  if (controlToken !== undefined) {
    controlTokens.push({ name: 'env', scope: 'admin', hash: hashToken(controlToken) });
  }
  if (controlTokensFile !== undefined) {
    const { specs, errors } = readControlTokensFile(controlTokensFile);
    if (errors.length > 0) {
      const source = settingSource('control-tokens', flags, process.env);
      for (const error of errors) process.stderr.write(`vigil serve: ${source}: ${error}\n`);
      return 2;
    }
    controlTokens.push(...specs);
    logger.info(
      { file: controlTokensFile, names: specs.map((t) => t.name) },
      'loaded control tokens',
    );
  }
  // Nothing is written before the addresses are known to be free.
  for (const [flag, address] of [
    ['listen', settings.listen],
    ['metrics-listen', settings.metricsListen],
  ] as const) {
    if (address === '') continue;
    const problem = await listenProblem(address);
    if (problem !== undefined)
      return fail(`${settingSource(flag, flags, process.env)}: ${problem}`);
  }
  // The data directory holds the database (SQLite mode) and the generated control token.
  const usesDataDir = settings.etcd === undefined || controlTokens.length === 0;
  const rollback = createStartRollback();
  let lock: DataDirLock | undefined;
  let tokenFile: { file: string; created: boolean } | undefined;
  const undo = () => {
    lock?.release();
    rollback.undo();
  };
  try {
    if (usesDataDir) {
      rollback.willCreateDirectory(settings.dataDir);
      createPrivateDirectory(settings.dataDir);
      rollback.willCreate(join(settings.dataDir, LOCK_FILE));
      lock = lockDataDir(settings.dataDir);
    }
    if (controlTokens.length === 0) {
      rollback.willCreate(join(settings.dataDir, CONTROL_TOKEN_FILE));
      const loaded = loadOrCreateControlToken(settings.dataDir);
      controlTokens.push({ name: 'generated', scope: 'admin', hash: hashToken(loaded.token) });
      tokenFile = loaded;
    }
    if (settings.etcd === undefined) {
      const db = join(settings.dataDir, DATABASE_FILE);
      // A database this start creates goes again if the start fails; an existing one stays.
      if (existsSync(db)) {
        for (const suffix of ['-wal', '-shm']) rollback.willCreateScratch(db + suffix);
      } else {
        for (const suffix of ['', '-wal', '-shm']) rollback.willCreate(db + suffix);
      }
    }
  } catch (error) {
    undo();
    return fail(describeStartFailure(error, settings.dataDir, flags));
  }
  const stop = untilSignal();
  // Signals after the first, from now until the exit, with a listener all along: one arriving
  // while no listener is left (untilSignal drops its own at the first) would kill the process
  // by that signal, and npm would then exit by it too. One arriving at once is the same stop
  // delivered twice (Ctrl-C reaches npm and this process, and npm forwards it; systemd
  // signals the whole control group), not a second request; a later one, while the graceful
  // stop runs, cuts it short; once everything is closed, none matters.
  let firstSignalAt: number | undefined;
  let closed = false;
  const again = () => {
    if (firstSignalAt === undefined) {
      firstSignalAt = Date.now();
      return;
    }
    if (closed || Date.now() - firstSignalAt < DUPLICATE_SIGNAL_MS) return;
    logger.warn('second signal: exiting now');
    process.exit(1);
  };
  process.on('SIGINT', again);
  process.on('SIGTERM', again);
  let vigil: RunningVigil;
  try {
    vigil = await startVigil({ ...settings, controlTokens }, { logger });
  } catch (error) {
    process.off('SIGINT', again);
    process.off('SIGTERM', again);
    undo();
    return fail(describeStartFailure(error, settings.dataDir, flags));
  }
  logger.info(
    { version: VIGIL_VERSION, settings: describeSettings(settings, logLevel) },
    'started',
  );
  if (tokenFile) {
    logger.info(
      { file: tokenFile.file, created: tokenFile.created },
      tokenFile.created ? 'generated a control token' : 'using the control token file',
    );
  }
  const signal = await stop.done;
  logger.info({ signal }, 'shutting down');
  // Health NOT_SERVING, watch streams end UNAVAILABLE, unary calls get 4 s, the database closes last.
  await vigil.stop(SHUTDOWN_GRACE_MS);
  lock?.release();
  // `again` stays: signal listeners never hold the exit up.
  closed = true;
  // Everything is closed; do not let a stray library timer hold the exit up.
  setTimeout(() => process.exit(0), 500).unref();
  return 0;
}

/** A signal this soon after the first is the same request delivered twice. */
const DUPLICATE_SIGNAL_MS = 1_000;

/** In-flight calls get this long; with the rest of the stop, exit comes within 5 s. */
const SHUTDOWN_GRACE_MS = 4_000;

/** One line saying why the start failed, naming the setting or file to fix. */
function describeStartFailure(
  error: unknown,
  dataDir: string,
  flags: Readonly<Record<string, string>>,
): string {
  if (
    error instanceof DataDirLockedError ||
    error instanceof CorruptDatabaseError ||
    error instanceof UnwritableDatabaseError
  ) {
    return error.message;
  }
  const e = error as NodeJS.ErrnoException;
  const message = (e.message || String(error)).replace(/\s*\n\s*/g, '; ');
  if (e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS') {
    return `${settingSource('data-dir', flags, process.env)}: cannot write in ${dataDir} (${message}); it must be writable by the user running Vigil`;
  }
  // grpc-js reports a lost bind race in a sentence of its own.
  const bind = /(E[A-Z]+): ([^\]]+)\]?$/.exec(message);
  if (/No address added/.test(message) && bind) {
    return `${settingSource('listen', flags, process.env)}: cannot listen: ${bind[2] ?? bind[1] ?? ''}`;
  }
  return message;
}
