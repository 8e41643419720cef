import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ControlServiceService } from '../../gen/vigil/v1/control_service.js';
import { RuntimeServiceService } from '../../gen/vigil/v1/runtime_service.js';
import { TransitionReason, WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import {
  cpuMsOf,
  memoryOf,
  startVigil,
  startWorker,
  watchForeignLoad,
  type LoadWorker,
} from '../lib/children.js';
import {
  agentCard,
  connectControl,
  heartbeatBytes,
  RUNTIME_URL,
  split,
  wallNow,
  type BenchContext,
  type Control,
  type Scenario,
  type ScenarioOutcome,
} from '../lib/context.js';
import type { FleetRunResult, LoadItem } from '../lib/protocol.js';
import { row } from '../lib/report.js';
import { concatSamples, round, summarize } from '../lib/stats.js';
import { seedDatabase } from '../lib/seed.js';
import { unaryCall } from '../lib/wire.js';

/**
 * A fleet run: N registered workspaces, each with its own HeartbeatStream,
 * one heartbeat (with its agent card) every 2 s at a random phase, for a
 * bounded time, against a server started with --heartbeat-interval 2s and the
 * default offline threshold. Every workspace heartbeats throughout, so any
 * OFFLINE transition is a false one. Measures acknowledgement latency (send
 * to response on the stream).
 */

interface Config {
  readonly workspaces: number;
  readonly durationMs: number;
  readonly intervalMs: number;
  readonly workers: number;
  readonly channelsPerWorker: number;
  readonly maxOutstanding: number;
}

const FULL: Config = {
  workspaces: 20_000,
  durationMs: 60_000,
  intervalMs: 2_000,
  workers: 2,
  channelsPerWorker: 4,
  // Like the SDK's sidecar loop, a workspace never has two heartbeats in flight:
  // when its turn comes while the last one is unanswered, it skips the turn.
  maxOutstanding: 1,
};
const QUICK: Config = { ...FULL, workspaces: 2_000, durationMs: 15_000 };

interface TransitionCounts {
  total: number;
  byReason: Record<string, number>;
  offline: number;
  offlineWorkspaces: string[];
}

/** Walks the whole transition log and counts the transitions at or after `since` (epoch ms). */
async function countTransitions(control: Control, since: number): Promise<TransitionCounts> {
  const counts: TransitionCounts = { total: 0, byReason: {}, offline: 0, offlineWorkspaces: [] };
  let pageToken = '';
  for (let page = 0; page < 10_000; page += 1) {
    const response = await unaryCall(
      control.client,
      ControlServiceService.listTransitions,
      { workspaceId: '', pageSize: 1000, pageToken },
      control.metadata(),
      30_000,
    );
    for (const t of response.transitions) {
      if ((t.at?.getTime() ?? 0) < since) continue;
      counts.total += 1;
      const reason = TransitionReason[t.reason];
      counts.byReason[reason] = (counts.byReason[reason] ?? 0) + 1;
      if (t.toStatus === WorkspaceStatus.WORKSPACE_STATUS_OFFLINE) {
        counts.offline += 1;
        if (counts.offlineWorkspaces.length < 5) counts.offlineWorkspaces.push(t.workspaceId);
      }
    }
    pageToken = response.nextPageToken;
    if (pageToken === '') break;
  }
  return counts;
}

export const fleet: Scenario = {
  name: 'fleet',
  title: 'fleet of streamed heartbeats: false OFFLINE, ack latency',
  async run(context: BenchContext): Promise<ScenarioOutcome> {
    const config = context.quick ? QUICK : FULL;
    const dataDir = context.tempDir('fleet');
    const ids = Array.from(
      { length: config.workspaces },
      (_, i) => `fleet-${String(i).padStart(6, '0')}`,
    );
    const tokens = ids.map(() => `vgw_${randomBytes(32).toString('base64url')}`);
    context.progress(`seeding ${config.workspaces} registered workspaces with known tokens`);
    const seeded = await seedDatabase({
      file: join(dataDir, 'vigil.db'),
      count: config.workspaces,
      id: (i) => ids[i] ?? '',
      token: (i) => tokens[i] ?? '',
      fate: () => 'online',
      card: agentCard,
      url: RUNTIME_URL,
    });
    // Seeding wrote CREATED and REGISTERED for each, before this: everything after is the run's.
    const serverStartedAt = Date.now();
    // Thousands of sidecars' streams share a few connections here (a real sidecar has its
    // own): the per-connection stream limit (1,000 by default) is raised to hold them all.
    const flags = [
      '--heartbeat-interval',
      `${config.intervalMs / 1000}s`,
      '--max-concurrent-streams',
      String(config.workspaces),
    ];
    const vigil = await startVigil({ dataDir, controlToken: context.controlToken, flags });
    const control = connectControl(vigil.address, context.controlToken);
    const workers: LoadWorker[] = [];
    try {
      context.progress(
        `vigil on ${vigil.address} (pid ${vigil.pid}) with ${flags.join(' ')}; opening ${config.workspaces} HeartbeatStreams`,
      );
      const items: LoadItem[] = ids.map((id, i) => ({
        payload: heartbeatBytes(id, true),
        token: tokens[i] ?? '',
      }));
      const parts = split(items, config.workers);
      for (let i = 0; i < config.workers; i += 1) workers.push(startWorker());
      const opened = await Promise.all(
        workers.map((worker, i) =>
          worker.run(
            {
              kind: 'duplex-open',
              set: 'fleet',
              address: vigil.address,
              path: RuntimeServiceService.heartbeatStream.path,
              protocol: 'heartbeat',
              channels: config.channelsPerWorker,
              items: parts[i] ?? [],
              openConcurrency: 1_000,
              timeoutMs: 120_000,
            },
            130_000,
          ),
        ),
      );
      const primed = opened.reduce((n, o) => n + o.primed, 0);
      context.progress(
        `${primed} streams open and answered a first heartbeat (${Math.round(Math.max(...opened.map((o) => o.ms)))} ms)`,
      );
      if (primed !== config.workspaces) {
        const samples = opened.flatMap((o) => o.errorSamples).slice(0, 3);
        throw new Error(
          `only ${primed} of ${config.workspaces} fleet streams came up: ${samples.join(' | ')}`,
        );
      }

      context.progress(
        `running the fleet for ${config.durationMs / 1000} s: one heartbeat per workspace every ${config.intervalMs / 1000} s`,
      );
      await context.awaitQuiet('fleet run');
      const startAt = wallNow() + 500;
      const cpuBefore = cpuMsOf(vigil.pid);
      const foreign = watchForeignLoad();
      const ticker = setInterval(() => {
        context.progress(
          `fleet: ${Math.round((wallNow() - startAt) / 1000)} s, server RSS ${Math.round(memoryOf(vigil.pid).rssMiB)} MiB`,
        );
      }, 15_000);
      let results: FleetRunResult[];
      try {
        results = await Promise.all(
          workers.map((worker) =>
            worker.run(
              {
                kind: 'fleet-run',
                set: 'fleet',
                startAt,
                intervalMs: config.intervalMs,
                durationMs: config.durationMs,
                maxOutstanding: config.maxOutstanding,
                drainMs: 10_000,
              },
              config.durationMs + 60_000,
            ),
          ),
        );
      } finally {
        clearInterval(ticker);
      }
      const serverCpu = (cpuMsOf(vigil.pid) - cpuBefore) / (wallNow() - startAt);
      const foreignCores = foreign();
      context.recordForeignLoad('fleet: run', foreignCores);
      const memory = memoryOf(vigil.pid);
      const sum = (f: (r: FleetRunResult) => number) => results.reduce((n, r) => n + f(r), 0);
      const sent = sum((r) => r.sent);
      const acked = sum((r) => r.acked);
      const errors = sum((r) => r.errors);
      const streamErrors = sum((r) => r.streamErrors);
      const skipped = sum((r) => r.skipped);
      const unanswered = sum((r) => r.unanswered);
      const clientCpu = sum((r) => r.cpuMs) / (config.durationMs + 0.0);
      const latency = summarize(concatSamples(results.map((r) => r.latenciesMs)));
      const maxSendLagMs = Math.max(...results.map((r) => r.maxSendLagMs));
      context.progress(
        `fleet done: sent ${sent}, acked ${acked}, errors ${errors}, stream errors ${streamErrors}, ack p99 ${round(latency.p99, 1)} ms`,
      );

      context.progress('counting transitions (ListTransitions)');
      const transitions = await countTransitions(control, serverStartedAt);
      const offlineNow = await unaryCall(
        control.client,
        ControlServiceService.listWorkspaces,
        { pageSize: 1000, pageToken: '', statuses: [WorkspaceStatus.WORKSPACE_STATUS_OFFLINE] },
        control.metadata(),
      );
      await Promise.all(workers.map((w) => w.run({ kind: 'duplex-close', set: 'fleet' }, 30_000)));
      if (!vigil.alive()) throw new Error('vigil exited during the fleet run');

      const offered = config.workspaces / (config.intervalMs / 1000);
      // Every turn of every workspace's schedule that came due, sent or not.
      const offeredTotal = sum((r) => r.offered);
      const rssMB = (memory.rssMiB * 1048576) / 1e6;
      const s = 'fleet';
      const label = `${config.workspaces.toLocaleString('en-US')} workspaces, ${config.durationMs / 1000} s`;
      const rows = [
        row(s, {
          id: 'false_offline',
          metric: `false OFFLINE transitions (${label})`,
          value: transitions.offline,
          unit: '',
          target: { on: 'value', op: '==', bound: 0 },
          note: `transitions during the run: ${JSON.stringify(transitions.byReason)}; OFFLINE now: ${offlineNow.workspaces.length}${transitions.offline > 0 ? `; e.g. ${transitions.offlineWorkspaces.join(', ')}` : ''}`,
        }),
        row(s, {
          id: 'ack_p99_ms',
          metric: `heartbeat ack latency p99 (${label})`,
          value: latency.p99,
          unit: 'ms',
          target: { on: 'value', op: '<=', bound: 50 },
          note: `p50 ${round(latency.p50, 1)}, p90 ${round(latency.p90, 1)}, max ${round(latency.max, 1)} ms over ${latency.count} acks; client send lag max ${round(maxSendLagMs, 1)} ms`,
        }),
        row(s, {
          id: 'acked_ratio',
          metric: `heartbeats acked / offered (${offeredTotal.toLocaleString('en-US')} offered, ${Math.round(offered)}/s)`,
          value: acked / offeredTotal,
          unit: '',
          target: { on: 'value', op: '>=', bound: 0.99 },
          note: `sent ${sent}, acked ${acked} (${Math.round(acked / (config.durationMs / 1000))}/s), turns skipped because the previous heartbeat was still unanswered ${skipped}, unanswered at end ${unanswered}; server CPU ${Math.round(serverCpu * 100)}%, clients ${Math.round(clientCpu * 100)}%, other processes ${Math.round(foreignCores * 100)}%`,
        }),
        row(s, {
          id: 'rss_mb',
          metric: `server RSS at the end (${label}, every stream open)`,
          value: rssMB,
          unit: 'MB',
          target: { on: 'value', op: '<=', bound: 400 },
          note: `peak (VmHWM) ${round((memory.peakMiB * 1048576) / 1e6, 1)} MB; ${round((rssMB * 1000) / config.workspaces, 1)} KB per open stream, all included`,
        }),
        row(s, {
          id: 'errors',
          metric: 'fleet heartbeat errors (responses + streams)',
          value: errors + streamErrors,
          unit: '',
          target: { on: 'value', op: '==', bound: 0 },
          ...(errors + streamErrors > 0
            ? {
                note: results
                  .flatMap((r) => r.errorSamples)
                  .slice(0, 3)
                  .join(' | '),
              }
            : {}),
        }),
      ];
      return {
        rows,
        details: {
          config,
          flags,
          seeded,
          opened,
          offered: offeredTotal,
          sent,
          acked,
          errors,
          streamErrors,
          skipped,
          unanswered,
          latency,
          maxSendLagMs,
          serverCpu,
          clientCpu,
          foreignCores,
          memory,
          transitions,
        },
      };
    } finally {
      control.close();
      await Promise.all(workers.map((w) => w.stop()));
      await vigil.stop();
    }
  },
};
