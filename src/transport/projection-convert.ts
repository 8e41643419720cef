import { status } from '@grpc/grpc-js';
import { fieldInvalid, type VigilError } from '../domain/errors.js';
import type * as domain from '../domain/projection.js';
import type { AuditEvent as DomainAuditEvent } from '../domain/projection-store.js';
import type {
  Explanation,
  ProjectionEvent,
  ProjectionView,
  SecretInfo,
} from '../domain/projection-use-cases.js';
import type { ExplainProjectionResponse } from '../../gen/vigil/v1/control_service.js';
import {
  ReloadAction,
  SecretUse,
  type AuditEvent,
  type Projection,
  type ProjectionError,
  type ReloadPolicy,
  type RuntimeConfig,
  type SecretMetadata,
} from '../../gen/vigil/v1/projection.js';
import type { WatchProjectionResponse } from '../../gen/vigil/v1/runtime_service.js';

/** Conversions of the projection's messages. Values travel only in Projection.env. */

export function secretUseToProto(use: domain.SecretUse | undefined): SecretUse {
  return use === undefined ? SecretUse.SECRET_USE_UNSPECIFIED : SecretUse[`SECRET_USE_${use}`];
}

export function secretToProto(secret: SecretInfo): SecretMetadata {
  return {
    name: secret.name,
    updateTime: new Date(secret.updatedAt),
    fingerprint: secret.fingerprint,
    updatedBy: secret.updatedBy,
    use: secretUseToProto(secret.use),
  };
}

export function reloadPolicyToProto(policy: domain.ReloadPolicy): ReloadPolicy {
  switch (policy.kind) {
    case 'RESTART':
      return { action: ReloadAction.RELOAD_ACTION_RESTART, signal: '' };
    case 'SIGNAL':
      return { action: ReloadAction.RELOAD_ACTION_SIGNAL, signal: policy.signal };
    case 'NONE':
      return { action: ReloadAction.RELOAD_ACTION_NONE, signal: '' };
  }
}

export function reloadPolicyFromProto(policy: ReloadPolicy | undefined): domain.ReloadPolicy {
  switch (policy?.action ?? ReloadAction.RELOAD_ACTION_UNSPECIFIED) {
    case ReloadAction.RELOAD_ACTION_UNSPECIFIED:
    case ReloadAction.RELOAD_ACTION_RESTART:
      return { kind: 'RESTART' };
    case ReloadAction.RELOAD_ACTION_SIGNAL:
      return { kind: 'SIGNAL', signal: policy?.signal ?? '' };
    case ReloadAction.RELOAD_ACTION_NONE:
      return { kind: 'NONE' };
    default:
      throw fieldInvalid('config.reload_policy.action', 'is not a reload action');
  }
}

/** A RuntimeConfig from the wire; validated by the use-case. */
export function runtimeConfigFromProto(config: RuntimeConfig | undefined): domain.RuntimeConfig {
  if (!config) throw fieldInvalid('config', 'is required');
  return {
    adapter: config.adapter as domain.AdapterName,
    model: config.model,
    provider: config.provider,
    baseUrl: config.baseUrl,
    env: { ...config.env },
    reloadPolicy: reloadPolicyFromProto(config.reloadPolicy),
  };
}

export function runtimeConfigToProto(config: domain.RuntimeConfig): RuntimeConfig {
  return {
    adapter: config.adapter,
    model: config.model,
    provider: config.provider,
    baseUrl: config.baseUrl,
    env: { ...config.env },
    reloadPolicy: reloadPolicyToProto(config.reloadPolicy),
  };
}

export function projectionToProto(p: ProjectionView): Projection {
  return {
    workspaceId: p.workspaceId,
    configVersion: p.configVersion,
    env: { ...p.env },
    resolvedProvider: p.resolvedProvider,
    model: p.model,
    reloadPolicy: reloadPolicyToProto(p.reloadPolicy),
    digest: p.digest,
  };
}

export function projectionErrorToProto(configVersion: number, error: VigilError): ProjectionError {
  return {
    configVersion,
    code: status[error.codeName],
    reason: error.reason,
    message: error.message,
    metadata: { ...error.metadata },
  };
}

export function projectionEventToProto(event: ProjectionEvent): WatchProjectionResponse {
  switch (event.type) {
    case 'projection':
      return { event: { $case: 'projection', value: projectionToProto(event.projection) } };
    case 'error':
      return {
        event: { $case: 'error', value: projectionErrorToProto(event.configVersion, event.error) },
      };
    case 'progress':
      return { event: { $case: 'progress', value: { configVersion: event.configVersion } } };
  }
}

export function explanationToProto(e: Explanation): ExplainProjectionResponse {
  return {
    workspaceId: e.workspaceId,
    configVersion: e.configVersion,
    appliedConfigVersion: e.appliedConfigVersion,
    ready: e.ready,
    digest: e.digest,
    resolvedProvider: e.resolvedProvider,
    config: e.config ? runtimeConfigToProto(e.config) : undefined,
    variables: e.variables.map((v) => ({ ...v })),
    dropped: e.dropped.map((d) => ({
      name: d.name,
      source: d.source,
      use: secretUseToProto(d.use),
      fingerprint: d.fingerprint,
    })),
    error: e.error ? projectionErrorToProto(e.configVersion, e.error) : undefined,
  };
}

export function auditEventToProto(e: DomainAuditEvent): AuditEvent {
  return {
    seq: e.seq,
    time: new Date(e.at),
    actor: e.actor,
    action: e.action,
    workspaceId: e.workspaceId,
    name: e.name,
    configVersion: e.configVersion,
    fingerprint: e.fingerprint,
    detail: e.detail,
  };
}
