import { readFileSync } from 'node:fs';
import { noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';
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
 */
export interface EtcdConnection {
  range(request: IRangeRequest): Promise<IRangeResponse>;
  txn(compare: ICompare[], success: IRequestOp[], failure?: IRequestOp[]): Promise<ITxnResponse>;
  leaseGrant(ttlSeconds: number): Promise<string>;
  leaseRevoke(id: string): Promise<void>;
  /** A bidirectional keepalive stream; each `write` is counted. */
  leaseKeepAlive(): Promise<CountedStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>>;
  /** A bidirectional watch stream; each `write` is counted. */
  watch(): Promise<CountedStream<IWatchRequest, IWatchResponse>>;
  requests(): EtcdRequestCounts;
  close(): void;
}

export type CountedStream<Q, R> = IDuplexStream<Q, R>;

const DEFAULT_CALL_TIMEOUT_MS = 5_000;

export function createEtcdConnection(options: EtcdConnectionOptions): EtcdConnection {
  const callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const tls = options.tls;
  const client = new Etcd3({
    hosts: [...options.endpoints],
    ...(tls?.caFile
      ? {
          credentials: {
            rootCertificate: readFileSync(tls.caFile),
            ...(tls.certFile ? { certChain: readFileSync(tls.certFile) } : {}),
            ...(tls.keyFile ? { privateKey: readFileSync(tls.keyFile) } : {}),
          },
        }
      : {}),
    grpcOptions: {
      // A watch on a paused member must notice, not stay silent for the whole pause.
      'grpc.keepalive_time_ms': 5_000,
      'grpc.keepalive_timeout_ms': 3_000,
      'grpc.keepalive_permit_without_calls': 1,
      // One revision can exceed the 4 MiB default (a large revoke).
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    },
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: Date.now() + callTimeoutMs },
    // No global retry (a retried write may land twice); the per-host circuit breaker stays, so
    // calls avoid a member that keeps failing.
    faultHandling: { global: noop },
  });
  const counts: Record<string, number> = {};
  const count = (op: string): void => {
    counts[op] = (counts[op] ?? 0) + 1;
  };

  function counted<Q, R>(op: string, stream: IDuplexStream<Q, R>): IDuplexStream<Q, R> {
    count(`${op}_open`);
    const write = stream.write.bind(stream);
    stream.write = (item: Q) => {
      count(op);
      write(item);
    };
    return stream;
  }

  return {
    range(request) {
      count('range');
      return client.kv.range(request);
    },
    txn(compare, success, failure = []) {
      count('txn');
      return client.kv.txn({ compare, success, failure });
    },
    async leaseGrant(ttlSeconds) {
      count('lease_grant');
      const granted = await client.leaseClient.leaseGrant({ TTL: ttlSeconds });
      return granted.ID;
    },
    async leaseRevoke(id) {
      count('lease_revoke');
      await client.leaseClient.leaseRevoke({ ID: id });
    },
    async leaseKeepAlive() {
      return counted('lease_keepalive', await client.leaseClient.leaseKeepAlive());
    },
    async watch() {
      return counted('watch', await client.watchClient.watch());
    },
    requests: () => ({ ...counts }),
    close() {
      client.close();
    },
  };
}
