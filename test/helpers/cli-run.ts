import { once } from 'node:events';
import { SERVE_SETTINGS } from '../../src/cli/serve-config.js';
import { vigil, type Proc } from './processes.js';

/** Runs of the built `vigil` binary for the CLI suites. */

/**
 * An environment overlay that unsets every VIGIL_* variable the command reads,
 * so a developer's shell cannot change what a test sees. Tests add back the
 * ones they mean to set.
 */
export const CLEAN_ENV: NodeJS.ProcessEnv = Object.fromEntries(
  [
    'VIGIL_CONTROL_TOKEN',
    'VIGIL_SERVER',
    'VIGIL_DATA_DIR',
    'VIGIL_LOG_LEVEL',
    ...SERVE_SETTINGS.map((s) => s.env),
  ].map((name) => [name, undefined]),
);

/** How a finished command ended and what it printed, line by line. */
export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: readonly string[];
  readonly stderr: readonly string[];
}

/**
 * Runs `vigil ...args` to completion. Resolves once the process has exited
 * and its output streams are closed, so every line it printed is in. A
 * command still running after `timeoutMs` is SIGKILLed (and then fails the
 * caller's exit-code assertion).
 */
export async function runVigil(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 15_000,
): Promise<CliResult> {
  const proc = vigil(args, { ...CLEAN_ENV, ...env });
  // 'close' comes after 'exit' and after stdout/stderr have ended.
  const closed = once(proc.child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  const timer = setTimeout(() => {
    proc.child.kill('SIGKILL');
  }, timeoutMs);
  try {
    const [code, signal] = await closed;
    return { code, signal, stdout: proc.lines, stderr: proc.stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** A running `vigil serve` and the addresses its "listening" log line reported. */
export interface Served {
  readonly proc: Proc;
  /** HOST:PORT of the gRPC server. */
  readonly address: string;
  readonly port: number;
  /** URL of /metrics, or 'off'. */
  readonly metrics: string;
}

/** Starts `vigil serve ...args` and waits for its "listening" log line. */
export async function startServe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const proc = vigil(['serve', ...args], { ...CLEAN_ENV, ...env });
  try {
    const line = await proc.waitForLine((l) => l.includes('"listening"'));
    const entry = JSON.parse(line) as { address: string; metrics: string };
    return {
      proc,
      address: entry.address,
      port: Number(entry.address.split(':').pop()),
      metrics: entry.metrics,
    };
  } catch (error) {
    await proc.kill('SIGKILL');
    throw error;
  }
}
