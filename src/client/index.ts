/**
 * The Vigil TypeScript SDK: promise-based clients for RuntimeService (sidecars)
 * and ControlService (internal services), a resumable watch iterator, and the
 * heartbeat loop the `vigil sidecar` command runs.
 */
export { createRuntimeClient, type RuntimeClient } from './runtime-client.js';
export type { CallSettings, HeartbeatInput, RegisterInput } from './call-settings.js';
export {
  createControlClient,
  type ControlClient,
  type NamedTransition,
  type NamedWorkspace,
  type WatchEvent,
  type WatchOptions,
} from './control-client.js';
export {
  runHeartbeatLoop,
  type HeartbeatLoopOptions,
  type HealthReport,
  type SidecarEvent,
} from './heartbeat-loop.js';
export { VigilClientError } from './errors.js';
export { reasonName, statusName, type ReasonName, type StatusName } from './names.js';
export type { ProjectionWatchEvent, ProjectionWatchOptions } from './projection-watch.js';
export {
  ReloadAction,
  SecretUse,
  type Projection,
  type ProjectionError,
  type RuntimeConfig,
} from '../../gen/vigil/v1/projection.js';
export { DEFAULT_SERVER, tlsCredentials, type ConnectOptions, type TlsOptions } from './channel.js';
export type { BackoffOptions } from './backoff.js';
export {
  DeliveryMode,
  RuntimeState,
  TransitionReason,
  WorkspaceStatus,
  type StatusTransition,
  type Workspace,
} from '../../gen/vigil/v1/workspace.js';
