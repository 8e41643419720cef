import type { Registry } from '../domain/registry.js';
import type { RuntimeServiceServer } from '../../gen/vigil/v1/runtime_service.js';
import { serveHeartbeatStream } from './heartbeat-stream.js';
import { unary, type CallContext } from './call-helpers.js';
import {
  deliveryModeFromProto,
  durationToProto,
  heartbeatCommand,
  heartbeatResponse,
  workspaceToProto,
} from './convert.js';

/** vigil.v1.RuntimeService: authenticated by workspace token, delegated to the registry. */
export function createRuntimeService(
  registry: Registry,
  context: CallContext,
): RuntimeServiceServer {
  return {
    register: unary(context, 'Register', async (request, token) => {
      const result = await registry.register(token, {
        workspaceId: request.workspaceId,
        url: request.url,
        agentCard: request.agentCard,
        deliveryMode: deliveryModeFromProto(request.deliveryMode),
      });
      return {
        workspace: workspaceToProto(result.workspace),
        heartbeatInterval: durationToProto(result.heartbeatIntervalMs),
      };
    }),
    heartbeat: unary(context, 'Heartbeat', async (request, token) => {
      context.observer.heartbeatReceived();
      const result = await registry.heartbeat(token, heartbeatCommand(request));
      return heartbeatResponse(result);
    }),
    heartbeatStream: (call) => {
      serveHeartbeatStream(call, registry, context);
    },
  };
}
