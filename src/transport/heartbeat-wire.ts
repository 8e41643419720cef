import { hash } from 'node:crypto';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { MAX_AGENT_CARD_DEPTH, type CardInput } from '../domain/agent-card.js';
import { VigilError } from '../domain/errors.js';
import { Struct } from '../../gen/google/protobuf/struct.js';
import {
  HeartbeatRequest,
  HeartbeatStreamResponse,
  RuntimeServiceService,
  type HeartbeatStreamRequest,
} from '../../gen/vigil/v1/runtime_service.js';

/**
 * The heartbeat's wire fast path, measured (see bench/README.md): heartbeats
 * are decoded without their agent card, and streamed heartbeat answers are
 * encoded without a general-purpose writer.
 *
 * The card (a google.protobuf.Struct, ≈2 KB for a real A2A card) is most of a
 * heartbeat's bytes and most of its decoding cost, and it rarely changes, so
 * the request deserializers set its raw bytes aside and the use-case decodes
 * them only when they differ from the last card accepted from that
 * workspace. Every other field of HeartbeatRequest is decoded by the
 * generated code, unchanged. Hand-written here, and tested byte for byte
 * against the generated code: the outer HeartbeatStreamRequest scan (two
 * fields) and the HeartbeatStreamResponse encoding of an applied heartbeat.
 */

/** `HeartbeatRequest.agent_card`. */
const AGENT_CARD_FIELD = 2;

const CARD_BYTES: unique symbol = Symbol('agent card bytes');

/** Wire types by their number in a tag's low three bits. */
const WIRE_TYPES: readonly (WireType | undefined)[] = [
  WireType.Varint,
  WireType.Bit64,
  WireType.LengthDelimited,
  WireType.StartGroup,
  WireType.EndGroup,
  WireType.Bit32,
];

/** A decoded HeartbeatRequest whose card may still be in its raw bytes. */
type LazyHeartbeatRequest = HeartbeatRequest & { [CARD_BYTES]?: Uint8Array };

/** Where one length-delimited field sits in a message, when it occurs exactly once. */
function findOnce(
  bytes: Uint8Array,
  field: number,
): { start: number; end: number; value: Uint8Array } | 'absent' | 'repeated' {
  const reader = new BinaryReader(bytes);
  let found: { start: number; end: number; value: Uint8Array } | undefined;
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const tag = reader.uint32();
    // Where the generated decoders stop reading: tag 0, or an end-group marker.
    if (tag === 0 || (tag & 7) === 4) break;
    const wireType = WIRE_TYPES[tag & 7];
    if (wireType === undefined) throw new Error(`invalid wire type ${tag & 7}`);
    if (tag >>> 3 === field && wireType === WireType.LengthDelimited) {
      if (found) return 'repeated';
      const value = reader.bytes();
      found = { start, end: reader.pos, value };
    } else {
      reader.skip(wireType, tag >>> 3);
    }
  }
  return found ?? 'absent';
}

/** The message without the bytes in [start, end). */
function without(bytes: Uint8Array, start: number, end: number): Uint8Array {
  if (start === 0) return bytes.subarray(end);
  if (end === bytes.length) return bytes.subarray(0, start);
  const rest = new Uint8Array(bytes.length - (end - start));
  rest.set(bytes.subarray(0, start), 0);
  rest.set(bytes.subarray(end), start);
  return rest;
}

/** Decodes a HeartbeatRequest, keeping a single agent card as raw bytes. Throws on bad bytes. */
export function decodeHeartbeatRequest(bytes: Uint8Array): HeartbeatRequest {
  const card = findOnce(bytes, AGENT_CARD_FIELD);
  // Repeated (merged) or absent: nothing to set aside.
  if (typeof card === 'string') return HeartbeatRequest.decode(bytes);
  const request: LazyHeartbeatRequest = HeartbeatRequest.decode(
    without(bytes, card.start, card.end),
  );
  request[CARD_BYTES] = card.value;
  return request;
}

/**
 * Decodes a HeartbeatStreamRequest, its heartbeat as `decodeHeartbeatRequest`
 * does, in one pass over its two fields (`request_id` = 1, `heartbeat` = 2;
 * anything else is skipped, a repeated scalar or message field read as the
 * generated decoder reads it: the last `request_id`, the last `heartbeat`).
 * Throws on bad bytes or a `request_id` beyond Number.MAX_SAFE_INTEGER.
 */
export function decodeHeartbeatStreamRequest(bytes: Uint8Array): HeartbeatStreamRequest {
  const reader = new BinaryReader(bytes);
  let requestId = 0;
  let heartbeat: HeartbeatRequest | undefined;
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    // Where the generated decoder stops reading: tag 0, or an end-group marker.
    if (tag === 0 || (tag & 7) === 4) break;
    const wireType = WIRE_TYPES[tag & 7];
    if (wireType === undefined) throw new Error(`invalid wire type ${tag & 7}`);
    if (tag === 8) {
      const value = Number(reader.uint64().toString());
      if (value > Number.MAX_SAFE_INTEGER) throw new Error('request_id beyond MAX_SAFE_INTEGER');
      requestId = value;
    } else if (tag === 18) {
      // Every occurrence is decoded, as the generated decoder does (a bad one fails the message).
      heartbeat = decodeHeartbeatRequest(reader.bytes());
    } else {
      reader.skip(wireType, tag >>> 3);
    }
  }
  return { requestId, heartbeat };
}

/** Bytes of a varint holding `value` (a non-negative safe integer). */
function varintSize(value: number): number {
  let size = 1;
  for (let v = value; v >= 128; v = Math.floor(v / 128)) size += 1;
  return size;
}

function writeVarint(buffer: Buffer, at: number, value: number): number {
  let pos = at;
  let v = value;
  while (v >= 128) {
    buffer[pos++] = (v % 128) | 128;
    v = Math.floor(v / 128);
  }
  buffer[pos++] = v;
  return pos;
}

/**
 * HeartbeatStreamResponse for an applied heartbeat (`result.heartbeat`), the
 * same bytes as the generated encoder writes (defaults left out), without
 * its writer; anything else goes through the generated encoder.
 */
export function encodeHeartbeatStreamResponse(message: HeartbeatStreamResponse): Buffer {
  const result = message.result;
  const interval = result?.$case === 'heartbeat' ? result.value.heartbeatInterval : undefined;
  if (
    result?.$case !== 'heartbeat' ||
    !Number.isSafeInteger(message.requestId) ||
    message.requestId < 0 ||
    !Number.isSafeInteger(result.value.configVersion) ||
    result.value.configVersion < 0 ||
    (result.value.status as number) < 0 ||
    (interval !== undefined &&
      (!Number.isSafeInteger(interval.seconds) || interval.seconds < 0 || interval.nanos < 0))
  ) {
    return Buffer.from(HeartbeatStreamResponse.encode(message).finish());
  }
  // The enum's wire value.
  const status: number = result.value.status;
  const { configVersion } = result.value;
  // Duration { seconds = 1; nanos = 2 }
  const durationSize =
    interval === undefined
      ? 0
      : (interval.seconds !== 0 ? 1 + varintSize(interval.seconds) : 0) +
        (interval.nanos !== 0 ? 1 + varintSize(interval.nanos) : 0);
  // HeartbeatResponse { status = 1; heartbeat_interval = 2; config_version = 3 }
  const answerSize =
    (status !== 0 ? 1 + varintSize(status) : 0) +
    (interval === undefined ? 0 : 1 + varintSize(durationSize) + durationSize) +
    (configVersion !== 0 ? 1 + varintSize(configVersion) : 0);
  // HeartbeatStreamResponse { request_id = 1; heartbeat = 2 }
  const size =
    (message.requestId !== 0 ? 1 + varintSize(message.requestId) : 0) +
    1 +
    varintSize(answerSize) +
    answerSize;
  const buffer = Buffer.allocUnsafe(size);
  let pos = 0;
  if (message.requestId !== 0) {
    buffer[pos++] = 8;
    pos = writeVarint(buffer, pos, message.requestId);
  }
  buffer[pos++] = 18;
  pos = writeVarint(buffer, pos, answerSize);
  if (status !== 0) {
    buffer[pos++] = 8;
    pos = writeVarint(buffer, pos, status);
  }
  if (interval !== undefined) {
    buffer[pos++] = 18;
    pos = writeVarint(buffer, pos, durationSize);
    if (interval.seconds !== 0) {
      buffer[pos++] = 8;
      pos = writeVarint(buffer, pos, interval.seconds);
    }
    if (interval.nanos !== 0) {
      buffer[pos++] = 16;
      pos = writeVarint(buffer, pos, interval.nanos);
    }
  }
  if (configVersion !== 0) {
    buffer[pos++] = 24;
    pos = writeVarint(buffer, pos, configVersion);
  }
  return buffer;
}

/** The raw bytes of the heartbeat's card, when it was kept undecoded. */
export function cardBytes(request: HeartbeatRequest): Uint8Array | undefined {
  return (request as LazyHeartbeatRequest)[CARD_BYTES];
}

/** The heartbeat's card, as raw bytes decoded on demand or as the value already decoded. */
export function heartbeatCard(request: HeartbeatRequest): CardInput | undefined {
  const bytes = (request as LazyHeartbeatRequest)[CARD_BYTES];
  if (bytes !== undefined) return encodedCard(bytes);
  const value = request.agentCard;
  return value === undefined ? undefined : { fingerprint: () => undefined, decode: () => value };
}

function encodedCard(bytes: Uint8Array): CardInput {
  let fingerprint: string | undefined;
  return {
    fingerprint: () => (fingerprint ??= hash('sha256', bytes, 'base64')),
    decode() {
      try {
        return Struct.unwrap(Struct.decode(bytes));
      } catch (error) {
        // The generated decoder's recursion limit: a card nested too deep, not bad bytes.
        if (error instanceof Error && error.message.includes('recursion limit')) {
          throw new VigilError(
            'AGENT_CARD_INVALID',
            `the agent card nests deeper than ${MAX_AGENT_CARD_DEPTH} levels`,
          );
        }
        throw new VigilError(
          'MESSAGE_MALFORMED',
          'agent_card is not a valid google.protobuf.Struct',
          { field: 'agent_card' },
        );
      }
    },
  };
}

/** RuntimeService with the fast paths above for Heartbeat and HeartbeatStream. */
export const runtimeServiceDefinition = {
  ...RuntimeServiceService,
  heartbeat: {
    ...RuntimeServiceService.heartbeat,
    requestDeserialize: (value: Buffer): HeartbeatRequest => decodeHeartbeatRequest(value),
  },
  heartbeatStream: {
    ...RuntimeServiceService.heartbeatStream,
    requestDeserialize: (value: Buffer): HeartbeatStreamRequest =>
      decodeHeartbeatStreamRequest(value),
    responseSerialize: (value: HeartbeatStreamResponse): Buffer =>
      encodeHeartbeatStreamResponse(value),
  },
} satisfies ServiceDefinition;
