import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { EtcdSettings } from '../../src/app.js';
import { tempDir } from './harness.js';
import { freePort } from './ports.js';

/**
 * Which store the e2e suite runs on: the embedded SQLite file (default) or,
 * with `VIGIL_TEST_STORE=etcd`, an etcd started once for the whole mocha
 * process (every harness gets its own key prefix, derived from its data
 * directory, so a harness restarted on the same directory finds its state).
 */
export const SUITE_STORE: 'sqlite' | 'etcd' =
  process.env['VIGIL_TEST_STORE'] === 'etcd' ? 'etcd' : 'sqlite';

/** True when etcd is what the suite runs on. */
export const onEtcd = SUITE_STORE === 'etcd';

/** Replicas of each harness's cluster on etcd (VIGIL_TEST_REPLICAS, default 3). */
export const SUITE_REPLICAS = Math.max(1, Number(process.env['VIGIL_TEST_REPLICAS'] ?? 3) || 3);

let shared: Promise<EtcdMember> | undefined;

/** True when the `etcd` binary (Debian package etcd-server) is installed. */
export function etcdInstalled(): boolean {
  return spawnSync('etcd', ['--version']).status === 0;
}

/** One etcd member started by a test: its client URL and PID, for faults by PID. */
export interface EtcdMember {
  readonly endpoints: string[];
  readonly pid: number;
  /** Its data directory (WAL and snapshots), for tests that read what etcd wrote to disk. */
  readonly dataDir: string;
  /** Kills it (SIGKILL) and removes its data directory. */
  stop(): void;
}

/** Starts a one-member etcd on free loopback ports (no fsync: tests only) and waits until healthy. */
export async function startEtcdMember(): Promise<EtcdMember> {
  if (!etcdInstalled()) {
    throw new Error('etcd is not installed: install the Debian package etcd-server');
  }
  const dir = tempDir('vigil-etcd-');
  const client = await freePort();
  const peer = await freePort();
  const clientUrl = `http://127.0.0.1:${client}`;
  const child: ChildProcess = spawn(
    'etcd',
    [
      '--name',
      'suite',
      '--data-dir',
      join(dir, 'data'),
      '--listen-client-urls',
      clientUrl,
      '--advertise-client-urls',
      clientUrl,
      '--listen-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-cluster',
      `suite=http://127.0.0.1:${peer}`,
      '--unsafe-no-fsync',
      '--logger',
      'zap',
      '--log-level',
      'error',
    ],
    { stdio: 'ignore' },
  );
  // The suite must not wait on etcd to end: mocha exits when its own work is
  // done, and the exit hook below then kills etcd by its PID.
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error('etcd did not start');
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stop);
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const response = await fetch(`${clientUrl}/health`);
      if (response.ok) return { endpoints: [clientUrl], pid, dataDir: join(dir, 'data'), stop };
    } catch {
      // Not up yet.
    }
    if (Date.now() > deadline) {
      stop();
      throw new Error('etcd did not become healthy within 15 s');
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The etcd settings of a harness on `dataDir`, when the suite runs on etcd. */
export async function suiteEtcdSettings(dataDir: string): Promise<EtcdSettings | undefined> {
  if (!onEtcd) return undefined;
  shared ??= startEtcdMember();
  const { endpoints } = await shared;
  return {
    endpoints,
    prefix: `t/${basename(dataDir)}/`,
    replicaId: `r-${basename(dataDir)}`,
    advertise: '127.0.0.1:0',
  };
}

/** The data directory of the suite's shared etcd, when the suite runs on etcd. */
export async function suiteEtcdDataDir(): Promise<string | undefined> {
  return shared ? (await shared).dataDir : undefined;
}
