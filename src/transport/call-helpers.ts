import type { Metadata, sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { toCallError } from './errors.js';

/** The bearer token of a call, or undefined when there is none. */
export function bearerToken(metadata: Metadata): string | undefined {
  const [value] = metadata.get('authorization');
  if (typeof value !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return match?.[1];
}

/** Adapts a promise-returning handler to grpc-js, mapping every failure to a status with ErrorInfo. */
export function unary<Req, Res>(
  logger: Logger,
  method: string,
  handle: (request: Req, token: string | undefined) => Promise<Res>,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    // Through an async function so a synchronous throw becomes a rejection too.
    (async () => handle(call.request, bearerToken(call.metadata)))().then(
      (response) => {
        callback(null, response);
      },
      (error: unknown) => {
        const callError = toCallError(error, logger, method);
        logger.debug({ method, code: callError.code, reason: callError.details }, 'call failed');
        callback(callError);
      },
    );
  };
}
