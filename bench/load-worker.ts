import { performance } from 'node:perf_hooks';
import type { Client, ClientDuplexStream, ClientReadableStream, Metadata } from '@grpc/grpc-js';
import { HeartbeatStreamResponse } from '../gen/vigil/v1/runtime_service.js';
import { WatchStatusResponse } from '../gen/vigil/v1/control_service.js';
import { createLatencyRecorder } from './lib/stats.js';
import type {
  FleetOpenResult,
  FleetOpenTask,
  FleetRunResult,
  FleetRunTask,
  LoadResult,
  StreamLoadTask,
  UnaryLoadTask,
  WatchArmTask,
  WatchCollectResult,
  WatchCollectTask,
  WatchOpenResult,
  WatchOpenTask,
  WorkerReply,
  WorkerRequest,
  WorkerTask,
} from './lib/protocol.js';
import { bearer, identity, isTransitionFrame, newClient, streamRequestBytes } from './lib/wire.js';

/**
 * A load generator process, driven by the bench driver over IPC (see
 * lib/protocol.ts). Keeping load generation out of the driver and the servers
 * means every process's CPU is its own. All clients use the generic grpc-js
 * calls with identity serializers, for the baseline and for Vigil alike.
 */

const HEARTBEAT_STREAM_PATH = '/vigil.v1.RuntimeService/HeartbeatStream';
const MAX_ERROR_SAMPLES = 5;

/** Wall-clock epoch ms with sub-ms resolution, comparable across processes. */
const wallNow = (): number => performance.timeOrigin + performance.now();

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'number' ? `code ${code}: ${error.message}` : error.message;
  }
  return String(error);
}

function cpuMsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** Waits until the wall-clock time `at` (epoch ms). */
async function until(at: number): Promise<void> {
  await sleep(at - wallNow());
}

function openClients(address: string, count: number): Client[] {
  return Array.from({ length: count }, () => newClient(address));
}

function closeClients(clients: readonly Client[]): void {
  for (const client of clients) client.close();
}

/** Fixed concurrency unary load: each slot issues its next call when the last one completes. */
async function runUnary(task: UnaryLoadTask): Promise<LoadResult> {
  const clients = openClients(task.address, task.channels);
  const metadata = task.items.map((item) => bearer(item.token));
  const payloads = task.items.map((item) => Buffer.from(item.payload));
  const latencies = createLatencyRecorder();
  const errorSamples: string[] = [];
  let ok = 0;
  let errors = 0;
  let errorsTotal = 0;
  let next = 0;
  await until(task.startAt);
  const start = performance.now();
  const windowStart = start + task.warmupMs;
  const end = windowStart + task.durationMs;
  const cpu = process.cpuUsage();
  let cpuAtWindow: NodeJS.CpuUsage | undefined;
  const windowTimer = setTimeout(() => {
    cpuAtWindow = process.cpuUsage();
  }, task.warmupMs);

  await new Promise<void>((resolve) => {
    let running = 0;
    const issue = (client: Client): void => {
      if (performance.now() >= end) {
        running -= 1;
        if (running === 0) resolve();
        return;
      }
      const i = next % payloads.length;
      next += 1;
      const sent = performance.now();
      client.makeUnaryRequest(
        task.path,
        identity,
        identity,
        payloads[i] ?? Buffer.alloc(0),
        (metadata[i] as Metadata).clone(),
        {},
        (error) => {
          const done = performance.now();
          const inWindow = done >= windowStart && done <= end;
          if (error) {
            errorsTotal += 1;
            if (inWindow) errors += 1;
            if (errorSamples.length < MAX_ERROR_SAMPLES) errorSamples.push(describe(error));
          } else if (inWindow) {
            ok += 1;
            latencies.add(done - sent);
          }
          issue(client);
        },
      );
    };
    for (const client of clients) {
      for (let c = 0; c < task.concurrencyPerChannel; c += 1) {
        running += 1;
        issue(client);
      }
    }
  });
  clearTimeout(windowTimer);
  const cpuMs = cpuMsSince(cpuAtWindow ?? cpu);
  closeClients(clients);
  return {
    ok,
    errors,
    errorsTotal,
    streamErrors: 0,
    errorSamples,
    latenciesMs: latencies.samples(),
    windowMs: task.durationMs,
    cpuMs,
  };
}

/** Per-stream FIFO of send times: responses on a HeartbeatStream come back in order. */
interface Pending {
  ids: number[];
  sentAt: number[];
  head: number;
}

function pendingCount(p: Pending): number {
  return p.ids.length - p.head;
}

function pushPending(p: Pending, id: number, at: number): void {
  if (p.head > 64 && p.head * 2 > p.ids.length) {
    p.ids = p.ids.slice(p.head);
    p.sentAt = p.sentAt.slice(p.head);
    p.head = 0;
  }
  p.ids.push(id);
  p.sentAt.push(at);
}

function shiftPending(p: Pending): { id: number; sentAt: number } | undefined {
  if (p.head >= p.ids.length) return undefined;
  const id = p.ids[p.head] ?? -1;
  const sentAt = p.sentAt[p.head] ?? Number.NaN;
  p.head += 1;
  return { id, sentAt };
}

/** Classifies one HeartbeatStreamResponse: 'ok', or a description of what is wrong. */
function classify(frame: Buffer, expectedId: number): string {
  const response = HeartbeatStreamResponse.decode(frame);
  if (response.requestId !== expectedId) {
    return `response for request ${response.requestId}, expected ${expectedId}`;
  }
  const result = response.result;
  if (result?.$case === 'heartbeat') return 'ok';
  if (result?.$case === 'error') {
    return `code ${result.value.code} ${result.value.reason}: ${result.value.message}`;
  }
  return 'empty response';
}

/** Heartbeats pipelined over one HeartbeatStream per workspace, as fast as they are answered. */
async function runStream(task: StreamLoadTask): Promise<LoadResult> {
  const clients = openClients(task.address, task.channels);
  const latencies = createLatencyRecorder();
  const errorSamples: string[] = [];
  const note = (text: string) => {
    if (errorSamples.length < MAX_ERROR_SAMPLES) errorSamples.push(text);
  };
  let ok = 0;
  let errors = 0;
  let errorsTotal = 0;
  let streamErrors = 0;
  await until(task.startAt);
  const start = performance.now();
  const windowStart = start + task.warmupMs;
  const end = windowStart + task.durationMs;
  const cpu = process.cpuUsage();
  let cpuAtWindow: NodeJS.CpuUsage | undefined;
  const windowTimer = setTimeout(() => {
    cpuAtWindow = process.cpuUsage();
  }, task.warmupMs);

  await new Promise<void>((resolve) => {
    let open = task.items.length;
    const finished = () => {
      open -= 1;
      if (open === 0) resolve();
    };
    task.items.forEach((item, index) => {
      const client = clients[index % clients.length] as Client;
      const call: ClientDuplexStream<Buffer, Buffer> = client.makeBidiStreamRequest(
        HEARTBEAT_STREAM_PATH,
        identity,
        identity,
        bearer(item.token),
        {},
      );
      const pending: Pending = { ids: [], sentAt: [], head: 0 };
      let nextId = 1;
      let ending = false;
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        finished();
      };
      const send = () => {
        if (performance.now() >= end) {
          if (!ending) {
            ending = true;
            call.end();
          }
          return;
        }
        pushPending(pending, nextId, performance.now());
        call.write(streamRequestBytes(nextId, item.payload));
        nextId += 1;
      };
      call.on('data', (frame: Buffer) => {
        const done = performance.now();
        const sent = shiftPending(pending);
        const outcome = sent ? classify(frame, sent.id) : 'response with nothing outstanding';
        const inWindow = done >= windowStart && done <= end;
        if (outcome === 'ok') {
          if (inWindow && sent) {
            ok += 1;
            latencies.add(done - sent.sentAt);
          }
        } else {
          errorsTotal += 1;
          if (inWindow) errors += 1;
          note(outcome);
        }
        send();
      });
      call.on('error', (error) => {
        streamErrors += 1;
        note(`stream: ${describe(error)}`);
        close();
      });
      call.on('end', close);
      call.on('status', close);
      for (let p = 0; p < task.pipeline; p += 1) send();
    });
    // Bounded: streams that do not finish within a grace period are cut.
    setTimeout(
      () => {
        if (open > 0) note(`${open} streams still open 10 s after the run; cancelled`);
        resolve();
      },
      end - performance.now() + 10_000,
    ).unref();
  });
  clearTimeout(windowTimer);
  const cpuMs = cpuMsSince(cpuAtWindow ?? cpu);
  closeClients(clients);
  return {
    ok,
    errors,
    errorsTotal,
    streamErrors,
    errorSamples,
    latenciesMs: latencies.samples(),
    windowMs: task.durationMs,
    cpuMs,
  };
}

/** A set of open server streams used for fan-out trials. */
interface WatchSet {
  readonly clients: Client[];
  readonly calls: ClientReadableStream<Buffer>[];
  readonly ready: Uint8Array;
  readonly got: Uint8Array;
  readyCount: number;
  gotCount: number;
  failed: number;
  armed: boolean;
  closing: boolean;
  expectWorkspaceId: string;
  mismatches: number;
  errorSamples: string[];
  firstArrival: number;
  lastArrival: number;
  onReady: (() => void) | undefined;
  onAllGot: (() => void) | undefined;
}

const watchSets = new Map<string, WatchSet>();

function watchSet(name: string): WatchSet {
  const set = watchSets.get(name);
  if (!set) throw new Error(`no watch set "${name}"`);
  return set;
}

async function openWatchSet(task: WatchOpenTask): Promise<WatchOpenResult> {
  if (watchSets.has(task.set)) throw new Error(`watch set "${task.set}" is already open`);
  const started = performance.now();
  const set: WatchSet = {
    clients: openClients(task.address, task.channels),
    calls: [],
    ready: new Uint8Array(task.streams),
    got: new Uint8Array(task.streams),
    readyCount: 0,
    gotCount: 0,
    failed: 0,
    armed: false,
    closing: false,
    expectWorkspaceId: '',
    mismatches: 0,
    errorSamples: [],
    firstArrival: Number.POSITIVE_INFINITY,
    lastArrival: 0,
    onReady: undefined,
    onAllGot: undefined,
  };
  watchSets.set(task.set, set);
  const metadata = bearer(task.token);
  const request = Buffer.from(task.request);
  const deadline = started + task.timeoutMs;

  const openOne = (index: number) => {
    const client = set.clients[index % set.clients.length] as Client;
    const call = client.makeServerStreamRequest(
      task.path,
      identity,
      identity,
      request,
      metadata.clone(),
      {},
    );
    set.calls.push(call);
    call.on('data', (frame: Buffer) => {
      if (set.ready[index] === 0) {
        set.ready[index] = 1;
        set.readyCount += 1;
        set.onReady?.();
        return;
      }
      if (!set.armed || set.got[index] === 1 || !isTransitionFrame(frame)) return;
      const at = wallNow();
      set.got[index] = 1;
      set.gotCount += 1;
      if (at < set.firstArrival) set.firstArrival = at;
      if (at > set.lastArrival) set.lastArrival = at;
      // Check one stream's frame in full: it must be the transition the driver caused.
      if (index === 0 && set.expectWorkspaceId !== '') {
        const event = WatchStatusResponse.decode(frame).event;
        if (event?.$case !== 'transition' || event.value.workspaceId !== set.expectWorkspaceId) {
          set.mismatches += 1;
        }
      }
      if (set.gotCount === set.calls.length) set.onAllGot?.();
    });
    call.on('error', (error) => {
      if (set.closing) return;
      set.failed += 1;
      if (set.errorSamples.length < MAX_ERROR_SAMPLES) set.errorSamples.push(describe(error));
      set.onReady?.();
    });
  };

  for (let opened = 0; opened < task.streams;) {
    const batchEnd = Math.min(task.streams, opened + task.openBatch);
    for (; opened < batchEnd; opened += 1) openOne(opened);
    const target = batchEnd;
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (set.failed > 0) {
          set.onReady = undefined;
          clearTimeout(timer);
          reject(
            new Error(
              `${set.failed} of ${target} streams failed while opening: ${set.errorSamples.join(' | ')}`,
            ),
          );
        } else if (set.readyCount >= target) {
          set.onReady = undefined;
          clearTimeout(timer);
          resolve();
        }
      };
      const timer = setTimeout(
        () => {
          set.onReady = undefined;
          reject(
            new Error(
              `only ${set.readyCount} of ${target} streams got their first frame (${set.failed} failed)`,
            ),
          );
        },
        Math.max(1, deadline - performance.now()),
      );
      set.onReady = check;
      check();
    });
  }
  return { ready: set.readyCount, ms: performance.now() - started };
}

function armWatchSet(task: WatchArmTask): null {
  const set = watchSet(task.set);
  set.got.fill(0);
  set.gotCount = 0;
  set.firstArrival = Number.POSITIVE_INFINITY;
  set.lastArrival = 0;
  set.expectWorkspaceId = task.expectWorkspaceId;
  set.armed = true;
  return null;
}

async function collectWatchSet(task: WatchCollectTask): Promise<WatchCollectResult> {
  const set = watchSet(task.set);
  if (set.gotCount < set.calls.length) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, task.timeoutMs);
      set.onAllGot = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    set.onAllGot = undefined;
  }
  set.armed = false;
  return {
    received: set.gotCount,
    streams: set.calls.length,
    firstArrival: set.firstArrival,
    lastArrival: set.lastArrival,
    mismatches: set.mismatches,
    failed: set.failed,
  };
}

function closeWatchSet(name: string): null {
  const set = watchSets.get(name);
  if (!set) return null;
  set.closing = true;
  for (const call of set.calls) call.cancel();
  closeClients(set.clients);
  watchSets.delete(name);
  return null;
}

/** One simulated workspace of the fleet: its stream and its unanswered heartbeats. */
interface FleetMember {
  readonly call: ClientDuplexStream<Buffer, Buffer>;
  readonly payload: Uint8Array;
  readonly pending: Pending;
  nextId: number;
  failed: boolean;
  /** The first heartbeat: 'pending' until it is answered or the stream fails. */
  prime: 'pending' | 'ok' | 'failed';
}

interface Fleet {
  readonly clients: Client[];
  readonly members: FleetMember[];
  /** Set while a run measures; answers outside a run are only checked. */
  recording: ReturnType<typeof createLatencyRecorder> | undefined;
  acked: number;
  errors: number;
  streamErrors: number;
  errorSamples: string[];
  onAnswer: (() => void) | undefined;
}

let fleet: Fleet | undefined;

async function openFleet(task: FleetOpenTask): Promise<FleetOpenResult> {
  if (fleet) throw new Error('the fleet is already open');
  const started = performance.now();
  const current: Fleet = {
    clients: openClients(task.address, task.channels),
    members: [],
    recording: undefined,
    acked: 0,
    errors: 0,
    streamErrors: 0,
    errorSamples: [],
    onAnswer: undefined,
  };
  fleet = current;
  const note = (text: string) => {
    if (current.errorSamples.length < MAX_ERROR_SAMPLES) current.errorSamples.push(text);
  };
  let primed = 0;
  let failedOpen = 0;

  const sendHeartbeat = (member: FleetMember): void => {
    pushPending(member.pending, member.nextId, performance.now());
    member.call.write(streamRequestBytes(member.nextId, member.payload));
    member.nextId += 1;
  };

  const openOne = (index: number, item: (typeof task.items)[number]) => {
    const client = current.clients[index % current.clients.length] as Client;
    const call: ClientDuplexStream<Buffer, Buffer> = client.makeBidiStreamRequest(
      HEARTBEAT_STREAM_PATH,
      identity,
      identity,
      bearer(item.token),
      {},
    );
    const member: FleetMember = {
      call,
      payload: item.payload,
      pending: { ids: [], sentAt: [], head: 0 },
      nextId: 1,
      failed: false,
      prime: 'pending',
    };
    current.members.push(member);
    call.on('data', (frame: Buffer) => {
      const done = performance.now();
      const sent = shiftPending(member.pending);
      const outcome = sent ? classify(frame, sent.id) : 'response with nothing outstanding';
      if (outcome === 'ok') {
        current.acked += 1;
        if (sent && current.recording) current.recording.add(done - sent.sentAt);
      } else {
        current.errors += 1;
        note(outcome);
      }
      if (member.prime === 'pending') {
        member.prime = outcome === 'ok' ? 'ok' : 'failed';
        if (outcome === 'ok') primed += 1;
        else failedOpen += 1;
      }
      current.onAnswer?.();
    });
    call.on('error', (error) => {
      if (member.failed) return;
      member.failed = true;
      current.streamErrors += 1;
      if (fleet === current) note(`stream: ${describe(error)}`);
      if (member.prime === 'pending') {
        member.prime = 'failed';
        failedOpen += 1;
      }
      current.onAnswer?.();
    });
    sendHeartbeat(member);
  };

  const deadline = started + task.timeoutMs;
  let opened = 0;
  await new Promise<void>((resolve, reject) => {
    const pump = () => {
      while (opened < task.items.length && opened - primed - failedOpen < task.openConcurrency) {
        const item = task.items[opened];
        if (item) openOne(opened, item);
        opened += 1;
      }
      if (primed + failedOpen >= task.items.length) {
        current.onAnswer = undefined;
        clearTimeout(timer);
        resolve();
      }
    };
    const timer = setTimeout(
      () => {
        current.onAnswer = undefined;
        reject(
          new Error(
            `fleet open: ${primed} of ${task.items.length} streams primed in time: ${current.errorSamples.join(' | ')}`,
          ),
        );
      },
      Math.max(1, deadline - performance.now()),
    );
    current.onAnswer = pump;
    pump();
  });
  // The sender of the runs.
  fleetSend = sendHeartbeat;
  return {
    primed,
    failed: failedOpen,
    errorSamples: [...current.errorSamples],
    ms: performance.now() - started,
  };
}

let fleetSend: ((member: FleetMember) => void) | undefined;

/**
 * Every member heartbeats once per interval at its own random phase, open
 * loop (on schedule whether or not the last one was answered, up to
 * `maxOutstanding` unanswered). Sends walk the members sorted by phase, so a
 * timer tick costs only the heartbeats that are due.
 */
async function runFleet(task: FleetRunTask): Promise<FleetRunResult> {
  const current = fleet;
  const send = fleetSend;
  if (!current || !send) throw new Error('the fleet is not open');
  const members = current.members;
  const phases = members.map(() => Math.random() * task.intervalMs);
  const order = members.map((_, i) => i).sort((a, b) => (phases[a] ?? 0) - (phases[b] ?? 0));
  const recorder = createLatencyRecorder(2_000_000);
  const base = { acked: current.acked, errors: current.errors, streams: current.streamErrors };
  current.errorSamples.length = 0;
  let sent = 0;
  let skipped = 0;
  let maxSendLagMs = 0;

  await until(task.startAt);
  const cpu = process.cpuUsage();
  current.recording = recorder;
  const start = performance.now();
  const end = start + task.durationMs;
  let round = 0;
  let cursor = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      for (;;) {
        const index = order[cursor];
        if (index === undefined) break;
        const due = start + round * task.intervalMs + (phases[index] ?? 0);
        if (due > now || due >= end) break;
        const member = members[index];
        if (member && !member.failed) {
          if (pendingCount(member.pending) >= task.maxOutstanding) skipped += 1;
          else {
            send(member);
            sent += 1;
            if (now - due > maxSendLagMs) maxSendLagMs = now - due;
          }
        }
        cursor += 1;
        if (cursor === order.length) {
          cursor = 0;
          round += 1;
        }
      }
      if (now >= end) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 5);
  });

  // Drain: wait (bounded) for the answers to everything sent.
  const outstanding = () =>
    members.reduce((n, m) => n + (m.failed ? 0 : pendingCount(m.pending)), 0);
  const drainUntil = performance.now() + task.drainMs;
  while (outstanding() > 0 && performance.now() < drainUntil) await sleep(20);
  current.recording = undefined;
  return {
    sent,
    acked: current.acked - base.acked,
    errors: current.errors - base.errors,
    streamErrors: current.streamErrors - base.streams,
    skipped,
    unanswered: outstanding(),
    errorSamples: [...current.errorSamples],
    latenciesMs: recorder.samples(),
    maxSendLagMs,
    cpuMs: cpuMsSince(cpu),
  };
}

function closeFleet(): null {
  const current = fleet;
  if (!current) return null;
  fleet = undefined;
  fleetSend = undefined;
  for (const member of current.members) {
    member.failed = true;
    member.call.cancel();
  }
  closeClients(current.clients);
  return null;
}

async function perform(task: WorkerTask): Promise<unknown> {
  switch (task.kind) {
    case 'unary':
      return runUnary(task);
    case 'stream':
      return runStream(task);
    case 'watch-open':
      return openWatchSet(task);
    case 'watch-arm':
      return armWatchSet(task);
    case 'watch-collect':
      return collectWatchSet(task);
    case 'watch-close':
      return closeWatchSet(task.set);
    case 'fleet-open':
      return openFleet(task);
    case 'fleet-run':
      return runFleet(task);
    case 'fleet-close':
      return closeFleet();
  }
}

function reply(message: WorkerReply): void {
  process.send?.(message);
}

process.on('message', (message: WorkerRequest) => {
  perform(message.task).then(
    (result) => {
      reply({ id: message.id, ok: true, result });
    },
    (error: unknown) => {
      reply({ id: message.id, ok: false, error: describe(error) });
    },
  );
});

// Never outlive the driver.
process.on('disconnect', () => {
  process.exit(0);
});
