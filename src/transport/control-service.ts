import { once } from 'node:events';
import { status, type ServerWritableStream } from '@grpc/grpc-js';
import type { ControlAuth } from '../domain/control-auth.js';
import type { Registry } from '../domain/registry.js';
import type {
  ControlServiceServer,
  WatchStatusRequest,
  WatchStatusResponse,
} from '../../gen/vigil/v1/control_service.js';
import { openWatch, type WatchDeps } from '../watch/watch-session.js';
import { bearerToken, logFailure, unary, type CallContext } from './call-helpers.js';
import { statusFromProto, transitionToProto, workspaceToProto } from './convert.js';
import { shuttingDown, toCallError } from './errors.js';
import { encodeWatchEvent } from './watch-encoding.js';

export interface ControlServiceDeps extends CallContext {
  readonly registry: Registry;
  readonly controlAuth: ControlAuth;
  readonly watch: WatchDeps;
}

/** vigil.v1.ControlService: authenticated by control token. */
export function createControlService(deps: ControlServiceDeps): ControlServiceServer {
  const { registry, controlAuth, logger } = deps;
  const authorized =
    <Req, Res>(handle: (request: Req) => Promise<Res>) =>
    (request: Req, token: string | undefined): Promise<Res> => {
      controlAuth(token);
      return handle(request);
    };

  return {
    createWorkspace: unary(
      deps,
      'CreateWorkspace',
      authorized(async (request) => {
        const created = await registry.createWorkspace(request.workspaceId, request.name);
        logger.info({ workspaceId: created.workspace.id }, 'workspace created');
        return {
          workspace: workspaceToProto(created.workspace),
          workspaceToken: created.workspaceToken,
        };
      }),
    ),
    getWorkspace: unary(
      deps,
      'GetWorkspace',
      authorized(async (request) => ({
        workspace: workspaceToProto(await registry.getWorkspace(request.workspaceId)),
      })),
    ),
    listWorkspaces: unary(
      deps,
      'ListWorkspaces',
      authorized(async (request) => {
        const statuses = request.statuses.map((s) => statusFromProto(s, 'statuses'));
        const page = await registry.listWorkspaces(request.pageSize, request.pageToken, statuses);
        return { workspaces: page.items.map(workspaceToProto), nextPageToken: page.nextPageToken };
      }),
    ),
    deleteWorkspace: unary(
      deps,
      'DeleteWorkspace',
      authorized(async (request) => {
        const workspace = await registry.deleteWorkspace(request.workspaceId);
        logger.info({ workspaceId: workspace.id }, 'workspace deleted');
        return { workspace: workspaceToProto(workspace) };
      }),
    ),
    rotateWorkspaceToken: unary(
      deps,
      'RotateWorkspaceToken',
      authorized(async (request) => {
        const workspaceToken = await registry.rotateWorkspaceToken(request.workspaceId);
        logger.info({ workspaceId: request.workspaceId }, 'workspace token rotated');
        return { workspaceToken };
      }),
    ),
    listTransitions: unary(
      deps,
      'ListTransitions',
      authorized(async (request) => {
        const page = await registry.listTransitions(
          request.workspaceId,
          request.pageSize,
          request.pageToken,
        );
        return {
          transitions: page.items.map(transitionToProto),
          nextPageToken: page.nextPageToken,
        };
      }),
    ),
    watchStatus: (call) => {
      void serveWatch(call, deps);
    },
  };
}

/**
 * Serves one WatchStatus stream. Pulls the next event only once the previous
 * one is flushed (honouring grpc-js backpressure), stops on client
 * cancellation, and ends with UNAVAILABLE when the server shuts down.
 */
async function serveWatch(
  call: ServerWritableStream<WatchStatusRequest, WatchStatusResponse>,
  deps: ControlServiceDeps,
): Promise<void> {
  const cancelled = new AbortController();
  const onCancel = () => {
    cancelled.abort();
  };
  call.on('cancelled', onCancel);
  const tracker = deps.observer.watchOpened(call.request.afterSeq);
  const signal = AbortSignal.any([cancelled.signal, deps.shutdown]);
  try {
    deps.controlAuth(bearerToken(call.metadata));
    const events = await openWatch(
      deps.watch,
      {
        workspaceIds: call.request.workspaceIds,
        afterSeq: call.request.afterSeq,
        includeSnapshot: call.request.includeSnapshot,
      },
      signal,
      (seq) => {
        tracker.delivered(seq);
      },
    );
    for await (const event of events) {
      // Pre-encoded bytes: the service definition's serializer lets them through.
      if (!call.write(encodeWatchEvent(event) as unknown as WatchStatusResponse)) {
        await once(call, 'drain', { signal });
      }
      if (event.type === 'transition') tracker.delivered(event.transition.seq);
      else if (event.type !== 'snapshot') tracker.delivered(event.seq);
    }
    // The events only stop when the signal aborts.
    throw shuttingDown();
  } catch (error) {
    if (cancelled.signal.aborted) {
      tracker.closed(status.CANCELLED);
      return;
    }
    const callError = toCallError(
      deps.shutdown.aborted ? shuttingDown() : error,
      deps.logger,
      'WatchStatus',
    );
    tracker.closed(callError.code);
    if (!deps.shutdown.aborted) {
      logFailure(deps.logger, 'WatchStatus', callError.code, callError.reason, call.getPeer());
    }
    call.emit('error', callError);
  } finally {
    call.off('cancelled', onCancel);
  }
}
