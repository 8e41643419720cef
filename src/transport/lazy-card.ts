import { hash } from 'node:crypto';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { ServiceDefinition } from '@grpc/grpc-js';
import type { CardInput } from '../domain/agent-card.js';
import { VigilError } from '../domain/errors.js';
import { Struct } from '../../gen/google/protobuf/struct.js';
import {
  HeartbeatRequest,
  HeartbeatStreamRequest,
  RuntimeServiceService,
} from '../../gen/vigil/v1/runtime_service.js';

/**
 * Heartbeats decoded without their agent card. The card (a
 * google.protobuf.Struct, ≈2 KB for a real A2A card) is most of a heartbeat's
 * bytes and most of its decoding cost, and it rarely changes, so the request
 * deserializers set its raw bytes aside and the use-case decodes them only
 * when they differ from the last card accepted from that workspace. Every
 * other field is decoded by the generated code, unchanged.
 */

/** `HeartbeatRequest.agent_card` and `HeartbeatStreamRequest.heartbeat`. */
const AGENT_CARD_FIELD = 2;
const HEARTBEAT_FIELD = 2;

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

/** Decodes a HeartbeatStreamRequest, its heartbeat as `decodeHeartbeatRequest` does. */
export function decodeHeartbeatStreamRequest(bytes: Uint8Array): HeartbeatStreamRequest {
  const heartbeat = findOnce(bytes, HEARTBEAT_FIELD);
  if (typeof heartbeat === 'string') return HeartbeatStreamRequest.decode(bytes);
  const request = HeartbeatStreamRequest.decode(without(bytes, heartbeat.start, heartbeat.end));
  request.heartbeat = decodeHeartbeatRequest(heartbeat.value);
  return request;
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
      } catch {
        throw new VigilError(
          'MESSAGE_MALFORMED',
          'agent_card is not a valid google.protobuf.Struct',
          { field: 'agent_card' },
        );
      }
    },
  };
}

/** RuntimeService with the card-deferring deserializers for Heartbeat and HeartbeatStream. */
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
  },
} satisfies ServiceDefinition;
