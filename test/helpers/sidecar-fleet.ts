import {
  credentials,
  Metadata,
  status as grpcStatus,
  type ClientDuplexStream,
  type ServiceError,
} from '@grpc/grpc-js';
import {
  HeartbeatRequest,
  RuntimeServiceClient,
  type HeartbeatStreamRequest,
  type HeartbeatStreamResponse,
} from '../../gen/vigil/v1/runtime_service.js';
import { DeliveryMode } from '../../gen/vigil/v1/workspace.js';
import { createHistoryFile, monoNow, type OpEvent } from './history.js';

/**
 * The sidecar load generator of the cluster tests, run as its own child
 * process (fork, IPC) so that its CPU and event loop are not the test's. It
 * simulates one sidecar per workspace over a few shared gRPC connections per
 * replica: Register once, then a heartbeat every interval, either on a
 * HeartbeatStream (reconnecting to the next replica when the stream fails,
 * like the SDK reconnects) or as unary calls through grpc-js's round_robin
 * balancer over every replica. Every call is logged to the history file as
 * invoke / ok / fail / info.
 */

export interface SidecarFleetConfig {
  readonly workspaces: readonly { readonly id: string; readonly token: string }[];
  /** HOST:PORT of every replica. */
  readonly replicas: readonly string[];
  readonly mode: 'stream' | 'unary';
  readonly intervalMs: number;
  /** gRPC connections per replica (stream mode). */
  readonly channelsPerReplica: number;
  readonly historyFile: string;
  /** Register each workspace first (expecting PROVISIONING → ONLINE). */
  readonly register: boolean;
  /** Prefix of op ids, unique per process of a history. */
  readonly name: string;
  /**
   * A stream whose oldest heartbeat stays unanswered this long is given up and
   * reopened at the next replica (a paused replica answers nothing and its TCP
   * connection stays up). 0 waits like the SDK, which has no such deadline.
   */
  readonly answerTimeoutMs?: number;
}

/** Parent → child. */
export type SidecarCommand =
  | { readonly kind: 'start'; readonly config: SidecarFleetConfig }
  /** These sidecars die: no more heartbeats, streams cancelled. */
  | { readonly kind: 'kill'; readonly ids: readonly string[] }
  /** These sidecars drop their stream and reconnect to the next replica. */
  | { readonly kind: 'move'; readonly ids: readonly string[] }
  /** Every live stream sends `perWorkspace` heartbeats at once; answered by `burst-done`. */
  | { readonly kind: 'burst'; readonly perWorkspace: number }
  | { readonly kind: 'stats' }
  | { readonly kind: 'finish' };

export interface SidecarStats {
  readonly acked: number;
  readonly failed: number;
  readonly indeterminate: number;
  readonly reconnects: number;
  /** Workspaces whose stream is open now (stream mode), or alive (unary mode). */
  readonly connected: number;
  /** Per workspace: the replica index it streams to now (stream mode). */
  readonly placement: Readonly<Record<string, number>>;
  readonly errorSamples: readonly string[];
}

/** Child → parent. */
export type SidecarReply =
  | { readonly kind: 'ready'; readonly stats: SidecarStats }
  | { readonly kind: 'stats'; readonly stats: SidecarStats }
  | { readonly kind: 'burst-done'; readonly acked: number; readonly ms: number }
  | { readonly kind: 'finished'; readonly stats: SidecarStats }
  | { readonly kind: 'error'; readonly message: string };

const CARD = (id: string) => ({ name: id, url: 'http://127.0.0.1:8000' });

interface Sidecar {
  readonly id: string;
  readonly token: string;
  readonly metadata: Metadata;
  replica: number;
  stream: ClientDuplexStream<HeartbeatStreamRequest, HeartbeatStreamResponse> | undefined;
  /** request id → op id. */
  readonly pending: Map<number, string>;
  /** When the oldest unanswered heartbeat was sent (monotonic ms), or undefined. */
  oldestPendingAt: number | undefined;
  nextId: number;
  dead: boolean;
  timer: NodeJS.Timeout | undefined;
  burst: { left: number; done: () => void } | undefined;
}

function send(message: SidecarReply): void {
  process.send?.(message);
}

function describe(error: unknown): string {
  const e = error as Partial<ServiceError>;
  return typeof e.code === 'number' ? `code ${e.code}` : String(error);
}

function run(config: SidecarFleetConfig): {
  handle(command: SidecarCommand): void;
} {
  const history = createHistoryFile(config.historyFile);
  let opCounter = 0;
  const nextOp = () => `${config.name}-${(opCounter += 1).toString(36)}`;
  const op = (event: Omit<OpEvent, 'kind' | 't'>) => {
    history.add({ kind: 'op', t: monoNow(), ...event });
  };
  const stats = {
    acked: 0,
    failed: 0,
    indeterminate: 0,
    reconnects: 0,
    errorSamples: [] as string[],
  };
  const note = (text: string) => {
    if (stats.errorSamples.length < 10) stats.errorSamples.push(text);
  };
  const channelOptions = {
    'grpc.use_local_subchannel_pool': 1,
    'grpc.initial_reconnect_backoff_ms': 250,
    'grpc.max_reconnect_backoff_ms': 1_000,
    'grpc.keepalive_time_ms': 10_000,
  };
  const channels = config.replicas.map((address) =>
    Array.from(
      { length: config.channelsPerReplica },
      () => new RuntimeServiceClient(address, credentials.createInsecure(), channelOptions),
    ),
  );
  const balanced =
    config.mode === 'unary'
      ? Array.from(
          { length: config.channelsPerReplica },
          () =>
            new RuntimeServiceClient(
              `ipv4:${config.replicas.join(',')}`,
              credentials.createInsecure(),
              {
                ...channelOptions,
                'grpc.service_config': JSON.stringify({
                  loadBalancingConfig: [{ round_robin: {} }],
                }),
              },
            ),
        )
      : [];
  const sidecars: Sidecar[] = config.workspaces.map((w, index) => {
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${w.token}`);
    return {
      id: w.id,
      token: w.token,
      metadata,
      replica: index % config.replicas.length,
      stream: undefined,
      pending: new Map(),
      oldestPendingAt: undefined,
      nextId: 1,
      dead: false,
      timer: undefined,
      burst: undefined,
    };
  });
  const clientOf = (s: Sidecar, index: number) =>
    channels[s.replica]?.[index % config.channelsPerReplica] as RuntimeServiceClient;

  function heartbeatBody(s: Sidecar): HeartbeatRequest {
    return {
      ...HeartbeatRequest.fromPartial({}),
      workspaceId: s.id,
      agentCard: CARD(s.id),
      errorRate: 0,
      activeTasks: 1,
    };
  }

  async function register(s: Sidecar): Promise<void> {
    while (!s.dead) {
      const id = nextOp();
      const target = config.replicas[s.replica] ?? '';
      op({
        type: 'invoke',
        op: id,
        f: 'register',
        ws: s.id,
        target,
        // A retry after an indeterminate attempt may find it ONLINE already: the checker
        // bounds the commits by acknowledged ≤ n ≤ acknowledged + indeterminate.
        expect: { ws: s.id, to: 'ONLINE', reason: 'REGISTERED' },
      });
      const outcome = await new Promise<'ok' | 'fail' | 'info'>((resolve) => {
        clientOf(s, 0).register(
          {
            workspaceId: s.id,
            url: 'http://127.0.0.1:8000',
            agentCard: CARD(s.id),
            deliveryMode: DeliveryMode.DELIVERY_MODE_PUSH,
          },
          s.metadata.clone(),
          { deadline: Date.now() + 5_000 },
          (error) => {
            if (!error) resolve('ok');
            else {
              note(`register: ${describe(error)} ${error.details}`);
              // UNAVAILABLE / DEADLINE_EXCEEDED: may or may not have committed.
              resolve(
                error.code === grpcStatus.UNAVAILABLE || error.code === grpcStatus.DEADLINE_EXCEEDED
                  ? 'info'
                  : 'fail',
              );
            }
          },
        );
      });
      op({ type: outcome, op: id, f: 'register', ws: s.id, target });
      if (outcome === 'ok') return;
      s.replica = (s.replica + 1) % config.replicas.length;
      await new Promise((resolve) => setTimeout(resolve, 200 + Math.random() * 300));
    }
  }

  function failPending(s: Sidecar, why: string): void {
    const target = config.replicas[s.replica] ?? '';
    for (const opId of s.pending.values()) {
      stats.indeterminate += 1;
      op({ type: 'info', op: opId, f: 'heartbeat', ws: s.id, target, error: why });
    }
    s.pending.clear();
    s.oldestPendingAt = undefined;
  }

  function openStream(s: Sidecar): void {
    if (s.dead) return;
    const index = sidecars.indexOf(s);
    const call = clientOf(s, index).heartbeatStream(s.metadata.clone());
    s.stream = call;
    const target = config.replicas[s.replica] ?? '';
    call.on('data', (response: HeartbeatStreamResponse) => {
      const opId = s.pending.get(response.requestId);
      if (opId === undefined) return;
      s.pending.delete(response.requestId);
      s.oldestPendingAt = s.pending.size === 0 ? undefined : monoNow();
      if (response.result?.$case === 'heartbeat') {
        stats.acked += 1;
        op({ type: 'ok', op: opId, f: 'heartbeat', ws: s.id, target });
      } else {
        stats.failed += 1;
        const reason = response.result?.$case === 'error' ? response.result.value.reason : 'empty';
        note(`heartbeat error ${reason}`);
        op({ type: 'fail', op: opId, f: 'heartbeat', ws: s.id, target, error: reason });
      }
      if (s.burst) {
        s.burst.left -= 1;
        if (s.burst.left <= 0) {
          const done = s.burst.done;
          s.burst = undefined;
          done();
        }
      }
    });
    let ended = false;
    const end = (why: string) => {
      if (ended) return;
      ended = true;
      if (s.stream === call) s.stream = undefined;
      failPending(s, why);
      if (s.burst) {
        const done = s.burst.done;
        s.burst = undefined;
        done();
      }
      if (s.dead) return;
      stats.reconnects += 1;
      // Like the SDK: back off briefly, then try again — here at the next replica.
      s.replica = (s.replica + 1) % config.replicas.length;
      setTimeout(
        () => {
          openStream(s);
        },
        100 + Math.random() * 200,
      );
    };
    call.on('error', (error) => {
      end(describe(error));
    });
    call.on('end', () => {
      end('stream ended');
    });
    beatOnStream(s);
  }

  function beatOnStream(s: Sidecar): void {
    const call = s.stream;
    if (!call || s.dead) return;
    const requestId = s.nextId;
    s.nextId += 1;
    const opId = nextOp();
    s.pending.set(requestId, opId);
    s.oldestPendingAt ??= monoNow();
    op({
      type: 'invoke',
      op: opId,
      f: 'heartbeat',
      ws: s.id,
      target: config.replicas[s.replica] ?? '',
    });
    call.write({ requestId, heartbeat: heartbeatBody(s) });
  }

  function beatUnary(s: Sidecar): void {
    if (s.dead) return;
    const index = sidecars.indexOf(s);
    const client = balanced[index % balanced.length] as RuntimeServiceClient;
    const opId = nextOp();
    op({ type: 'invoke', op: opId, f: 'heartbeat', ws: s.id, target: 'round-robin' });
    client.heartbeat(
      heartbeatBody(s),
      s.metadata.clone(),
      { deadline: Date.now() + 3_000 },
      (error) => {
        if (!error) {
          stats.acked += 1;
          op({ type: 'ok', op: opId, f: 'heartbeat', ws: s.id, target: 'round-robin' });
          return;
        }
        const indeterminate =
          error.code === grpcStatus.UNAVAILABLE || error.code === grpcStatus.DEADLINE_EXCEEDED;
        if (indeterminate) stats.indeterminate += 1;
        else stats.failed += 1;
        note(`unary heartbeat: ${describe(error)} ${error.details}`);
        op({
          type: indeterminate ? 'info' : 'fail',
          op: opId,
          f: 'heartbeat',
          ws: s.id,
          target: 'round-robin',
          error: describe(error),
        });
      },
    );
  }

  function schedule(s: Sidecar): void {
    const tick = () => {
      if (s.dead) return;
      const timeout = config.answerTimeoutMs ?? 0;
      if (
        timeout > 0 &&
        s.stream &&
        s.oldestPendingAt !== undefined &&
        monoNow() - s.oldestPendingAt > timeout
      ) {
        note('heartbeat unanswered: moving to the next replica');
        s.stream.cancel();
      }
      if (config.mode === 'stream') {
        if (s.stream && !s.burst) beatOnStream(s);
      } else beatUnary(s);
      // ±10% jitter, like the SDK.
      s.timer = setTimeout(tick, config.intervalMs * (0.9 + Math.random() * 0.2));
    };
    s.timer = setTimeout(tick, Math.random() * config.intervalMs);
  }

  function start(s: Sidecar): void {
    if (config.mode === 'stream') openStream(s);
    schedule(s);
  }

  function snapshot(): SidecarStats {
    const placement: Record<string, number> = {};
    let connected = 0;
    for (const s of sidecars) {
      if (s.dead) continue;
      if (config.mode === 'unary' || s.stream) connected += 1;
      placement[s.id] = s.replica;
    }
    return { ...stats, errorSamples: [...stats.errorSamples], connected, placement };
  }

  void (async () => {
    try {
      if (config.register) {
        let next = 0;
        await Promise.all(
          Array.from({ length: 32 }, async () => {
            while (next < sidecars.length) {
              const s = sidecars[next] as Sidecar;
              next += 1;
              await register(s);
              // Heartbeats start right after its Register, as a sidecar's do.
              start(s);
            }
          }),
        );
      } else {
        for (const s of sidecars) start(s);
      }
      history.flush();
      send({ kind: 'ready', stats: snapshot() });
    } catch (error) {
      send({ kind: 'error', message: String(error) });
    }
  })();

  return {
    handle(command) {
      switch (command.kind) {
        case 'start':
          break;
        case 'kill': {
          const ids = new Set(command.ids);
          for (const s of sidecars) {
            if (!ids.has(s.id)) continue;
            s.dead = true;
            clearTimeout(s.timer);
            s.stream?.cancel();
            failPending(s, 'sidecar killed');
          }
          history.flush();
          break;
        }
        case 'move': {
          const ids = new Set(command.ids);
          for (const s of sidecars) if (ids.has(s.id)) s.stream?.cancel();
          break;
        }
        case 'burst': {
          const started = monoNow();
          const live = sidecars.filter((s) => !s.dead && s.stream);
          const before = stats.acked;
          void Promise.all(
            live.map(
              (s) =>
                new Promise<void>((resolve) => {
                  s.burst = { left: command.perWorkspace, done: resolve };
                  for (let i = 0; i < command.perWorkspace; i += 1) beatOnStream(s);
                }),
            ),
          ).then(() => {
            history.flush();
            send({ kind: 'burst-done', acked: stats.acked - before, ms: monoNow() - started });
          });
          break;
        }
        case 'stats':
          send({ kind: 'stats', stats: snapshot() });
          break;
        case 'finish':
          for (const s of sidecars) {
            s.dead = true;
            clearTimeout(s.timer);
            s.stream?.cancel();
            failPending(s, 'finished');
          }
          history.close();
          send({ kind: 'finished', stats: snapshot() });
          for (const list of [...channels, balanced]) for (const c of list) c.close();
          setTimeout(() => process.exit(0), 100).unref();
          break;
      }
    },
  };
}

if (require.main === module) {
  let fleet: ReturnType<typeof run> | undefined;
  process.on('message', (command: SidecarCommand) => {
    if (command.kind === 'start') fleet = run(command.config);
    else fleet?.handle(command);
  });
  process.on('disconnect', () => process.exit(0));
}
