import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { WatchStatusRequest, ControlServiceService } from '../../gen/vigil/v1/control_service.js';
import { RuntimeServiceService } from '../../gen/vigil/v1/runtime_service.js';
import {
  memoryOf,
  sleep,
  startVigil,
  startWorker,
  type LoadWorker,
  type VigilServer,
} from '../lib/children.js';
import {
  agentCard,
  heartbeatBytes,
  RUNTIME_URL,
  split,
  type BenchContext,
  type Scenario,
  type ScenarioOutcome,
} from '../lib/context.js';
import { sample, scrapeMetrics } from '../lib/metrics.js';
import type { LoadItem } from '../lib/protocol.js';
import { row } from '../lib/report.js';
import { round } from '../lib/stats.js';
import { seedDatabase } from '../lib/seed.js';

/**
 * Server memory per open idle stream. One fresh server per kind of stream:
 * a small warm set is opened first (connections, JIT, first-use allocations),
 * the server settles and its RSS is taken; then N more streams are opened and
 * the RSS taken again after settling. Per stream = growth / N.
 * - HeartbeatStream: each stream opened with one heartbeat (agent card
 *   included) answered, then idle;
 * - WatchStatus: each stream opened at the head (its first frame received), then idle.
 * No GC is forced (the server offers no trigger); "settled" means a few
 * seconds without traffic, the median of several RSS readings.
 */

interface Config {
  readonly streams: number;
  readonly warm: number;
  readonly workers: number;
  readonly channelsPerWorker: number;
  readonly settleMs: number;
}

const FULL: Config = {
  streams: 5_000,
  warm: 200,
  workers: 2,
  channelsPerWorker: 4,
  settleMs: 3_000,
};
const QUICK: Config = { ...FULL, streams: 1_000, warm: 100, settleMs: 1_500 };

const HEAP_USED = 'vigil_process_nodejs_heap_size_used_bytes';

interface Reading {
  readonly rssMiB: number;
  readonly heapUsedBytes: number | undefined;
}

/** Waits `settleMs`, then the median of 5 RSS readings 200 ms apart (and the heap used). */
async function settled(server: VigilServer, settleMs: number): Promise<Reading> {
  await sleep(settleMs);
  const readings: number[] = [];
  for (let i = 0; i < 5; i += 1) {
    readings.push(memoryOf(server.pid).rssMiB);
    await sleep(200);
  }
  readings.sort((a, b) => a - b);
  const metrics =
    server.metricsAddress === undefined
      ? undefined
      : await scrapeMetrics(server.metricsAddress).catch(() => undefined);
  return { rssMiB: readings[2] ?? Number.NaN, heapUsedBytes: sample(metrics, HEAP_USED) };
}

interface PerStream {
  readonly kb: number;
  readonly heapKb: number | undefined;
  readonly before: Reading;
  readonly after: Reading;
  readonly openMs: number;
}

function perStream(before: Reading, after: Reading, streams: number, openMs: number): PerStream {
  const bytes = (after.rssMiB - before.rssMiB) * 1024 * 1024;
  const heap =
    before.heapUsedBytes === undefined || after.heapUsedBytes === undefined
      ? undefined
      : (after.heapUsedBytes - before.heapUsedBytes) / streams / 1000;
  return { kb: bytes / streams / 1000, heapKb: heap, before, after, openMs };
}

export const memory: Scenario = {
  name: 'memory',
  title: 'server memory per open idle HeartbeatStream and WatchStatus stream',
  async run(context: BenchContext): Promise<ScenarioOutcome> {
    const config = context.quick ? QUICK : FULL;
    const total = config.warm + config.streams;
    const dataDir = context.tempDir('memory');
    const ids = Array.from({ length: total }, (_, i) => `mem-${String(i).padStart(6, '0')}`);
    const tokens = ids.map(() => `vgw_${randomBytes(32).toString('base64url')}`);
    context.progress(`seeding ${total} registered workspaces with known tokens`);
    await seedDatabase({
      file: join(dataDir, 'vigil.db'),
      count: total,
      id: (i) => ids[i] ?? '',
      token: (i) => tokens[i] ?? '',
      fate: () => 'online',
      card: agentCard,
      url: RUNTIME_URL,
    });
    // Idle streams must stay ONLINE (no sweep while measuring), and one control token
    // opens every WatchStatus stream.
    const flags = ['--offline-after', '10m', '--max-watch-streams', String(total + 10)];
    const workers: LoadWorker[] = [];
    for (let i = 0; i < config.workers; i += 1) workers.push(startWorker());

    const withServer = async <T>(
      logName: string,
      body: (server: VigilServer) => Promise<T>,
    ): Promise<T> => {
      const server = await startVigil({
        dataDir,
        controlToken: context.controlToken,
        flags,
        metrics: true,
        logName,
      });
      try {
        const result = await body(server);
        if (!server.alive()) throw new Error('vigil exited during the memory scenario');
        return result;
      } finally {
        await server.stop();
      }
    };

    try {
      const items: LoadItem[] = ids.map((id, i) => ({
        payload: heartbeatBytes(id, true),
        token: tokens[i] ?? '',
      }));
      const heartbeat = await withServer('vigil-heartbeat.log', async (server) => {
        const open = async (set: string, part: LoadItem[]) => {
          const parts = split(part, config.workers);
          const opened = await Promise.all(
            workers.map((worker, i) =>
              worker.run(
                {
                  kind: 'duplex-open',
                  set,
                  address: server.address,
                  path: RuntimeServiceService.heartbeatStream.path,
                  protocol: 'heartbeat',
                  channels: config.channelsPerWorker,
                  items: parts[i] ?? [],
                  openConcurrency: 500,
                  timeoutMs: 120_000,
                },
                130_000,
              ),
            ),
          );
          const primed = opened.reduce((n, o) => n + o.primed, 0);
          if (primed !== part.length) {
            throw new Error(
              `${set}: ${primed} of ${part.length} HeartbeatStreams answered: ${opened.flatMap((o) => o.errorSamples).join(' | ')}`,
            );
          }
          return Math.max(...opened.map((o) => o.ms));
        };
        await open('memory-warm', items.slice(0, config.warm));
        await context.awaitQuiet('memory: HeartbeatStream');
        const before = await settled(server, config.settleMs);
        context.progress(
          `HeartbeatStream: ${config.warm} warm streams open, RSS ${round(before.rssMiB, 1)} MiB; opening ${config.streams} more`,
        );
        const openMs = await open('memory', items.slice(config.warm));
        const after = await settled(server, config.settleMs);
        context.progress(
          `HeartbeatStream: ${total} streams open, RSS ${round(after.rssMiB, 1)} MiB`,
        );
        await Promise.all(
          workers.flatMap((w) => [
            w.run({ kind: 'duplex-close', set: 'memory' }, 30_000),
            w.run({ kind: 'duplex-close', set: 'memory-warm' }, 30_000),
          ]),
        );
        return perStream(before, after, config.streams, openMs);
      });

      const watch = await withServer('vigil-watch.log', async (server) => {
        const request = WatchStatusRequest.encode({
          workspaceIds: [],
          afterSeq: 0,
          includeSnapshot: false,
          resume: false,
        }).finish();
        const open = async (set: string, streams: number) => {
          const counts = split(
            Array.from({ length: streams }, () => 0),
            config.workers,
          ).map((p) => p.length);
          const opened = await Promise.all(
            workers.map((worker, i) =>
              worker.run(
                {
                  kind: 'watch-open',
                  set,
                  address: server.address,
                  path: ControlServiceService.watchStatus.path,
                  request,
                  token: context.controlToken,
                  channels: config.channelsPerWorker,
                  streams: counts[i] ?? 0,
                  openBatch: 500,
                  timeoutMs: 120_000,
                },
                130_000,
              ),
            ),
          );
          const ready = opened.reduce((n, o) => n + o.ready, 0);
          if (ready !== streams) throw new Error(`${set}: ${ready} of ${streams} streams ready`);
          return Math.max(...opened.map((o) => o.ms));
        };
        await open('memory-warm', config.warm);
        await context.awaitQuiet('memory: WatchStatus');
        const before = await settled(server, config.settleMs);
        context.progress(
          `WatchStatus: ${config.warm} warm streams open, RSS ${round(before.rssMiB, 1)} MiB; opening ${config.streams} more`,
        );
        const openMs = await open('memory', config.streams);
        const after = await settled(server, config.settleMs);
        context.progress(`WatchStatus: ${total} streams open, RSS ${round(after.rssMiB, 1)} MiB`);
        await Promise.all(
          workers.flatMap((w) => [
            w.run({ kind: 'watch-close', set: 'memory' }, 30_000),
            w.run({ kind: 'watch-close', set: 'memory-warm' }, 30_000),
          ]),
        );
        return perStream(before, after, config.streams, openMs);
      });

      const mib = (r: Reading) => round(r.rssMiB * 1.048576, 1);
      const note = (p: PerStream, what: string) =>
        `${config.streams} ${what} on top of ${config.warm} warm ones: RSS ${mib(p.before)} -> ${mib(p.after)} MB after ${config.settleMs / 1000} s settling (no forced GC: the server has no trigger); V8 heap used ${p.heapKb === undefined ? '?' : round(p.heapKb, 2)} KB per stream; opened in ${Math.round(p.openMs)} ms`;
      const s = 'memory';
      return {
        rows: [
          row(s, {
            id: 'heartbeat_stream_kb',
            metric: 'server RSS per open idle HeartbeatStream (after one heartbeat with card)',
            value: heartbeat.kb,
            unit: 'KB',
            target: { on: 'value', op: '<=', bound: 20 },
            note: note(heartbeat, 'HeartbeatStreams'),
          }),
          row(s, {
            id: 'watch_stream_kb',
            metric: 'server RSS per open idle WatchStatus stream',
            value: watch.kb,
            unit: 'KB',
            note: note(watch, 'WatchStatus streams'),
          }),
        ],
        details: { config, flags, heartbeat, watch },
      };
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
  },
};
