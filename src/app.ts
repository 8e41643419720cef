import { lookup } from 'node:dns/promises';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { systemClock, type Clock } from './domain/clock.js';
import { DEFAULT_TIMINGS, type Timings } from './domain/config.js';
import { createControlAuth, type ControlTokenSpec } from './domain/control-auth.js';
import { createRegistry, type Registry } from './domain/registry.js';
import type { RateLimit } from './domain/rate-limiter.js';
import type { HostResolver, UrlPolicyName } from './domain/url-policy.js';
import { MAX_CURRENT_TASK_BYTES, MAX_SAMPLE_ERROR_BYTES } from './domain/validation.js';
import { createMetrics, serveMetrics } from './metrics/prometheus.js';
import { openDatabase, type Synchronous } from './storage/database.js';
import { createSqliteStore } from './storage/sqlite-store.js';
import { startGrpcServer, type ServerTls } from './transport/server.js';
import { createTransitionHub } from './watch/transition-hub.js';

/**
 * Wiring: the only place that knows every layer. Builds storage, the
 * registry, the watch hub and the gRPC server from one settings object, and
 * runs the liveness sweeper.
 */

export interface VigilSettings {
  readonly listen: string;
  readonly dataDir: string;
  readonly controlTokens: readonly ControlTokenSpec[];
  readonly timings: Timings;
  readonly urlPolicy: UrlPolicyName;
  readonly progressIntervalMs: number;
  readonly synchronous: Synchronous;
  /** TLS key pair, and the CA whose client certificates are required (mTLS). */
  readonly tls?: ServerTls;
  /** Largest request message accepted, in bytes. */
  readonly maxMessageBytes: number;
  /** Largest `sample_error` and `current_task` accepted, in bytes. */
  readonly fieldLimits: { readonly sampleErrorBytes: number; readonly currentTaskBytes: number };
  /** Per-workspace heartbeat rate limit; none when undefined. */
  readonly heartbeatRateLimit: RateLimit | undefined;
  /** Open WatchStatus streams allowed per control token; 0 means no limit. */
  readonly maxWatchStreamsPerToken: number;
  /** HOST:PORT for Prometheus /metrics; empty disables it. */
  readonly metricsListen: string;
  /** Recent transitions the watch fan-out keeps in memory (default 10,000). */
  readonly watchTailCapacity?: number;
  /** How often the liveness sweep runs; derived from offline_after when unset. */
  readonly sweepIntervalMs?: number;
}

/** Seams for tests: time, DNS, randomness, logging. */
export interface VigilOverrides {
  readonly clock?: Clock;
  readonly resolveHost?: HostResolver;
  readonly random?: () => number;
  readonly logger?: Logger;
}

export interface RunningVigil {
  readonly port: number;
  /** Port of the /metrics endpoint, when it is served. */
  readonly metricsPort: number | undefined;
  readonly registry: Registry;
  readonly databaseFile: string;
  /** Graceful stop; closes the database last. */
  stop(graceMs?: number): Promise<void>;
}

export const DEFAULT_SETTINGS: Omit<VigilSettings, 'controlTokens'> = {
  listen: '127.0.0.1:50051',
  dataDir: './data',
  timings: DEFAULT_TIMINGS,
  urlPolicy: 'local',
  maxMessageBytes: 1024 * 1024,
  fieldLimits: {
    sampleErrorBytes: MAX_SAMPLE_ERROR_BYTES,
    currentTaskBytes: MAX_CURRENT_TASK_BYTES,
  },
  heartbeatRateLimit: { ratePerSecond: 5, burst: 20 },
  maxWatchStreamsPerToken: 1_000,
  metricsListen: '127.0.0.1:9464',
  progressIntervalMs: 15_000,
  synchronous: 'FULL',
};

const DNS_TIMEOUT_MS = 3_000;
/** How often the transition log is compacted (it runs with a sweep). */
const COMPACTION_EVERY_MS = 60_000;

/** Resolves with the system resolver, giving up after a few seconds. */
export const systemResolver: HostResolver = async (host) => {
  let timer: NodeJS.Timeout | undefined;
  try {
    const results = await Promise.race([
      lookup(host, { all: true, verbatim: true }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`resolving ${host} timed out`));
        }, DNS_TIMEOUT_MS);
      }),
    ]);
    return results.map((r) => r.address);
  } finally {
    clearTimeout(timer);
  }
};

export async function startVigil(
  settings: VigilSettings,
  overrides: VigilOverrides = {},
): Promise<RunningVigil> {
  const logger = overrides.logger ?? pino({ name: 'vigil' });
  const clock = overrides.clock ?? systemClock;
  const databaseFile = join(settings.dataDir, 'vigil.db');
  const db = openDatabase(databaseFile, { synchronous: settings.synchronous });
  const store = createSqliteStore(db, {
    onListenerError: (error) => {
      logger.error({ err: error }, 'a commit listener failed; the write stands');
    },
  });
  const hub = createTransitionHub({
    store,
    initialHead: await store.headSeq(),
    ...(settings.watchTailCapacity === undefined
      ? {}
      : { tailCapacity: settings.watchTailCapacity }),
  });
  const registry = createRegistry({
    store,
    clock,
    timings: settings.timings,
    urlPolicy: settings.urlPolicy,
    resolveHost: overrides.resolveHost ?? systemResolver,
    serverStartedAt: clock.now(),
    heartbeatRateLimit: settings.heartbeatRateLimit,
    fieldLimits: settings.fieldLimits,
    ...(overrides.random ? { random: overrides.random } : {}),
  });
  const metrics = createMetrics({
    headSeq: () => hub.head(),
    countByStatus: () => store.countByStatus(),
    heartbeatStats: () => registry.heartbeatStats(),
    sqlStatements: () => store.statementsExecuted(),
  });
  // Told by the store itself after every commit, in commit order.
  store.subscribe(({ transitions }) => {
    if (transitions.length === 0) return;
    hub.publish(transitions);
    metrics.transitionsCommitted(transitions);
    for (const t of transitions) {
      logger.info(
        {
          seq: t.seq,
          workspaceId: t.workspaceId,
          from: t.fromStatus,
          to: t.toStatus,
          reason: t.reason,
        },
        'status transition',
      );
    }
  });
  try {
    await registry.start();
  } catch (error) {
    db.close();
    throw error;
  }

  let server;
  try {
    server = await startGrpcServer({
      registry,
      controlAuth: createControlAuth(settings.controlTokens),
      watch: {
        store,
        hub,
        progressIntervalMs: settings.progressIntervalMs,
        overlay: registry.withLiveness,
      },
      maxWatchStreamsPerToken: settings.maxWatchStreamsPerToken,
      logger,
      observer: metrics.observer,
      listen: settings.listen,
      maxMessageBytes: settings.maxMessageBytes,
      ...(settings.tls ? { tls: settings.tls } : {}),
    });
  } catch (error) {
    db.close();
    throw error;
  }
  let metricsServer: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  if (settings.metricsListen !== '') {
    try {
      metricsServer = await serveMetrics(metrics.registry, settings.metricsListen);
    } catch (error) {
      await server.shutdown(0);
      db.close();
      throw error;
    }
  }

  const sweepEvery =
    settings.sweepIntervalMs ?? Math.max(250, Math.min(5_000, settings.timings.offlineAfterMs / 4));
  let sweeping = false;
  let lastCompaction = 0;
  const sweeper = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    const compact = clock.now() - lastCompaction >= COMPACTION_EVERY_MS;
    registry
      .sweep()
      .then(() => registry.flushLiveness(false))
      .then(() => registry.flushTokenUsage(false))
      .then(async () => {
        if (!compact) return;
        lastCompaction = clock.now();
        const deleted = await registry.compactHistory();
        if (deleted > 0) logger.info({ deleted }, 'compacted the transition log');
      })
      .catch((error: unknown) => {
        logger.error({ err: error }, 'liveness sweep, flush or compaction failed');
      })
      .finally(() => {
        sweeping = false;
      });
  }, sweepEvery);
  sweeper.unref();

  logger.info(
    {
      address: `${hostOf(settings.listen)}:${server.port}`,
      tls: settings.tls ? (settings.tls.clientCa ? 'mtls' : 'tls') : 'off',
      metrics: metricsServer
        ? `http://${hostOf(settings.metricsListen)}:${metricsServer.port}/metrics`
        : 'off',
      databaseFile,
    },
    'listening',
  );

  return {
    port: server.port,
    metricsPort: metricsServer?.port,
    registry,
    databaseFile,
    async stop(graceMs = 4_000) {
      clearInterval(sweeper);
      await server.shutdown(graceMs);
      await registry.flushLiveness().catch((error: unknown) => {
        logger.warn({ err: error }, 'could not record last-seen times');
      });
      await registry.flushTokenUsage().catch((error: unknown) => {
        logger.warn({ err: error }, 'could not record token use');
      });
      await metricsServer?.close();
      await store.close();
      logger.info('stopped');
    },
  };
}

function hostOf(listen: string): string {
  return listen.replace(/:\d+$/, '');
}
