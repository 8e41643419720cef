import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Clock } from '../domain/clock.js';
import type { Timings } from '../domain/config.js';
import type { ControlAuth, ControlPrincipal } from '../domain/control-auth.js';
import { VigilError, fieldInvalid, type ErrorCodeName } from '../domain/errors.js';
import {
  WORKSPACE_STATUSES,
  type Transition,
  type Workspace,
  type WorkspaceStatus,
} from '../domain/model.js';
import { markerActive } from '../domain/status-machine.js';
import type { ProjectionStatus } from '../domain/projection-use-cases.js';
import type { WorkspaceAdmin } from '../domain/workspace-admin.js';
import { toKnownError } from '../transport/errors.js';
import type { CallObserver } from '../transport/observer.js';
import { parseBearer } from '../wire/metadata.js';
import type { StreamQuota } from '../watch/stream-quota.js';
import { openWatch, type WatchDeps, type WatchEvent } from '../watch/watch-session.js';
import type { HttpRoute } from './http-listener.js';

/**
 * The web console's server side: a small read-only JSON API and one
 * server-sent-events stream of transitions, under {@link CONSOLE_API_PREFIX}.
 * Every request authenticates first with a control token (read scope
 * suffices) sent as `authorization: Bearer`, checked by the same
 * {@link ControlAuth} as the control RPCs, and is answered by the same
 * use-cases (GetWorkspace, ListWorkspaces, ListTransitions, WatchStatus's
 * watch session). Errors are JSON `{ error: { code, reason, message,
 * metadata } }` with the HTTP status of the gRPC code. Nothing here writes.
 */

export const CONSOLE_API_PREFIX = '/api/console/';

export interface ConsoleApiDeps {
  readonly admin: Pick<WorkspaceAdmin, 'get' | 'list' | 'listTransitions'>;
  readonly controlAuth: ControlAuth;
  /** The watch session's dependencies, exactly as WatchStatus gets them. */
  readonly watch: WatchDeps;
  /** The per-token cap on open watch streams that WatchStatus counts against too. */
  readonly watchQuota: StreamQuota;
  /** Watch lag metrics: a console stream is a watcher like any other. */
  readonly observer: Pick<CallObserver, 'watchOpened'>;
  /** Workspaces per status as of the hub's head (read in the same turn). */
  readonly countByStatus: () => Record<WorkspaceStatus, number>;
  /**
   * The runtime projection's desired and applied versions (from memory, as
   * GetWorkspace reads them); undefined when this Vigil runs without one.
   */
  readonly projection: ((workspaceId: string) => ProjectionStatus) | undefined;
  readonly timings: Timings;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** Workspaces per console page unless the request asks for another size (at most 1000). */
const DEFAULT_CONSOLE_PAGE = 50;

/** The console API as one route of the HTTP listener. */
export function consoleApiRoute(deps: ConsoleApiDeps): HttpRoute {
  return {
    matches: (path) => path.startsWith(CONSOLE_API_PREFIX),
    handle: async (request, response, path) => {
      if (request.method !== 'GET') {
        response
          .writeHead(405, { allow: 'GET', 'content-type': 'text/plain' })
          .end('the console API is read-only: GET\n');
        return;
      }
      try {
        const caller = deps.controlAuth(
          parseBearer(request.headers.authorization) || undefined,
          'read',
        );
        const url = new URL(request.url ?? '/', 'http://console');
        const parts = path.slice(CONSOLE_API_PREFIX.length).split('/');
        await dispatch(deps, parts, url.searchParams, caller, request, response);
      } catch (error) {
        answerError(response, toKnownError(error, deps.logger, `console ${path}`));
      }
    },
  };
}

async function dispatch(
  deps: ConsoleApiDeps,
  parts: readonly string[],
  query: URLSearchParams,
  caller: ControlPrincipal,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const [first, id, sub, ...rest] = parts;
  if (rest.length === 0 && first === 'overview' && id === undefined) {
    // Both moved by the same commit listener: the counts are exactly those as of `headSeq`.
    const counts = deps.countByStatus();
    const headSeq = deps.watch.hub.head();
    answerJson(response, {
      principal: caller,
      headSeq,
      counts,
      serverTime: deps.clock.now(),
      progressIntervalMs: deps.watch.progressIntervalMs,
      timings: {
        offlineAfterMs: deps.timings.offlineAfterMs,
        registerFailureWindowMs: deps.timings.registerFailureWindowMs,
      },
    });
    return;
  }
  if (rest.length === 0 && first === 'events' && id === undefined) {
    await streamEvents(deps, caller, request, response);
    return;
  }
  if (first === 'workspaces' && rest.length === 0) {
    if (id === undefined) {
      const statuses = query.getAll('status').map(statusParam);
      const page = await deps.admin.list(
        intParam(query, 'page_size', DEFAULT_CONSOLE_PAGE),
        query.get('page_token') ?? '',
        statuses,
        query.get('id_prefix') ?? '',
      );
      answerJson(response, {
        workspaces: page.items.map(listedWorkspace),
        nextPageToken: page.nextPageToken,
      });
      return;
    }
    if (sub === undefined) {
      const workspace = await deps.admin.get(id);
      answerJson(response, {
        workspace,
        marker: markerOf(deps, workspace),
        projection: deps.projection?.(id) ?? null,
      });
      return;
    }
    if (sub === 'transitions') {
      // The workspace must exist: an unknown id is NOT_FOUND, not an empty history.
      await deps.admin.get(id);
      const page = await deps.admin.listTransitions(
        id,
        intParam(query, 'page_size', 100),
        query.get('page_token') ?? '',
      );
      answerJson(response, {
        transitions: page.items.map(transitionJson),
        nextPageToken: page.nextPageToken,
      });
      return;
    }
  }
  response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
}

/**
 * The register-failure marker: when it was set, when it stops holding the
 * workspace DEGRADED, and whether it still does (the status machine's rule).
 */
function markerOf(deps: ConsoleApiDeps, workspace: Workspace) {
  const setAt = workspace.lastRegisterFailureAt;
  if (setAt === undefined) return null;
  return {
    setAt,
    expiresAt: setAt + deps.timings.registerFailureWindowMs,
    active: markerActive(workspace, deps.clock.now(), deps.timings),
  };
}

/** A table row: everything but the agent card, which only the detail view shows. */
function listedWorkspace(workspace: Workspace) {
  return { ...workspace, agentCard: undefined };
}

function transitionJson(t: Transition) {
  return {
    seq: t.seq,
    workspaceId: t.workspaceId,
    from: t.fromStatus ?? null,
    to: t.toStatus,
    reason: t.reason,
    detail: t.detail,
    at: t.at,
  };
}

/**
 * One console's live stream: WatchStatus's watch session (same hub, same
 * pull-based reading, same per-token quota) as server-sent events. Resumes
 * after `Last-Event-ID` (or `?after_seq=`); every event carries its seq as
 * its id. `transition` and `progress` events; `reset` when the cursor was
 * older than retained history (the client reloads its view). A write the
 * socket cannot take yet waits for `drain`, so a slow console holds one
 * cursor and a socket buffer, nothing more.
 */
async function streamEvents(
  deps: ConsoleApiDeps,
  caller: ControlPrincipal,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const url = new URL(request.url ?? '/', 'http://console');
  const cursorText =
    headerValue(request.headers['last-event-id']) ?? url.searchParams.get('after_seq');
  const afterSeq = cursorText === null || cursorText === '' ? 0 : seqParam(cursorText);
  const release = deps.watchQuota.acquire(caller.name);
  const closed = new AbortController();
  const onClose = () => {
    closed.abort();
  };
  response.once('close', onClose);
  const tracker = deps.observer.watchOpened(afterSeq);
  try {
    const events = await openWatch(
      deps.watch,
      { workspaceIds: [], afterSeq, includeSnapshot: false },
      closed.signal,
      (seq) => {
        tracker.delivered(seq);
      },
    );
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-accel-buffering': 'no',
    });
    response.write(': vigil console events\n\n');
    let corked = false;
    for await (const event of events) {
      if (event.type === 'snapshot') continue;
      const frame = sseFrame(event);
      // Events read in one turn leave in one write.
      if (!corked) {
        corked = true;
        response.cork();
        process.nextTick(() => {
          corked = false;
          response.uncork();
        });
      }
      const more = response.write(frame);
      tracker.delivered(frameSeq(event));
      if (!more) await drained(response, closed.signal);
      if (closed.signal.aborted) break;
    }
  } catch (error) {
    if (!response.headersSent) throw error;
    // Mid-stream: the client reconnects from its last id.
    deps.logger.warn({ err: error }, 'console event stream failed');
  } finally {
    response.off('close', onClose);
    closed.abort();
    release();
    tracker.closed();
    // A refusal before the stream began is answered by the caller.
    if (response.headersSent && !response.writableEnded) response.end();
  }
}

/** The frame of an event; the rows of a reset snapshot are not sent (the console reloads its pages). */
function sseFrame(event: Exclude<WatchEvent, { type: 'snapshot' }>): string {
  switch (event.type) {
    case 'transition':
      return `id: ${event.transition.seq}\nevent: transition\ndata: ${JSON.stringify(transitionJson(event.transition))}\n\n`;
    case 'progress':
      return `id: ${event.seq}\nevent: progress\ndata: {"seq":${event.seq}}\n\n`;
    case 'snapshotEnd':
      // Only after a compacted cursor (the console asks for no snapshot): start over.
      return `id: ${event.seq}\nevent: reset\ndata: {"seq":${event.seq}}\n\n`;
  }
}

function frameSeq(event: Exclude<WatchEvent, { type: 'snapshot' }>): number {
  return event.type === 'transition' ? event.transition.seq : event.seq;
}

function drained(response: ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      response.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    response.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function statusParam(value: string): WorkspaceStatus {
  const status = WORKSPACE_STATUSES.find((s) => s === value);
  if (!status) throw fieldInvalid('status', `must be one of ${WORKSPACE_STATUSES.join(', ')}`);
  return status;
}

function intParam(query: URLSearchParams, name: string, fallback: number): number {
  const text = query.get(name);
  if (text === null || text === '') return fallback;
  if (!/^\d{1,9}$/.test(text)) throw fieldInvalid(name, 'must be a non-negative integer');
  return Number(text);
}

function seqParam(text: string): number {
  if (!/^\d{1,15}$/.test(text)) throw fieldInvalid('after_seq', 'must be a non-negative integer');
  return Number(text);
}

function answerJson(response: ServerResponse, body: unknown): void {
  response
    .writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    })
    .end(JSON.stringify(body));
}

/** HTTP statuses of the gRPC codes Vigil's reasons map to (google.rpc.Code's HTTP mapping). */
const HTTP_STATUS: Record<ErrorCodeName, number> = {
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  INVALID_ARGUMENT: 400,
  RESOURCE_EXHAUSTED: 429,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  FAILED_PRECONDITION: 400,
  OUT_OF_RANGE: 400,
  UNAVAILABLE: 503,
  INTERNAL: 500,
  ABORTED: 409,
  DATA_LOSS: 500,
  UNIMPLEMENTED: 501,
};

function answerError(response: ServerResponse, error: VigilError): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  const headers: Record<string, string> = {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  };
  if (error.codeName === 'UNAUTHENTICATED') headers['www-authenticate'] = 'Bearer';
  if (error.retryAfterMs !== undefined) {
    headers['retry-after'] = String(Math.ceil(error.retryAfterMs / 1000));
  }
  response.writeHead(HTTP_STATUS[error.codeName], headers).end(
    JSON.stringify({
      error: {
        code: error.codeName,
        reason: error.reason,
        message: error.message,
        metadata: error.metadata,
      },
    }),
  );
}
