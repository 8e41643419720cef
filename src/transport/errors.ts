import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { VigilError } from '../domain/errors.js';
import { ERROR_DOMAIN, encodeStatus } from './status-details.js';

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
  const code = status[known.codeName];
  const metadata = new Metadata();
  metadata.set(
    'grpc-status-details-bin',
    Buffer.from(
      encodeStatus({
        code,
        message: known.message,
        errorInfos: [{ reason: known.reason, domain: ERROR_DOMAIN, metadata: known.metadata }],
        retryDelayMs: known.retryAfterMs,
      }),
    ),
  );
  return Object.assign(new Error(known.message), {
    code,
    details: known.message,
    metadata,
    reason: known.reason,
  });
}

/** VigilErrors as they are; anything else logged and replaced by a generic INTERNAL. */
export function toKnownError(error: unknown, logger: Logger, method: string): VigilError {
  if (error instanceof VigilError) return error;
  logger.error({ err: error, method }, 'unexpected fault');
  return new VigilError('INTERNAL', 'internal error; the server log has the details');
}

/** How long-lived streams end when the server shuts down: clients resume elsewhere. */
export function shuttingDown(): VigilError {
  return new VigilError('SHUTTING_DOWN', 'the server is shutting down; resume from your last seq');
}
