import { createLiveness, type Liveness } from './liveness.js';
import { ownsEverything, type Ownership } from './ownership.js';
import { BUILT_IN_PROVIDERS, type ProviderCatalog } from './projection.js';
import type { ProjectionStore } from './projection-store.js';
import { createProjectionUseCases, type ProjectionUseCases } from './projection-use-cases.js';
import type { SecretCipher } from './secret-cipher.js';
import {
  createRuntimeUseCases,
  type RuntimeOptions,
  type RuntimeUseCases,
} from './runtime-use-cases.js';
import { createWorkspaceAdmin, type WorkspaceAdmin } from './workspace-admin.js';
import { createWorkspaceTokens, type WorkspaceTokens } from './workspace-tokens.js';

/**
 * Vigil's capabilities over one store, each behind its own interface:
 * transport services take only the ones they use.
 */
export interface UseCases {
  readonly tokens: WorkspaceTokens;
  readonly runtime: RuntimeUseCases;
  readonly admin: WorkspaceAdmin;
  readonly liveness: Liveness;
  readonly projection: ProjectionUseCases;
}

/** The runtime projection's parts. */
export interface ProjectionSettings {
  /** Undefined: the store does not implement the projection (STORE_UNSUPPORTED). */
  readonly store: ProjectionStore | undefined;
  /** Undefined: no keyring (SECRETS_DISABLED). */
  readonly cipher: SecretCipher | undefined;
  readonly catalog: ProviderCatalog;
  /** Idle WatchProjection streams get a progress event this often. */
  readonly progressIntervalMs: number;
}

/** What the runtime use-cases take, but the capabilities composed here. */
export interface UseCaseOptions extends Omit<RuntimeOptions, 'tokens' | 'liveness'> {
  /** When this process started: in single-node mode it owns every workspace's liveness from then on. */
  readonly serverStartedAt: number;
  /** Cluster mode: who owns which workspace and who leads; single-node mode when unset. */
  readonly ownership?: Ownership | undefined;
  /** How often the liveness sweep runs; derived from offline_after when unset. */
  readonly sweepIntervalMs?: number | undefined;
  /** Told when periodic work (sweep, flushes, compaction) failed; it is retried. */
  readonly onError?: (error: unknown) => void;
  /** Told when compaction dropped transitions. */
  readonly onCompacted?: (deleted: number) => void;
  /** The runtime projection; without it every projection call is STORE_UNSUPPORTED. */
  readonly projection?: ProjectionSettings | undefined;
}

export function createUseCases(options: UseCaseOptions): UseCases {
  const { store, clock, timings } = options;
  const tokens = createWorkspaceTokens({
    store,
    clock,
    rotationOverlapMs: timings.tokenRotationOverlapMs,
  });
  const liveness = createLiveness({
    store,
    clock,
    timings,
    ownership: options.ownership ?? ownsEverything(options.serverStartedAt),
    sweepIntervalMs: options.sweepIntervalMs,
    onTick: () => tokens.flushUsage(false),
    ...(options.onError ? { onError: options.onError } : {}),
    ...(options.onCompacted ? { onCompacted: options.onCompacted } : {}),
  });
  const runtime = createRuntimeUseCases({
    store,
    tokens,
    liveness,
    clock,
    timings,
    checkUrl: options.checkUrl,
    fieldLimits: options.fieldLimits,
    heartbeatRateLimit: options.heartbeatRateLimit,
    registerRateLimit: options.registerRateLimit,
    random: options.random,
  });
  const admin = createWorkspaceAdmin({ store, tokens, liveness, clock, timings });
  const projection = createProjectionUseCases({
    ...(options.projection ?? {
      store: undefined,
      cipher: undefined,
      catalog: BUILT_IN_PROVIDERS,
      progressIntervalMs: 15_000,
    }),
    tokens,
    clock,
    ...(options.onError ? { onError: options.onError } : {}),
  });
  return { tokens, runtime, admin, liveness, projection };
}
