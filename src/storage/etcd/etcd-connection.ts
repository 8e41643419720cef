import { readFileSync } from 'node:fs';
import { noop } from 'cockatiel';
import { Etcd3, GRPCDeadlineExceededError, GRPCUnavailableError } from 'etcd3';
import { VigilError } from '../../domain/errors.js';
import type {
  ICompare,
  IDuplexStream,
  ILeaseKeepAliveRequest,
  ILeaseKeepAliveResponse,
  IRangeRequest,
  IRangeResponse,
  IRequestOp,
  ITxnResponse,
  IWatchRequest,
  IWatchResponse,
} from 'etcd3';

/** Client TLS towards etcd (PEM files). */
export interface EtcdTls {
  readonly caFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

export interface EtcdConnectionOptions {
  /** `http(s)://host:port` of each member. */
  readonly endpoints: readonly string[];
  readonly tls?: EtcdTls | undefined;
  /** Deadline of every unary call (the watch and lease streams have none). */
  readonly callTimeoutMs?: number | undefined;
}

/** Requests sent to etcd so far, by operation. */
export type EtcdRequestCounts = Readonly<Record<string, number>>;

/**
 * The few etcd calls Vigil makes, over the `etcd3` client's raw RPC stubs, and
 * nothing else. Every unary call and every stream opened or message sent on a
 * stream is counted (`requests()`), so "no etcd request per steady heartbeat"
 * can be measured.
 *
 * The client's own retry is off: a write that timed out may still have
 * committed, and retrying it blindly is how a put lands twice. Callers send
 * guarded transactions only and resolve an unknown outcome by reading back.
 *
 * The member each call goes to is chosen here, not by the `etcd3` pool (which
 * picks at random and keeps sending a third of the calls to a paused member,
 * each waiting out its deadline): members are taken in turn, and one that let
 * a call or a stream down (deadline passed, connection lost, a stream that
 * stopped answering) is passed over for a while, as long as another is left.
 * The streams' owners report a stalled stream with `suspect`, so a paused
 * member found by the watch is avoided by the writes too; and a member that
 * has owed a call its answer for SLOW_MS without answering anything else
 * meanwhile is passed over at once, before that call's deadline runs out.
 *
 * A call that etcd could not answer (member unreachable, deadline, leader
 * change) fails with STORE_UNAVAILABLE, retryable, carrying etcd's error as
 * its cause; the outcome of a write that failed so is unknown.
 */
export interface EtcdConnection {
  range(request: IRangeRequest): Promise<IRangeResponse>;
  txn(
    compare: ICompare[],
    success: IRequestOp[],
    failure?: IRequestOp[],
    options?: CallLimits,
  ): Promise<ITxnResponse>;
  leaseGrant(ttlSeconds: number): Promise<string>;
  leaseRevoke(id: string): Promise<void>;
  /** A bidirectional keepalive stream on a member chosen as for a call; each `write` is counted. */
  leaseKeepAlive(): Promise<MemberStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>>;
  /** A bidirectional watch stream on a member chosen as for a call; each `write` is counted. */
  watch(): Promise<MemberStream<IWatchRequest, IWatchResponse>>;
  /**
   * Reports that `member` let a stream down (it stopped answering): calls and
   * streams pass it over for a while.
   */
  suspect(member: string): void;
  /**
   * Tells `listener` each member that becomes suspected (by a call, a stream or
   * `suspect`), so a stream on it moves too: a paused member found by the writes
   * is left by the watch and the lease keepalive as well. Returns its removal.
   */
  onSuspect(listener: (member: string) => void): () => void;
  requests(): EtcdRequestCounts;
  close(): void;
}

export type CountedStream<Q, R> = IDuplexStream<Q, R>;

export interface CallLimits {
  /** This call's deadline, instead of the connection's `callTimeoutMs`. */
  readonly timeoutMs?: number;
}

/** A stream and the member serving it (as given in the endpoints). */
export interface MemberStream<Q, R> {
  readonly stream: CountedStream<Q, R>;
  readonly member: string;
}

const DEFAULT_CALL_TIMEOUT_MS = 5_000;
/** How long a member that let a call or stream down is passed over while another is left. */
export const SUSPECT_MS = 10_000;
/**
 * A member that owes a call its answer this long, and answered nothing else
 * meanwhile, is paused or cut off: new calls go elsewhere. (etcd answers in
 * milliseconds; a loaded disk makes it hundreds, not a second of silence.)
 */
export const SLOW_MS = 1_500;

interface Member {
  readonly endpoint: string;
  readonly client: Etcd3;
  suspectUntil: number;
  /** Start times of the calls waiting for this member's answer. */
  readonly waiting: Set<{ readonly since: number }>;
  /** When this member last answered: a call (with a result or an etcd error) or a stream message. */
  answeredAt: number;
}

/** A fault of the member itself (not an answer etcd gave): try the next one next time. */
function memberFault(error: unknown): boolean {
  if (error instanceof GRPCDeadlineExceededError) return true;
  // "etcdserver: ..." is an answer (leader changed, no leader): the member is there.
  return error instanceof GRPCUnavailableError && !error.message.includes('etcdserver:');
}

/** etcd could not answer: retryable, and the outcome of a write is unknown. */
function unavailable(error: unknown): unknown {
  if (!(error instanceof GRPCUnavailableError || error instanceof GRPCDeadlineExceededError))
    return error;
  return new VigilError(
    'STORE_UNAVAILABLE',
    `the cluster store did not answer (${error.message}); retry`,
    {},
    { cause: error },
  );
}

export function createEtcdConnection(options: EtcdConnectionOptions): EtcdConnection {
  const callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const tls = options.tls;
  const credentials = tls?.caFile
    ? {
        credentials: {
          rootCertificate: readFileSync(tls.caFile),
          ...(tls.certFile ? { certChain: readFileSync(tls.certFile) } : {}),
          ...(tls.keyFile ? { privateKey: readFileSync(tls.keyFile) } : {}),
        },
      }
    : {};
  // One single-host client per member: the choice of member is made below.
  const members: Member[] = options.endpoints.map((endpoint) => ({
    endpoint,
    suspectUntil: 0,
    waiting: new Set(),
    answeredAt: 0,
    client: new Etcd3({
      hosts: [endpoint],
      ...credentials,
      grpcOptions: {
        // A stream on a paused member must notice, not stay silent for the whole pause.
        'grpc.keepalive_time_ms': 5_000,
        'grpc.keepalive_timeout_ms': 3_000,
        'grpc.keepalive_permit_without_calls': 1,
        // One revision can exceed the 4 MiB default (a large revoke).
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
      },
      defaultCallOptions: (context) =>
        context.isStream ? {} : { deadline: Date.now() + callTimeoutMs },
      // No retry (a retried write may land twice) and no breaker of its own: the choice of
      // member below avoids one that keeps failing.
      faultHandling: { global: noop, host: () => noop },
    }),
  }));
  if (members.length === 0) throw new Error('no etcd endpoint given');
  let turn = 0;

  /** Whether `member` owes an answer for SLOW_MS and answered nothing meanwhile. */
  function silent(member: Member, now: number): boolean {
    if (now - member.answeredAt < SLOW_MS) return false;
    for (const call of member.waiting) if (now - call.since >= SLOW_MS) return true;
    return false;
  }

  /**
   * The next member in turn that is not suspected. When all are (during an
   * etcd election no member answers a write or a keepalive for a second or
   * two), the one that answered last: a live member, never the paused one.
   */
  function pick(): Member {
    const now = Date.now();
    for (const member of members)
      if (member.suspectUntil <= now && silent(member, now)) suspect(member);
    for (let i = 0; i < members.length; i += 1) {
      const member = members[(turn + i) % members.length];
      if (member && member.suspectUntil <= now) {
        turn = (turn + i + 1) % members.length;
        return member;
      }
    }
    return members.reduce((a, b) => (b.answeredAt > a.answeredAt ? b : a));
  }

  const suspectListeners = new Set<(member: string) => void>();
  function suspect(member: Member): void {
    const now = Date.now();
    const already = member.suspectUntil > now;
    member.suspectUntil = now + SUSPECT_MS;
    if (already) return;
    for (const listener of [...suspectListeners]) listener(member.endpoint);
  }

  async function onMember<T>(call: (client: Etcd3) => Promise<T>): Promise<T> {
    const member = pick();
    const waiting = { since: Date.now() };
    member.waiting.add(waiting);
    try {
      const result = await call(member.client);
      member.answeredAt = Date.now();
      return result;
    } catch (error) {
      if (memberFault(error)) suspect(member);
      else member.answeredAt = Date.now();
      throw unavailable(error);
    } finally {
      member.waiting.delete(waiting);
    }
  }

  const counts: Record<string, number> = {};
  const count = (op: string): void => {
    counts[op] = (counts[op] ?? 0) + 1;
  };

  async function openCounted<Q, R>(
    op: string,
    open: (client: Etcd3) => Promise<IDuplexStream<Q, R>>,
  ): Promise<MemberStream<Q, R>> {
    count(`${op}_open`);
    const member = pick();
    let stream: IDuplexStream<Q, R>;
    try {
      stream = await open(member.client);
    } catch (error) {
      suspect(member);
      throw error;
    }
    stream.on('data', () => {
      member.answeredAt = Date.now();
    });
    const write = stream.write.bind(stream);
    stream.write = (item: Q) => {
      count(op);
      write(item);
    };
    return { stream, member: member.endpoint };
  }

  return {
    range(request) {
      count('range');
      return onMember((client) => client.kv.range(request));
    },
    txn(compare, success, failure = [], limits = {}) {
      count('txn');
      const callOptions =
        limits.timeoutMs === undefined ? undefined : { deadline: Date.now() + limits.timeoutMs };
      return onMember((client) => client.kv.txn({ compare, success, failure }, callOptions));
    },
    async leaseGrant(ttlSeconds) {
      count('lease_grant');
      const granted = await onMember((client) =>
        client.leaseClient.leaseGrant({ TTL: ttlSeconds }),
      );
      return granted.ID;
    },
    async leaseRevoke(id) {
      count('lease_revoke');
      await onMember((client) => client.leaseClient.leaseRevoke({ ID: id }));
    },
    leaseKeepAlive() {
      return openCounted('lease_keepalive', (client) => client.leaseClient.leaseKeepAlive());
    },
    watch() {
      return openCounted('watch', (client) => client.watchClient.watch());
    },
    suspect(endpoint) {
      const member = members.find((m) => m.endpoint === endpoint);
      if (member) suspect(member);
    },
    onSuspect(listener) {
      suspectListeners.add(listener);
      return () => {
        suspectListeners.delete(listener);
      };
    },
    requests: () => ({ ...counts }),
    close() {
      for (const member of members) member.client.close();
    },
  };
}
