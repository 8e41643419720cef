import { status } from '@grpc/grpc-js';
import { fieldInvalid } from '../domain/errors.js';
import type { ProjectionUseCases } from '../domain/projection-use-cases.js';
import type { HeartbeatResult, RuntimeUseCases } from '../domain/runtime-use-cases.js';
import type { WorkspaceSession, WorkspaceTokens } from '../domain/workspace-tokens.js';
import type {
  HeartbeatRequest,
  HeartbeatStreamRequest,
  HeartbeatStreamResponse,
  RuntimeServiceServer,
  WatchProjectionRequest,
  WatchProjectionResponse,
} from '../../gen/vigil/v1/runtime_service.js';
import {
  handlePipelinedBidi,
  handleServerStream,
  handleUnary,
  type AdapterDeps,
  type CallContext,
} from './adapters.js';
import { projectionEventToProto, projectionToProto } from './projection-convert.js';
import {
  deliveryModeFromProto,
  durationToProto,
  heartbeatCommand,
  heartbeatResponse,
  workspaceToProto,
} from './convert.js';
import { toRpcStatus } from './errors.js';
import type { HeartbeatForwarder } from './heartbeat-forwarder.js';
import { isMalformed, malformedRequestId } from './malformed.js';

export interface RuntimeServiceDeps extends AdapterDeps {
  readonly runtime: RuntimeUseCases;
  /** The projection: Get/WatchProjection, the heartbeat's version hint and applied report. */
  readonly projection: ProjectionUseCases;
  /** HeartbeatStream resolves its token once, at open. */
  readonly tokens: Pick<WorkspaceTokens, 'openSession'>;
  /** Cluster mode: unary heartbeats for a workspace another replica owns go to it. */
  readonly forwarder?: HeartbeatForwarder | undefined;
}

/** Past this many unanswered heartbeats a stream stops reading until the client catches up. */
const MAX_IN_FLIGHT = 512;

/** vigil.v1.RuntimeService: authenticated by workspace token, delegated to the runtime use-cases. */
export function createRuntimeService(deps: RuntimeServiceDeps): RuntimeServiceServer {
  const { runtime, tokens, observer, forwarder, projection } = deps;
  /** The answer to an applied heartbeat: the version hint, and the applied version recorded. */
  const answer = (
    result: Parameters<typeof heartbeatResponse>[0],
    workspaceId: string,
    applied: number,
  ) => {
    projection.reportApplied(workspaceId, applied);
    return heartbeatResponse(result, projection.configVersion(workspaceId));
  };
  /** A HeartbeatStream answer to an applied heartbeat. */
  const streamAnswer = (
    request: HeartbeatStreamRequest,
    heartbeat: HeartbeatRequest,
    result: HeartbeatResult,
  ): HeartbeatStreamResponse => ({
    requestId: request.requestId,
    result: {
      $case: 'heartbeat',
      value: answer(result, heartbeat.workspaceId, heartbeat.appliedConfigVersion),
    },
  });
  return {
    register: handleUnary(deps, 'Register', async (request, context) => {
      const result = await runtime.register(
        context.session ?? context.token,
        {
          workspaceId: request.workspaceId,
          url: request.url,
          agentCard: request.agentCard,
          deliveryMode: deliveryModeFromProto(request.deliveryMode),
        },
        context.signal,
      );
      return {
        workspace: workspaceToProto(result.workspace, projection.status(result.workspace.id)),
        heartbeatInterval: durationToProto(result.heartbeatIntervalMs),
        configVersion: projection.configVersion(result.workspace.id),
      };
    }),
    heartbeat: handleUnary(deps, 'Heartbeat', async (request, context) => {
      observer.heartbeatReceived();
      const owner = context.forwarded ? undefined : forwarder?.ownerAddress(request.workspaceId);
      if (owner !== undefined && forwarder) {
        const answered = await forwarder.forward(owner, request, context.token);
        // Unreachable owner: answered here, which makes this replica the owner.
        if (answered) return answered;
      }
      const result = await runtime.heartbeat(
        context.session ?? context.token,
        heartbeatCommand(request),
      );
      return answer(result, request.workspaceId, request.appliedConfigVersion);
    }),
    /**
     * The token is resolved (hashed and looked up) once, at open, so a bad one
     * ends the stream at once; then every request is applied like a unary
     * Heartbeat through that session, which re-checks without hashing that no
     * revocation or rotation happened since. A rejected heartbeat gets an
     * in-band `error` answer and writes nothing; the stream stays open, unless
     * the token stopped being valid (UNAUTHENTICATED ends it).
     */
    getProjection: handleUnary(deps, 'GetProjection', async (request, context) => ({
      projection: projectionToProto(await projection.get(context.token, request.workspaceId)),
    })),
    watchProjection: handleServerStream(
      deps,
      'WatchProjection',
      // The workspace token is checked by the use-case, before the first event.
      () => undefined,
      (request: WatchProjectionRequest, context: CallContext) =>
        watchProjection(projection, request, context),
    ),
    heartbeatStream: handlePipelinedBidi<
      HeartbeatStreamRequest,
      HeartbeatStreamResponse,
      WorkspaceSession
    >(deps, 'HeartbeatStream', {
      maxInFlight: MAX_IN_FLIGHT,
      // Resolved once, by the auth interceptor, when it ran (it always does in a server).
      open: (context) =>
        context.session ? Promise.resolve(context.session) : tokens.openSession(context.token),
      message(session, request) {
        observer.heartbeatReceived();
        const { heartbeat } = request;
        if (!heartbeat) throw fieldInvalid('heartbeat', 'is required');
        // Answered from memory at once when nothing durable changes (no promise on the hot path).
        const result = runtime.heartbeat(session, heartbeatCommand(heartbeat));
        return result instanceof Promise
          ? result.then((applied) => streamAnswer(request, heartbeat, applied))
          : streamAnswer(request, heartbeat, result);
      },
      refuse(known, request) {
        // Counted like any other heartbeat, even though it never reached `message`.
        if (isMalformed(request)) observer.heartbeatReceived();
        if (known.codeName === 'UNAUTHENTICATED') return undefined;
        return {
          // An undecodable or oversized message is answered with the request_id that could be
          // read from its bytes, 0 when none could.
          requestId: isMalformed(request) ? (malformedRequestId(request) ?? 0) : request.requestId,
          result: {
            $case: 'error',
            value: {
              code: status[known.codeName],
              message: known.message,
              reason: known.reason,
              metadata: { ...known.metadata },
              // What a unary Heartbeat sends in grpc-status-details-bin, RetryInfo included.
              status: toRpcStatus(known),
            },
          },
        };
      },
    }),
  };
}

async function* watchProjection(
  projection: ProjectionUseCases,
  request: WatchProjectionRequest,
  context: CallContext,
): AsyncGenerator<WatchProjectionResponse, void, undefined> {
  const events = await projection.watch(context.token, request.workspaceId, context.signal);
  for await (const event of events) yield projectionEventToProto(event);
}
