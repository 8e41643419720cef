import { once } from 'node:events';
import { status, type ServerWritableStream } from '@grpc/grpc-js';
import type { ControlAuth, ControlPrincipal, ControlScope } from '../domain/control-auth.js';
import type { Registry } from '../domain/registry.js';
import type {
  ControlServiceServer,
  WatchStatusRequest,
  WatchStatusResponse,
} from '../../gen/vigil/v1/control_service.js';
import { openWatch, type WatchDeps } from '../watch/watch-session.js';
import { bearerToken, logFailure, unary, type CallContext } from './call-helpers.js';
import { statusFromProto, transitionToProto, workspaceToProto } from './convert.js';
import { VigilError } from '../domain/errors.js';
import { shuttingDown, toCallError } from './errors.js';
import { isMalformed, wellFormed } from './malformed.js';
import { encodeWatchEvent } from './watch-encoding.js';

export interface ControlServiceDeps extends CallContext {
  readonly registry: Registry;
  readonly controlAuth: ControlAuth;
  readonly watch: WatchDeps;
  /** Open WatchStatus streams allowed per control token; 0 means no limit. */
  readonly maxWatchStreamsPerToken: number;
}

/** vigil.v1.ControlService: authenticated by control token. */
export function createControlService(deps: ControlServiceDeps): ControlServiceServer {
  const { registry, controlAuth, logger } = deps;
  const authorized =
    <Req, Res>(
      scope: ControlScope,
      handle: (request: Req, caller: ControlPrincipal) => Promise<Res>,
    ) =>
    (request: Req, token: string | undefined): Promise<Res> =>
      handle(request, controlAuth(token, scope));
  const watchQuota = createStreamQuota(deps.maxWatchStreamsPerToken);
  /** One audit line per control action: who (the token's name, never the token) did what. */
  const audit = (caller: ControlPrincipal, action: string, workspaceId: string) => {
    logger.info({ audit: true, action, workspaceId, tokenName: caller.name }, 'control action');
  };

  return {
    createWorkspace: unary(
      deps,
      'CreateWorkspace',
      authorized('admin', async (request, caller) => {
        const created = await registry.createWorkspace(request.workspaceId, request.name);
        audit(caller, 'workspace.create', created.workspace.id);
        return {
          workspace: workspaceToProto(created.workspace),
          workspaceToken: created.workspaceToken,
        };
      }),
    ),
    getWorkspace: unary(
      deps,
      'GetWorkspace',
      authorized('read', async (request) => ({
        workspace: workspaceToProto(await registry.getWorkspace(request.workspaceId)),
      })),
    ),
    listWorkspaces: unary(
      deps,
      'ListWorkspaces',
      authorized('read', async (request) => {
        const statuses = request.statuses.map((s) => statusFromProto(s, 'statuses'));
        const page = await registry.listWorkspaces(request.pageSize, request.pageToken, statuses);
        return { workspaces: page.items.map(workspaceToProto), nextPageToken: page.nextPageToken };
      }),
    ),
    deleteWorkspace: unary(
      deps,
      'DeleteWorkspace',
      authorized('admin', async (request, caller) => {
        const workspace = await registry.deleteWorkspace(request.workspaceId);
        audit(caller, 'workspace.delete', workspace.id);
        return { workspace: workspaceToProto(workspace) };
      }),
    ),
    rotateWorkspaceToken: unary(
      deps,
      'RotateWorkspaceToken',
      authorized('admin', async (request, caller) => {
        const rotated = await registry.rotateWorkspaceToken(
          request.workspaceId,
          request.revokePrevious,
        );
        audit(caller, 'workspace.rotate_token', request.workspaceId);
        return {
          workspaceToken: rotated.workspaceToken,
          previousTokensExpireAt: new Date(rotated.previousExpireAt),
        };
      }),
    ),
    revokeWorkspaceTokens: unary(
      deps,
      'RevokeWorkspaceTokens',
      authorized('admin', async (request, caller) => {
        const revokedCount = await registry.revokeWorkspaceTokens(request.workspaceId);
        audit(caller, 'workspace.revoke_tokens', request.workspaceId);
        return { revokedCount };
      }),
    ),
    listTransitions: unary(
      deps,
      'ListTransitions',
      authorized('read', async (request) => {
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
      void serveWatch(call, deps, watchQuota);
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
  quota: StreamQuota,
): Promise<void> {
  // One signal per stream, aborted by cancellation or by shutdown (an O(1) hook, not a listener on a shared signal).
  const stop = new AbortController();
  const onCancel = () => {
    stop.abort();
  };
  call.on('cancelled', onCancel);
  const removeShutdownHook = deps.shutdown.onShutdown(() => {
    stop.abort();
  });
  const tracker = deps.observer.watchOpened(isMalformed(call.request) ? 0 : call.request.afterSeq);
  const { signal } = stop;
  let release = (): void => undefined;
  try {
    const caller = deps.controlAuth(bearerToken(call.metadata), 'read');
    release = quota.acquire(caller.name);
    const request = wellFormed(call.request);
    const events = await openWatch(
      deps.watch,
      {
        workspaceIds: request.workspaceIds,
        afterSeq: request.afterSeq,
        includeSnapshot: request.includeSnapshot,
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
    if (call.cancelled) {
      tracker.closed(status.CANCELLED);
      return;
    }
    const callError = toCallError(
      deps.shutdown.started ? shuttingDown() : error,
      deps.logger,
      'WatchStatus',
    );
    tracker.closed(callError.code);
    if (!deps.shutdown.started) {
      logFailure(deps.logger, 'WatchStatus', callError.code, callError.reason, call.getPeer());
    }
    call.emit('error', callError);
  } finally {
    release();
    removeShutdownHook();
    call.off('cancelled', onCancel);
  }
}

interface StreamQuota {
  /** Counts one more open stream for `key`; returns its release. Throws WATCH_LIMIT past the cap. */
  acquire(key: string): () => void;
}

/** Caps open streams per key (a control token's name). */
function createStreamQuota(max: number): StreamQuota {
  const open = new Map<string, number>();
  return {
    acquire(key) {
      const count = open.get(key) ?? 0;
      if (max > 0 && count >= max) {
        throw new VigilError(
          'WATCH_LIMIT',
          `the control token "${key}" already has ${count} open WatchStatus streams (the limit)`,
          { tokenName: key, limit: String(max), retryAfterMs: '5000' },
          { retryAfterMs: 5_000 },
        );
      }
      open.set(key, count + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (open.get(key) ?? 1) - 1;
        if (left === 0) open.delete(key);
        else open.set(key, left);
      };
    },
  };
}
