import type { ServiceError } from '@grpc/grpc-js';
import type { RuntimeConfig } from '../../gen/vigil/v1/projection.js';
import { ReloadAction } from '../../gen/vigil/v1/projection.js';
import type {
  GetProjectionResponse,
  RuntimeServiceClient,
  WatchProjectionResponse,
} from '../../gen/vigil/v1/runtime_service.js';
import { CONTROL_TOKEN, type Harness } from './harness.js';
import { bearer, call } from './rpc.js';

/** Request builders and readers for the projection's RPCs. */

export function runtimeConfig(overrides: Partial<RuntimeConfig> = {}): RuntimeConfig {
  return {
    adapter: 'claude-code',
    model: 'MiniMax-M2.7',
    provider: '',
    baseUrl: '',
    env: {},
    reloadPolicy: { action: ReloadAction.RELOAD_ACTION_RESTART, signal: '' },
    ...overrides,
  };
}

export async function setSecret(
  harness: Harness,
  workspaceId: string,
  name: string,
  value: string,
  options: { expected?: number; token?: string } = {},
): Promise<number> {
  const { control } = harness.clients;
  const response = await call(
    control,
    control.setWorkspaceSecret,
    { workspaceId, name, value, expectedConfigVersion: options.expected ?? 0 },
    options.token ?? CONTROL_TOKEN,
  );
  return response.configVersion;
}

export async function setConfig(
  harness: Harness,
  workspaceId: string,
  config: RuntimeConfig = runtimeConfig(),
  token = CONTROL_TOKEN,
): Promise<number> {
  const { control } = harness.clients;
  const response = await call(
    control,
    control.setWorkspaceRuntimeConfig,
    { workspaceId, config, expectedConfigVersion: 0 },
    token,
  );
  return response.configVersion;
}

export async function getProjection(
  harness: Harness,
  workspaceId: string,
  token: string,
): Promise<NonNullable<GetProjectionResponse['projection']>> {
  const { runtime } = harness.clients;
  const response = await call(runtime, runtime.getProjection, { workspaceId }, token);
  if (!response.projection) throw new Error('GetProjection returned no projection');
  return response.projection;
}

/** A WatchProjection stream read one event at a time. */
export interface ProjectionReader {
  next(timeoutMs?: number): Promise<WatchProjectionResponse>;
  /** The stream's final error (undefined when it ended OK). */
  ended(): Promise<ServiceError | undefined>;
  cancel(): void;
}

export function watchProjection(
  runtime: RuntimeServiceClient,
  workspaceId: string,
  token: string,
  knownConfigVersion = 0,
): ProjectionReader {
  const stream = runtime.watchProjection({ workspaceId, knownConfigVersion }, bearer(token));
  const buffered: WatchProjectionResponse[] = [];
  let waiter: (() => void) | undefined;
  let failure: ServiceError | undefined;
  let finished = false;
  const wake = () => {
    const w = waiter;
    waiter = undefined;
    w?.();
  };
  stream.on('data', (event: WatchProjectionResponse) => {
    buffered.push(event);
    wake();
  });
  const ended = new Promise<ServiceError | undefined>((resolve) => {
    stream.on('error', (error: ServiceError) => {
      failure = error;
      finished = true;
      wake();
      resolve(error);
    });
    stream.on('end', () => {
      finished = true;
      wake();
      resolve(undefined);
    });
  });
  return {
    async next(timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const event = buffered.shift();
        if (event) return event;
        if (finished) throw failure ?? new Error('projection stream ended');
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw new Error('timed out waiting for a projection event');
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, remaining);
          waiter = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
    ended: () => ended,
    cancel() {
      stream.cancel();
    },
  };
}
