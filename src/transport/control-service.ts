import type { ControlAuth, ControlPrincipal, ControlScope } from '../domain/control-auth.js';
import type { ProjectionUseCases } from '../domain/projection-use-cases.js';
import type { WorkspaceAdmin } from '../domain/workspace-admin.js';
import type { WorkspaceTokens } from '../domain/workspace-tokens.js';
import type {
  ControlServiceServer,
  WatchStatusRequest,
  WatchStatusResponse,
} from '../../gen/vigil/v1/control_service.js';
import { openWatch, type WatchDeps } from '../watch/watch-session.js';
import { createStreamQuota, type StreamQuota } from '../watch/stream-quota.js';
import { handleServerStream, handleUnary, type AdapterDeps, type CallContext } from './adapters.js';
import { statusFromProto, transitionToProto, workspaceToProto } from './convert.js';
import { encodeWatchEvent } from './watch-encoding.js';
import type { HeartbeatForwarder } from './heartbeat-forwarder.js';
import {
  auditEventToProto,
  explanationToProto,
  runtimeConfigFromProto,
  secretToProto,
} from './projection-convert.js';

export interface ControlServiceDeps extends AdapterDeps {
  readonly admin: WorkspaceAdmin;
  /** For the token admin actions (rotation, revocation). */
  readonly tokens: Pick<WorkspaceTokens, 'rotate' | 'revoke'>;
  readonly controlAuth: ControlAuth;
  /** Secrets, runtime configs, Explain and audit: admin writes, read reads, never a value. */
  readonly projection: ProjectionUseCases;
  readonly watch: WatchDeps;
  /** Open WatchStatus streams allowed per control token; 0 means no limit. */
  readonly maxWatchStreamsPerToken: number;
  /** Cluster mode: GetWorkspace asks the owner, which alone knows the live heartbeat state. */
  readonly forwarder?: HeartbeatForwarder | undefined;
  /**
   * The per-token count of open watch streams, when other watch streams (the web
   * console's) share it; one of `maxWatchStreamsPerToken` is made when unset.
   */
  readonly watchQuota?: StreamQuota | undefined;
}

/** vigil.v1.ControlService: authenticated by control token. */
export function createControlService(deps: ControlServiceDeps): ControlServiceServer {
  const { admin, tokens, controlAuth, logger, projection } = deps;
  const shown = (w: Parameters<typeof workspaceToProto>[0]) =>
    workspaceToProto(w, projection.status(w.id));
  /** A unary handler that runs only for a control token with `scope`. */
  const authorized = <Req, Res>(
    method: string,
    scope: ControlScope,
    handle: (request: Req, caller: ControlPrincipal, context: CallContext) => Promise<Res>,
  ) =>
    handleUnary(deps, method, (request: Req, context: CallContext) =>
      handle(request, controlAuth(context.token, scope), context),
    );
  const { forwarder } = deps;
  const watchQuota = deps.watchQuota ?? createStreamQuota(deps.maxWatchStreamsPerToken);
  /** One audit line per control action: who (the token's name, never the token) did what. */
  const audit = (caller: ControlPrincipal, action: string, workspaceId: string) => {
    logger.info({ audit: true, action, workspaceId, tokenName: caller.name }, 'control action');
  };

  return {
    createWorkspace: authorized('CreateWorkspace', 'admin', async (request, caller) => {
      const created = await admin.create(request.workspaceId, request.name);
      audit(caller, 'workspace.create', created.workspace.id);
      return {
        workspace: shown(created.workspace),
        workspaceToken: created.workspaceToken,
      };
    }),
    getWorkspace: authorized('GetWorkspace', 'read', async (request, _caller, context) => {
      const owner = context.forwarded ? undefined : forwarder?.ownerAddress(request.workspaceId);
      if (owner !== undefined && forwarder) {
        const answered = await forwarder.forwardGetWorkspace(owner, request, context.token);
        // Unreachable owner: answered from here, with the last heartbeat etcd has.
        if (answered) return answered;
      }
      return { workspace: shown(await admin.get(request.workspaceId)) };
    }),
    listWorkspaces: authorized('ListWorkspaces', 'read', async (request) => {
      const statuses = request.statuses.map((s) => statusFromProto(s, 'statuses'));
      const page = await admin.list(request.pageSize, request.pageToken, statuses);
      return { workspaces: page.items.map(shown), nextPageToken: page.nextPageToken };
    }),
    deleteWorkspace: authorized('DeleteWorkspace', 'admin', async (request, caller) => {
      const workspace = await admin.delete(request.workspaceId);
      audit(caller, 'workspace.delete', workspace.id);
      return { workspace: shown(workspace) };
    }),
    rotateWorkspaceToken: authorized('RotateWorkspaceToken', 'admin', async (request, caller) => {
      const rotated = await tokens.rotate(request.workspaceId, request.revokePrevious);
      projection.tokensChanged(request.workspaceId);
      audit(caller, 'workspace.rotate_token', request.workspaceId);
      return {
        workspaceToken: rotated.workspaceToken,
        previousTokensExpireAt: new Date(rotated.previousExpireAt),
      };
    }),
    revokeWorkspaceTokens: authorized('RevokeWorkspaceTokens', 'admin', async (request, caller) => {
      const revokedCount = await tokens.revoke(request.workspaceId);
      // Open projection streams check their token again now, and end.
      projection.tokensChanged(request.workspaceId);
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
    setWorkspaceSecret: authorized('SetWorkspaceSecret', 'admin', async (request, caller) => {
      const set = await projection.setSecret(caller.name, {
        workspaceId: request.workspaceId,
        name: request.name,
        value: request.value,
        expectedConfigVersion: request.expectedConfigVersion,
      });
      audit(caller, 'secret.set', request.workspaceId);
      return { secret: secretToProto(set.secret), configVersion: set.configVersion };
    }),
    deleteWorkspaceSecret: authorized('DeleteWorkspaceSecret', 'admin', async (request, caller) => {
      const deleted = await projection.deleteSecret(caller.name, {
        workspaceId: request.workspaceId,
        name: request.name,
        expectedConfigVersion: request.expectedConfigVersion,
      });
      audit(caller, 'secret.delete', request.workspaceId);
      return deleted;
    }),
    listWorkspaceSecrets: authorized('ListWorkspaceSecrets', 'read', async (request) => {
      const listed = await projection.listSecrets(request.workspaceId);
      return { secrets: listed.secrets.map(secretToProto), configVersion: listed.configVersion };
    }),
    setWorkspaceRuntimeConfig: authorized(
      'SetWorkspaceRuntimeConfig',
      'admin',
      async (request, caller) => {
        const set = await projection.setConfig(caller.name, {
          workspaceId: request.workspaceId,
          config: runtimeConfigFromProto(request.config),
          expectedConfigVersion: request.expectedConfigVersion,
        });
        audit(caller, 'config.set', request.workspaceId);
        return set;
      },
    ),
    explainProjection: authorized('ExplainProjection', 'read', async (request) =>
      explanationToProto(await projection.explain(request.workspaceId)),
    ),
    listAuditEvents: authorized('ListAuditEvents', 'read', async (request) => {
      const page = await projection.listAudit(
        request.workspaceId,
        request.pageSize,
        request.pageToken,
      );
      return { events: page.items.map(auditEventToProto), nextPageToken: page.nextPageToken };
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
