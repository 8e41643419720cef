import { fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { freePort } from '../../test/helpers/ports.js';
import type { TaskResults, WorkerReply, WorkerRequest, WorkerTask } from './protocol.js';
import { healthServing } from './wire.js';

export { freePort };

/**
 * Child processes of the bench: the real `vigil serve`, the bare baseline
 * server and the load workers. Every child is tracked and killed when the
 * driver exits, however it exits.
 */

const DIST = join(__dirname, '..', '..');
const VIGIL_MAIN = join(DIST, 'src', 'main.js');
const BASELINE_MAIN = join(DIST, 'bench', 'baseline-server.js');
const WORKER_MAIN = join(DIST, 'bench', 'load-worker.js');

const live = new Set<ChildProcess>();

process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

function track<T extends ChildProcess>(child: T): T {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

export function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child is gone. */
export async function stopChild(child: ChildProcess, graceMs = 8_000): Promise<void> {
  if (exited(child)) return;
  const gone = new Promise<void>((resolve) =>
    child.once('exit', () => {
      resolve();
    }),
  );
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await gone;
  clearTimeout(timer);
}

/** Kills every child still running (on a failure path). */
export async function killAll(): Promise<void> {
  await Promise.all([...live].map((child) => stopChild(child, 3_000)));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** VmRSS and VmHWM of a process, in MiB, from /proc/<pid>/status. */
export function memoryOf(pid: number): { rssMiB: number; peakMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  return { rssMiB: kb('VmRSS') / 1024, peakMiB: kb('VmHWM') / 1024 };
}

/** CPU time (user + system) a process has used so far, ms; assumes USER_HZ = 100. */
export function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** CPU time the whole machine spent busy so far, ms (all cores, from /proc/stat). */
function machineBusyMs(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  // idle and iowait are not busy.
  return (total - (ticks[3] ?? 0) - (ticks[4] ?? 0)) * 10;
}

/** CPU used by the driver and every live child of this bench, ms. */
function benchCpuMs(): number {
  const own = process.cpuUsage();
  let total = (own.user + own.system) / 1000;
  for (const child of live) {
    if (child.pid === undefined || exited(child)) continue;
    try {
      total += cpuMsOf(child.pid);
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/**
 * Starts measuring CPU used on this machine by processes that are not part of
 * the bench (other builds and tests share the cores and skew every number).
 * The returned function gives that foreign load as a share of one core.
 * Children that start or exit in between make it approximate.
 */
export function watchForeignLoad(): () => number {
  const started = performance.now();
  const busy = machineBusyMs();
  const ours = benchCpuMs();
  return () => {
    const wall = performance.now() - started;
    const foreign = machineBusyMs() - busy - (benchCpuMs() - ours);
    return Math.max(0, foreign / wall);
  };
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Spawns a tracked child (killed with the others when the driver exits) with
 * its stdout and stderr appended to `logFile`.
 */
export function spawnLogged(
  command: string,
  args: readonly string[],
  logFile: string,
  env: NodeJS.ProcessEnv = process.env,
): ChildProcess {
  const fd = openSync(logFile, 'a');
  try {
    return track(spawn(command, args, { env, stdio: ['ignore', fd, fd] }));
  } finally {
    closeSync(fd);
  }
}

export interface VigilServer {
  readonly address: string;
  readonly pid: number;
  /** HOST:PORT of /metrics, when started with `metrics: true`. */
  readonly metricsAddress: string | undefined;
  readonly logFile: string;
  /** Spawn to the first SERVING health check, ms. */
  readonly coldStartMs: number;
  /** Whether the process is still running. */
  alive(): boolean;
  stop(): Promise<void>;
}

export interface VigilOptions {
  readonly dataDir: string;
  readonly controlToken: string;
  /** Extra `vigil serve` flags, e.g. ['--heartbeat-interval', '2s']. */
  readonly flags?: readonly string[];
  readonly readyTimeoutMs?: number;
  /** Log file name inside the data directory. */
  readonly logName?: string;
  /** Serve Prometheus metrics on a free 127.0.0.1 port (otherwise `--metrics-listen off`). */
  readonly metrics?: boolean;
  /** node options before the script, e.g. `--cpu-prof`. */
  readonly nodeFlags?: readonly string[];
  /** SIGTERM to SIGKILL on stop (default 8 s): a profiled server needs time to write its profile. */
  readonly stopGraceMs?: number;
}

/**
 * Spawns `node dist/src/main.js serve` on 127.0.0.1:<free port> and polls
 * grpc.health.v1 Check on a fresh connection every ~10 ms until it answers
 * SERVING. Output goes to a log file in the data directory.
 */
export async function startVigil(options: VigilOptions): Promise<VigilServer> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const metricsAddress = options.metrics ? `127.0.0.1:${await freePort()}` : undefined;
  const logFile = join(options.dataDir, options.logName ?? 'vigil.log');
  const args = [
    ...(options.nodeFlags ?? []),
    VIGIL_MAIN,
    'serve',
    '--listen',
    address,
    '--data-dir',
    options.dataDir,
    '--metrics-listen',
    metricsAddress ?? 'off',
    '--log-level',
    'warn',
    ...(options.flags ?? []),
  ];
  const spawnedAt = performance.now();
  const child = spawnLogged(process.execPath, args, logFile, {
    ...process.env,
    VIGIL_CONTROL_TOKEN: options.controlToken,
  });
  const deadline = spawnedAt + (options.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (exited(child)) {
      throw new Error(
        `vigil serve exited (code ${child.exitCode}) before SERVING; log ${logFile}:\n${tail(logFile)}`,
      );
    }
    const attemptStarted = performance.now();
    if (await healthServing(address, 250)) break;
    if (performance.now() > deadline) {
      await stopChild(child);
      throw new Error(`vigil serve not SERVING after ${options.readyTimeoutMs ?? 30_000} ms`);
    }
    await sleep(10 - (performance.now() - attemptStarted));
  }
  const coldStartMs = performance.now() - spawnedAt;
  const pid = child.pid ?? -1;
  return {
    address,
    pid,
    metricsAddress,
    logFile,
    coldStartMs,
    alive: () => !exited(child),
    stop: () => stopChild(child, options.stopGraceMs),
  };
}

export interface BaselineServer {
  readonly address: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/** Forks the bare grpc-js baseline server and waits for its "listening" line. */
export async function startBaseline(): Promise<BaselineServer> {
  const port = await freePort();
  const child = track(
    fork(BASELINE_MAIN, [`127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] }),
  );
  const stdout = child.stdout;
  if (!stdout) throw new Error('baseline server has no stdout');
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error('baseline server did not start'));
    }, 15_000);
    const lines = createInterface({ input: stdout });
    lines.on('line', (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: unknown; address?: unknown };
        if (entry.msg === 'listening' && typeof entry.address === 'string') {
          clearTimeout(timer);
          resolve(entry.address);
        }
      } catch {
        // not a JSON line
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`baseline server exited (code ${code})`));
    });
  });
  return { address, pid: child.pid ?? -1, stop: () => stopChild(child) };
}

export interface LoadWorker {
  readonly pid: number;
  run<K extends WorkerTask['kind']>(
    task: Extract<WorkerTask, { kind: K }>,
    timeoutMs: number,
  ): Promise<TaskResults[K]>;
  stop(): Promise<void>;
}

/** Forks one load-worker process (advanced serialization, so typed arrays pass as is). */
export function startWorker(): LoadWorker {
  const child = track(
    fork(WORKER_MAIN, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  );
  let nextId = 1;
  const waiting = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: Error) => void }
  >();
  child.on('message', (message: WorkerReply) => {
    const waiter = waiting.get(message.id);
    if (!waiter) return;
    waiting.delete(message.id);
    if (message.ok) waiter.resolve(message.result);
    else waiter.reject(new Error(`load worker ${child.pid ?? '?'}: ${message.error}`));
  });
  child.once('exit', (code, signal) => {
    for (const waiter of waiting.values()) {
      waiter.reject(new Error(`load worker exited (code ${code}, signal ${signal})`));
    }
    waiting.clear();
  });
  return {
    pid: child.pid ?? -1,
    run<K extends WorkerTask['kind']>(task: Extract<WorkerTask, { kind: K }>, timeoutMs: number) {
      if (exited(child)) return Promise.reject(new Error('load worker is not running'));
      const id = nextId;
      nextId += 1;
      return new Promise<TaskResults[K]>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`load worker task ${task.kind} timed out after ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(id, {
          resolve: (value) => {
            clearTimeout(timer);
            resolve(value as TaskResults[K]);
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          },
        });
        const request: WorkerRequest = { id, task };
        child.send(request);
      });
    },
    stop: () => stopChild(child, 3_000),
  };
}
