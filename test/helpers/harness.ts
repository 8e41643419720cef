import { mkdtempSync, rmSync } from 'node:fs';
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
import { suiteEtcdSettings } from './suite-store.js';

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
}

/** A real Vigil on 127.0.0.1:0 with a real SQLite file, plus generated clients. */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const dataDir = options.dataDir ?? tempDir();
  const clock = options.clock ?? createManualClock();
  const etcd = await suiteEtcdSettings(dataDir);
  const vigil = await startVigil(
    {
      ...DEFAULT_SETTINGS,
      listen: '127.0.0.1:0',
      metricsListen: '',
      // Tests that are not about it send heartbeats faster than a runtime would.
      heartbeatRateLimit: undefined,
      registerRateLimit: undefined,
      dataDir,
      controlTokens: [{ name: 'test', scope: 'admin', hash: hashToken(CONTROL_TOKEN) }],
      // Sweeps are driven by the tests through the registry.
      sweepIntervalMs: 3_600_000,
      progressIntervalMs: 60_000,
      ...(etcd ? { etcd } : {}),
      ...options.settings,
    },
    {
      clock,
      resolveHost: options.resolveHost ?? fakeResolver,
      random: () => 0.5,
      logger: options.logger ?? pino({ level: process.env['VIGIL_TEST_LOG'] ?? 'silent' }),
    },
  );
  const clients = createClients(vigil.port);
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
