import type { ServiceDefinition } from '@grpc/grpc-js';
import { VigilError } from '../domain/errors.js';

/**
 * grpc-js answers a request it cannot decode with INTERNAL, which would blame
 * the server for the caller's bytes. Every service is registered with
 * deserializers that never throw: undecodable bytes become this marker, and
 * the handlers answer it with INVALID_ARGUMENT / MESSAGE_MALFORMED.
 */
export const MALFORMED: unique symbol = Symbol('malformed request');
type Malformed = { readonly [MALFORMED]: true };
const marker: Malformed = Object.freeze({ [MALFORMED]: true as const });

export function isMalformed(request: unknown): request is Malformed {
  return typeof request === 'object' && request !== null && MALFORMED in request;
}

/** Throws MESSAGE_MALFORMED for the marker; otherwise returns the request. */
export function wellFormed<T>(request: T): T {
  if (isMalformed(request)) {
    throw new VigilError(
      'MESSAGE_MALFORMED',
      'the request is not a valid protobuf message of its type',
    );
  }
  return request;
}

/** The same service, with request deserializers that return the marker instead of throwing. */
export function tolerant<D extends ServiceDefinition>(definition: D): D {
  return Object.fromEntries(
    Object.entries(definition).map(([name, method]) => [
      name,
      {
        ...method,
        requestDeserialize: (bytes: Buffer): unknown => {
          try {
            return method.requestDeserialize(bytes);
          } catch {
            return marker;
          }
        },
      },
    ]),
  ) as D;
}
