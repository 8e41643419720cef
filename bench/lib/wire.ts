import { Client, Metadata, credentials, type MethodDefinition } from '@grpc/grpc-js';
import { AUTHORIZATION_KEY, bearerAuthorization } from '../../src/wire/metadata.js';

/**
 * Small wire helpers shared by the driver and the load workers. Both the
 * baseline and Vigil are driven through the same grpc-js generic client calls
 * with identity (de)serializers over pre-encoded bytes, so the client-side
 * cost per call is the same for both and the ratio compares the servers.
 */

export const identity = (bytes: Buffer): Buffer => bytes;

/** Options for load channels: each client gets its own TCP connection. */
export const LOAD_CHANNEL_OPTIONS = {
  'grpc.use_local_subchannel_pool': 1,
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
} as const;

export function newClient(address: string): Client {
  return new Client(address, credentials.createInsecure(), LOAD_CHANNEL_OPTIONS);
}

export function bearer(token: string): Metadata {
  const metadata = new Metadata();
  metadata.set(AUTHORIZATION_KEY, bearerAuthorization(token));
  return metadata;
}

/** Appends a protobuf varint (for values below 2^53). */
function pushVarint(out: number[], value: number): void {
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/**
 * An encoded HeartbeatStreamRequest `{request_id = 1, heartbeat = 2}` around
 * an already encoded HeartbeatRequest, without re-encoding the heartbeat.
 */
export function streamRequestBytes(requestId: number, heartbeat: Uint8Array): Buffer {
  const head: number[] = [0x08];
  pushVarint(head, requestId);
  head.push(0x12);
  pushVarint(head, heartbeat.length);
  const out = Buffer.allocUnsafe(head.length + heartbeat.length);
  out.set(head, 0);
  out.set(heartbeat, head.length);
  return out;
}

/** Reads a protobuf varint at `offset`: [value, next offset], or undefined when truncated. */
export function readVarint(bytes: Uint8Array, offset: number): [number, number] | undefined {
  let value = 0;
  let scale = 1;
  for (let i = offset; i < bytes.length && i < offset + 10; i += 1) {
    const byte = bytes[i] ?? 0;
    value += (byte & 0x7f) * scale;
    scale *= 0x80;
    if (byte < 0x80) return [value, i + 1];
  }
  return undefined;
}

/**
 * The request_id of a frame that starts with field 1 as a varint (a
 * HeartbeatStreamRequest, or the baseline's echo of one); undefined otherwise.
 */
export function leadingRequestId(frame: Uint8Array): number | undefined {
  if (frame[0] !== 0x08) return undefined;
  return readVarint(frame, 1)?.[0];
}

/** An encoded etcd LeaseKeepAliveRequest {ID = 1 (int64)}. */
export function leaseKeepAliveBytes(leaseId: bigint): Uint8Array {
  const out = [0x08];
  let v = BigInt.asUintN(64, leaseId);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}

/**
 * The TTL (field 3, int64) of an etcd LeaseKeepAliveResponse {header = 1,
 * ID = 2, TTL = 3}; 0 when absent. etcd answers TTL <= 0 for an unknown or
 * expired lease (a negative int64 reads here as a huge number, also refused
 * by the caller's `> 0 && < 2^32` check).
 */
export function leaseKeepAliveTtl(frame: Uint8Array): number {
  let offset = 0;
  let ttl = 0;
  while (offset < frame.length) {
    const tag = readVarint(frame, offset);
    if (!tag) return Number.NaN;
    const [key, next] = tag;
    const field = Math.floor(key / 8);
    const wireType = key % 8;
    if (wireType === 0) {
      const value = readVarint(frame, next);
      if (!value) return Number.NaN;
      if (field === 3) ttl = value[0];
      offset = value[1];
    } else if (wireType === 2) {
      const length = readVarint(frame, next);
      if (!length) return Number.NaN;
      offset = length[1] + length[0];
    } else {
      return Number.NaN;
    }
  }
  return ttl;
}

/**
 * True when a WatchStatusResponse (or the baseline's copy of one) carries a
 * `transition` (field 1, length-delimited: tag byte 0x0a) rather than a
 * progress, snapshot or snapshot_end frame.
 */
export function isTransitionFrame(frame: Uint8Array): boolean {
  return frame[0] === 0x0a;
}

/** One unary call through a generated method definition; rejects on any error. */
export function unaryCall<Req, Res>(
  client: Client,
  method: MethodDefinition<Req, Res>,
  request: Req,
  metadata: Metadata,
  timeoutMs = 10_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      request,
      metadata,
      { deadline: Date.now() + timeoutMs },
      (error, response) => {
        if (error) reject(error);
        else if (response === undefined) reject(new Error(`${method.path}: empty response`));
        else resolve(response);
      },
    );
  });
}

/** grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING */
const SERVING = 1;

/**
 * One grpc.health.v1.Health/Check on a fresh connection. Resolves true only
 * for SERVING; false for any other status or failure (refused, timeout).
 */
export function healthServing(address: string, timeoutMs: number): Promise<boolean> {
  const client = newClient(address);
  return new Promise<boolean>((resolve) => {
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      identity,
      identity,
      // HealthCheckRequest{service: ""}: every field at its default, zero bytes.
      Buffer.alloc(0),
      new Metadata(),
      { deadline: Date.now() + timeoutMs },
      (error, response) => {
        // HealthCheckResponse{status = 1 (varint)}: 08 01 means SERVING.
        resolve(!error && response?.[0] === 0x08 && response[1] === SERVING);
      },
    );
  }).finally(() => {
    client.close();
  });
}
