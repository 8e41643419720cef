import { credentials as grpcCredentials } from '@grpc/grpc-js';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { systemClock, type Clock } from './domain/clock.js';
import { DEFAULT_TIMINGS, type Timings } from './domain/config.js';
import { createControlAuth, type ControlTokenSpec } from './domain/control-auth.js';
import { createUseCases, type UseCases } from './domain/use-cases.js';
import type { RateLimit } from './domain/rate-limiter.js';
import type { UrlPolicyName } from './domain/url-policy.js';
import { createHostResolver } from './egress/host-resolver.js';
import { createUrlChecker, type HostResolver } from './egress/url-policy.js';
import { MAX_CURRENT_TASK_BYTES, MAX_SAMPLE_ERROR_BYTES } from './domain/validation.js';
import { consoleApiRoute } from './http/console-api.js';
import { consoleStaticRoute } from './http/console-static.js';
import { serveHttp, type HttpListener, type HttpRoute } from './http/http-listener.js';
import { healthzRoute, readyzRoute, type ReadinessCheck } from './http/probes.js';
import { createMetrics, metricsRoute } from './metrics/prometheus.js';
import { openDatabase, type Synchronous } from './storage/database.js';
import type { Ownership } from './domain/ownership.js';
import type { RegistryStore } from './domain/registry-store.js';
import { createEtcdConnection, type EtcdTls } from './storage/etcd/etcd-connection.js';
import { createEtcdReplica, type EtcdReplica } from './storage/etcd/etcd-replica.js';
import { createEtcdStore, type EtcdStore } from './storage/etcd/etcd-store.js';
import {
  createEtcdProjectionStore,
  shredProjection,
} from './storage/etcd/etcd-projection-store.js';
import { createSqliteStore } from './storage/sqlite-store.js';
import { createSqliteProjectionStore } from './storage/sqlite-projection-store.js';
import { createAesGcmCipher } from './crypto/aes-gcm-cipher.js';
import { loadOrCreateKeyring } from './crypto/keyring-file.js';
import { BUILT_IN_PROVIDERS, type ProviderCatalog } from './domain/projection.js';
import type { ProjectionStore } from './domain/projection-store.js';
import type { SecretCipher } from './domain/secret-cipher.js';
import { createHeartbeatForwarder } from './transport/heartbeat-forwarder.js';
import {
  DEFAULT_CONNECTION_LIMITS,
  startGrpcServer,
  type ConnectionLimits,
  type ServerTls,
} from './transport/server.js';
import { createStatusCounts } from './watch/status-counts.js';
import { createStreamQuota } from './watch/stream-quota.js';
import { createTransitionHub } from './watch/transition-hub.js';
import type { WatchDeps } from './watch/watch-session.js';

/**
 * Wiring: the only place that knows every layer. Builds storage, the
 * use-cases (tokens, runtime, admin, liveness), the watch hub and the gRPC
 * server from one settings object; liveness runs its own sweep loop.
 */

/** Cluster mode: replicas sharing one etcd cluster. */
export interface EtcdSettings {
  /** `http(s)://host:port` of each etcd member. */
  readonly endpoints: readonly string[];
  /** Key prefix of this Vigil cell. */
  readonly prefix: string;
  /** This replica's id (unique in the cell). */
  readonly replicaId: string;
  /** HOST:PORT other replicas reach this one at (forwarded heartbeats). */
  readonly advertise: string;
  /** TTL of the replica's lease (its ownership keys and campaign); default 10 s. */
  readonly leaseTtlSeconds?: number | undefined;
  readonly tls?: EtcdTls | undefined;
}

export interface VigilSettings {
  readonly listen: string;
  /** Directory of the generated control token and, in SQLite mode, of the database. */
  readonly dataDir: string;
  /** Cluster mode on etcd; the embedded SQLite database when unset. */
  readonly etcd?: EtcdSettings | undefined;
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
  /** Per-workspace Register rate limit; none when undefined. */
  readonly registerRateLimit: RateLimit | undefined;
  /** Open WatchStatus streams allowed per control token; 0 means no limit. */
  readonly maxWatchStreamsPerToken: number;
  /** HTTP/2 connection limits of the gRPC listener (defaults in DEFAULT_CONNECTION_LIMITS). */
  readonly connectionLimits?: Partial<ConnectionLimits> | undefined;
  /** HOST:PORT for Prometheus /metrics and the web console at /; empty disables both. */
  readonly metricsListen: string;
  /** Recent transitions the watch fan-out keeps in memory (default 10,000). */
  readonly watchTailCapacity?: number;
  /** How often the liveness sweep runs; derived from offline_after when unset. */
  readonly sweepIntervalMs?: number;
  /**
   * The secrets keyring file (generated 0600 when missing); "off" disables
   * secrets (SECRETS_DISABLED, never plaintext). Default DATA_DIR/secrets-keyring.
   */
  readonly secretsKeyring?: string | undefined;
  /** The provider catalog (from --providers-file); the built-in one when unset. */
  readonly providers?: ProviderCatalog | undefined;
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
  /** The capabilities the server runs on (tests drive sweeps and flushes through them). */
  readonly useCases: UseCases;
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
  registerRateLimit: { ratePerSecond: 1, burst: 10 },
  maxWatchStreamsPerToken: 1_000,
  metricsListen: '127.0.0.1:9464',
  progressIntervalMs: 15_000,
  synchronous: 'FULL',
};

/**
 * Defence in depth: paths pino censors should a secret value or a projected
 * environment ever be handed to a log call (none is; errors carry names only).
 */
export const LOG_REDACTIONS = ['value', 'env', '*.value', '*.env', 'projection.env'] as const;

/** This build's version (recorded with each replica's presence in cluster mode). */
export const VIGIL_VERSION = '0.1.0';

/**
 * The hosts file, then DNS through c-ares: 1.5 s for the first try, two
 * tries per server (about 4.5 s in all before URL_RESOLVE_UNAVAILABLE).
 */
export const systemResolver: HostResolver = createHostResolver({ timeoutMs: 1_500, tries: 2 });

export async function startVigil(
  settings: VigilSettings,
  overrides: VigilOverrides = {},
): Promise<RunningVigil> {
  const logger = overrides.logger ?? pino({ name: 'vigil', redact: [...LOG_REDACTIONS] });
  const clock = overrides.clock ?? systemClock;
  const onListenerError = (error: unknown) => {
    logger.error({ err: error }, 'a commit listener failed; the write stands');
  };
  let store: RegistryStore;
  let ownership: Ownership | undefined;
  // The gRPC server, once it exists, follows the replica's lease (cluster mode).
  const servingListeners: ((serving: boolean) => void)[] = [];
  let replica: EtcdReplica | undefined;
  let storeMetrics: Pick<Parameters<typeof createMetrics>[0], 'sqlStatements' | 'etcdRequests'>;
  let databaseFile: string;
  let projectionStore: ProjectionStore;
  // Before any store opens: a bad keyring refuses to start with nothing to undo. Every replica
  // of a cluster must hold the same keyring (it unwraps data keys any replica wrapped).
  const keyringFile = settings.secretsKeyring ?? join(settings.dataDir, 'secrets-keyring');
  let cipher: SecretCipher | undefined;
  if (keyringFile !== 'off') {
    const { keyring, created } = loadOrCreateKeyring(keyringFile);
    if (created) logger.info({ file: keyringFile }, 'generated the secrets keyring');
    cipher = createAesGcmCipher(keyring);
  }
  let probeWritable: (() => Promise<void>) | undefined;
  if (settings.etcd) {
    const etcd = settings.etcd;
    const etcdConnection = createEtcdConnection({ endpoints: etcd.endpoints, tls: etcd.tls });
    const etcdStore: EtcdStore = createEtcdStore({
      connection: etcdConnection,
      prefix: etcd.prefix,
      replicaId: etcd.replicaId,
      onListenerError,
      onWatchError: (error) => {
        logger.warn({ err: error }, 'etcd watch interrupted; resuming from its last revision');
      },
      // Crypto-shred: the data key and sealed secrets go in the REMOVED transaction itself.
      inDeleteTransaction: (id, write) => {
        shredProjection(etcdStore.keys, id, write);
      },
    });
    // On the same connection, committer and watch as the workspaces (observed from the first listing).
    projectionStore = createEtcdProjectionStore({ store: etcdStore, onListenerError });
    replica = createEtcdReplica({
      connection: etcdConnection,
      keys: etcdStore.keys,
      replicaId: etcd.replicaId,
      advertise: etcd.advertise,
      leaseTtlSeconds: etcd.leaseTtlSeconds ?? 10,
      clock,
      liveIds: () => etcdStore.liveIds(),
      version: VIGIL_VERSION,
      onServing: (serving) => {
        if (serving) logger.info('replica lease confirmed: serving');
        else
          logger.warn(
            'replica lease not confirmed for half its TTL: NOT_SERVING, ending streams so clients move',
          );
        for (const listener of servingListeners) listener(serving);
      },
      onError: (error) => {
        logger.warn({ err: error }, 'replica lease or ownership request failed');
      },
    });
    etcdStore.attach(replica);
    ownership = replica;
    try {
      await etcdStore.start();
      await replica.start();
    } catch (error) {
      await replica.stop();
      await etcdStore.close();
      throw error;
    }
    store = etcdStore;
    storeMetrics = { etcdRequests: () => etcdStore.requests() };
    databaseFile = `etcd ${etcd.endpoints.join(',')} prefix ${etcd.prefix}`;
  } else {
    databaseFile = join(settings.dataDir, 'vigil.db');
    const db = openDatabase(databaseFile, { synchronous: settings.synchronous });
    const projections = createSqliteProjectionStore(db);
    const sqlite = createSqliteStore(db, {
      onListenerError,
      // Crypto-shred: the data key and sealed secrets go in the REMOVED transaction itself.
      inDeleteTransaction: (id) => {
        projections.shred(id);
      },
    });
    store = sqlite;
    projectionStore = projections;
    probeWritable = () => sqlite.probeWritable();
    storeMetrics = { sqlStatements: () => sqlite.statementsExecuted() };
  }
  const hub = createTransitionHub({
    store,
    clock,
    initialHead: await store.headSeq(),
    ...(settings.watchTailCapacity === undefined
      ? {}
      : { tailCapacity: settings.watchTailCapacity }),
  });
  // Read beside the head: the console's counts, as of hub.head(), at no cost per read.
  const statusCounts = createStatusCounts(await store.countByStatus());
  const useCases = createUseCases({
    store,
    clock,
    timings: settings.timings,
    checkUrl: createUrlChecker(settings.urlPolicy, overrides.resolveHost ?? systemResolver),
    serverStartedAt: clock.now(),
    ownership,
    heartbeatRateLimit: settings.heartbeatRateLimit,
    registerRateLimit: settings.registerRateLimit,
    fieldLimits: settings.fieldLimits,
    random: overrides.random,
    sweepIntervalMs: settings.sweepIntervalMs,
    onError: (error) => {
      logger.error({ err: error }, 'liveness sweep, flush or compaction failed');
    },
    onCompacted: (deleted) => {
      logger.info({ deleted }, 'compacted the transition log');
    },
    projection: {
      store: projectionStore,
      cipher,
      catalog: settings.providers ?? BUILT_IN_PROVIDERS,
      progressIntervalMs: settings.progressIntervalMs,
    },
  });
  const metrics = createMetrics({
    headSeq: () => hub.head(),
    // From memory, as the console reads them: a scrape costs no query, whatever the fleet's size.
    countByStatus: () => Promise.resolve(statusCounts.snapshot()),
    heartbeatStats: () => useCases.runtime.heartbeatStats(),
    ...storeMetrics,
    secretKeys: () => projectionStore.keyUsage(),
  });
  // A token rotated or revoked through another replica: this one's projection streams check theirs.
  store.onTokensChanged?.((workspaceId) => {
    useCases.projection.tokensChanged(workspaceId);
  });
  // Told by the store itself after every commit, in commit order.
  store.subscribe(({ transitions }) => {
    if (transitions.length === 0) return;
    statusCounts.apply(transitions);
    for (const t of transitions) {
      if (t.toStatus === 'REMOVED') useCases.projection.workspaceRemoved(t.workspaceId);
    }
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
    // Refuses to start on a keyring missing a stored key; re-wraps; recomputes digests.
    await useCases.projection.start();
    await useCases.liveness.start();
  } catch (error) {
    await replica?.stop();
    await store.close();
    throw error;
  }

  const cluster = replica;
  const forwarder =
    cluster && settings.etcd
      ? createHeartbeatForwarder({
          replicaId: settings.etcd.replicaId,
          ownerAddress: (id) => cluster.ownerAddress(id),
          // Replicas reach each other like clients reach them: TLS when the server serves TLS.
          ...(settings.tls
            ? { credentials: grpcCredentials.createSsl(settings.tls.clientCa ?? null) }
            : {}),
        })
      : undefined;
  const controlAuth = createControlAuth(settings.controlTokens);
  const watch: WatchDeps = {
    store,
    hub,
    clock,
    progressIntervalMs: settings.progressIntervalMs,
    overlay: (workspace) => useCases.liveness.withLiveness(workspace),
  };
  // WatchStatus streams and console streams count against one per-token cap.
  const watchQuota = createStreamQuota(settings.maxWatchStreamsPerToken);
  let server;
  try {
    server = await startGrpcServer({
      useCases,
      controlAuth,
      watch,
      maxWatchStreamsPerToken: settings.maxWatchStreamsPerToken,
      watchQuota,
      logger,
      observer: metrics.observer,
      listen: settings.listen,
      maxMessageBytes: settings.maxMessageBytes,
      connectionLimits: { ...DEFAULT_CONNECTION_LIMITS, ...settings.connectionLimits },
      ...(settings.tls ? { tls: settings.tls } : {}),
      forwarder,
    });
  } catch (error) {
    await useCases.liveness.stop();
    await replica?.stop();
    await store.close();
    throw error;
  }
  const grpcServer = server;
  servingListeners.push((serving) => {
    grpcServer.setServing(serving);
  });
  if (replica && !replica.serving()) grpcServer.setServing(false);
  if (replica && settings.etcd && /:0$/.test(settings.etcd.advertise)) {
    // Asked for any port: other replicas forward to the one actually bound.
    await replica
      .advertiseAt(`${hostOf(settings.etcd.advertise)}:${server.port}`)
      .catch((error: unknown) => {
        logger.warn(
          { err: error },
          'could not advertise the bound port; forwards to this replica fall back to the receiver',
        );
      });
  }
  let metricsServer: HttpListener | undefined;
  let stopping = false;
  if (settings.metricsListen !== '') {
    // Everything the HTTP port serves, in match order.
    const routes: HttpRoute[] = [
      metricsRoute(metrics.registry),
      consoleApiRoute({
        admin: useCases.admin,
        controlAuth,
        watch,
        watchQuota,
        observer: metrics.observer,
        countByStatus: () => statusCounts.snapshot(),
        projection: cipher ? (id) => useCases.projection.status(id) : undefined,
        timings: settings.timings,
        clock,
        logger,
      }),
      healthzRoute(),
      readyzRoute(() =>
        readinessChecks({ store, probeWritable, replica, stopping: () => stopping }),
      ),
      // Built by `npm run build` next to dist/src.
      consoleStaticRoute(join(__dirname, '..', 'web')),
    ];
    try {
      metricsServer = await serveHttp(
        settings.metricsListen,
        routes,
        'try /, /metrics, /healthz or /readyz',
      );
    } catch (error) {
      await server.shutdown(0);
      await useCases.liveness.stop();
      await replica?.stop();
      await store.close();
      throw error;
    }
  }

  logger.info(
    {
      address: `${hostOf(settings.listen)}:${server.port}`,
      tls: settings.tls ? (settings.tls.clientCa ? 'mtls' : 'tls') : 'off',
      metrics: metricsServer
        ? `http://${hostOf(settings.metricsListen)}:${metricsServer.port}/metrics`
        : 'off',
      console: metricsServer
        ? `http://${hostOf(settings.metricsListen)}:${metricsServer.port}/`
        : 'off',
      databaseFile,
    },
    'listening',
  );

  return {
    port: server.port,
    metricsPort: metricsServer?.port,
    useCases,
    databaseFile,
    async stop(graceMs = 4_000) {
      stopping = true;
      await server.shutdown(graceMs);
      // Writes the unflushed last-seen times (failures are logged through onError).
      await useCases.liveness.stop();
      await useCases.tokens.flushUsage().catch((error: unknown) => {
        logger.warn({ err: error }, 'could not record token use');
      });
      await metricsServer?.close();
      forwarder?.close();
      // Revoking the lease hands ownership and leadership over at once.
      await replica?.stop();
      await store.close();
      logger.info('stopped');
    },
  };
}

/**
 * What `/readyz` requires: not stopping; the store answers and, for SQLite,
 * takes a write; in cluster mode the replica lease is confirmed (serving).
 */
function readinessChecks(parts: {
  readonly store: RegistryStore;
  readonly probeWritable: (() => Promise<void>) | undefined;
  readonly replica: EtcdReplica | undefined;
  readonly stopping: () => boolean;
}): ReadinessCheck[] {
  const { store, probeWritable, replica, stopping } = parts;
  return [
    {
      name: 'server',
      check: () => (stopping() ? Promise.reject(new Error('shutting down')) : Promise.resolve()),
    },
    {
      name: 'store',
      check: async () => {
        await store.headSeq();
        await probeWritable?.();
      },
    },
    ...(replica
      ? [
          {
            name: 'replica lease',
            check: () =>
              replica.serving()
                ? Promise.resolve()
                : Promise.reject(new Error('not confirmed for half its TTL')),
          },
        ]
      : []),
  ];
}

function hostOf(listen: string): string {
  return listen.replace(/:\d+$/, '');
}
