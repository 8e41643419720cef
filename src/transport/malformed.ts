import type { ServiceDefinition } from '@grpc/grpc-js';
import {
  BinaryReader,
  WireType,
  configureTextEncoding,
  getTextEncoding,
} from '@bufbuild/protobuf/wire';
import { VigilError, fieldInvalid } from '../domain/errors.js';
import { MAX_AGENT_CARD_DEPTH } from '../domain/agent-card.js';

/**
 * grpc-js answers a request it cannot decode with INTERNAL, which would blame
 * the server for the caller's bytes. Every service is registered with
 * deserializers that never throw: undecodable bytes become this marker, and
 * the handlers answer it with INVALID_ARGUMENT / MESSAGE_MALFORMED (and an
 * oversized message, never decoded, with RESOURCE_EXHAUSTED / MESSAGE_TOO_LARGE).
 */
export const MALFORMED: unique symbol = Symbol('malformed request');
type Malformed = {
  readonly [MALFORMED]: 'undecodable' | 'too-large';
  readonly size: number;
  /** What to answer instead of MESSAGE_MALFORMED, when the bytes say more precisely what is wrong. */
  readonly error?: VigilError;
  /** A stream message's `request_id` (field 1), when it could be read. */
  readonly requestId?: number;
};
const undecodable: Malformed = Object.freeze({ [MALFORMED]: 'undecodable' as const, size: 0 });

/**
 * Strings must be valid UTF-8 (proto3 requires it): the generated decoders
 * read strings through this library's text decoding, which by default
 * replaces bad bytes with U+FFFD and would store them. Made strict here,
 * once, for every decoder of the process: a bad string fails the message.
 */
let strictUtf8Installed = false;
export function requireValidUtf8(): void {
  if (strictUtf8Installed) return;
  strictUtf8Installed = true;
  const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  // Deprecated only as a way to supply a missing TextDecoder; it is the one way to make the
  // generated decoders (which call reader.string() without `strict`) refuse bad UTF-8.
  // eslint-disable-next-line @typescript-eslint/no-deprecated
  configureTextEncoding({ ...getTextEncoding(), decodeUtf8: (bytes) => fatal.decode(bytes) });
}

/** Per method: the precise answer to a message that is valid protobuf but out of Vigil's range. */
export interface DecodeRefinements {
  /** The request's uint64 fields are beyond Number.MAX_SAFE_INTEGER. */
  readonly unsafeInteger?: (decodeError: string) => VigilError;
  /** Read the message's `request_id` (field 1) for the answer to an undecodable one. */
  readonly hasRequestId?: boolean;
}

/** The generated decoders' recursion limit is hit only through agent_card, the one Struct. */
function refine(error: unknown, refinements: DecodeRefinements): VigilError | undefined {
  const message = error instanceof Error ? error.message : '';
  if (message.includes('recursion limit')) {
    return new VigilError(
      'AGENT_CARD_INVALID',
      `the agent card nests deeper than ${MAX_AGENT_CARD_DEPTH} levels`,
    );
  }
  if (message.includes('MAX_SAFE_INTEGER') && refinements.unsafeInteger) {
    return refinements.unsafeInteger(message);
  }
  return undefined;
}

/** Field 1 (a uint64 `request_id`) of a message, read as far as the bytes allow. */
function requestIdOf(bytes: Uint8Array): number | undefined {
  try {
    const reader = new BinaryReader(bytes);
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (field === 1 && wireType === WireType.Varint) {
        const value = Number(reader.uint64().toString());
        return Number.isSafeInteger(value) ? value : undefined;
      }
      reader.skip(wireType, field);
    }
  } catch {
    // What could be read had no request_id.
  }
  return undefined;
}

/** HeartbeatRequest's one uint64 is uptime_seconds. */
export const HEARTBEAT_REFINEMENTS: DecodeRefinements = {
  unsafeInteger: () => fieldInvalid('uptime_seconds', 'is out of range'),
};
/** HeartbeatStreamRequest: request_id or the heartbeat's uptime_seconds. */
export const HEARTBEAT_STREAM_REFINEMENTS: DecodeRefinements = {
  unsafeInteger: (decodeError) =>
    fieldInvalid(
      decodeError.includes('request_id') ? 'request_id' : 'uptime_seconds',
      'is out of range',
    ),
  hasRequestId: true,
};
/** WatchStatusRequest's one uint64 is after_seq: past 2^53 − 1 it is beyond any head. */
export const WATCH_REFINEMENTS: DecodeRefinements = {
  unsafeInteger: () =>
    new VigilError('CURSOR_AHEAD', 'after_seq is beyond the newest transition', {
      afterSeq: 'beyond 9007199254740991',
    }),
};

export function isMalformed(request: unknown): request is Malformed {
  return typeof request === 'object' && request !== null && MALFORMED in request;
}

/** The `request_id` read from a malformed stream message's bytes, if any. */
export function malformedRequestId(request: unknown): number | undefined {
  return isMalformed(request) ? request.requestId : undefined;
}

/** Throws MESSAGE_MALFORMED / MESSAGE_TOO_LARGE for a marker; otherwise returns the request. */
export function wellFormed<T>(request: T): T {
  if (!isMalformed(request)) return request;
  if (request.error) throw request.error;
  if (request[MALFORMED] === 'too-large') {
    throw new VigilError(
      'MESSAGE_TOO_LARGE',
      `the request is ${request.size} bytes, over the limit`,
      {
        sizeBytes: String(request.size),
      },
    );
  }
  throw new VigilError(
    'MESSAGE_MALFORMED',
    'the request is not a valid protobuf message of its type',
  );
}

/**
 * The same service, with request deserializers that return a marker instead of
 * throwing, and that refuse (without decoding) messages over `maxBytes`.
 */
export function tolerant<D extends ServiceDefinition>(
  definition: D,
  maxBytes: number,
  refinements: Readonly<Partial<Record<keyof D, DecodeRefinements>>> = {} as Readonly<
    Partial<Record<keyof D, DecodeRefinements>>
  >,
): D {
  return Object.fromEntries(
    Object.entries(definition).map(([name, method]) => {
      const refined: DecodeRefinements = refinements[name as keyof D] ?? {};
      const withId = (marker: Malformed, bytes: Buffer): Malformed => {
        const requestId = refined.hasRequestId ? requestIdOf(bytes) : undefined;
        return requestId === undefined ? marker : Object.freeze({ ...marker, requestId });
      };
      return [
        name,
        {
          ...method,
          requestDeserialize: (bytes: Buffer): unknown => {
            if (bytes.length > maxBytes) {
              return withId(
                Object.freeze({ [MALFORMED]: 'too-large' as const, size: bytes.length }),
                bytes,
              );
            }
            try {
              return method.requestDeserialize(bytes);
            } catch (error) {
              const precise = refine(error, refined);
              const marker = precise
                ? Object.freeze({ ...undecodable, error: precise })
                : undecodable;
              return withId(marker, bytes);
            }
          },
        },
      ];
    }),
  ) as D;
}
