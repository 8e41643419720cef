import { status, type ServiceError } from '@grpc/grpc-js';
import type { HeartbeatError } from '../../gen/vigil/v1/runtime_service.js';
import { decodeErrorStatus, readErrorStatus, type ErrorStatus } from '../wire/error-status.js';
import { STATUS_DETAILS_KEY } from '../wire/metadata.js';

/**
 * A failed Vigil call: the gRPC code and the ErrorInfo reason and metadata
 * the server sent. Match on `reason`, never on the message.
 */
export class VigilClientError extends Error {
  override readonly name = 'VigilClientError';

  constructor(
    readonly code: status,
    /** ErrorInfo reason, e.g. `URL_VALIDATE_FAILED`; empty when the server sent none. */
    readonly reason: string,
    message: string,
    readonly metadata: Readonly<Record<string, string>>,
    options?: ErrorOptions & { readonly retryAfterMs?: number | undefined },
  ) {
    super(message, options);
    this.retryAfterMs = options?.retryAfterMs;
  }

  /** The server's retry hint (google.rpc.RetryInfo), in milliseconds, when it sent one. */
  readonly retryAfterMs: number | undefined;

  /** The code's name, e.g. `INVALID_ARGUMENT`. */
  get codeName(): string {
    return status[this.code];
  }

  /** True for failures worth retrying as they are (the server or network was unavailable). */
  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}

const RETRYABLE = new Set<status>([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.RESOURCE_EXHAUSTED,
]);

/** Converts a grpc-js error into a VigilClientError, decoding the ErrorInfo and RetryInfo details. */
export function fromServiceError(error: ServiceError): VigilClientError {
  const [details] = error.metadata.get(STATUS_DETAILS_KEY);
  const decoded = details instanceof Buffer ? tolerantly(decodeErrorStatus, details) : undefined;
  const info = decoded?.errorInfos[0];
  return new VigilClientError(error.code, info?.reason ?? '', error.details, info?.metadata ?? {}, {
    cause: error,
    retryAfterMs: decoded?.retryAfterMs,
  });
}

/**
 * Converts the answer to a rejected streamed heartbeat into a VigilClientError.
 * Its `status` is read exactly like a unary call's details (so RATE_LIMITED
 * carries `retryAfterMs` on both paths); from a server that sends no `status`
 * the plain code, reason and metadata fields are used.
 */
export function fromHeartbeatError(error: HeartbeatError): VigilClientError {
  const decoded = error.status ? tolerantly(readErrorStatus, error.status) : undefined;
  const info = decoded?.errorInfos[0];
  return new VigilClientError(
    // The wire carries the code as a plain int32 (google.rpc.Code).
    // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment
    decoded?.code ?? error.code,
    info?.reason ?? error.reason,
    decoded?.message ?? error.message,
    info?.metadata ?? error.metadata,
    { retryAfterMs: decoded?.retryAfterMs },
  );
}

/** Undecodable details are dropped: the code and message still say what failed. */
function tolerantly<T>(read: (from: T) => ErrorStatus, from: T): ErrorStatus | undefined {
  try {
    return read(from);
  } catch {
    return undefined;
  }
}
