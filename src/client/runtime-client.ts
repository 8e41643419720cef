import {
  HeartbeatRequest,
  RegisterRequest,
  RuntimeServiceClient,
  type HeartbeatResponse,
  type RegisterResponse,
} from '../../gen/vigil/v1/runtime_service.js';
import type { Projection } from '../../gen/vigil/v1/projection.js';
import {
  watchProjection,
  type ProjectionWatchEvent,
  type ProjectionWatchOptions,
} from './projection-watch.js';
import {
  callOptions,
  type CallSettings,
  type HeartbeatInput,
  type RegisterInput,
} from './call-settings.js';
import { connection, type ConnectOptions } from './channel.js';
import {
  openHeartbeatStream,
  type HeartbeatStream,
  type HeartbeatStreamOptions,
} from './heartbeat-stream.js';
import { invoke } from './unary.js';

/** vigil.v1.RuntimeService with promises. Calls fail with VigilClientError. */
export interface RuntimeClient {
  register(request: RegisterInput, options?: CallSettings): Promise<RegisterResponse>;
  heartbeat(request: HeartbeatInput, options?: CallSettings): Promise<HeartbeatResponse>;
  /** Opens a HeartbeatStream: many heartbeats over one call, far cheaper than unary calls. */
  openHeartbeatStream(options?: HeartbeatStreamOptions): HeartbeatStream;
  /**
   * Drops the connection and opens a new one (calls in flight fail): behind a
   * load balancer the new one may reach another replica, leaving an
   * unresponsive server behind.
   */
  reconnect(): void;
  /**
   * The environment this runtime must start with. Fails with the projection's
   * reason (FAILED_PRECONDITION PROJECTION_INCOMPLETE and the like), never
   * with a partial environment.
   */
  getProjection(workspaceId: string, options?: CallSettings): Promise<Projection>;
  /** Follows WatchProjection, reconnecting by itself; each version once. */
  watchProjection(options: ProjectionWatchOptions): AsyncGenerator<ProjectionWatchEvent>;
  close(): void;
}

/** A RuntimeService client authenticated with a workspace token. */
export function createRuntimeClient(options: ConnectOptions): RuntimeClient {
  const conn = connection(options);
  let client = new RuntimeServiceClient(conn.address, conn.credentials, conn.channelOptions);
  return {
    reconnect() {
      client.close();
      client = new RuntimeServiceClient(conn.address, conn.credentials, conn.channelOptions);
    },
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
    openHeartbeatStream: (streamOptions) =>
      openHeartbeatStream(client, conn.metadata(), streamOptions),
    getProjection: async (workspaceId, settings) => {
      const response = await invoke(
        client,
        client.getProjection,
        { workspaceId },
        conn.metadata(),
        callOptions(settings),
      );
      if (!response.projection) throw new Error('GetProjection answered without a projection');
      return response.projection;
    },
    watchProjection: (watchOptions) => watchProjection(() => client, conn.metadata, watchOptions),
    close: () => {
      client.close();
    },
  };
}
