import { Metadata, status, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import {
  HeartbeatRequest,
  type HeartbeatResponse,
  type HeartbeatStreamRequest,
  type HeartbeatStreamResponse,
  type RuntimeServiceClient,
} from '../../gen/vigil/v1/runtime_service.js';
import { VigilClientError, fromHeartbeatError, fromServiceError } from './errors.js';
import type { HeartbeatInput } from './call-settings.js';

/**
 * One HeartbeatStream: `send` resolves with the response to that heartbeat
 * (responses come back in order), or rejects with VigilClientError — for a
 * rejected heartbeat (the stream stays usable) or when the stream fails (it
 * is then closed, and every pending send rejects with that error).
 */
export interface HeartbeatStream {
  send(request: HeartbeatInput): Promise<HeartbeatResponse>;
  /** True once the stream has failed or been closed. */
  readonly closed: boolean;
  close(): void;
}

interface Waiter {
  resolve(response: HeartbeatResponse): void;
  reject(error: VigilClientError): void;
}

export function openHeartbeatStream(
  client: RuntimeServiceClient,
  metadata: Metadata,
): HeartbeatStream {
  const call: ClientDuplexStream<HeartbeatStreamRequest, HeartbeatStreamResponse> =
    client.heartbeatStream(metadata);
  const waiting = new Map<number, Waiter>();
  let nextId = 1;
  let closed = false;

  const failAll = (error: VigilClientError) => {
    closed = true;
    for (const waiter of waiting.values()) waiter.reject(error);
    waiting.clear();
  };

  call.on('data', (response: HeartbeatStreamResponse) => {
    const waiter = waiting.get(response.requestId);
    if (!waiter) return;
    waiting.delete(response.requestId);
    const result = response.result;
    if (result?.$case === 'heartbeat') waiter.resolve(result.value);
    else if (result?.$case === 'error') waiter.reject(fromHeartbeatError(result.value));
    else
      waiter.reject(
        new VigilClientError(status.INTERNAL, '', 'the server sent an empty response', {}),
      );
  });
  call.on('error', (error: ServiceError) => {
    failAll(fromServiceError(error));
  });
  call.on('end', () => {
    failAll(
      new VigilClientError(status.UNAVAILABLE, 'STREAM_ENDED', 'the heartbeat stream ended', {}),
    );
  });

  return {
    send(request) {
      if (closed) {
        return Promise.reject(
          new VigilClientError(
            status.UNAVAILABLE,
            'STREAM_ENDED',
            'the heartbeat stream is closed',
            {},
          ),
        );
      }
      const requestId = nextId;
      nextId += 1;
      return new Promise<HeartbeatResponse>((resolve, reject) => {
        waiting.set(requestId, { resolve, reject });
        call.write({ requestId, heartbeat: HeartbeatRequest.fromPartial(request) });
      });
    },
    get closed() {
      return closed;
    },
    close() {
      if (closed) return;
      failAll(new VigilClientError(status.CANCELLED, '', 'the heartbeat stream was closed', {}));
      call.end();
      call.cancel();
    },
  };
}
