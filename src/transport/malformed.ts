import type { ServiceDefinition } from '@grpc/grpc-js';
import { VigilError } from '../domain/errors.js';

/**
 * grpc-js answers a request it cannot decode with INTERNAL, which would blame
 * the server for the caller's bytes. Every service is registered with
 * deserializers that never throw: undecodable bytes become this marker, and
 * the handlers answer it with INVALID_ARGUMENT / MESSAGE_MALFORMED (and an
 * oversized message, never decoded, with RESOURCE_EXHAUSTED / MESSAGE_TOO_LARGE).
 */
export const MALFORMED: unique symbol = Symbol('malformed request');
type Malformed = { readonly [MALFORMED]: 'undecodable' | 'too-large'; readonly size: number };
const undecodable: Malformed = Object.freeze({ [MALFORMED]: 'undecodable' as const, size: 0 });

export function isMalformed(request: unknown): request is Malformed {
  return typeof request === 'object' && request !== null && MALFORMED in request;
}

/** Throws MESSAGE_MALFORMED / MESSAGE_TOO_LARGE for a marker; otherwise returns the request. */
export function wellFormed<T>(request: T): T {
  if (!isMalformed(request)) return request;
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
export function tolerant<D extends ServiceDefinition>(definition: D, maxBytes: number): D {
  return Object.fromEntries(
    Object.entries(definition).map(([name, method]) => [
      name,
      {
        ...method,
        requestDeserialize: (bytes: Buffer): unknown => {
          if (bytes.length > maxBytes) {
            return Object.freeze({ [MALFORMED]: 'too-large' as const, size: bytes.length });
          }
          try {
            return method.requestDeserialize(bytes);
          } catch {
            return undecodable;
          }
        },
      },
    ]),
  ) as D;
}
