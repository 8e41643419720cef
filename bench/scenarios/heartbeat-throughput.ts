import { setTimeout as delay } from 'node:timers/promises';
import {
  cpuMsOf,
  watchForeignLoad,
  startBaseline,
  startVigil,
  startWorker,
  type LoadWorker,
} from '../lib/children.js';
import {
  connectControl,
  createRegisteredWorkspaces,
  heartbeatBytes,
  BUSY_CORES,
  split,
  wallNow,
  type BenchContext,
  type Scenario,
  type ScenarioOutcome,
} from '../lib/context.js';
import type { LoadItem, LoadResult, StreamLoadTask, UnaryLoadTask } from '../lib/protocol.js';
import { row, type Row } from '../lib/report.js';
import { concatSamples, round, summarize, type Summary } from '../lib/stats.js';

/**
 * Heartbeat throughput against a bare grpc-js echo, same client code path
 * (generic unary calls, identity serializers over pre-encoded bytes, same
 * metadata), same workers, channels, concurrency and duration. Order: echo,
 * unary Heartbeat with card, unary Heartbeat without card, streamed
 * heartbeats, echo again; the baseline is the mean of the two echo runs.
 */

const ECHO_PATH = '/bench.Baseline/Echo';
const HEARTBEAT_PATH = '/vigil.v1.RuntimeService/Heartbeat';

interface Config {
  readonly workspaces: number;
  readonly workers: number;
  readonly channelsPerWorker: number;
  readonly concurrencyPerChannel: number;
  /** Streams per worker = workspaces / workers; requests in flight per stream. */
  readonly pipeline: number;
  readonly warmupMs: number;
  readonly durationMs: number;
}

const FULL: Config = {
  // Enough workspaces that none exceeds the default per-workspace heartbeat
  // rate limit (5/s) even at 25k heartbeats/s: each sends ~0.4-3/s here.
  workspaces: 8_192,
  workers: 2,
  channelsPerWorker: 4,
  concurrencyPerChannel: 16,
  // One stream per workspace with one heartbeat outstanding, as a sidecar does:
  // 8,192 in flight in total.
  pipeline: 1,
  warmupMs: 2_000,
  durationMs: 10_000,
};

/** Runs disturbed by other processes are measured again, up to this many attempts. */
const MAX_ATTEMPTS = 3;

const QUICK: Config = { ...FULL, workspaces: 4_096, warmupMs: 1_000, durationMs: 3_000 };

interface Measured {
  readonly label: string;
  readonly rate: number;
  readonly ok: number;
  readonly errors: number;
  readonly errorsTotal: number;
  readonly streamErrors: number;
  readonly errorSamples: string[];
  readonly latencyMs: Summary;
  /** Server CPU over the measured window, as a share of one core. */
  readonly serverCpu: number;
  /** Load-worker CPU over the measured window, summed, as a share of one core. */
  readonly clientCpu: number;
  /** CPU used by processes outside the bench during the run, cores. */
  readonly foreignCpu: number;
}

function summarizeRun(
  label: string,
  results: readonly LoadResult[],
  durationMs: number,
  serverCpuMs: number,
  foreignCpu: number,
): Measured {
  const ok = results.reduce((n, r) => n + r.ok, 0);
  return {
    label,
    rate: ok / (durationMs / 1000),
    ok,
    errors: results.reduce((n, r) => n + r.errors, 0),
    errorsTotal: results.reduce((n, r) => n + r.errorsTotal, 0),
    streamErrors: results.reduce((n, r) => n + r.streamErrors, 0),
    errorSamples: results.flatMap((r) => r.errorSamples).slice(0, 5),
    latencyMs: summarize(concatSamples(results.map((r) => r.latenciesMs))),
    serverCpu: serverCpuMs / durationMs,
    clientCpu: results.reduce((n, r) => n + r.cpuMs, 0) / durationMs,
    foreignCpu,
  };
}

/**
 * Samples a server's CPU time, and the CPU used by processes outside the
 * bench, over the measured window of a run starting at `startAt`.
 */
function windowCpu(
  pid: number,
  startAt: number,
  config: Config,
): () => { serverMs: number; foreign: number } {
  let before = Number.NaN;
  let after = Number.NaN;
  let foreign: (() => number) | undefined;
  let foreignCores = Number.NaN;
  const begin = setTimeout(
    () => {
      before = cpuMsOf(pid);
      foreign = watchForeignLoad();
    },
    startAt + config.warmupMs - wallNow(),
  );
  const finish = setTimeout(
    () => {
      after = cpuMsOf(pid);
      foreignCores = foreign?.() ?? Number.NaN;
    },
    startAt + config.warmupMs + config.durationMs - wallNow(),
  );
  return () => {
    clearTimeout(begin);
    clearTimeout(finish);
    return { serverMs: after - before, foreign: foreignCores };
  };
}

export const heartbeatThroughput: Scenario = {
  name: 'heartbeat',
  title: 'heartbeat throughput vs bare echo',
  async run(context: BenchContext): Promise<ScenarioOutcome> {
    const config = context.quick ? QUICK : FULL;
    const dataDir = context.tempDir('heartbeat');
    const vigil = await startVigil({ dataDir, controlToken: context.controlToken });
    const baseline = await startBaseline();
    const workers: LoadWorker[] = [];
    const control = connectControl(vigil.address, context.controlToken);
    try {
      context.progress(
        `vigil on ${vigil.address} (pid ${vigil.pid}), baseline on ${baseline.address} (pid ${baseline.pid}); creating and registering ${config.workspaces} workspaces`,
      );
      const ids = Array.from(
        { length: config.workspaces },
        (_, i) => `hb-${String(i).padStart(5, '0')}`,
      );
      const created = await createRegisteredWorkspaces(control, ids);
      const withCard: LoadItem[] = created.map((w) => ({
        payload: heartbeatBytes(w.id, true),
        token: w.token,
      }));
      const noCard: LoadItem[] = created.map((w) => ({
        payload: heartbeatBytes(w.id, false),
        token: w.token,
      }));
      for (let i = 0; i < config.workers; i += 1) workers.push(startWorker());
      const timeoutMs = config.warmupMs + config.durationMs + 60_000;

      /**
       * One run on every worker; retried (bounded) when processes outside the
       * bench disturbed its window, keeping the least disturbed attempt.
       */
      const measure = async (
        label: string,
        pid: number,
        task: (part: LoadItem[], startAt: number) => UnaryLoadTask | StreamLoadTask,
        items: LoadItem[],
      ): Promise<Measured> => {
        const parts = split(items, config.workers);
        let best: Measured | undefined;
        for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
          await context.awaitQuiet(label);
          const startAt = wallNow() + 300;
          const cpu = windowCpu(pid, startAt, config);
          const results = await Promise.all(
            workers.map((worker, i) => worker.run(task(parts[i] ?? [], startAt), timeoutMs)),
          );
          const { serverMs, foreign } = cpu();
          const measured = summarizeRun(label, results, config.durationMs, serverMs, foreign);
          context.progress(
            `${label}: ${Math.round(measured.rate)}/s, p99 ${round(measured.latencyMs.p99, 1)} ms, errors ${measured.errorsTotal + measured.streamErrors}, other processes ${foreign.toFixed(2)} cores`,
          );
          if (!best || measured.foreignCpu < best.foreignCpu) best = measured;
          if (foreign <= BUSY_CORES || label.startsWith('warm-up')) break;
          if (attempt < MAX_ATTEMPTS) context.progress(`${label}: disturbed; measuring again`);
        }
        if (!best) throw new Error(`${label}: no run`);
        if (!label.startsWith('warm-up')) {
          context.recordForeignLoad(`heartbeat: ${label}`, best.foreignCpu);
        }
        return best;
      };

      const unary = (
        label: string,
        address: string,
        pid: number,
        path: string,
        items: LoadItem[],
      ) => {
        context.progress(
          `${label}: ${config.workers} workers x ${config.channelsPerWorker} channels x ${config.concurrencyPerChannel} in flight, ${config.durationMs / 1000} s`,
        );
        return measure(
          label,
          pid,
          (part, startAt) => ({
            kind: 'unary',
            address,
            path,
            channels: config.channelsPerWorker,
            concurrencyPerChannel: config.concurrencyPerChannel,
            items: part,
            startAt,
            warmupMs: config.warmupMs,
            durationMs: config.durationMs,
          }),
          items,
        );
      };

      const streamed = (label: string, items: LoadItem[]) => {
        context.progress(
          `${label}: ${items.length} streams x ${config.pipeline} in flight over ${config.workers} workers x ${config.channelsPerWorker} channels, ${config.durationMs / 1000} s`,
        );
        return measure(
          label,
          vigil.pid,
          (part, startAt) => ({
            kind: 'stream',
            address: vigil.address,
            channels: config.channelsPerWorker,
            items: part,
            pipeline: config.pipeline,
            startAt,
            warmupMs: config.warmupMs,
            durationMs: config.durationMs,
          }),
          items,
        );
      };

      // Unmeasured first pass: JIT warm-up of both servers and of the workers, so the
      // first measured run is not penalised for going first.
      await unary('warm-up: echo', baseline.address, baseline.pid, ECHO_PATH, withCard);
      await unary('warm-up: Heartbeat', vigil.address, vigil.pid, HEARTBEAT_PATH, withCard);
      // The echo carries the same bytes and metadata as the heartbeat with card.
      const echoBefore = await unary(
        'bare echo (before)',
        baseline.address,
        baseline.pid,
        ECHO_PATH,
        withCard,
      );
      await delay(500);
      const hbCard = await unary(
        'unary Heartbeat, with card',
        vigil.address,
        vigil.pid,
        HEARTBEAT_PATH,
        withCard,
      );
      await delay(500);
      const hbNoCard = await unary(
        'unary Heartbeat, no card',
        vigil.address,
        vigil.pid,
        HEARTBEAT_PATH,
        noCard,
      );
      await delay(500);
      const stream = await streamed('streamed heartbeats, with card', withCard);
      await delay(500);
      const echoAfter = await unary(
        'bare echo (after)',
        baseline.address,
        baseline.pid,
        ECHO_PATH,
        withCard,
      );
      const echo = (echoBefore.rate + echoAfter.rate) / 2;
      const drift = (echoAfter.rate - echoBefore.rate) / echoBefore.rate;
      const errors =
        hbCard.errorsTotal + hbNoCard.errorsTotal + stream.errorsTotal + stream.streamErrors;

      const s = 'heartbeat';
      const pct = (cores: number) => `${Math.round(cores * 100)}%`;
      const cpuNote = (m: Measured, b: Measured) =>
        `p50/p99 ${round(m.latencyMs.p50, 1)}/${round(m.latencyMs.p99, 1)} ms; server CPU ${pct(m.serverCpu)} (echo ${pct(b.serverCpu)}), clients ${pct(m.clientCpu)}, other processes ${pct(m.foreignCpu)}`;
      const rows: Row[] = [
        row(s, {
          metric: 'unary Heartbeat calls/s (card in every request)',
          value: hbCard.rate,
          unit: '/s',
          baseline: echo,
          target: { on: 'ratio', op: '>=', bound: 0.8 },
          note: cpuNote(hbCard, echoBefore),
        }),
        row(s, {
          metric: 'unary Heartbeat calls/s (no card)',
          value: hbNoCard.rate,
          unit: '/s',
          baseline: echo,
          note: cpuNote(hbNoCard, echoBefore),
        }),
        row(s, {
          metric: 'streamed heartbeats/s (card in every request)',
          value: stream.rate,
          unit: '/s',
          baseline: echo,
          target: { on: 'ratio', op: '>=', bound: 4 },
          note: `${config.workspaces} streams x ${config.pipeline} in flight (${round(stream.rate / config.workspaces, 2)}/s per workspace, default rate limit 5/s); ${cpuNote(stream, echoBefore)}`,
        }),
        row(s, {
          metric: 'bare echo calls/s (before / after: drift)',
          value: echo,
          unit: '/s',
          note: `before ${Math.round(echoBefore.rate)}, after ${Math.round(echoAfter.rate)}, drift ${(drift * 100).toFixed(1)}%; p99 ${round(echoBefore.latencyMs.p99, 1)}/${round(echoAfter.latencyMs.p99, 1)} ms; clients ${pct(echoBefore.clientCpu)}/${pct(echoAfter.clientCpu)}, other processes ${pct(echoBefore.foreignCpu)}/${pct(echoAfter.foreignCpu)}`,
        }),
        row(s, {
          metric: 'heartbeat errors (unary + streamed)',
          value: errors,
          unit: '',
          target: { on: 'value', op: '==', bound: 0 },
          ...(errors > 0
            ? {
                note: [...hbCard.errorSamples, ...hbNoCard.errorSamples, ...stream.errorSamples]
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
          runs: [echoBefore, hbCard, hbNoCard, stream, echoAfter],
          echoMean: echo,
          echoDrift: drift,
        },
      };
    } finally {
      control.close();
      await Promise.all(workers.map((w) => w.stop()));
      await Promise.all([vigil.stop(), baseline.stop()]);
    }
  },
};
