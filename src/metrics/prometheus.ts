import { status } from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { exactRoute, type HttpRoute } from '../http/http-listener.js';
import { WORKSPACE_STATUSES, type Transition, type WorkspaceStatus } from '../domain/model.js';
import type { HeartbeatStats } from '../domain/runtime-use-cases.js';
import type { CallObserver } from '../transport/observer.js';

/**
 * Prometheus metrics (prom-client, on a registry of its own) and the HTTP
 * endpoint that serves them at /metrics.
 */

export interface MetricsSources {
  /** Current head seq, for watcher lag. */
  readonly headSeq: () => number;
  /** Workspaces per status, read at scrape time. */
  readonly countByStatus: () => Promise<Readonly<Record<WorkspaceStatus, number>>>;
  /** Counters of the heartbeat path. */
  readonly heartbeatStats?: () => HeartbeatStats;
  /** SQL statements the store has executed. */
  readonly sqlStatements?: () => number;
  /** Requests the store has sent to etcd, by operation (cluster mode). */
  readonly etcdRequests?: () => Readonly<Record<string, number>>;
  /** Workspace data keys by the keyring key wrapping them (a KEK rotation is done at 0 for the old one). */
  readonly secretKeys?: () => Promise<ReadonlyMap<string, number>>;
}

export interface Metrics {
  readonly registry: Registry;
  readonly observer: CallObserver;
  /** Counts committed transitions by reason. */
  transitionsCommitted(transitions: readonly Transition[]): void;
}

export function createMetrics(sources: MetricsSources): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'vigil_process_' });

  const requests = new Counter({
    name: 'vigil_rpc_requests_total',
    help: 'Finished RPCs by method and gRPC status code.',
    labelNames: ['method', 'code'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'vigil_rpc_duration_seconds',
    help: 'RPC duration by method: unary calls until their answer, streams from open to end.',
    labelNames: ['method'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const heartbeats = new Counter({
    name: 'vigil_heartbeats_received_total',
    help: 'Heartbeats received, valid or not.',
    registers: [registry],
  });
  const transitions = new Counter({
    name: 'vigil_transitions_total',
    help: 'Committed status transitions by reason and new status.',
    labelNames: ['reason', 'to'] as const,
    registers: [registry],
  });
  new Gauge({
    name: 'vigil_workspaces',
    help: 'Workspaces by status.',
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      const counts = await sources.countByStatus();
      for (const s of WORKSPACE_STATUSES) this.set({ status: s }, counts[s]);
    },
  });

  const { heartbeatStats, sqlStatements, etcdRequests, secretKeys } = sources;
  if (secretKeys) {
    new Gauge({
      name: 'vigil_secret_deks',
      help: 'Workspace data keys by the keyring key (KEK) that wraps them.',
      labelNames: ['kek_id'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const [kekId, n] of await secretKeys()) this.set({ kek_id: kekId }, n);
      },
    });
  }
  if (heartbeatStats) {
    counterFrom(
      registry,
      'vigil_heartbeats_applied_total',
      'Valid heartbeats by path: answered from memory (nothing written before the reply) or through a store transaction.',
      ['path'],
      () => {
        const stats = heartbeatStats();
        return [
          [{ path: 'memory' }, stats.answeredFromMemory],
          [{ path: 'store' }, stats.written],
        ];
      },
    );
    counterFrom(
      registry,
      'vigil_agent_cards_validated_total',
      'Agent cards decoded and validated (a card equal to the last one accepted from its workspace is not).',
      [],
      () => [[{}, heartbeatStats().cardsValidated]],
    );
  }
  if (sqlStatements) {
    counterFrom(
      registry,
      'vigil_sql_statements_total',
      'SQL statements executed by the store (BEGIN and COMMIT included).',
      [],
      () => [[{}, sqlStatements()]],
    );
  }
  if (etcdRequests) {
    counterFrom(
      registry,
      'vigil_etcd_requests_total',
      'Requests sent to etcd by operation (a message on a lease or watch stream counts as one).',
      ['op'],
      () => Object.entries(etcdRequests()).map(([op, n]) => [{ op }, n]),
    );
  }

  // Open watch streams and the seq each has delivered up to.
  const watchers = new Set<{ delivered: number }>();
  new Gauge({
    name: 'vigil_watch_streams',
    help: 'Open WatchStatus streams.',
    registers: [registry],
    collect() {
      this.set(watchers.size);
    },
  });
  new Gauge({
    name: 'vigil_watch_lag_max',
    help: 'Largest watcher lag: head seq minus the seq a stream has delivered (or, filtered, passed over) up to.',
    registers: [registry],
    collect() {
      const head = sources.headSeq();
      let max = 0;
      for (const w of watchers) max = Math.max(max, head - w.delivered);
      this.set(max);
    },
  });
  const watchClosed = new Counter({
    name: 'vigil_watch_streams_closed_total',
    help: 'Closed WatchStatus streams by gRPC status code.',
    labelNames: ['code'] as const,
    registers: [registry],
  });

  const observer: CallObserver = {
    callFinished(method, code, seconds) {
      requests.inc({ method, code: status[code] });
      latency.observe({ method }, seconds);
      if (method === 'WatchStatus') watchClosed.inc({ code: status[code] });
    },
    messageAnswered(method, code, seconds) {
      // Each streamed message is a call of its own for rates and latency; the stream
      // itself is counted under its method when it ends.
      const perMessage = `${method}:message`;
      requests.inc({ method: perMessage, code: status[code] });
      latency.observe({ method: perMessage }, seconds);
    },
    heartbeatReceived() {
      heartbeats.inc();
    },
    watchOpened(afterSeq) {
      const watcher = { delivered: afterSeq > 0 ? afterSeq : sources.headSeq() };
      watchers.add(watcher);
      return {
        delivered(seq) {
          watcher.delivered = seq;
        },
        closed() {
          watchers.delete(watcher);
        },
      };
    },
  };

  return {
    registry,
    observer,
    transitionsCommitted(committed) {
      for (const t of committed) transitions.inc({ reason: t.reason, to: t.toStatus });
    },
  };
}

/**
 * A counter whose values are read at scrape time from a monotonic source
 * kept elsewhere (so the hot path increments a plain number, not prom-client).
 */
function counterFrom<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => [Partial<Record<L, string>>, number][],
): void {
  const reported = new Map<string, number>();
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      for (const [labels, value] of read()) {
        const key = JSON.stringify(labels);
        const delta = value - (reported.get(key) ?? 0);
        reported.set(key, value);
        // An increment of 0 still makes the series appear before its first event.
        this.inc(labels, Math.max(0, delta));
      }
    },
  });
}

/** The GET /metrics route of the HTTP listener, serving `registry` in the text format. */
export function metricsRoute(registry: Registry): HttpRoute {
  return exactRoute('/metrics', async (request, response) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response
        .writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' })
        .end('use GET\n');
      return;
    }
    const text = await registry.metrics();
    response.writeHead(200, { 'content-type': registry.contentType }).end(text);
  });
}
