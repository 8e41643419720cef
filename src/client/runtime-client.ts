import {
  HeartbeatRequest,
  RegisterRequest,
  RuntimeServiceClient,
  type HeartbeatResponse,
  type RegisterResponse,
} from '../../gen/vigil/v1/runtime_service.js';
import { connection, type ConnectOptions } from './channel.js';
import { openHeartbeatStream, type HeartbeatStream } from './heartbeat-stream.js';
import { invoke } from './unary.js';

/** What the SDK's request builders accept: any subset of the fields, `workspaceId` required. */
export type RegisterInput = Partial<RegisterRequest> & { readonly workspaceId: string };
export type HeartbeatInput = Partial<HeartbeatRequest> & { readonly workspaceId: string };

/** vigil.v1.RuntimeService with promises. Calls fail with VigilClientError. */
export interface RuntimeClient {
  register(request: RegisterInput, options?: CallSettings): Promise<RegisterResponse>;
  heartbeat(request: HeartbeatInput, options?: CallSettings): Promise<HeartbeatResponse>;
  /** Opens a HeartbeatStream: many heartbeats over one call, far cheaper than unary calls. */
  openHeartbeatStream(): HeartbeatStream;
  close(): void;
}

export interface CallSettings {
  /** Per-call timeout in milliseconds; default 10 s. */
  readonly timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/** A RuntimeService client authenticated with a workspace token. */
export function createRuntimeClient(options: ConnectOptions): RuntimeClient {
  const conn = connection(options);
  const client = new RuntimeServiceClient(conn.address, conn.credentials, conn.channelOptions);
  const deadline = (settings?: CallSettings) => ({
    deadline: Date.now() + (settings?.timeoutMs ?? DEFAULT_TIMEOUT_MS),
  });
  return {
    register: (request, settings) =>
      invoke(
        client,
        client.register,
        RegisterRequest.fromPartial(request),
        conn.metadata(),
        deadline(settings),
      ),
    heartbeat: (request, settings) =>
      invoke(
        client,
        client.heartbeat,
        HeartbeatRequest.fromPartial(request),
        conn.metadata(),
        deadline(settings),
      ),
    openHeartbeatStream: () => openHeartbeatStream(client, conn.metadata()),
    close: () => {
      client.close();
    },
  };
}
