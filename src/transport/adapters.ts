import { once } from 'node:events';
import {
  status,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { VigilError } from '../domain/errors.js';
import type { WorkspaceSession } from '../domain/workspace-tokens.js';
import { FORWARDED_KEY, bearerToken } from '../wire/metadata.js';
import type { CallSessions } from './call-sessions.js';
import { toCallError, toKnownError, type CallError } from './errors.js';
import { wellFormed } from './malformed.js';
import type { CallObserver } from './observer.js';
import type { Shutdown } from './shutdown.js';

/**
 * One adapter per call shape (unary, server stream, bidi stream), after
 * nice-grpc's `handle*Call`. Each one, and only it: builds the call context,
 * refuses an undecodable or oversized request (the malformed marker), maps
 * every failure to a status with ErrorInfo, logs a failed call on one line
 * (never with metadata, so never with a token), and records the call once in
 * metrics with its code and real duration. Handlers are plain functions and
 * generators over domain calls.
 */

/** What a handler knows about its call. */
export interface CallContext {
  /** The bearer token, when the call carries one. */
  readonly token: string | undefined;
  /** The workspace session the auth interceptor resolved from that token (runtime calls). */
  readonly session?: WorkspaceSession | undefined;
  /**
   * Aborts when the client cancels (and, for streams, when the server shuts
   * down): every wait of the handler should take it.
   */
  readonly signal: AbortSignal;
  /** The peer's address, for logs. */
  readonly peer: string;
  /** Set when another replica forwarded the call (cluster mode): it is not forwarded again. */
  readonly forwarded?: boolean;
}

/** What every adapter needs besides the handler. */
export interface AdapterDeps {
  readonly logger: Logger;
  readonly observer: CallObserver;
  /** Begins when the server shuts down: long-lived streams then end with UNAVAILABLE. */
  readonly shutdown: Shutdown;
  /** Sessions the auth interceptor resolved, by call (unary runtime calls take theirs). */
  readonly sessions?: CallSessions | undefined;
}

/** One log line per failed call: server faults at error level, caller mistakes at info. */
function logFailure(logger: Logger, method: string, error: CallError, peer: string): void {
  const entry = { method, code: status[error.code], reason: error.reason, peer };
  if (error.code === status.INTERNAL || error.code === status.UNKNOWN) {
    logger.error(entry, 'rpc failed');
  } else if (error.code === status.UNAVAILABLE) logger.warn(entry, 'rpc failed');
  else logger.info(entry, 'rpc failed');
}

function stopwatch(): () => number {
  const started = process.hrtime.bigint();
  return () => Number(process.hrtime.bigint() - started) / 1e9;
}

/** A call's cancellation as an AbortSignal, created only when a handler asks for it. */
function lazySignal(call: { cancelled: boolean; once(event: 'cancelled', f: () => void): void }) {
  let controller: AbortController | undefined;
  return () => {
    if (!controller) {
      const created = new AbortController();
      controller = created;
      if (call.cancelled) created.abort();
      else
        call.once('cancelled', () => {
          created.abort();
        });
    }
    return controller.signal;
  };
}

export function handleUnary<Req, Res>(
  deps: AdapterDeps,
  method: string,
  handler: (request: Req, context: CallContext) => Promise<Res>,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    const seconds = stopwatch();
    const signal = lazySignal(call);
    const context: CallContext = {
      token: bearerToken(call.metadata),
      session: deps.sessions?.take(call.metadata),
      forwarded: call.metadata.get(FORWARDED_KEY).length > 0,
      get signal() {
        return signal();
      },
      peer: call.getPeer(),
    };
    // Through an async function so a synchronous throw becomes a rejection too.
    (async () => {
      // A replica that cannot vouch for its lease answers nothing (health says so too).
      if (deps.shutdown.started) throw deps.shutdown.refusal();
      return handler(wellFormed(call.request), context);
    })().then(
      (response) => {
        deps.observer.callFinished(method, status.OK, seconds());
        callback(null, response);
      },
      (error: unknown) => {
        if (call.cancelled) {
          // Nobody is listening: no answer, no error log.
          deps.observer.callFinished(method, status.CANCELLED, seconds());
          return;
        }
        const callError = toCallError(error, deps.logger, method);
        deps.observer.callFinished(method, callError.code, seconds());
        logFailure(deps.logger, method, callError, context.peer);
        callback(callError);
      },
    );
  };
}

/** A stream's context, whose signal aborts on cancellation and on shutdown (an O(1) hook). */
function streamContext(
  deps: AdapterDeps,
  call: { cancelled: boolean; metadata: ServerUnaryCall<unknown, unknown>['metadata'] } & {
    getPeer(): string;
    on(event: 'cancelled', f: () => void): unknown;
  },
): { context: CallContext; release: () => void } {
  const controller = new AbortController();
  const abort = () => {
    controller.abort();
  };
  call.on('cancelled', abort);
  const removeHook = deps.shutdown.onShutdown(abort);
  return {
    context: {
      token: bearerToken(call.metadata),
      session: deps.sessions?.take(call.metadata),
      signal: controller.signal,
      peer: call.getPeer(),
    },
    release: removeHook,
  };
}

/**
 * A server stream from an async generator. Events are pulled one at a time,
 * each only once the previous one is flushed (grpc-js backpressure), so a
 * slow client holds nothing but the generator's state. Ends with OK when the
 * generator returns, CANCELLED when the client goes, UNAVAILABLE
 * (SHUTTING_DOWN) when the server shuts down. Values may be pre-encoded bytes
 * when the service definition's serializer passes them through.
 */
export function handleServerStream<Req, Res, Caller>(
  deps: AdapterDeps,
  method: string,
  /** Runs first, before the request is looked at: authentication. */
  authorize: (context: CallContext) => Caller,
  handler: (request: Req, context: CallContext, caller: Caller) => AsyncIterable<Res | Buffer>,
): (call: ServerWritableStream<Req, Res>) => void {
  return (call) => {
    const seconds = stopwatch();
    const { context, release } = streamContext(deps, call);
    const { signal } = context;
    void (async () => {
      try {
        const caller = authorize(context);
        for await (const message of handler(wellFormed(call.request), context, caller)) {
          if (signal.aborted) break;
          if (!call.write(message as Res)) await once(call, 'drain', { signal });
        }
        if (!signal.aborted) {
          deps.observer.callFinished(method, status.OK, seconds());
          call.end();
          return;
        }
        throw deps.shutdown.refusal();
      } catch (error) {
        if (call.cancelled) {
          deps.observer.callFinished(method, status.CANCELLED, seconds());
          return;
        }
        const callError = toCallError(
          deps.shutdown.started ? deps.shutdown.refusal() : error,
          deps.logger,
          method,
        );
        deps.observer.callFinished(method, callError.code, seconds());
        if (!deps.shutdown.started) logFailure(deps.logger, method, callError, context.peer);
        call.emit('error', callError);
      } finally {
        release();
      }
    })();
  };
}

/**
 * A bidi stream whose requests are answered one by one, in order:
 * `open` runs once when the stream opens (a failure ends the stream), then
 * each request is handed to `message` at once — concurrently with the ones
 * behind it, so they can share work such as a group commit — and the answers
 * are written strictly in request order. A failing message is answered by
 * `refuse` in-band, or ends the stream when `refuse` returns undefined. Past
 * `maxInFlight` unanswered requests the stream stops reading until the
 * client catches up.
 *
 * `message` may answer at once (a value, not a promise): a heartbeat that
 * changes nothing durable is answered from memory. Such an answer is written
 * in the same turn when nothing is queued ahead of it and the stream is not
 * waiting for `drain`, with no promise made for it — on the hot path, the
 * promises and microtask turns of the queue were a measurable part of each
 * heartbeat's cost and of its garbage.
 */
export interface PipelinedHandler<Req, Res, Session> {
  open(context: CallContext): Promise<Session>;
  /** The answer, at once or later; it may also throw at once. */
  message(session: Session, request: Req, context: CallContext): Res | Promise<Res>;
  /** The in-band answer to a failed request, or undefined to end the stream with `error`. */
  refuse(error: VigilError, request: Req): Res | undefined;
  readonly maxInFlight: number;
}

const SETTLED: Promise<void> = Promise.resolve();

export function handlePipelinedBidi<Req, Res, Session>(
  deps: AdapterDeps,
  method: string,
  handler: PipelinedHandler<Req, Res, Session>,
): (call: ServerDuplexStream<Req, Res>) => void {
  return (call) => {
    const seconds = stopwatch();
    const { context, release } = streamContext(deps, call);
    const session = handler.open(context);
    // The session once open: from then on a message is handed over without waiting for it.
    let opened: { readonly session: Session } | undefined;
    // Answers are written in request order: each waits for the one before it.
    let answered: Promise<void> = SETTLED;
    let inFlight = 0;
    let paused = false;
    let ended = false;
    // A write returned false: answers wait for 'drain' (behind `answered`) until it comes.
    let blocked = false;

    const finish = (code: status) => {
      ended = true;
      release();
      deps.observer.callFinished(method, code, seconds());
    };
    const fail = (error: unknown) => {
      if (ended) return;
      const callError = toCallError(error, deps.logger, method);
      finish(callError.code);
      if (!deps.shutdown.started) logFailure(deps.logger, method, callError, context.peer);
      call.emit('error', callError);
    };
    const onAbort = () => {
      if (ended) return;
      if (call.cancelled) finish(status.CANCELLED);
      else fail(deps.shutdown.refusal());
    };
    // Already aborted when the stream opened during shutdown: the hook ran before this listener.
    if (context.signal.aborted) onAbort();
    else context.signal.addEventListener('abort', onAbort, { once: true });
    session.then((value) => {
      opened = { session: value };
    }, fail);

    /** The in-band refusal of a failed request, or undefined once the stream is ended for it. */
    function refused(error: unknown, request: Req, elapsed: () => number): Res | undefined {
      const known = toKnownError(error, deps.logger, method);
      const refusal = handler.refuse(known, request);
      if (refusal !== undefined)
        deps.observer.messageAnswered(method, status[known.codeName], elapsed());
      if (refusal === undefined) fail(known);
      return refusal;
    }

    /**
     * The answer to `request` (a refusal when it failed), at once when `message`
     * gave it at once; no closure is made for an answer given at once.
     */
    function answer(request: Req): Res | undefined | Promise<Res | undefined> {
      const elapsed = stopwatch();
      try {
        const response = opened
          ? handler.message(opened.session, wellFormed(request), context)
          : session.then((value) => handler.message(value, wellFormed(request), context));
        if (response instanceof Promise) {
          return response.then(
            (value) => {
              deps.observer.messageAnswered(method, status.OK, elapsed());
              return value;
            },
            (error: unknown) => refused(error, request, elapsed),
          );
        }
        deps.observer.messageAnswered(method, status.OK, elapsed());
        return response;
      } catch (error) {
        return refused(error, request, elapsed);
      }
    }

    /** Writes an answer given at once, with nothing queued ahead of it. */
    function writeNow(message: Res): void {
      if (call.write(message)) return;
      blocked = true;
      // Ends when the client reads again, or the stream ends or errors meanwhile; never rejects.
      answered = once(call, 'drain', { signal: context.signal }).then(
        () => {
          blocked = false;
        },
        () => undefined,
      );
    }

    call.on('data', (request: Req) => {
      // Nothing more is applied once the stream has ended (say, the server is shutting down).
      if (ended) return;
      const response = answer(request);
      if (!(response instanceof Promise) && inFlight === 0 && !blocked) {
        // Undefined when refused by ending the stream.
        if (response !== undefined) writeNow(response);
        return;
      }
      inFlight += 1;
      if (inFlight >= handler.maxInFlight && !paused) {
        paused = true;
        call.pause();
      }
      answered = answered.then(async () => {
        const message = await response;
        inFlight -= 1;
        if (ended || message === undefined) return;
        if (!call.write(message)) {
          // Ends when the client reads again, or the stream ends or errors meanwhile. The chain
          // must never reject: nothing would handle it, and Node ends the process on that.
          blocked = true;
          try {
            await once(call, 'drain', { signal: context.signal });
          } catch {
            return;
          }
          blocked = false;
        }
        if (paused && inFlight < handler.maxInFlight / 2) {
          paused = false;
          call.resume();
        }
        // Nothing queued behind this one: hold no promise until the next request (an idle
        // stream's last promise would otherwise be promoted to the old generation).
        if (inFlight === 0) answered = SETTLED;
      });
    });
    call.on('end', () => {
      void answered.then(() => {
        if (ended) return;
        finish(status.OK);
        call.end();
      });
    });
  };
}
