import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import {
  DEFAULT_SETTINGS,
  startVigil,
  type EtcdSettings,
  type RunningVigil,
  type VigilSettings,
} from '../../src/app.js';
import { hashToken } from '../../src/domain/tokens.js';
import type { HostResolver } from '../../src/egress/url-policy.js';
import { createManualClock, type ManualClock } from './manual-clock.js';
import { createClients } from './rpc.js';
import { SUITE_REPLICAS, suiteEtcdSettings } from './suite-store.js';

export const CONTROL_TOKEN = 'vgc_test-control-token';

/** Host names the fake resolver knows; anything else does not resolve. */
export const fakeResolver: HostResolver = (host) => {
  const known: Record<string, string[]> = {
    'runtime.internal': ['10.1.2.3'],
    localhost: ['127.0.0.1'],
    'metadata.evil': ['169.254.169.254'],
  };
  const addresses = known[host];
  return addresses ? Promise.resolve(addresses) : Promise.reject(new Error(`ENOTFOUND ${host}`));
};

export function tempDir(prefix = 'vigil-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface Harness {
  readonly vigil: RunningVigil;
  /** The etcd the server runs on, when the suite runs on etcd (VIGIL_TEST_STORE=etcd). */
  readonly etcd: EtcdSettings | undefined;
  readonly clock: ManualClock;
  readonly dataDir: string;
  readonly clients: ReturnType<typeof createClients>;
  /** The gRPC port of each replica (one in SQLite mode), for calls to one replica in particular. */
  readonly ports: readonly number[];
  /** Stops the server (the data directory stays). */
  stop(): Promise<void>;
  /** Stops the server and removes its data directory. */
  dispose(): Promise<void>;
}

export interface HarnessOptions {
  readonly dataDir?: string;
  readonly clock?: ManualClock;
  readonly resolveHost?: HostResolver;
  readonly settings?: Partial<VigilSettings>;
  /** Where log lines go (default: nowhere, unless VIGIL_TEST_LOG names a level). */
  readonly logger?: pino.Logger;
  /**
   * On etcd, how many replicas (default SUITE_REPLICAS). Suites about one
   * process's own counters (metrics, store requests, per-replica limits) ask for 1.
   */
  readonly replicas?: number;
}

/**
 * The servers' capabilities as one: sweeps and flushes run on every replica
 * (each does its own share: the workspaces it owns, and the leader's work on
 * the leader); everything else is the first replica's.
 */
function asOne(replicas: readonly RunningVigil[]): RunningVigil {
  const [first] = replicas;
  if (!first) throw new Error('no replica');
  if (replicas.length === 1) return first;
  const { useCases } = first;
  return {
    ...first,
    useCases: {
      ...useCases,
      liveness: {
        ...useCases.liveness,
        async sweep() {
          const committed = [];
          for (const r of replicas) committed.push(...(await r.useCases.liveness.sweep()));
          return committed;
        },
        async flush(all) {
          let written = 0;
          for (const r of replicas) written += await r.useCases.liveness.flush(all);
          return written;
        },
      },
      tokens: {
        ...useCases.tokens,
        async flushUsage(all) {
          for (const r of replicas) await r.useCases.tokens.flushUsage(all);
        },
      },
    },
    async stop(graceMs) {
      await Promise.all(replicas.map((r) => r.stop(graceMs)));
    },
  };
}

/**
 * A real Vigil on 127.0.0.1:0 with a real SQLite file, plus generated clients.
 * With `VIGIL_TEST_STORE=etcd` it is a cluster of SUITE_REPLICAS replicas on
 * one etcd prefix, and the clients call them in turn.
 */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const dataDir = options.dataDir ?? tempDir();
  const clock = options.clock ?? createManualClock();
  const etcd = options.settings?.etcd ?? (await suiteEtcdSettings(dataDir));
  const count = etcd && !options.settings?.etcd ? (options.replicas ?? SUITE_REPLICAS) : 1;
  const replicas: RunningVigil[] = [];
  try {
    for (let i = 0; i < count; i += 1) replicas.push(await startReplica(i));
  } catch (error) {
    await Promise.all(replicas.map((r) => r.stop(0)));
    throw error;
  }
  async function startReplica(i: number): Promise<RunningVigil> {
    const own = i === 0 ? dataDir : join(dataDir, `replica-${i}`);
    mkdirSync(own, { recursive: true });
    // A test's own address goes to the first replica; the others take any port
    // (each advertises the port it bound: replicas forward to each other).
    const listen = (i === 0 ? options.settings?.listen : undefined) ?? '127.0.0.1:0';
    return startVigil(
      {
        ...DEFAULT_SETTINGS,
        metricsListen: '',
        // Tests that are not about it send heartbeats faster than a runtime would.
        heartbeatRateLimit: undefined,
        registerRateLimit: undefined,
        controlTokens: [{ name: 'test', scope: 'admin', hash: hashToken(CONTROL_TOKEN) }],
        // Sweeps are driven by the tests through the registry.
        sweepIntervalMs: 3_600_000,
        progressIntervalMs: 60_000,
        ...options.settings,
        // Replicas of one cell share one keyring: each unwraps data keys any replica wrapped.
        ...(i > 0 && options.settings?.secretsKeyring === undefined
          ? { secretsKeyring: join(dataDir, 'secrets-keyring') }
          : {}),
        dataDir: own,
        ...(etcd
          ? {
              etcd: {
                ...etcd,
                ...(count === 1 ? {} : { replicaId: `${etcd.replicaId}-${i}`, advertise: listen }),
              },
            }
          : {}),
        listen,
        ...(i === 0 ? {} : { metricsListen: '' }),
      },
      {
        clock,
        resolveHost: options.resolveHost ?? fakeResolver,
        random: () => 0.5,
        logger: options.logger ?? pino({ level: process.env['VIGIL_TEST_LOG'] ?? 'silent' }),
      },
    );
  }
  const vigil = asOne(replicas);
  const clients = createClients(replicas.map((r) => r.port));
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    clients.close();
    await vigil.stop(1_000);
  };
  return {
    vigil,
    etcd,
    clock,
    dataDir,
    clients,
    ports: replicas.map((r) => r.port),
    stop,
    async dispose() {
      await stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A valid A2A agent card. */
export function card(name = 'demo-agent', url = 'http://127.0.0.1:8000'): Record<string, unknown> {
  return { name, url, version: '1.0.0', capabilities: { streaming: true } };
}
