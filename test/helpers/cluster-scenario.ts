import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { checkHistory, describeViolations, type CheckResult } from './cluster-checker.js';
import {
  CI_TIMINGS,
  startFleet,
  type Fleet,
  type Observer,
  type Replica,
  type SidecarFleet,
} from './cluster-fleet.js';
import {
  ETCD_INSTALLED,
  ETCDCTL_INSTALLED,
  ETCD_SKIP_REASON,
  startEtcdCluster,
  type EtcdCluster,
} from './etcd-cluster.js';
import type { OpEvent, WatchEvent } from './history.js';
import { monoNow } from './history.js';

/**
 * Scaffolding of one real-process cluster scenario: a fresh 3-member etcd,
 * replicas, one observer per replica, the sidecars; at the end the observers
 * are brought to one head, etcd's facts are read and the checker runs. On a
 * violation the whole history is written to a file named in the failure.
 */

/** Full sizes of issue 10 (2,000 sidecars, a 30,000-transition backlog) when set. */
export const FULL_SIZE = process.env['VIGIL_CLUSTER_FULL'] === '1';

/** Randomized 60 s fault schedules to run (default 2). */
export const SCHEDULES = Math.max(0, Number(process.env['VIGIL_CLUSTER_SCHEDULES'] ?? '2') || 0);

export const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms);
  });

/** Polls `done` every 250 ms until it holds or `timeoutMs` passed; resolves with whether it held. */
export async function waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) return false;
    await sleep(250);
  }
  return true;
}

/** Whether every one of `ids` has an OFFLINE transition in the history so far. */
export function allOffline(scenario: Scenario, ids: readonly string[]): boolean {
  const offline = new Set<string>();
  for (const e of scenario.fleet.history.events) {
    if (e.kind === 'watch' && e.frame === 'transition' && e.to === 'OFFLINE')
      offline.add(e.ws ?? '');
  }
  return ids.every((id) => offline.has(id));
}

/** Skips the suite (one line naming the packages) when etcd is not installed. */
export function skipWithoutEtcd(context: Mocha.Context): void {
  if (!ETCD_INSTALLED || !ETCDCTL_INSTALLED) {
    console.log(`      ${ETCD_SKIP_REASON}`);
    context.skip();
  }
}

export interface Scenario {
  readonly cluster: EtcdCluster;
  readonly fleet: Fleet;
  readonly observers: Observer[];
  readonly workspaces: { id: string; token: string }[];
  sidecars: SidecarFleet | undefined;
}

export interface ScenarioOptions {
  readonly replicas?: number;
  readonly workspaces: number;
  readonly mode?: 'stream' | 'unary';
  readonly channelsPerReplica?: number;
  readonly extraArgs?: readonly string[];
  readonly nodeArgs?: (index: number) => readonly string[];
  /** Give up a stream whose heartbeat stays unanswered this long (default 2.5 s; 0 never). */
  readonly answerTimeoutMs?: number;
  /** Start no sidecars (the scenario drives its own). */
  readonly noSidecars?: boolean;
}

const live = new Set<Scenario>();

export async function startScenario(options: ScenarioOptions): Promise<Scenario> {
  const cluster = await startEtcdCluster();
  let fleet: Fleet;
  try {
    fleet = await startFleet({
      cluster,
      replicas: options.replicas ?? 3,
      ...(options.extraArgs ? { extraArgs: options.extraArgs } : {}),
      ...(options.nodeArgs ? { nodeArgs: options.nodeArgs } : {}),
    });
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  const scenario: Scenario = {
    cluster,
    fleet,
    observers: fleet.replicas.map((r) => fleet.observe(r)),
    workspaces: [],
    sidecars: undefined,
  };
  live.add(scenario);
  await Promise.all(scenario.observers.map((o) => o.ready));
  if (options.workspaces > 0) {
    scenario.workspaces.push(...(await fleet.createWorkspaces(options.workspaces, 'ws')));
  }
  if (!options.noSidecars && options.workspaces > 0) {
    scenario.sidecars = fleet.startSidecars({
      workspaces: scenario.workspaces,
      mode: options.mode ?? 'stream',
      intervalMs: CI_TIMINGS.heartbeatIntervalMs,
      channelsPerReplica: options.channelsPerReplica ?? 2,
      register: true,
      answerTimeoutMs: options.answerTimeoutMs ?? 2_500,
    });
    await scenario.sidecars.ready;
  }
  return scenario;
}

/** Stops every process of the scenario (by PID); safe to call twice. */
export async function stopScenario(scenario: Scenario | undefined): Promise<void> {
  if (!scenario || !live.has(scenario)) return;
  live.delete(scenario);
  await scenario.fleet.stop();
  await scenario.cluster.stop();
}

/**
 * Ends the run: the sidecars stop, every observer of a live replica is
 * brought to the highest seq any observer saw, etcd's facts are read, and the
 * checker runs over the whole history.
 */
export async function finishScenario(
  scenario: Scenario,
  observers: readonly Observer[] = scenario.observers,
): Promise<CheckResult> {
  await scenario.sidecars?.finish();
  await sleep(1_000);
  const head = Math.max(...observers.map((o) => o.cursor()));
  await Promise.all(observers.map((o) => o.reach(head, 60_000)));
  for (const o of observers) o.stop(head);
  for (const o of scenario.observers) o.stop();
  await scenario.cluster.healthy(30_000).catch(() => undefined);
  await scenario.fleet.recordEtcdFacts();
  const result = checkHistory(scenario.fleet.history.events, {
    offlineAfterMs: CI_TIMINGS.offlineAfterMs,
  });
  if (!result.valid) {
    const file = join(tmpdir(), `vigil-cluster-history-${Date.now()}.jsonl`);
    scenario.fleet.history.save(file);
    console.log(`      history kept in ${file}\n${describeViolations(result)}`);
  }
  return result;
}

/** ok events of acknowledged heartbeats, by workspace: [invoke time, ok time, target]. */
export function heartbeatAcks(
  scenario: Scenario,
): Map<string, { sent: number; at: number; target: string }[]> {
  const invoked = new Map<string, number>();
  const out = new Map<string, { sent: number; at: number; target: string }[]>();
  for (const e of scenario.fleet.history.events) {
    if (e.kind !== 'op' || e.f !== 'heartbeat') continue;
    if (e.type === 'invoke') invoked.set(e.op, e.t);
    else if (e.type === 'ok') {
      const list = out.get(e.ws) ?? [];
      list.push({ sent: invoked.get(e.op) ?? e.t, at: e.t, target: e.target });
      out.set(e.ws, list);
    }
  }
  return out;
}

/** Every transition frame, first sighting per seq. */
export function transitionsSeen(scenario: Scenario): WatchEvent[] {
  const first = new Map<number, WatchEvent>();
  for (const e of scenario.fleet.history.events) {
    if (e.kind !== 'watch' || e.frame !== 'transition') continue;
    const known = first.get(e.seq);
    if (!known || e.t < known.t) first.set(e.seq, e);
  }
  return [...first.values()].sort((a, b) => a.seq - b.seq);
}

/** The churn creates invoked after `t` that were acknowledged, earliest ok first. */
export function churnAcksAfter(
  scenario: Scenario,
  t: number,
): { ws: string; sent: number; at: number }[] {
  const invoked = new Map<string, OpEvent>();
  const out: { ws: string; sent: number; at: number }[] = [];
  for (const e of scenario.fleet.history.events) {
    if (e.kind !== 'op' || e.f !== 'create' || !e.op.startsWith('churn-')) continue;
    if (e.type === 'invoke') invoked.set(e.op, e);
    else if (e.type === 'ok') {
      const start = invoked.get(e.op);
      if (start && start.t > t) out.push({ ws: e.ws, sent: start.t, at: e.t });
    }
  }
  return out.sort((a, b) => a.at - b.at);
}

/**
 * Per observer, how long after `t` it first delivered a transition of a
 * churn workspace created after `t` (its watch works again): ms, or Infinity.
 */
export function watchResumeAfter(scenario: Scenario, t: number): Record<string, number> {
  const created = new Set(churnAcksAfter(scenario, t).map((a) => a.ws));
  const out: Record<string, number> = {};
  for (const e of scenario.fleet.history.events) {
    if (e.kind !== 'watch' || e.frame !== 'transition' || e.t <= t) continue;
    if (!created.has(e.ws ?? '') && !invokedAfter(scenario, e.ws ?? '', t)) continue;
    out[e.observer] = Math.min(out[e.observer] ?? Infinity, e.t - t);
  }
  for (const o of scenario.observers) out[o.name] ??= Infinity;
  return out;
}

function invokedAfter(scenario: Scenario, ws: string, t: number): boolean {
  return scenario.fleet.history.events.some(
    (e) => e.kind === 'op' && e.type === 'invoke' && e.f === 'create' && e.ws === ws && e.t > t,
  );
}

/** A replica's current placement of sidecars (which sidecars stream to it). */
export async function sidecarsOn(scenario: Scenario, replica: Replica): Promise<string[]> {
  const stats = await scenario.sidecars?.stats();
  if (!stats) return [];
  const index = scenario.fleet.replicas.indexOf(replica);
  return Object.entries(stats.placement)
    .filter(([, r]) => r === index)
    .map(([id]) => id);
}

export { monoNow };
