import { status, type Metadata, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { toCallError } from './errors.js';
import { wellFormed } from './malformed.js';
import type { CallObserver } from './observer.js';
import type { Shutdown } from './shutdown.js';

/** What every handler needs besides its use-cases. */
export interface CallContext {
  readonly logger: Logger;
  readonly observer: CallObserver;
  /** Begins when the server shuts down: long-lived streams then end with UNAVAILABLE. */
  readonly shutdown: Shutdown;
}

/** The bearer token of a call, or undefined when there is none. */
export function bearerToken(metadata: Metadata): string | undefined {
  const [value] = metadata.get('authorization');
  if (typeof value !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return match?.[1];
}

/**
 * Adapts a promise-returning handler to grpc-js: every failure becomes a
 * status with ErrorInfo, is logged on one line (never with metadata, so never
 * with a token) and every call is observed with its code and latency.
 */
export function unary<Req, Res>(
  context: CallContext,
  method: string,
  handle: (request: Req, token: string | undefined) => Promise<Res>,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  const { logger, observer } = context;
  return (call, callback) => {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    // Through an async function so a synchronous throw becomes a rejection too.
    (async () => handle(wellFormed(call.request), bearerToken(call.metadata)))().then(
      (response) => {
        observer.callFinished(method, status.OK, seconds());
        callback(null, response);
      },
      (error: unknown) => {
        const callError = toCallError(error, logger, method);
        observer.callFinished(method, callError.code, seconds());
        logFailure(logger, method, callError.code, callError.reason, call.getPeer());
        callback(callError);
      },
    );
  };
}

/** One log line per failed call: server faults at error level, caller mistakes at info. */
export function logFailure(
  logger: Logger,
  method: string,
  code: status,
  reason: string,
  peer: string,
): void {
  const entry = { method, code: status[code], reason, peer };
  if (code === status.INTERNAL || code === status.UNKNOWN) logger.error(entry, 'rpc failed');
  else if (code === status.UNAVAILABLE) logger.warn(entry, 'rpc failed');
  else logger.info(entry, 'rpc failed');
}
