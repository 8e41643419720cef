import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** The built `vigil` binary. */
export const VIGIL_MAIN = join(__dirname, '..', '..', 'src', 'main.js');

/** A child process whose stdout lines are collected and can be awaited. */
export interface Proc {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly stderr: string[];
  /** Resolves with the first stdout line (seen so far or later) matching `predicate`. */
  waitForLine(predicate: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  kill(signal: NodeJS.Signals): Promise<number | null>;
  /** Resolves with the exit code once the process has exited. */
  exited(): Promise<number | null>;
}

export function vigil(args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = spawn(process.execPath, [VIGIL_MAIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const stderr: string[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    for (const w of waiters.splice(0)) w();
  });
  createInterface({ input: child.stderr }).on('line', (line) => stderr.push(line));
  const exited = once(child, 'exit');

  return {
    child,
    lines,
    stderr,
    async waitForLine(predicate, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      let checked = 0;
      for (;;) {
        for (; checked < lines.length; checked += 1) {
          const line = lines[checked]!;
          if (predicate(line)) return line;
        }
        if (child.exitCode !== null) {
          throw new Error(
            `process exited (${child.exitCode}) before the line appeared: ${stderr.join('\n')}`,
          );
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0)
          throw new Error(
            `timed out; stdout so far:\n${lines.join('\n')}\nstderr:\n${stderr.join('\n')}`,
          );
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(remaining, 250));
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
    async exited() {
      if (child.exitCode !== null) return child.exitCode;
      const [code] = (await exited) as [number | null];
      return code;
    },
    async kill(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const [code] = (await exited) as [number | null];
      return code;
    },
  };
}

export { freePort } from './ports.js';
