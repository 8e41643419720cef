import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Status } from '../../gen/google/rpc/status.js';
import { VigilError } from '../domain/errors.js';
import { errorStatus } from '../wire/error-status.js';
import { STATUS_DETAILS_KEY } from '../wire/metadata.js';

/** What grpc-js needs to end a call with a status. */
export type CallError = Partial<ServiceError> & {
  code: status;
  details: string;
  metadata: Metadata;
  /** The ErrorInfo reason sent. */
  reason: string;
};

/**
 * Maps any thrown value to a gRPC status with exactly one ErrorInfo in
 * `grpc-status-details-bin`. VigilErrors keep their reason and message;
 * anything else is an unexpected fault: logged with its details, answered
 * INTERNAL with a generic message.
 */
export function toCallError(error: unknown, logger: Logger, method: string): CallError {
  const known = toKnownError(error, logger, method);
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_KEY, Buffer.from(Status.encode(toRpcStatus(known)).finish()));
  return Object.assign(new Error(known.message), {
    code: status[known.codeName],
    details: known.message,
    metadata,
    reason: known.reason,
  });
}

/**
 * The google.rpc.Status of a VigilError: its code, message, one ErrorInfo and,
 * with `retryAfterMs`, a RetryInfo. Unary calls send it encoded in
 * `grpc-status-details-bin`; a rejected streamed heartbeat carries the same
 * message in HeartbeatError.status.
 */
export function toRpcStatus(known: VigilError): Status {
  return errorStatus({
    code: status[known.codeName],
    message: known.message,
    reason: known.reason,
    metadata: known.metadata,
    retryAfterMs: known.retryAfterMs,
  });
}

/** VigilErrors as they are; anything else logged and replaced by a generic INTERNAL. */
export function toKnownError(error: unknown, logger: Logger, method: string): VigilError {
  if (error instanceof VigilError) return error;
  logger.error({ err: error, method }, 'unexpected fault');
  return new VigilError('INTERNAL', 'internal error; the server log has the details');
}
