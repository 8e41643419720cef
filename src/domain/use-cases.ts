import { createLiveness, type Liveness } from './liveness.js';
import { ownsEverything, type Ownership } from './ownership.js';
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
  return { tokens, runtime, admin, liveness };
}
