import { performance } from 'node:perf_hooks';
import {
  Metadata,
  type Client,
  type ClientDuplexStream,
  type ClientReadableStream,
  type StatusObject,
} from '@grpc/grpc-js';
import { HeartbeatStreamResponse } from '../gen/vigil/v1/runtime_service.js';
import { WatchStatusResponse } from '../gen/vigil/v1/control_service.js';
import { createLatencyRecorder } from './lib/stats.js';
import type {
  DuplexOpenResult,
  DuplexOpenTask,
  DuplexProtocol,
  DuplexRunTask,
  FleetRunResult,
  FleetRunTask,
  LoadItem,
  LoadResult,
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
import {
  bearer,
  identity,
  isTransitionFrame,
  leadingRequestId,
  leaseKeepAliveTtl,
  newClient,
  streamRequestBytes,
} from './lib/wire.js';

/**
 * A load generator process, driven by the bench driver over IPC (see
 * lib/protocol.ts). Keeping load generation out of the driver and the servers
 * means every process's CPU is its own. All clients use the generic grpc-js
 * calls with identity serializers, for the baseline and for Vigil alike.
 */

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

/** One long-lived bidi stream of a set and its unanswered requests. */
interface DuplexMember {
  readonly call: ClientDuplexStream<Buffer, Buffer>;
  readonly payload: Uint8Array;
  /** The request sent every time (the `lease` protocol), else undefined. */
  readonly fixed: Buffer | undefined;
  readonly pending: Pending;
  nextId: number;
  failed: boolean;
  /** The first request: 'pending' until it is answered or the stream fails. */
  prime: 'pending' | 'ok' | 'failed';
}

/** What the phase under way (opening, a run) does with each answer and each failed stream. */
interface Phase {
  answer(member: DuplexMember, ok: boolean, latencyMs: number, doneAt: number): void;
  failed(member: DuplexMember, pendingBefore: number): void;
}

interface DuplexSet {
  readonly protocol: DuplexProtocol;
  readonly clients: Client[];
  readonly members: DuplexMember[];
  phase: Phase | undefined;
  acked: number;
  errors: number;
  streamErrors: number;
  errorSamples: string[];
  closing: boolean;
  answerBytes: number;
}

const duplexSets = new Map<string, DuplexSet>();

function duplexSet(name: string): DuplexSet {
  const set = duplexSets.get(name);
  if (!set) throw new Error(`no stream set "${name}"`);
  return set;
}

function noteOn(set: DuplexSet, text: string): void {
  if (set.errorSamples.length < MAX_ERROR_SAMPLES) set.errorSamples.push(text);
}

/** 'ok', or what is wrong with an answer to the request numbered `expectedId`. */
function checkAnswer(protocol: DuplexProtocol, frame: Buffer, expectedId: number): string {
  switch (protocol) {
    case 'heartbeat':
      return classify(frame, expectedId);
    case 'echo': {
      const id = leadingRequestId(frame);
      return id === expectedId ? 'ok' : `echo of request ${id}, expected ${expectedId}`;
    }
    case 'lease': {
      const ttl = leaseKeepAliveTtl(frame);
      return ttl > 0 && ttl < 2 ** 32 ? 'ok' : `keepalive answered TTL ${ttl} (lease gone)`;
    }
  }
}

function sendOn(member: DuplexMember): void {
  pushPending(member.pending, member.nextId, performance.now());
  member.call.write(member.fixed ?? streamRequestBytes(member.nextId, member.payload));
  member.nextId += 1;
}

/** Opens every stream of the set with one request each; resolves once all are answered. */
async function openDuplexSet(task: DuplexOpenTask): Promise<DuplexOpenResult> {
  if (duplexSets.has(task.set)) throw new Error(`stream set "${task.set}" is already open`);
  const started = performance.now();
  const set: DuplexSet = {
    protocol: task.protocol,
    clients: openClients(task.address, task.channels),
    members: [],
    phase: undefined,
    acked: 0,
    errors: 0,
    streamErrors: 0,
    errorSamples: [],
    closing: false,
    answerBytes: 0,
  };
  duplexSets.set(task.set, set);
  const baseMetadata = new Metadata();
  for (const [key, value] of Object.entries(task.metadata ?? {})) baseMetadata.set(key, value);

  const openOne = (index: number, item: LoadItem) => {
    const client = set.clients[index % set.clients.length] as Client;
    const metadata = baseMetadata.clone();
    if (item.token !== '') metadata.set('authorization', `Bearer ${item.token}`);
    const call: ClientDuplexStream<Buffer, Buffer> = client.makeBidiStreamRequest(
      task.path,
      identity,
      identity,
      metadata,
      {},
    );
    const member: DuplexMember = {
      call,
      payload: item.payload,
      fixed: task.protocol === 'lease' ? Buffer.from(item.payload) : undefined,
      pending: { ids: [], sentAt: [], head: 0 },
      nextId: 1,
      failed: false,
      prime: 'pending',
    };
    set.members.push(member);
    call.on('data', (frame: Buffer) => {
      const done = performance.now();
      const sent = shiftPending(member.pending);
      const outcome = sent
        ? checkAnswer(set.protocol, frame, sent.id)
        : 'answer with nothing outstanding';
      set.answerBytes = frame.length;
      const ok = outcome === 'ok';
      if (ok) set.acked += 1;
      else {
        set.errors += 1;
        noteOn(set, outcome);
      }
      set.phase?.answer(member, ok, sent ? done - sent.sentAt : Number.NaN, done);
    });
    const fail = (description: string) => {
      if (member.failed) return;
      member.failed = true;
      const pendingBefore = pendingCount(member.pending);
      member.pending.head = member.pending.ids.length;
      if (set.closing) return;
      set.streamErrors += 1;
      noteOn(set, `stream: ${description}`);
      set.phase?.failed(member, pendingBefore);
    };
    call.on('error', (error) => {
      fail(describe(error));
    });
    call.on('status', (status: StatusObject) => {
      fail(`ended by the server: code ${status.code} ${status.details}`);
    });
    sendOn(member);
  };

  let opened = 0;
  let primed = 0;
  let failedOpen = 0;
  const deadline = started + task.timeoutMs;
  try {
    await new Promise<void>((resolve, reject) => {
      const pump = () => {
        while (opened < task.items.length && opened - primed - failedOpen < task.openConcurrency) {
          const item = task.items[opened];
          opened += 1;
          if (item) openOne(opened - 1, item);
        }
        if (primed + failedOpen >= task.items.length) {
          clearTimeout(timer);
          resolve();
        }
      };
      const settle = (member: DuplexMember, ok: boolean) => {
        if (member.prime !== 'pending') return;
        member.prime = ok ? 'ok' : 'failed';
        if (ok) primed += 1;
        else failedOpen += 1;
        pump();
      };
      const timer = setTimeout(
        () => {
          reject(
            new Error(
              `${task.set}: ${primed} of ${task.items.length} streams answered their first request in time: ${set.errorSamples.join(' | ')}`,
            ),
          );
        },
        Math.max(1, deadline - performance.now()),
      );
      set.phase = {
        answer(member, ok) {
          settle(member, ok);
        },
        failed(member) {
          settle(member, false);
        },
      };
      pump();
    });
  } finally {
    set.phase = undefined;
  }
  return {
    primed,
    failed: failedOpen,
    errorSamples: [...set.errorSamples],
    ms: performance.now() - started,
    answerBytes: set.answerBytes,
  };
}

/** Closed loop: every stream keeps `pipeline` requests outstanding, each answer sends the next. */
async function runDuplex(task: DuplexRunTask): Promise<LoadResult> {
  const set = duplexSet(task.set);
  const latencies = createLatencyRecorder();
  const base = { errors: set.errors, streamErrors: set.streamErrors };
  set.errorSamples.length = 0;
  let ok = 0;
  let errors = 0;
  await until(task.startAt);
  const start = performance.now();
  const windowStart = start + task.warmupMs;
  const end = windowStart + task.durationMs;
  const cpu = process.cpuUsage();
  let cpuAtWindow: NodeJS.CpuUsage | undefined;
  const windowTimer = setTimeout(() => {
    cpuAtWindow = process.cpuUsage();
  }, task.warmupMs);

  let inFlight = 0;
  await new Promise<void>((resolve) => {
    const finishIfDrained = () => {
      if (inFlight <= 0 && performance.now() >= end) {
        clearTimeout(endTimer);
        clearTimeout(cutTimer);
        resolve();
      }
    };
    set.phase = {
      answer(member, good, latencyMs, doneAt) {
        inFlight -= 1;
        const inWindow = doneAt >= windowStart && doneAt <= end;
        if (inWindow) {
          if (good) {
            ok += 1;
            latencies.add(latencyMs);
          } else {
            errors += 1;
          }
        }
        if (doneAt < end && !member.failed) {
          sendOn(member);
          inFlight += 1;
        } else {
          finishIfDrained();
        }
      },
      failed(_member, pendingBefore) {
        inFlight -= pendingBefore;
        finishIfDrained();
      },
    };
    for (const member of set.members) {
      if (member.failed) continue;
      for (let p = 0; p < task.pipeline; p += 1) {
        sendOn(member);
        inFlight += 1;
      }
    }
    // Streams whose answers all came in before the end: checked once the window closes.
    const endTimer = setTimeout(finishIfDrained, end - performance.now() + 1);
    // Bounded: answers still missing 10 s after the run are given up on.
    const cutTimer = setTimeout(
      () => {
        noteOn(set, `${inFlight} requests still unanswered 10 s after the run`);
        resolve();
      },
      end - performance.now() + 10_000,
    );
  });
  set.phase = undefined;
  clearTimeout(windowTimer);
  const cpuMs = cpuMsSince(cpuAtWindow ?? cpu);
  return {
    ok,
    errors,
    errorsTotal: set.errors - base.errors,
    streamErrors: set.streamErrors - base.streamErrors,
    errorSamples: [...set.errorSamples],
    latenciesMs: latencies.samples(),
    windowMs: task.durationMs,
    cpuMs,
  };
}

function closeDuplexSet(name: string): null {
  const set = duplexSets.get(name);
  if (!set) return null;
  set.closing = true;
  set.phase = undefined;
  for (const member of set.members) {
    member.failed = true;
    member.call.cancel();
  }
  closeClients(set.clients);
  duplexSets.delete(name);
  return null;
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

/**
 * Every stream of an open `heartbeat` set heartbeats once per interval at its
 * own random phase, open loop (on schedule whether or not the last one was
 * answered, up to `maxOutstanding` unanswered). Sends walk the members sorted
 * by phase, so a timer tick costs only the heartbeats that are due.
 */
async function runFleet(task: FleetRunTask): Promise<FleetRunResult> {
  const set = duplexSet(task.set);
  const members = set.members;
  const phases = members.map(() => Math.random() * task.intervalMs);
  const order = members.map((_, i) => i).sort((a, b) => (phases[a] ?? 0) - (phases[b] ?? 0));
  const recorder = createLatencyRecorder(2_000_000);
  const base = { acked: set.acked, errors: set.errors, streams: set.streamErrors };
  set.errorSamples.length = 0;
  let offered = 0;
  let sent = 0;
  let skipped = 0;
  let maxSendLagMs = 0;

  await until(task.startAt);
  const cpu = process.cpuUsage();
  set.phase = {
    answer(_member, ok, latencyMs) {
      if (ok) recorder.add(latencyMs);
    },
    failed() {
      // counted by the set
    },
  };
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
        offered += 1;
        if (member && !member.failed) {
          if (pendingCount(member.pending) >= task.maxOutstanding) skipped += 1;
          else {
            sendOn(member);
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
  set.phase = undefined;
  return {
    offered,
    sent,
    acked: set.acked - base.acked,
    errors: set.errors - base.errors,
    streamErrors: set.streamErrors - base.streams,
    skipped,
    unanswered: outstanding(),
    errorSamples: [...set.errorSamples],
    latenciesMs: recorder.samples(),
    maxSendLagMs,
    cpuMs: cpuMsSince(cpu),
  };
}

async function perform(task: WorkerTask): Promise<unknown> {
  switch (task.kind) {
    case 'unary':
      return runUnary(task);
    case 'duplex-open':
      return openDuplexSet(task);
    case 'duplex-run':
      return runDuplex(task);
    case 'duplex-close':
      return closeDuplexSet(task.set);
    case 'watch-open':
      return openWatchSet(task);
    case 'watch-arm':
      return armWatchSet(task);
    case 'watch-collect':
      return collectWatchSet(task);
    case 'watch-close':
      return closeWatchSet(task.set);
    case 'fleet-run':
      return runFleet(task);
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
