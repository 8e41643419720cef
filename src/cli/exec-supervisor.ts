import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { ReloadAction, type Projection } from '../../gen/vigil/v1/projection.js';
import { backoffDelay, sleep } from '../client/backoff.js';
import type { ProjectionWatchEvent } from '../client/projection-watch.js';

/**
 * `vigil sidecar --exec -- CMD ARGS…`: runs the runtime as a child with its
 * projected environment (Vault-Agent style). The child starts only from a
 * projection: on a projection error it is not started (or keeps the
 * environment it has) and the error is reported. A new version is applied
 * by the reload policy: RESTART stops the child and starts it again, SIGNAL
 * sends the signal, NONE leaves it (the next start takes the new version).
 * A child that exits by itself is started again, with backoff.
 */

/** What the supervisor reports. */
export type SupervisorEvent =
  | { readonly type: 'child-started'; readonly pid: number; readonly configVersion: number }
  | {
      readonly type: 'child-exited';
      readonly code: number | null;
      readonly signal: NodeJS.Signals | null;
      readonly restartInMs: number | undefined;
    }
  | { readonly type: 'child-signalled'; readonly signal: string; readonly configVersion: number }
  | {
      readonly type: 'projection-error';
      readonly configVersion: number;
      readonly reason: string;
      readonly metadata: Readonly<Record<string, string>>;
      readonly message: string;
    };

export interface SupervisorOptions {
  readonly command: string;
  readonly args: readonly string[];
  /** The projection stream (the SDK's watchProjection). */
  readonly events: AsyncIterable<ProjectionWatchEvent>;
  readonly signal: AbortSignal;
  readonly onEvent: (event: SupervisorEvent) => void;
  /** How long a stopping child gets after SIGTERM before SIGKILL. */
  readonly stopGraceMs?: number;
}

export interface Supervisor {
  /** The version the running child has (0: none running yet). */
  applied(): number;
  /** The current projection error's reason, when the child could not start from the latest version. */
  problem(): string | undefined;
  /** Settles when the stream ended (or `signal` aborted) and the child was stopped. */
  readonly done: Promise<void>;
}

/** Variables of the sidecar's own environment the child inherits (so it can find its binaries). */
const INHERITED = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'USER', 'SHELL', 'SYSTEMROOT'];

/** The child's whole environment: the projection, plus a few basics; nothing else leaks in. */
export function childEnvironment(
  projection: Projection,
  parent: NodeJS.ProcessEnv,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of INHERITED) {
    const value = parent[name];
    if (value !== undefined) env[name] = value;
  }
  return { ...env, ...projection.env };
}

export function superviseChild(options: SupervisorOptions): Supervisor {
  const grace = options.stopGraceMs ?? 10_000;
  let child: ChildProcess | undefined;
  let running: Projection | undefined;
  let latest: Projection | undefined;
  let problem: string | undefined;
  let stopping = false;
  let crashes = 0;

  const start = (projection: Projection) => {
    const started = spawn(options.command, [...options.args], {
      env: childEnvironment(projection, process.env),
      stdio: 'inherit',
    });
    child = started;
    running = projection;
    started.once('error', () => {
      // Reported through 'exit'/'close' below; a spawn failure exits with code null.
    });
    started.once('exit', (code, signal) => {
      if (child !== started) return;
      child = undefined;
      if (stopping || options.signal.aborted) {
        options.onEvent({ type: 'child-exited', code, signal, restartInMs: undefined });
        return;
      }
      crashes += 1;
      const delay = backoffDelay(crashes, { baseMs: 500, maxMs: 30_000 });
      options.onEvent({ type: 'child-exited', code, signal, restartInMs: delay });
      void sleep(delay, options.signal).then(() => {
        if (!options.signal.aborted && !child && latest && problem === undefined) start(latest);
      });
    });
    if (started.pid !== undefined) {
      options.onEvent({
        type: 'child-started',
        pid: started.pid,
        configVersion: projection.configVersion,
      });
    }
  };

  const stopChild = async () => {
    const current = child;
    if (!current || current.exitCode !== null || current.signalCode !== null) return;
    stopping = true;
    const exited = once(current, 'exit');
    current.kill('SIGTERM');
    const timer = setTimeout(() => current.kill('SIGKILL'), grace);
    await exited;
    clearTimeout(timer);
    stopping = false;
  };

  const apply = async (projection: Projection) => {
    latest = projection;
    problem = undefined;
    if (!child) {
      crashes = 0;
      start(projection);
      return;
    }
    const action = projection.reloadPolicy?.action ?? ReloadAction.RELOAD_ACTION_RESTART;
    if (action === ReloadAction.RELOAD_ACTION_NONE) return;
    if (action === ReloadAction.RELOAD_ACTION_SIGNAL) {
      const signal = projection.reloadPolicy?.signal ?? 'SIGHUP';
      child.kill(signal as NodeJS.Signals);
      running = projection;
      options.onEvent({ type: 'child-signalled', signal, configVersion: projection.configVersion });
      return;
    }
    await stopChild();
    if (!options.signal.aborted) start(projection);
  };

  const done = (async () => {
    try {
      for await (const event of options.events) {
        if (options.signal.aborted) break;
        if (event.$case === 'projection') await apply(event.value);
        else if (event.$case === 'error') {
          problem = event.value.reason;
          options.onEvent({
            type: 'projection-error',
            configVersion: event.value.configVersion,
            reason: event.value.reason,
            metadata: event.value.metadata,
            message: event.value.message,
          });
        }
      }
    } finally {
      await stopChild();
    }
  })();

  return {
    applied: () => (child ? (running?.configVersion ?? 0) : 0),
    problem: () => problem,
    done,
  };
}
