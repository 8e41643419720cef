import { fieldInvalid } from '../domain/errors.js';
import type * as domain from '../domain/model.js';
import { WORKSPACE_STATUSES } from '../domain/model.js';
import type { Duration } from '../../gen/google/protobuf/duration.js';
import type { WatchStatusResponse } from '../../gen/vigil/v1/control_service.js';
import type { HeartbeatRequest, HeartbeatResponse } from '../../gen/vigil/v1/runtime_service.js';
import type { HeartbeatCommand } from '../domain/runtime-use-cases.js';
import type { ProjectionStatus } from '../domain/projection-use-cases.js';
import {
  DeliveryMode,
  RuntimeState,
  TransitionReason,
  WorkspaceStatus,
  type StatusTransition,
  type Workspace,
} from '../../gen/vigil/v1/workspace.js';
import type { WatchEvent } from '../watch/watch-session.js';
import { heartbeatCard } from './heartbeat-wire.js';

/** Conversions between generated protobuf types and domain values. The only place that knows both. */

export function statusToProto(value: domain.WorkspaceStatus): WorkspaceStatus {
  return WorkspaceStatus[`WORKSPACE_STATUS_${value}`];
}

export function statusFromProto(value: WorkspaceStatus, field: string): domain.WorkspaceStatus {
  const name = WorkspaceStatus[value] as string | undefined;
  const status = name?.replace(/^WORKSPACE_STATUS_/, '');
  const known = WORKSPACE_STATUSES.find((s) => s === status);
  if (!known) throw fieldInvalid(field, `${String(value)} is not a workspace status`);
  return known;
}

export function reasonToProto(value: domain.TransitionReason): TransitionReason {
  return TransitionReason[`TRANSITION_REASON_${value}`];
}

export function deliveryModeFromProto(value: DeliveryMode): domain.DeliveryMode {
  switch (value) {
    case DeliveryMode.DELIVERY_MODE_UNSPECIFIED:
    case DeliveryMode.DELIVERY_MODE_PUSH:
      return 'PUSH';
    case DeliveryMode.DELIVERY_MODE_POLL:
      return 'POLL';
    default:
      throw fieldInvalid('delivery_mode', `${String(value)} is not a delivery mode`);
  }
}

export function runtimeStateFromProto(value: RuntimeState): domain.RuntimeState {
  switch (value) {
    case RuntimeState.RUNTIME_STATE_UNSPECIFIED:
    case RuntimeState.RUNTIME_STATE_HEALTHY:
      return 'HEALTHY';
    case RuntimeState.RUNTIME_STATE_WEDGED:
      return 'WEDGED';
    default:
      throw fieldInvalid('runtime_state', `${String(value)} is not a runtime state`);
  }
}

function date(ms: number | undefined): Date | undefined {
  return ms === undefined ? undefined : new Date(ms);
}

export function durationToProto(ms: number): Duration {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

/** What a workspace shows of its projection when nothing is known: no version, not ready. */
const NO_PROJECTION: ProjectionStatus = { configVersion: 0, appliedConfigVersion: 0, ready: false };

export function workspaceToProto(
  w: domain.Workspace,
  projection: ProjectionStatus = NO_PROJECTION,
): Workspace {
  return {
    id: w.id,
    name: w.name,
    status: statusToProto(w.status),
    url: w.url,
    deliveryMode:
      w.deliveryMode === 'POLL' ? DeliveryMode.DELIVERY_MODE_POLL : DeliveryMode.DELIVERY_MODE_PUSH,
    agentCard: w.agentCard,
    lastHeartbeatAt: date(w.lastHeartbeatAt),
    lastRegisterFailureAt: date(w.lastRegisterFailureAt),
    createdAt: date(w.createdAt),
    updatedAt: date(w.updatedAt),
    statusChangedAt: date(w.statusChangedAt),
    lastRegisteredAt: date(w.lastRegisteredAt),
    errorRate: w.errorRate,
    sampleError: w.sampleError,
    activeTasks: w.activeTasks,
    uptimeSeconds: w.uptimeSeconds,
    currentTask: w.currentTask,
    runtimeState:
      w.runtimeState === 'WEDGED'
        ? RuntimeState.RUNTIME_STATE_WEDGED
        : RuntimeState.RUNTIME_STATE_HEALTHY,
    nativeStatusManagement: w.nativeStatusManagement,
    tokenLastUsedAt: date(w.tokenLastUsedAt),
    configVersion: projection.configVersion,
    appliedConfigVersion: projection.appliedConfigVersion,
    projectionReady: projection.ready,
  };
}

export function transitionToProto(t: domain.Transition): StatusTransition {
  return {
    seq: t.seq,
    workspaceId: t.workspaceId,
    fromStatus:
      t.fromStatus === undefined
        ? WorkspaceStatus.WORKSPACE_STATUS_UNSPECIFIED
        : statusToProto(t.fromStatus),
    toStatus: statusToProto(t.toStatus),
    reason: reasonToProto(t.reason),
    detail: t.detail,
    at: new Date(t.at),
  };
}

export function watchEventToProto(event: WatchEvent): WatchStatusResponse {
  switch (event.type) {
    case 'snapshot':
      return { event: { $case: 'snapshot', value: workspaceToProto(event.workspace) } };
    case 'snapshotEnd':
      return { event: { $case: 'snapshotEnd', value: { seq: event.seq, reset: event.reset } } };
    case 'transition':
      return { event: { $case: 'transition', value: transitionToProto(event.transition) } };
    case 'progress':
      return { event: { $case: 'progress', value: { seq: event.seq } } };
  }
}

export function heartbeatCommand(request: HeartbeatRequest): HeartbeatCommand {
  return {
    workspaceId: request.workspaceId,
    agentCard: heartbeatCard(request),
    report: {
      errorRate: request.errorRate,
      sampleError: request.sampleError,
      activeTasks: request.activeTasks,
      uptimeSeconds: request.uptimeSeconds,
      currentTask: request.currentTask,
      runtimeState: runtimeStateFromProto(request.runtimeState),
      nativeStatusManagement: request.nativeStatusManagement,
    },
  };
}

export function heartbeatResponse(
  result: { status: domain.WorkspaceStatus; heartbeatIntervalMs: number },
  configVersion: number,
): HeartbeatResponse {
  return {
    status: statusToProto(result.status),
    heartbeatInterval: durationToProto(result.heartbeatIntervalMs),
    configVersion,
  };
}
