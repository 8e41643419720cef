import {
  HeartbeatRequest,
  RegisterRequest,
  RuntimeServiceClient,
  type HeartbeatResponse,
  type RegisterResponse,
} from '../../gen/vigil/v1/runtime_service.js';
import {
  callOptions,
  type CallSettings,
  type HeartbeatInput,
  type RegisterInput,
} from './call-settings.js';
import { connection, type ConnectOptions } from './channel.js';
import { openHeartbeatStream, type HeartbeatStream } from './heartbeat-stream.js';
import { invoke } from './unary.js';

/** vigil.v1.RuntimeService with promises. Calls fail with VigilClientError. */
export interface RuntimeClient {
  register(request: RegisterInput, options?: CallSettings): Promise<RegisterResponse>;
  heartbeat(request: HeartbeatInput, options?: CallSettings): Promise<HeartbeatResponse>;
  /** Opens a HeartbeatStream: many heartbeats over one call, far cheaper than unary calls. */
  openHeartbeatStream(): HeartbeatStream;
  close(): void;
}

/** A RuntimeService client authenticated with a workspace token. */
export function createRuntimeClient(options: ConnectOptions): RuntimeClient {
  const conn = connection(options);
  const client = new RuntimeServiceClient(conn.address, conn.credentials, conn.channelOptions);
  return {
    register: (request, settings) =>
      invoke(
        client,
        client.register,
        RegisterRequest.fromPartial(request),
        conn.metadata(),
        callOptions(settings),
      ),
    heartbeat: (request, settings) =>
      invoke(
        client,
        client.heartbeat,
        HeartbeatRequest.fromPartial(request),
        conn.metadata(),
        callOptions(settings),
      ),
    openHeartbeatStream: () => openHeartbeatStream(client, conn.metadata()),
    close: () => {
      client.close();
    },
  };
}
