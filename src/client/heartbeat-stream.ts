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

export interface HeartbeatStreamOptions {
  /**
   * A heartbeat unanswered this long gives the stream up: it fails with
   * UNAVAILABLE / ANSWER_TIMEOUT and is cancelled. A paused or cut-off server
   * keeps its TCP connection up, so without a deadline a sidecar would wait on
   * it until keepalive notices (tens of seconds). 0 waits forever.
   */
  readonly answerTimeoutMs?: number;
}

/** The client-side reason of a stream given up for an unanswered heartbeat. */
export const ANSWER_TIMEOUT = 'ANSWER_TIMEOUT';

export function openHeartbeatStream(
  client: RuntimeServiceClient,
  metadata: Metadata,
  options: HeartbeatStreamOptions = {},
): HeartbeatStream {
  const call: ClientDuplexStream<HeartbeatStreamRequest, HeartbeatStreamResponse> =
    client.heartbeatStream(metadata);
  const waiting = new Map<number, Waiter & { timer: NodeJS.Timeout | undefined }>();
  let nextId = 1;
  let closed = false;
  const answerTimeoutMs = options.answerTimeoutMs ?? 0;

  const failAll = (error: VigilClientError) => {
    closed = true;
    for (const waiter of waiting.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    waiting.clear();
  };
  const giveUp = () => {
    if (closed) return;
    failAll(
      new VigilClientError(
        status.UNAVAILABLE,
        ANSWER_TIMEOUT,
        `no answer to a heartbeat within ${answerTimeoutMs} ms; the stream was given up`,
        {},
      ),
    );
    call.cancel();
  };

  call.on('data', (response: HeartbeatStreamResponse) => {
    const waiter = waiting.get(response.requestId);
    if (!waiter) return;
    clearTimeout(waiter.timer);
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
        const timer = answerTimeoutMs > 0 ? setTimeout(giveUp, answerTimeoutMs) : undefined;
        waiting.set(requestId, { resolve, reject, timer });
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
