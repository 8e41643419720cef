import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Client, Metadata } from '@grpc/grpc-js';
import { ControlServiceService } from '../../gen/vigil/v1/control_service.js';
import { HeartbeatRequest, RuntimeServiceService } from '../../gen/vigil/v1/runtime_service.js';
import { DeliveryMode, RuntimeState } from '../../gen/vigil/v1/workspace.js';
import type { Row } from './report.js';
import { agentCard, RUNTIME_URL } from './agent-card.js';
import { bearer, newClient, unaryCall } from './wire.js';

/**
 * CPU used by processes outside the bench (cores) above which a measured
 * window counts as disturbed: flagged in the report, and retried where a
 * scenario can afford it.
 */
export const BUSY_CORES = 0.15;

/** What every scenario gets from the driver. */
export interface BenchContext {
  /** Smoke run: shorter durations and smaller counts, labelled as such. */
  readonly quick: boolean;
  /** Root of this run's temporary directories. */
  readonly tmpRoot: string;
  readonly controlToken: string;
  /**
   * Profiling mode (`--cpu-prof DIR`): the heartbeat scenario starts its Vigil
   * server under `node --cpu-prof` writing to DIR, and records there which
   * window to summarise. Undefined otherwise.
   */
  readonly cpuProfDir: string | undefined;
  /** One progress line on stderr. */
  progress(message: string): void;
  /** A fresh directory under tmpRoot. */
  tempDir(name: string): string;
  /**
   * Records how much CPU processes outside the bench used during a measured
   * window (share of one core), so the report can flag numbers taken on a
   * busy machine.
   */
  recordForeignLoad(window: string, cores: number): void;
  /**
   * Waits (bounded) until processes outside the bench leave the CPU alone,
   * so the next measured window is not skewed by other builds and tests.
   * Call only while every bench process is idle.
   */
  awaitQuiet(before: string): Promise<void>;
}

export interface ScenarioOutcome {
  readonly rows: Row[];
  /** Everything else worth keeping in the JSON: configuration, raw summaries. */
  readonly details: Record<string, unknown>;
}

export interface Scenario {
  readonly name: string;
  readonly title: string;
  run(context: BenchContext): Promise<ScenarioOutcome>;
}

export function makeTempDir(root: string, name: string): string {
  return mkdtempSync(join(root, `${name}-`));
}

/** Wall-clock epoch ms with sub-ms resolution, comparable across processes. */
export const wallNow = (): number => performance.timeOrigin + performance.now();

export { agentCard, RUNTIME_URL } from './agent-card.js';

/** An encoded HeartbeatRequest as a healthy sidecar sends it, with or without its card. */
export function heartbeatBytes(workspaceId: string, withCard: boolean): Uint8Array {
  return HeartbeatRequest.encode(
    HeartbeatRequest.fromPartial({
      workspaceId,
      ...(withCard ? { agentCard: agentCard(workspaceId) } : {}),
      errorRate: 0.01,
      activeTasks: 1,
      uptimeSeconds: 3_600,
      currentTask: 'benchmark',
      runtimeState: RuntimeState.RUNTIME_STATE_HEALTHY,
    }),
  ).finish();
}

/** Runs `task` over `items` with at most `limit` in flight; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  task: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const index = next;
      next += 1;
      results[index] = await task(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

/** A ControlService connection for the driver's own calls. */
export interface Control {
  readonly client: Client;
  readonly metadata: () => Metadata;
  close(): void;
}

export function connectControl(address: string, controlToken: string): Control {
  const client = newClient(address);
  const metadata = bearer(controlToken);
  return {
    client,
    metadata: () => metadata.clone(),
    close: () => {
      client.close();
    },
  };
}

export interface CreatedWorkspace {
  readonly id: string;
  readonly token: string;
}

/** Creates workspaces through ControlService and registers each through RuntimeService. */
export async function createRegisteredWorkspaces(
  control: Control,
  ids: readonly string[],
): Promise<CreatedWorkspace[]> {
  const created = await mapLimit(ids, 64, async (id) => {
    const response = await unaryCall(
      control.client,
      ControlServiceService.createWorkspace,
      { workspaceId: id, name: id },
      control.metadata(),
    );
    return { id, token: response.workspaceToken };
  });
  await mapLimit(created, 64, async (workspace) => {
    await unaryCall(
      control.client,
      RuntimeServiceService.register,
      {
        workspaceId: workspace.id,
        url: RUNTIME_URL,
        agentCard: agentCard(workspace.id),
        deliveryMode: DeliveryMode.DELIVERY_MODE_PUSH,
      },
      bearer(workspace.token),
    );
  });
  return created;
}

/** Splits items round-robin into `parts` lists. */
export function split<T>(items: readonly T[], parts: number): T[][] {
  const out = Array.from({ length: parts }, (): T[] => []);
  items.forEach((item, i) => out[i % parts]?.push(item));
  return out;
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
