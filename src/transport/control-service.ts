import type { ControlAuth, ControlPrincipal, ControlScope } from '../domain/control-auth.js';
import type { WorkspaceAdmin } from '../domain/workspace-admin.js';
import type { WorkspaceTokens } from '../domain/workspace-tokens.js';
import type {
  ControlServiceServer,
  WatchStatusRequest,
  WatchStatusResponse,
} from '../../gen/vigil/v1/control_service.js';
import { openWatch, type WatchDeps } from '../watch/watch-session.js';
import { handleServerStream, handleUnary, type AdapterDeps, type CallContext } from './adapters.js';
import { statusFromProto, transitionToProto, workspaceToProto } from './convert.js';
import { VigilError } from '../domain/errors.js';
import { encodeWatchEvent } from './watch-encoding.js';

export interface ControlServiceDeps extends AdapterDeps {
  readonly admin: WorkspaceAdmin;
  /** For the token admin actions (rotation, revocation). */
  readonly tokens: Pick<WorkspaceTokens, 'rotate' | 'revoke'>;
  readonly controlAuth: ControlAuth;
  readonly watch: WatchDeps;
  /** Open WatchStatus streams allowed per control token; 0 means no limit. */
  readonly maxWatchStreamsPerToken: number;
}

/** vigil.v1.ControlService: authenticated by control token. */
export function createControlService(deps: ControlServiceDeps): ControlServiceServer {
  const { admin, tokens, controlAuth, logger } = deps;
  /** A unary handler that runs only for a control token with `scope`. */
  const authorized = <Req, Res>(
    method: string,
    scope: ControlScope,
    handle: (request: Req, caller: ControlPrincipal) => Promise<Res>,
  ) =>
    handleUnary(deps, method, (request: Req, context: CallContext) =>
      handle(request, controlAuth(context.token, scope)),
    );
  const watchQuota = createStreamQuota(deps.maxWatchStreamsPerToken);
  /** One audit line per control action: who (the token's name, never the token) did what. */
  const audit = (caller: ControlPrincipal, action: string, workspaceId: string) => {
    logger.info({ audit: true, action, workspaceId, tokenName: caller.name }, 'control action');
  };

  return {
    createWorkspace: authorized('CreateWorkspace', 'admin', async (request, caller) => {
      const created = await admin.create(request.workspaceId, request.name);
      audit(caller, 'workspace.create', created.workspace.id);
      return {
        workspace: workspaceToProto(created.workspace),
        workspaceToken: created.workspaceToken,
      };
    }),
    getWorkspace: authorized('GetWorkspace', 'read', async (request) => ({
      workspace: workspaceToProto(await admin.get(request.workspaceId)),
    })),
    listWorkspaces: authorized('ListWorkspaces', 'read', async (request) => {
      const statuses = request.statuses.map((s) => statusFromProto(s, 'statuses'));
      const page = await admin.list(request.pageSize, request.pageToken, statuses);
      return { workspaces: page.items.map(workspaceToProto), nextPageToken: page.nextPageToken };
    }),
    deleteWorkspace: authorized('DeleteWorkspace', 'admin', async (request, caller) => {
      const workspace = await admin.delete(request.workspaceId);
      audit(caller, 'workspace.delete', workspace.id);
      return { workspace: workspaceToProto(workspace) };
    }),
    rotateWorkspaceToken: authorized('RotateWorkspaceToken', 'admin', async (request, caller) => {
      const rotated = await tokens.rotate(request.workspaceId, request.revokePrevious);
      audit(caller, 'workspace.rotate_token', request.workspaceId);
      return {
        workspaceToken: rotated.workspaceToken,
        previousTokensExpireAt: new Date(rotated.previousExpireAt),
      };
    }),
    revokeWorkspaceTokens: authorized('RevokeWorkspaceTokens', 'admin', async (request, caller) => {
      const revokedCount = await tokens.revoke(request.workspaceId);
      audit(caller, 'workspace.revoke_tokens', request.workspaceId);
      return { revokedCount };
    }),
    listTransitions: authorized('ListTransitions', 'read', async (request) => {
      const page = await admin.listTransitions(
        request.workspaceId,
        request.pageSize,
        request.pageToken,
      );
      return {
        transitions: page.items.map(transitionToProto),
        nextPageToken: page.nextPageToken,
      };
    }),
    watchStatus: handleServerStream(
      deps,
      'WatchStatus',
      (context) => controlAuth(context.token, 'read'),
      (request: WatchStatusRequest, context, caller): AsyncIterable<WatchStatusResponse | Buffer> =>
        watchStatus(request, context, caller, deps, watchQuota),
    ),
  };
}

/**
 * One WatchStatus stream, once its control token (scope read) has been
 * checked: the per-token stream cap, then the watch session's
 * events are yielded as pre-encoded bytes. The lag tracker follows the
 * stream until it ends.
 */
async function* watchStatus(
  request: WatchStatusRequest,
  context: CallContext,
  caller: ControlPrincipal,
  deps: ControlServiceDeps,
  quota: StreamQuota,
): AsyncGenerator<Buffer, void, undefined> {
  const tracker = deps.observer.watchOpened(request.afterSeq);
  let release = (): void => undefined;
  try {
    release = quota.acquire(caller.name);
    const events = await openWatch(
      deps.watch,
      {
        workspaceIds: request.workspaceIds,
        afterSeq: request.afterSeq,
        includeSnapshot: request.includeSnapshot,
        resume: request.resume,
      },
      context.signal,
      (seq) => {
        tracker.delivered(seq);
      },
    );
    for await (const event of events) {
      // Pre-encoded bytes: the service definition's serializer lets them through.
      yield encodeWatchEvent(event);
      if (event.type === 'transition') tracker.delivered(event.transition.seq);
      else if (event.type !== 'snapshot') tracker.delivered(event.seq);
    }
  } finally {
    release();
    tracker.closed();
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
