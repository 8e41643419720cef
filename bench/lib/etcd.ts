import { spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { get } from 'node:http';
import { delimiter, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Etcd3 } from 'etcd3';
import { exited, freePort, sleep, spawnLogged, stopChild } from './children.js';
import { mapLimit } from './context.js';

/**
 * etcd as a peer for the heartbeat bench: a single member started by the bench
 * on 127.0.0.1 ports of its own, with a data directory of its own, killed by
 * PID at the end. The `etcd3` client grants and inspects leases; keepalives
 * are driven by the load workers over long-lived LeaseKeepAlive streams.
 */

export const ETCD_MISSING = 'etcd not installed (apt-get install etcd-server)';

export const LEASE_KEEPALIVE_PATH = '/etcdserverpb.Lease/LeaseKeepAlive';

/** The etcd binary on PATH (or /usr/bin/etcd), or undefined. */
export function findEtcd(): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/bin', '/usr/local/bin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, 'etcd');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface EtcdServer {
  /** HOST:PORT of the client (gRPC) listener. */
  readonly address: string;
  readonly pid: number;
  readonly version: string;
  /** Flags the bench passed beyond addresses and the data directory. */
  readonly tuning: readonly string[];
  readonly logFile: string;
  alive(): boolean;
  stop(): Promise<void>;
}

function healthy(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = get(`http://${address}/health`, { timeout: 500 }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      response.on('end', () => {
        resolve(response.statusCode === 200 && /"health"\s*:\s*"true"/.test(body));
      });
      response.on('error', () => {
        resolve(false);
      });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => {
      resolve(false);
    });
  });
}

/** Starts one etcd member and waits until /health says true. */
export async function startEtcd(binary: string, dataDir: string): Promise<EtcdServer> {
  const clientPort = await freePort();
  const peerPort = await freePort();
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  // etcd prints its help on stderr, its version on stdout: read both.
  const output = (flag: string) => {
    const result = spawnSync(binary, [flag], { encoding: 'utf8', timeout: 10_000 });
    return `${result.stdout}${result.stderr}`;
  };
  const help = output('--help');
  const version = /etcd Version: (\S+)/.exec(output('--version'))?.[1];
  // --unsafe-no-fsync exists from etcd 3.5 on; 3.4 has no such flag. Keepalives do
  // not touch the disk either way (renewals are leader-local, not raft entries);
  // only the lease grants before the run are written.
  const tuning = [
    ...(help.includes('--unsafe-no-fsync') ? ['--unsafe-no-fsync'] : []),
    '--logger',
    'zap',
    '--log-level',
    'warn',
  ];
  const logFile = join(dataDir, 'etcd.log');
  const child: ChildProcess = spawnLogged(
    binary,
    [
      '--name',
      'bench',
      '--data-dir',
      join(dataDir, 'data'),
      '--listen-client-urls',
      client,
      '--advertise-client-urls',
      client,
      '--listen-peer-urls',
      peer,
      '--initial-advertise-peer-urls',
      peer,
      '--initial-cluster',
      `bench=${peer}`,
      '--initial-cluster-state',
      'new',
      ...tuning,
    ],
    logFile,
  );
  const address = `127.0.0.1:${clientPort}`;
  const deadline = performance.now() + 30_000;
  while (!(await healthy(address))) {
    if (exited(child)) throw new Error(`etcd exited (code ${child.exitCode}); log ${logFile}`);
    if (performance.now() > deadline) {
      await stopChild(child);
      throw new Error(`etcd not healthy after 30 s; log ${logFile}`);
    }
    await sleep(50);
  }
  return {
    address,
    pid: child.pid ?? -1,
    version: version ?? 'unknown',
    tuning,
    logFile,
    alive: () => !exited(child),
    stop: () => stopChild(child),
  };
}

/** An etcd3 client on the member (for grants and checks, not for the load). */
export function etcdClient(address: string): Etcd3 {
  return new Etcd3({ hosts: `http://${address}` });
}

/** Grants `count` leases of `ttlSeconds`; resolves with their IDs (decimal strings). */
export async function grantLeases(
  client: Etcd3,
  count: number,
  ttlSeconds: number,
): Promise<string[]> {
  const indexes = Array.from({ length: count }, (_, i) => i);
  return mapLimit(indexes, 64, async () => {
    const granted = await client.leaseClient.leaseGrant({ TTL: ttlSeconds });
    return granted.ID;
  });
}

/** Remaining TTL (s) of each lease, as etcd reports it. */
export async function leaseTtls(client: Etcd3, ids: readonly string[]): Promise<number[]> {
  return mapLimit(ids, 8, async (id) => {
    const info = await client.leaseClient.leaseTimeToLive({ ID: id });
    return Number(info.TTL);
  });
}
