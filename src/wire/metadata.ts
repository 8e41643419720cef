import type { Metadata } from '@grpc/grpc-js';

/**
 * The metadata keys and values both sides of a Vigil call agree on. Shared by
 * the server and the SDK, so neither spells them on its own.
 */

/** Every call carries its token under this key, as `Bearer <token>`. */
export const AUTHORIZATION_KEY = 'authorization';

/** Cluster mode: set (to the sender's replica id) on a heartbeat one replica forwards to another. */
export const FORWARDED_KEY = 'vigil-forwarded-by';

/**
 * The trailer that carries a failed call's google.rpc.Status (encoded), with
 * its ErrorInfo and, when there is one, its RetryInfo.
 */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

/** The `authorization` value for a token. */
export function bearerAuthorization(token: string): string {
  return `Bearer ${token}`;
}

/** The bearer token of a call, or undefined when there is none (or it is not a bearer token). */
export function bearerToken(metadata: Metadata): string | undefined {
  const [value] = metadata.get(AUTHORIZATION_KEY);
  return parseBearer(value);
}

/** The token of an `authorization` value (gRPC metadata or an HTTP header), or undefined when it is not a bearer token. */
export function parseBearer(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return match?.[1];
}
