import {
  ETCD_INSTALLED,
  ETCD_SKIP_REASON,
  startEtcdCluster,
} from '../../test/helpers/etcd-cluster.js';
import { requestDelta, startFleet, type Fleet } from '../../test/helpers/cluster-fleet.js';
import { monoNow, type HistoryEvent, type OpEvent } from '../../test/helpers/history.js';
import { sleep } from '../lib/children.js';
import type { BenchContext, Scenario, ScenarioOutcome } from '../lib/context.js';
import { failedRow, row } from '../lib/report.js';
import { round, summarize } from '../lib/stats.js';

/**
 * Cluster mode under a fleet: 3 etcd members (loopback, no fsync), 3 Vigil
 * replicas (heartbeat 1 s, offline_after 4 s, lease 3 s: the cluster tests'
 * timings), one streaming sidecar per workspace spread over the replicas by
 * the cluster tests' load generator (its own process). Measures acknowledged
 * heartbeats per second and their latency, etcd requests per heartbeat in the
 * steady window, false OFFLINE, and the failover of a replica `kill -9`: how
 * long each of its sidecars takes to be acknowledged by another replica.
 * Built from the cluster test kit (test/helpers), so the bench and the fault
 * tests drive the same processes the same way.
 */

interface Config {
  readonly workspaces: number;
  readonly steadyMs: number;
  readonly failoverWaitMs: number;
}

const FULL: Config = { workspaces: 3_000, steadyMs: 30_000, failoverWaitMs: 15_000 };
const QUICK: Config = { workspaces: 600, steadyMs: 10_000, failoverWaitMs: 10_000 };
const INTERVAL_MS = 1_000;

/** Heartbeat ops of the history: invoke time and, when acknowledged, ok time, by op id. */
function heartbeatOps(events: readonly HistoryEvent[]) {
  const invoked = new Map<string, OpEvent>();
  const acked: { ws: string; invokedAt: number; ackedAt: number; target: string }[] = [];
  for (const e of events) {
    if (e.kind !== 'op' || e.f !== 'heartbeat') continue;
    if (e.type === 'invoke') invoked.set(e.op, e);
    else if (e.type === 'ok') {
      const start = invoked.get(e.op);
      if (start) acked.push({ ws: e.ws, invokedAt: start.t, ackedAt: e.t, target: start.target });
    }
  }
  return acked;
}

export const cluster: Scenario = {
  name: 'cluster',
  title: 'cluster mode: 3 etcd members, 3 replicas, a streaming fleet and a replica kill -9',
  async run(context: BenchContext): Promise<ScenarioOutcome> {
    if (!ETCD_INSTALLED) {
      return { rows: [failedRow('cluster', ETCD_SKIP_REASON)], details: {} };
    }
    const config = context.quick ? QUICK : FULL;
    // The kit unrefs its children so tests never wait on them; the bench must
    // stay alive while it awaits their exits.
    const keepAlive = setInterval(() => undefined, 1_000);
    const etcd = await startEtcdCluster();
    let fleet: Fleet | undefined;
    try {
      fleet = await startFleet({ cluster: etcd, replicas: 3 });
      const live = fleet;
      context.progress(`3 etcd members, 3 replicas; creating ${config.workspaces} workspaces`);
      const workspaces = await live.createWorkspaces(config.workspaces, 'bench');
      // One WatchStatus observer per replica: what the fleet's watchers see, OFFLINE included.
      const observers = live.replicas.map((r) => live.observe(r));
      await Promise.all(observers.map((o) => o.ready));
      const sidecars = live.startSidecars({
        workspaces,
        mode: 'stream',
        intervalMs: INTERVAL_MS,
        channelsPerReplica: 2,
        register: true,
        answerTimeoutMs: 2_500,
      });
      await sidecars.ready;
      // Let registration and the first claims settle before the steady window.
      await sleep(3 * INTERVAL_MS);
      context.progress(`steady window of ${config.steadyMs / 1000} s`);
      const requestsBefore = await Promise.all(live.replicas.map((r) => r.etcdRequests()));
      const statsBefore = await sidecars.stats();
      const steadyFrom = monoNow();
      await sleep(config.steadyMs);
      const steadyTo = monoNow();
      const statsAfter = await sidecars.stats();
      const requestsAfter = await Promise.all(live.replicas.map((r) => r.etcdRequests()));
      const acked = statsAfter.acked - statsBefore.acked;
      const requests = requestDelta(requestsBefore, requestsAfter);

      // Fail over: kill -9 the replica holding the most sidecars.
      const counts = new Map<number, string[]>();
      for (const [ws, index] of Object.entries(statsAfter.placement)) {
        counts.set(index, [...(counts.get(index) ?? []), ws]);
      }
      const [victimIndex, moved] = [...counts.entries()].sort(
        (a, b) => b[1].length - a[1].length,
      )[0] ?? [0, []];
      const victim = live.replicas[victimIndex];
      if (!victim) throw new Error('no replica to kill');
      context.progress(
        `kill -9 replica ${victim.id} (pid ${victim.pid()}) holding ${moved.length} sidecars`,
      );
      const killedAt = monoNow();
      await victim.kill();
      live.fault(`kill -9 ${victim.id}`);
      await sleep(config.failoverWaitMs);
      context.progress('stopping the sidecars and reading the etcd facts');
      await sidecars.finish();
      await live.recordEtcdFacts();

      const ops = heartbeatOps(live.history.events);
      const steady = ops.filter((o) => o.invokedAt >= steadyFrom && o.ackedAt <= steadyTo);
      const latency = summarize(steady.map((o) => o.ackedAt - o.invokedAt));
      const movedSet = new Set(moved);
      const firstAfter = new Map<string, number>();
      for (const o of ops) {
        if (!movedSet.has(o.ws) || o.invokedAt < killedAt || o.target === victim.address) continue;
        const previous = firstAfter.get(o.ws);
        if (previous === undefined || o.ackedAt < previous) firstAfter.set(o.ws, o.ackedAt);
      }
      const failover = summarize([...firstAfter.values()].map((t) => t - killedAt));
      const unrecovered = moved.length - firstAfter.size;
      // Every sidecar stays alive (the killed replica's move): any OFFLINE is a false one.
      const offline = new Set(
        live.history.events.flatMap((e) =>
          e.kind === 'watch' && e.frame === 'transition' && e.to === 'OFFLINE' ? [e.seq] : [],
        ),
      ).size;

      const rows = [
        row('cluster', {
          id: 'acked_per_s',
          metric: `${config.workspaces} streaming sidecars every 1 s: acked ÷ offered per second`,
          value: acked / ((steadyTo - steadyFrom) / 1000),
          baseline: config.workspaces / (INTERVAL_MS / 1000),
          unit: '/s',
          target: { on: 'ratio', op: '>=', bound: 0.99 },
        }),
        row('cluster', {
          id: 'ack_p99_ms',
          metric: 'cluster fleet: acknowledgement latency p99',
          value: round(latency.p99, 1),
          unit: 'ms',
          target: { on: 'value', op: '<=', bound: 50 },
          note: `p50 ${round(latency.p50, 1)} ms over ${latency.count} heartbeats`,
        }),
        row('cluster', {
          id: 'etcd_per_heartbeat',
          metric: 'etcd requests per steady heartbeat (all replicas)',
          value: acked > 0 ? requests.total / acked : Number.NaN,
          unit: '',
          target: { on: 'value', op: '<=', bound: 0.01 },
          note: JSON.stringify(requests.byOp),
        }),
        row('cluster', {
          id: 'false_offline',
          metric: 'false OFFLINE (every sidecar alive throughout)',
          value: offline,
          unit: '',
          target: { on: 'value', op: '==', bound: 0 },
        }),
        row('cluster', {
          id: 'failover_p99_ms',
          metric: `replica kill -9: its ${moved.length} sidecars re-acknowledged elsewhere, p99`,
          value: unrecovered > 0 ? Number.NaN : round(failover.p99, 0),
          unit: 'ms',
          target: { on: 'value', op: '<=', bound: 2_000 },
          note: `p50 ${round(failover.p50, 0)} ms, max ${round(failover.max, 0)} ms; ${unrecovered} not re-acknowledged within ${config.failoverWaitMs / 1000} s`,
        }),
      ];
      return {
        rows,
        details: { config, requests, latency, failover, unrecovered, moved: moved.length },
      };
    } finally {
      await fleet?.stop();
      await etcd.stop();
      clearInterval(keepAlive);
    }
  },
};
