import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { Etcd3, type IKeyValue, type IWatchResponse } from 'etcd3';
import {
  ControlServiceClient,
  type WatchStatusResponse,
} from '../../gen/vigil/v1/control_service.js';
import { TransitionReason, WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { adoptChild, type EtcdCluster } from './etcd-cluster.js';
import { createHistory, monoNow, type History } from './history.js';
import { freePort, VIGIL_MAIN } from './processes.js';
import type {
  SidecarCommand,
  SidecarFleetConfig,
  SidecarReply,
  SidecarStats,
} from './sidecar-fleet.js';

/**
 * Vigil replicas as child processes on one etcd cluster, the sidecar load
 * generator beside them, one WatchStatus observer per replica, and the etcd
 * facts the checker needs (who committed each transition at which revision,
 * each replica lease's lifetime) — all logged into one history.
 */

/** CI timings of the cluster tests (CLUSTER.md: heartbeat 1 s, offline_after 4 s, lease 3 s). */
export const CI_TIMINGS = {
  heartbeatIntervalMs: 1_000,
  offlineAfterMs: 4_000,
  replicaLeaseMs: 3_000,
} as const;

const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms);
  });

export interface Replica {
  readonly id: string;
  /** HOST:PORT (gRPC, also advertised to the other replicas). */
  readonly address: string;
  readonly metricsUrl: string;
  readonly logFile: string;
  pid(): number | undefined;
  alive(): boolean;
  /** kill -9 by PID; resolves once it exited. */
  kill(): Promise<void>;
  /** SIGTERM by PID; resolves once it exited. */
  stop(): Promise<void>;
  pause(): void;
  resume(): void;
  /** The log's JSON lines. */
  logLines(): Record<string, unknown>[];
  /** Sum of vigil_etcd_requests_total by op, read from /metrics. */
  etcdRequests(): Promise<Record<string, number>>;
}

export interface ReplicaOptions {
  readonly id: string;
  readonly cluster: EtcdCluster;
  readonly prefix: string;
  readonly controlToken: string;
  readonly dir: string;
  readonly extraArgs?: readonly string[];
  /** `node` flags before the script (e.g. `--require` of a test-only module). */
  readonly nodeArgs?: readonly string[];
  /** Extra environment of the replica process. */
  readonly env?: Readonly<Record<string, string>>;
  /** Reuse an address (a restarted replica). */
  readonly port?: number;
}

/**
 * The one secrets keyring of every replica started under `dir`, made here
 * (synchronously, before any replica starts) when missing: replicas of a cell
 * must share it, and one that generated its own would refuse to start.
 */
function shareKeyring(dir: string): string {
  const file = join(dir, 'secrets-keyring');
  if (!existsSync(file)) {
    const keys = { k1: randomBytes(32).toString('base64') };
    writeFileSync(file, JSON.stringify({ active: 'k1', keys }), { mode: 0o600, flag: 'wx' });
  }
  return file;
}

/** Starts one replica and waits for its "listening" line. */
export async function startReplica(options: ReplicaOptions): Promise<Replica> {
  const port = options.port ?? (await freePort());
  const metricsPort = await freePort();
  const address = `127.0.0.1:${port}`;
  const logFile = join(options.dir, `${options.id}.log`);
  const dataDir = mkdtempSync(join(options.dir, `${options.id}-data-`));
  const keyring = shareKeyring(options.dir);
  const args = [
    ...(options.nodeArgs ?? []),
    VIGIL_MAIN,
    'serve',
    '--listen',
    address,
    '--advertise',
    address,
    '--metrics-listen',
    `127.0.0.1:${metricsPort}`,
    '--data-dir',
    dataDir,
    '--store',
    'etcd',
    '--etcd-endpoints',
    options.cluster.endpoints,
    '--etcd-prefix',
    options.prefix,
    '--replica-id',
    options.id,
    '--secrets-keyring',
    keyring,
    '--replica-lease',
    `${CI_TIMINGS.replicaLeaseMs / 1000}s`,
    '--heartbeat-interval',
    `${CI_TIMINGS.heartbeatIntervalMs / 1000}s`,
    '--offline-after',
    `${CI_TIMINGS.offlineAfterMs / 1000}s`,
    '--progress-interval',
    '1s',
    '--max-watch-streams',
    '0',
    ...(options.extraArgs ?? []),
  ];
  const fd = openSync(logFile, 'a');
  const child: ChildProcess = spawn(process.execPath, args, {
    env: {
      ...process.env,
      VIGIL_CONTROL_TOKEN: options.controlToken,
      VIGIL_LOG_LEVEL: 'info',
      ...options.env,
    },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  adoptChild(child);
  const state = { running: true };
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      state.running = false;
      resolve();
    });
  });
  const logLines = () => {
    const lines: Record<string, unknown>[] = [];
    for (const line of readFileSync(logFile, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // A line cut by kill -9.
      }
    }
    return lines;
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (logLines().some((l) => l['msg'] === 'listening')) break;
    if (!state.running || Date.now() > deadline) {
      if (state.running) process.kill(child.pid ?? 0, 'SIGKILL');
      throw new Error(
        `replica ${options.id} did not start:\n${readFileSync(logFile, 'utf8').slice(-3000)}`,
      );
    }
    await sleep(100);
  }
  const signal = (name: NodeJS.Signals) => {
    if (state.running && child.pid !== undefined) process.kill(child.pid, name);
  };
  return {
    id: options.id,
    address,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    logFile,
    pid: () => (state.running ? child.pid : undefined),
    alive: () => state.running,
    async kill() {
      signal('SIGKILL');
      await exited;
    },
    async stop() {
      signal('SIGCONT');
      signal('SIGTERM');
      await exited;
    },
    pause: () => {
      signal('SIGSTOP');
    },
    resume: () => {
      signal('SIGCONT');
    },
    logLines,
    async etcdRequests() {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const out: Record<string, number> = {};
      for (const match of text.matchAll(/^vigil_etcd_requests_total\{op="([^"]+)"\} (\S+)$/gm)) {
        out[match[1] ?? ''] = Number(match[2]);
      }
      return out;
    },
  };
}

/** Sum of two request-count maps' difference (after − before), by op and in total. */
export function requestDelta(
  before: readonly Record<string, number>[],
  after: readonly Record<string, number>[],
): { total: number; byOp: Record<string, number> } {
  const byOp: Record<string, number> = {};
  after.forEach((a, i) => {
    const b = before[i] ?? {};
    for (const [op, n] of Object.entries(a)) byOp[op] = (byOp[op] ?? 0) + n - (b[op] ?? 0);
  });
  return { total: Object.values(byOp).reduce((x, y) => x + y, 0), byOp };
}

/** A WatchStatus observer pinned to one replica, reconnecting to it from its cursor. */
export interface Observer {
  readonly name: string;
  cursor(): number;
  /** Resolves once the stream delivered its first frame (it is then positioned). */
  readonly ready: Promise<void>;
  /** Waits until the observer reached `seq` (or throws after `timeoutMs`). */
  reach(seq: number, timeoutMs?: number): Promise<void>;
  /** Stops; with `seq`, records `watch-end` there (it reached the common head). */
  stop(seq?: number): void;
}

export interface SidecarFleet {
  readonly ready: Promise<SidecarStats>;
  kill(ids: readonly string[]): void;
  move(ids: readonly string[]): void;
  burst(perWorkspace: number): Promise<{ acked: number; ms: number }>;
  stats(): Promise<SidecarStats>;
  /** Stops every sidecar, merges its history; resolves with its last stats. */
  finish(): Promise<SidecarStats>;
}

export interface Fleet {
  readonly dir: string;
  readonly prefix: string;
  readonly controlToken: string;
  readonly history: History;
  readonly replicas: Replica[];
  readonly cluster: EtcdCluster;
  /** Starts another replica (a new id; or reuse `port` to take a dead one's address). */
  addReplica(
    id: string,
    options?: {
      port?: number;
      nodeArgs?: readonly string[];
      env?: Readonly<Record<string, string>>;
    },
  ): Promise<Replica>;
  /** Creates `count` workspaces through the replicas in turn; returns id and token of each. */
  createWorkspaces(
    count: number,
    idPrefix: string,
    through?: readonly Replica[],
  ): Promise<{ id: string; token: string }[]>;
  /** Creates a workspace every `intervalMs` (one attempt each, logged): a steady stream of transitions. */
  startChurn(idPrefix: string, intervalMs: number): { stop(): Promise<number> };
  /** Opens an observer on a replica (from `afterSeq`, 0 = the head). */
  observe(replica: Replica, afterSeq?: number): Observer;
  startSidecars(
    config: Omit<SidecarFleetConfig, 'historyFile' | 'replicas' | 'name'> & {
      replicas?: readonly string[];
      name?: string;
    },
  ): SidecarFleet;
  /** Reads every log/ commit and every replica lease lifetime from etcd into the history. */
  recordEtcdFacts(): Promise<{ commits: number; leases: number }>;
  fault(what: string): void;
  /** Stops everything this fleet started (replicas, sidecars, observers) by PID. */
  stop(): Promise<void>;
}

function controlClient(address: string) {
  return new ControlServiceClient(address, credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
    'grpc.initial_reconnect_backoff_ms': 200,
    'grpc.max_reconnect_backoff_ms': 1_000,
  });
}

const statusName = (s: WorkspaceStatus): string | null =>
  s === WorkspaceStatus.WORKSPACE_STATUS_UNSPECIFIED
    ? null
    : WorkspaceStatus[s].replace('WORKSPACE_STATUS_', '');
const reasonName = (r: TransitionReason): string =>
  TransitionReason[r].replace('TRANSITION_REASON_', '');

/** Starts `replicas` Vigil replicas on `cluster` under a fresh prefix. */
export async function startFleet(options: {
  cluster: EtcdCluster;
  replicas: number;
  extraArgs?: readonly string[];
  /** node flags of each replica, by index. */
  nodeArgs?: (index: number) => readonly string[];
  /** Extra environment of each replica, by index. */
  env?: (index: number) => Readonly<Record<string, string>>;
}): Promise<Fleet> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-fleet-'));
  const prefix = `vigil-${randomBytes(4).toString('hex')}/`;
  const controlToken = `vgc_${randomBytes(24).toString('base64url')}`;
  const history = createHistory();
  history.add({ kind: 'clock', wallMinusMono: Date.now() - monoNow() });
  const replicas: Replica[] = [];
  const observers: Observer[] = [];
  const sidecarChildren: ChildProcess[] = [];
  let sidecarCount = 0;
  const auth = () => {
    const m = new Metadata();
    m.set('authorization', `Bearer ${controlToken}`);
    return m;
  };

  const fleet: Fleet = {
    dir,
    prefix,
    controlToken,
    history,
    replicas,
    cluster: options.cluster,
    async addReplica(id, more = {}) {
      const replica = await startReplica({
        id,
        cluster: options.cluster,
        prefix,
        controlToken,
        dir,
        ...(options.extraArgs ? { extraArgs: options.extraArgs } : {}),
        ...(more.nodeArgs ? { nodeArgs: more.nodeArgs } : {}),
        ...(more.env ? { env: more.env } : {}),
        ...(more.port === undefined ? {} : { port: more.port }),
      });
      replicas.push(replica);
      return replica;
    },
    startChurn(idPrefix, intervalMs) {
      let stopped = false;
      let n = 0;
      const inFlight = new Set<Promise<void>>();
      const clients = new Map<string, ReturnType<typeof controlClient>>();
      const timer = setInterval(() => {
        if (stopped) return;
        const live = replicas.filter((r) => r.alive());
        const r = live[n % Math.max(1, live.length)];
        if (!r) return;
        n += 1;
        const id = `${idPrefix}-${n}`;
        let c = clients.get(r.address);
        if (!c) {
          c = controlClient(r.address);
          clients.set(r.address, c);
        }
        const client = c;
        const op = `churn-${idPrefix}-${n}`;
        history.add({
          kind: 'op',
          type: 'invoke',
          op,
          f: 'create',
          ws: id,
          target: r.address,
          t: monoNow(),
          expect: { ws: id, to: 'PROVISIONING', reason: 'CREATED' },
        });
        const done = new Promise<void>((resolve) => {
          client.createWorkspace(
            { workspaceId: id, name: id },
            auth(),
            { deadline: Date.now() + 5_000 },
            (error) => {
              const indeterminate =
                error?.code === grpcStatus.UNAVAILABLE ||
                error?.code === grpcStatus.DEADLINE_EXCEEDED;
              history.add({
                kind: 'op',
                type: !error ? 'ok' : indeterminate ? 'info' : 'fail',
                op,
                f: 'create',
                ws: id,
                target: r.address,
                t: monoNow(),
                ...(error ? { error: `code ${error.code}` } : {}),
              });
              resolve();
            },
          );
        });
        inFlight.add(done);
        void done.then(() => inFlight.delete(done));
      }, intervalMs);
      return {
        async stop() {
          stopped = true;
          clearInterval(timer);
          await Promise.all([...inFlight]);
          for (const c of clients.values()) c.close();
          return n;
        },
      };
    },
    async createWorkspaces(count, idPrefix, through) {
      const clients = (through ?? replicas)
        .filter((r) => r.alive())
        .map((r) => ({ r, c: controlClient(r.address) }));
      const out: { id: string; token: string }[] = new Array<{ id: string; token: string }>(count);
      let next = 0;
      let opCounter = 0;
      await Promise.all(
        Array.from({ length: 24 }, async () => {
          while (next < count) {
            const index = next;
            next += 1;
            const id = `${idPrefix}-${index}`;
            for (let attempt = 0; ; attempt += 1) {
              const { r, c } = clients[(index + attempt) % clients.length] ?? clients[0]!;
              const op = `create-${(opCounter += 1)}`;
              history.add({
                kind: 'op',
                type: 'invoke',
                op,
                f: 'create',
                ws: id,
                target: r.address,
                t: monoNow(),
                expect: { ws: id, to: 'PROVISIONING', reason: 'CREATED' },
              });
              const result = await new Promise<{ token?: string; error?: ServiceError }>(
                (resolve) => {
                  c.createWorkspace(
                    { workspaceId: id, name: id },
                    auth(),
                    { deadline: Date.now() + 10_000 },
                    (error, response) => {
                      resolve(error ? { error } : { token: response.workspaceToken });
                    },
                  );
                },
              );
              const indeterminate =
                result.error?.code === grpcStatus.UNAVAILABLE ||
                result.error?.code === grpcStatus.DEADLINE_EXCEEDED;
              history.add({
                kind: 'op',
                type: result.token ? 'ok' : indeterminate ? 'info' : 'fail',
                op,
                f: 'create',
                ws: id,
                target: r.address,
                t: monoNow(),
                ...(result.error ? { error: `code ${result.error.code}` } : {}),
              });
              if (result.token) {
                out[index] = { id, token: result.token };
                break;
              }
              if (result.error?.code === grpcStatus.ALREADY_EXISTS || attempt > 20) {
                throw new Error(`could not create ${id}: ${result.error?.details ?? ''}`);
              }
              await sleep(200);
            }
          }
        }),
      );
      for (const { c } of clients) c.close();
      return out;
    },
    observe(replica, afterSeq = 0) {
      const name = `watch-${replica.id}-${observers.length}`;
      let cursor = afterSeq;
      let positionedOnce = false;
      let stopped = false;
      let call: ReturnType<ReturnType<typeof controlClient>['watchStatus']> | undefined;
      const client = controlClient(replica.address);
      const waiters = new Set<() => void>();
      let positioned: () => void = () => undefined;
      const ready = new Promise<void>((resolve) => {
        positioned = resolve;
      });
      const wake = () => {
        positioned();
        for (const w of waiters) w();
      };
      const open = () => {
        if (stopped) return;
        history.add({
          kind: 'watch',
          observer: name,
          replica: replica.id,
          frame: 'open',
          seq: cursor,
          t: monoNow(),
        });
        // Once positioned, every reopen resumes from the cursor exactly (0 included: `resume`).
        const stream = client.watchStatus(
          { workspaceIds: [], afterSeq: cursor, includeSnapshot: false, resume: positionedOnce },
          auth(),
        );
        call = stream;
        stream.on('data', (response: WatchStatusResponse) => {
          positionedOnce = true;
          const t = monoNow();
          const event = response.event;
          if (event?.$case === 'transition') {
            const v = event.value;
            history.add({
              kind: 'watch',
              observer: name,
              replica: replica.id,
              frame: 'transition',
              t,
              seq: v.seq,
              ws: v.workspaceId,
              from: statusName(v.fromStatus),
              to: statusName(v.toStatus) ?? '',
              reason: reasonName(v.reason),
              at: v.at?.getTime() ?? 0,
            });
            cursor = Math.max(cursor, v.seq);
          } else if (event?.$case === 'progress') {
            history.add({
              kind: 'watch',
              observer: name,
              replica: replica.id,
              frame: 'progress',
              t,
              seq: event.value.seq,
            });
            cursor = Math.max(cursor, event.value.seq);
          } else if (event?.$case === 'snapshotEnd') {
            history.add({
              kind: 'watch',
              observer: name,
              replica: replica.id,
              frame: event.value.reset ? 'reset' : 'snapshot-end',
              t,
              seq: event.value.seq,
            });
            cursor = event.value.seq;
          }
          wake();
        });
        let ended = false;
        const again = () => {
          if (ended) return;
          ended = true;
          if (stopped) return;
          history.add({
            kind: 'watch',
            observer: name,
            replica: replica.id,
            frame: 'error',
            seq: cursor,
            t: monoNow(),
          });
          setTimeout(open, 250);
        };
        stream.on('error', again);
        stream.on('end', again);
      };
      open();
      const observer: Observer = {
        name,
        cursor: () => cursor,
        ready,
        async reach(seq, timeoutMs = 60_000) {
          const deadline = Date.now() + timeoutMs;
          while (cursor < seq) {
            if (Date.now() > deadline) {
              throw new Error(`${name} reached seq ${cursor}, not ${seq}, within ${timeoutMs} ms`);
            }
            await new Promise<void>((resolve) => {
              const done = () => {
                waiters.delete(done);
                clearTimeout(timer);
                resolve();
              };
              const timer = setTimeout(done, 250);
              waiters.add(done);
            });
          }
        },
        stop(seq) {
          if (stopped) return;
          stopped = true;
          if (seq !== undefined)
            history.add({ kind: 'watch-end', observer: name, seq, t: monoNow() });
          call?.cancel();
          client.close();
        },
      };
      observers.push(observer);
      return observer;
    },
    startSidecars(config) {
      sidecarCount += 1;
      const name = config.name ?? `sc${sidecarCount}`;
      const historyFile = join(dir, `${name}.history.jsonl`);
      const child = fork(join(__dirname, 'sidecar-fleet.js'), [], {
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
        serialization: 'advanced',
      });
      adoptChild(child);
      child.channel?.unref();
      sidecarChildren.push(child);
      const listeners = new Set<(reply: SidecarReply) => void>();
      child.on('message', (reply: SidecarReply) => {
        for (const l of [...listeners]) l(reply);
      });
      const next = <K extends SidecarReply['kind']>(kind: K, timeoutMs: number) =>
        new Promise<Extract<SidecarReply, { kind: K }>>((resolve, reject) => {
          const timer = setTimeout(() => {
            listeners.delete(listener);
            reject(new Error(`sidecar fleet ${name}: no ${kind} within ${timeoutMs} ms`));
          }, timeoutMs);
          const listener = (reply: SidecarReply) => {
            if (reply.kind === 'error') {
              clearTimeout(timer);
              listeners.delete(listener);
              reject(new Error(`sidecar fleet ${name}: ${reply.message}`));
            } else if (reply.kind === kind) {
              clearTimeout(timer);
              listeners.delete(listener);
              resolve(reply as Extract<SidecarReply, { kind: K }>);
            }
          };
          listeners.add(listener);
        });
      const command = (c: SidecarCommand) => {
        child.send(c);
      };
      const ready = next('ready', 180_000).then((r) => r.stats);
      command({
        kind: 'start',
        config: {
          workspaces: config.workspaces,
          replicas: config.replicas ?? replicas.filter((r) => r.alive()).map((r) => r.address),
          mode: config.mode,
          intervalMs: config.intervalMs,
          channelsPerReplica: config.channelsPerReplica,
          register: config.register,
          historyFile,
          name,
          ...(config.answerTimeoutMs === undefined
            ? {}
            : { answerTimeoutMs: config.answerTimeoutMs }),
        },
      });
      let finished: Promise<SidecarStats> | undefined;
      return {
        ready,
        kill(ids) {
          command({ kind: 'kill', ids });
        },
        move(ids) {
          command({ kind: 'move', ids });
        },
        async burst(perWorkspace) {
          const done = next('burst-done', 120_000);
          command({ kind: 'burst', perWorkspace });
          const r = await done;
          return { acked: r.acked, ms: r.ms };
        },
        async stats() {
          const r = next('stats', 30_000);
          command({ kind: 'stats' });
          return (await r).stats;
        },
        finish() {
          finished ??= (async () => {
            const done = next('finished', 60_000);
            command({ kind: 'finish' });
            const r = await done;
            await new Promise<void>((resolve) => {
              if (child.exitCode !== null) resolve();
              else
                child.once('exit', () => {
                  resolve();
                });
            });
            history.merge(historyFile);
            return r.stats;
          })();
          return finished;
        },
      };
    },
    async recordEtcdFacts() {
      const client = new Etcd3({
        hosts: options.cluster.members
          .filter((m) => m.alive() && !m.paused())
          .map((m) => m.clientUrl),
        grpcOptions: { 'grpc.max_receive_message_length': 64 * 1024 * 1024 },
      });
      try {
        // Who committed each transition, at which revision.
        const logPrefix = `${prefix}log/`;
        let commits = 0;
        let from = Buffer.from(logPrefix);
        const end = Buffer.from(`${prefix}log0`);
        for (;;) {
          const page = await client.kv.range({ key: from, range_end: end, limit: 5_000 });
          for (const kv of page.kvs) {
            const doc = JSON.parse(kv.value.toString()) as {
              seq: number;
              by: string;
              reason: string;
            };
            history.add({
              kind: 'commit',
              seq: doc.seq,
              by: doc.by,
              revision: Number(kv.mod_revision),
              reason: doc.reason,
            });
            commits += 1;
          }
          if (!page.more || page.kvs.length === 0) break;
          from = Buffer.concat([
            (page.kvs[page.kvs.length - 1] as IKeyValue).key,
            Buffer.from([0]),
          ]);
        }
        // Every lifetime of every replica's presence key (on its lease), from etcd's history.
        const events = await new Promise<{ key: string; type: string; rev: number }[]>(
          (resolve, reject) => {
            void client.watchClient.watch().then((stream) => {
              const got: { key: string; type: string; rev: number }[] = [];
              let idle: NodeJS.Timeout = setTimeout(finish, 3_000);
              function finish() {
                stream.end();
                resolve(got);
              }
              stream.on('data', (response: IWatchResponse) => {
                for (const e of response.events) {
                  got.push({
                    key: e.kv.key.toString(),
                    type: e.type,
                    rev: Number(e.kv.mod_revision),
                  });
                }
                clearTimeout(idle);
                idle = setTimeout(finish, 1_000);
              });
              stream.on('error', (error: unknown) => {
                clearTimeout(idle);
                if (got.length > 0) resolve(got);
                else reject(error instanceof Error ? error : new Error(String(error)));
              });
              stream.write({
                create_request: {
                  key: Buffer.from(`${prefix}replicas/`),
                  range_end: Buffer.from(`${prefix}replicas0`),
                  start_revision: '1',
                },
              });
            }, reject);
          },
        );
        const open = new Map<string, number>();
        let leases = 0;
        for (const e of events) {
          const rid = e.key.slice(`${prefix}replicas/`.length);
          if (e.type === 'Put') {
            if (!open.has(rid)) open.set(rid, e.rev);
          } else {
            const start = open.get(rid);
            if (start !== undefined) {
              history.add({ kind: 'lease', replica: rid, from: start, to: e.rev });
              leases += 1;
            }
            open.delete(rid);
          }
        }
        for (const [rid, start] of open) {
          history.add({ kind: 'lease', replica: rid, from: start });
          leases += 1;
        }
        return { commits, leases };
      } finally {
        client.close();
      }
    },
    fault(what) {
      history.add({ kind: 'fault', what, t: monoNow() });
    },
    async stop() {
      for (const o of observers) o.stop();
      for (const child of sidecarChildren) {
        if (child.exitCode === null && child.pid !== undefined) {
          try {
            process.kill(child.pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
      }
      for (const r of replicas) {
        if (r.alive()) await r.kill();
      }
      if (process.env['VIGIL_KEEP_CLUSTER_LOGS'] === undefined)
        rmSync(dir, { recursive: true, force: true });
    },
  };
  for (let i = 1; i <= options.replicas; i += 1) {
    await fleet.addReplica(`r${i}`, {
      ...(options.nodeArgs ? { nodeArgs: options.nodeArgs(i - 1) } : {}),
      ...(options.env ? { env: options.env(i - 1) } : {}),
    });
  }
  return fleet;
}
