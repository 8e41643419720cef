import { ERROR_RATE_DEGRADE, ERROR_RATE_RECOVER, type Timings } from './config.js';
import type { RuntimeState, TransitionReason, WorkspaceStatus } from './model.js';

/**
 * The status machine: a pure function of (state, event, now) → next status and
 * reason. It performs no I/O and reads no clock; storage runs it inside the
 * transaction that applies the event, so the decision and its transition row
 * commit together.
 */

/** What the machine needs to know about a workspace. Times are epoch ms. */
export interface MachineState {
  readonly status: WorkspaceStatus;
  readonly lastHeartbeatAt: number | undefined;
  readonly lastRegisteredAt: number | undefined;
  readonly lastRegisterFailureAt: number | undefined;
  readonly createdAt: number;
}

/** The health a heartbeat reports, as far as the machine cares. */
export interface HeartbeatHealth {
  readonly runtimeState: RuntimeState;
  readonly errorRate: number;
  readonly nativeStatusManagement: boolean;
}

export type StatusEvent =
  | { readonly type: 'REGISTER_OK' }
  | { readonly type: 'REGISTER_URL_FAILED' }
  | { readonly type: 'HEARTBEAT'; readonly health: HeartbeatHealth }
  | {
      readonly type: 'SWEEP';
      /**
       * When the process deciding took charge of the workspace's liveness (in
       * single-node mode, the server start): time before it never counts.
       */
      readonly ownedSince: number;
      /** The last heartbeat this process saw in memory, newer than the stored one; undefined when none. */
      readonly lastSeen?: number | undefined;
    }
  | { readonly type: 'DELETE' };

/** A status change the machine decided on. */
export interface Decision {
  readonly to: WorkspaceStatus;
  readonly reason: TransitionReason;
}

/** The status and reason every new workspace starts with. */
export const INITIAL: Decision = { to: 'PROVISIONING', reason: 'CREATED' };

/**
 * Decides the status change `event` causes at `now`, or `undefined` when the
 * status holds. One event yields at most one decision (the net one).
 * REMOVED is terminal: no event moves a workspace out of it.
 */
export function nextStatus(
  state: MachineState,
  event: StatusEvent,
  now: number,
  timings: Timings,
): Decision | undefined {
  const { status } = state;
  if (status === 'REMOVED') return undefined;
  switch (event.type) {
    case 'DELETE':
      return { to: 'REMOVED', reason: 'DELETED' };
    case 'REGISTER_OK':
      return change(status, { to: 'ONLINE', reason: 'REGISTERED' });
    case 'REGISTER_URL_FAILED':
      return status === 'ONLINE' ? { to: 'DEGRADED', reason: 'REGISTER_FAILED' } : undefined;
    case 'HEARTBEAT':
      return onHeartbeat(state, event.health, now, timings);
    case 'SWEEP':
      return onSweep(state, event.ownedSince, event.lastSeen ?? 0, now, timings);
  }
}

function onHeartbeat(
  state: MachineState,
  health: HeartbeatHealth,
  now: number,
  timings: Timings,
): Decision | undefined {
  const degradeReason = degradeRule(state, health, now, timings);
  switch (state.status) {
    case 'PROVISIONING':
    case 'OFFLINE':
    case 'FAILED':
      return { to: degradeReason ? 'DEGRADED' : 'ONLINE', reason: 'HEARTBEAT_RESUMED' };
    case 'ONLINE':
      return degradeReason ? { to: 'DEGRADED', reason: degradeReason } : undefined;
    case 'DEGRADED':
      return recovers(state, health, now, timings)
        ? { to: 'ONLINE', reason: 'RECOVERED' }
        : undefined;
    case 'REMOVED':
      return undefined;
  }
}

/** The first degrade rule that holds, in priority order, or undefined. */
function degradeRule(
  state: MachineState,
  health: HeartbeatHealth,
  now: number,
  timings: Timings,
): TransitionReason | undefined {
  if (health.runtimeState === 'WEDGED') return 'RUNTIME_WEDGED';
  if (!health.nativeStatusManagement && health.errorRate >= ERROR_RATE_DEGRADE) {
    return 'ERROR_RATE_HIGH';
  }
  if (markerActive(state, now, timings)) return 'REGISTER_FAILED';
  return undefined;
}

/** Recovery needs more than the absence of a degrade rule: the band between the thresholds holds. */
function recovers(
  state: MachineState,
  health: HeartbeatHealth,
  now: number,
  timings: Timings,
): boolean {
  return (
    health.runtimeState !== 'WEDGED' &&
    (health.nativeStatusManagement || health.errorRate < ERROR_RATE_RECOVER) &&
    !markerActive(state, now, timings)
  );
}

/** True while a register-failure marker is younger than the window. */
export function markerActive(state: MachineState, now: number, timings: Timings): boolean {
  const at = state.lastRegisterFailureAt;
  return at !== undefined && now - at < timings.registerFailureWindowMs;
}

/**
 * The liveness rule, the one place it is written: a workspace is silent too
 * long when `now − max(lastSeen, ownedSince) > offlineAfterMs`, where
 * ownedSince is when the deciding process took charge of its liveness.
 */
export function silentTooLong(
  now: number,
  lastSeen: number,
  ownedSince: number,
  offlineAfterMs: number,
): boolean {
  return now - Math.max(lastSeen, ownedSince) > offlineAfterMs;
}

function onSweep(
  state: MachineState,
  ownedSince: number,
  seenInMemory: number,
  now: number,
  timings: Timings,
): Decision | undefined {
  // Restart grace: `now − max(lastSeen, ownedSince) > offline_after`, so time
  // before this process took charge (its own downtime) never counts.
  switch (state.status) {
    case 'ONLINE':
    case 'DEGRADED': {
      const lastSeen = Math.max(
        state.lastHeartbeatAt ?? 0,
        state.lastRegisteredAt ?? 0,
        seenInMemory,
        ownedSince,
      );
      return silentTooLong(now, lastSeen, ownedSince, timings.offlineAfterMs)
        ? { to: 'OFFLINE', reason: 'HEARTBEAT_TIMEOUT' }
        : undefined;
    }
    case 'PROVISIONING': {
      const since = Math.max(state.createdAt, ownedSince);
      return now - since > timings.provisionTimeoutMs
        ? { to: 'FAILED', reason: 'PROVISION_TIMEOUT' }
        : undefined;
    }
    default:
      return undefined;
  }
}

function change(from: WorkspaceStatus, decision: Decision): Decision | undefined {
  return from === decision.to ? undefined : decision;
}
