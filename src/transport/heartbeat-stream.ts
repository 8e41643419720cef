import { status, type ServerDuplexStream } from '@grpc/grpc-js';
import { fieldInvalid } from '../domain/errors.js';
import type { Registry } from '../domain/registry.js';
import type {
  HeartbeatStreamRequest,
  HeartbeatStreamResponse,
} from '../../gen/vigil/v1/runtime_service.js';
import { bearerToken, logFailure, type CallContext } from './call-helpers.js';
import { shuttingDown, toCallError, toKnownError } from './errors.js';
import { isMalformed, wellFormed } from './malformed.js';
import { heartbeatCommand, heartbeatResponse } from './convert.js';

/** Past this many unanswered heartbeats the stream stops reading until the client catches up. */
const MAX_IN_FLIGHT = 512;

/**
 * Serves one HeartbeatStream. The token is resolved (hashed and looked up)
 * once, at open, so a bad one fails fast; then every request is applied like
 * a unary Heartbeat through that session — which re-checks, without hashing,
 * that no revocation or rotation happened since — concurrently with the
 * requests behind it (so they share group commits), and answered strictly in
 * order. A rejected request gets an `error` response and writes nothing; the
 * stream stays open. The stream itself ends with UNAUTHENTICATED when the
 * token is missing or invalid at open, or stops being valid (revoked, or past
 * its rotation overlap) while the stream is open.
 */
export function serveHeartbeatStream(
  call: ServerDuplexStream<HeartbeatStreamRequest, HeartbeatStreamResponse>,
  registry: Registry,
  context: CallContext,
): void {
  const { logger, observer } = context;
  const session = registry.openSession(bearerToken(call.metadata));
  // Responses are written in request order: each waits for the one before it.
  let answered: Promise<void> = Promise.resolve();
  let inFlight = 0;
  let paused = false;
  let ended = false;

  const fail = (error: unknown) => {
    if (ended) return;
    ended = true;
    removeShutdownHook();
    const callError = toCallError(error, logger, 'HeartbeatStream');
    if (!context.shutdown.started) {
      logFailure(logger, 'HeartbeatStream', callError.code, callError.reason, call.getPeer());
    }
    observer.callFinished('HeartbeatStream', callError.code, 0);
    call.emit('error', callError);
  };
  const removeShutdownHook = context.shutdown.onShutdown(() => {
    fail(shuttingDown());
  });
  session.catch(fail);

  async function answer(request: HeartbeatStreamRequest): Promise<HeartbeatStreamResponse> {
    observer.heartbeatReceived();
    // An undecodable message has no request id to echo: it is answered as 0.
    const requestId = isMalformed(request) ? 0 : request.requestId;
    try {
      const { heartbeat } = wellFormed(request);
      if (!heartbeat) throw fieldInvalid('heartbeat', 'is required');
      const result = await registry.heartbeat(await session, heartbeatCommand(heartbeat));
      return {
        requestId,
        result: { $case: 'heartbeat', value: heartbeatResponse(result) },
      };
    } catch (error) {
      const known = toKnownError(error, logger, 'HeartbeatStream');
      if (known.codeName === 'UNAUTHENTICATED') fail(known);
      return {
        requestId,
        result: {
          $case: 'error',
          value: {
            code: status[known.codeName],
            message: known.message,
            reason: known.reason,
            metadata: { ...known.metadata },
          },
        },
      };
    }
  }

  call.on('data', (request: HeartbeatStreamRequest) => {
    // Nothing more is applied once the stream has ended (say, the server is shutting down).
    if (ended) return;
    const response = answer(request);
    inFlight += 1;
    if (inFlight >= MAX_IN_FLIGHT && !paused) {
      paused = true;
      call.pause();
    }
    answered = answered.then(async () => {
      const message = await response;
      inFlight -= 1;
      if (ended) return;
      if (!call.write(message)) await new Promise((resolve) => call.once('drain', resolve));
      if (paused && inFlight < MAX_IN_FLIGHT / 2) {
        paused = false;
        call.resume();
      }
    });
  });
  call.on('end', () => {
    void answered.then(() => {
      if (ended) return;
      ended = true;
      removeShutdownHook();
      observer.callFinished('HeartbeatStream', status.OK, 0);
      call.end();
    });
  });
  call.on('cancelled', () => {
    ended = true;
    removeShutdownHook();
  });
}
