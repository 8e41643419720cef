import { status, type ClientReadableStream, type Metadata, type ServiceError } from '@grpc/grpc-js';
import type {
  RuntimeServiceClient,
  WatchProjectionResponse,
} from '../../gen/vigil/v1/runtime_service.js';
import { backoffDelay, sleep, type BackoffOptions } from './backoff.js';
import { VigilClientError, fromServiceError } from './errors.js';

/** One event of a projection watch: `{ $case: 'projection' | 'error' | 'progress', value }`. */
export type ProjectionWatchEvent = NonNullable<WatchProjectionResponse['event']>;

export interface ProjectionWatchOptions {
  readonly workspaceId: string;
  /** Stops the watch; the iterator then ends without an error. */
  readonly signal?: AbortSignal;
  readonly backoff?: BackoffOptions;
  /** Told about every reconnect. */
  readonly onReconnect?: (error: VigilClientError, attempt: number, delayMs: number) => void;
}

/**
 * Follows WatchProjection: reconnects with backoff and jitter on retryable
 * failures (a server restart included), sends the version it holds, and
 * yields each version once (the server sends the current state on every
 * open; a repeat of the version last yielded is dropped). Progress events
 * are yielded as they come. Non-retryable errors (a bad token, a removed
 * workspace) are thrown.
 */
export async function* watchProjection(
  /** The client to call on each (re)connect: it may be replaced meanwhile (RuntimeClient.reconnect). */
  client: () => RuntimeServiceClient,
  metadata: () => Metadata,
  options: ProjectionWatchOptions,
): AsyncGenerator<ProjectionWatchEvent> {
  const { signal } = options;
  let known = 0;
  let knownKind: 'projection' | 'error' | undefined;
  let attempt = 0;
  while (!signal?.aborted) {
    const call = client().watchProjection(
      { workspaceId: options.workspaceId, knownConfigVersion: known },
      metadata(),
    );
    const onAbort = () => {
      call.cancel();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    let failure: VigilClientError;
    try {
      for await (const event of read(call)) {
        attempt = 0;
        if (event.$case !== 'progress') {
          if (event.value.configVersion === known && event.$case === knownKind) continue;
          known = event.value.configVersion;
          knownKind = event.$case;
        }
        yield event;
      }
      failure = new VigilClientError(status.UNAVAILABLE, 'STREAM_ENDED', 'the stream ended', {});
    } catch (error) {
      if (signal?.aborted) return;
      if (!(error instanceof VigilClientError) || !error.retryable) throw error;
      failure = error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      call.cancel();
    }
    const delay = backoffDelay(attempt, options.backoff);
    attempt += 1;
    options.onReconnect?.(failure, attempt, delay);
    await sleep(delay, signal);
  }
}

async function* read(
  call: ClientReadableStream<WatchProjectionResponse>,
): AsyncGenerator<ProjectionWatchEvent> {
  try {
    for await (const message of call as AsyncIterable<WatchProjectionResponse>) {
      if (message.event) yield message.event;
    }
  } catch (error) {
    if (error instanceof Error && 'code' in error && 'metadata' in error) {
      throw fromServiceError(error as ServiceError);
    }
    throw error;
  }
}
