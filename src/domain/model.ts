/**
 * Domain vocabulary: statuses, reasons and the records the use-cases work on.
 * Plain types only — no generated protobuf code and no storage types here.
 */

export const WORKSPACE_STATUSES = [
  'PROVISIONING',
  'ONLINE',
  'DEGRADED',
  'OFFLINE',
  'FAILED',
  'REMOVED',
] as const;
export type WorkspaceStatus = (typeof WORKSPACE_STATUSES)[number];

/** Every status but the REMOVED tombstone: what listings show by default. */
export const LIVE_STATUSES: readonly WorkspaceStatus[] = WORKSPACE_STATUSES.filter(
  (s) => s !== 'REMOVED',
);

export const TRANSITION_REASONS = [
  'CREATED',
  'REGISTERED',
  'REGISTER_FAILED',
  'HEARTBEAT_RESUMED',
  'RUNTIME_WEDGED',
  'ERROR_RATE_HIGH',
  'RECOVERED',
  'HEARTBEAT_TIMEOUT',
  'PROVISION_TIMEOUT',
  'DELETED',
] as const;
export type TransitionReason = (typeof TRANSITION_REASONS)[number];

export type RuntimeState = 'HEALTHY' | 'WEDGED';
export type DeliveryMode = 'PUSH' | 'POLL';

/** An A2A agent card: a JSON object, validated by `validateAgentCard`. */
export type AgentCard = Record<string, unknown>;

/** One workspace as the domain sees it. Times are epoch milliseconds. */
export interface Workspace {
  readonly id: string;
  readonly name: string;
  readonly status: WorkspaceStatus;
  readonly url: string;
  readonly deliveryMode: DeliveryMode;
  readonly agentCard: AgentCard | undefined;
  readonly lastHeartbeatAt: number | undefined;
  readonly lastRegisteredAt: number | undefined;
  readonly lastRegisterFailureAt: number | undefined;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly statusChangedAt: number;
  readonly errorRate: number;
  readonly sampleError: string;
  readonly activeTasks: number;
  readonly uptimeSeconds: number;
  readonly currentTask: string;
  readonly runtimeState: RuntimeState;
  readonly nativeStatusManagement: boolean;
  /** When one of its tokens was last used, to within the usage flush interval. */
  readonly tokenLastUsedAt: number | undefined;
}

/** One committed status change. `seq` strictly increases and is never reused. */
export interface Transition {
  readonly seq: number;
  readonly workspaceId: string;
  /** `undefined` for the creation transition. */
  readonly fromStatus: WorkspaceStatus | undefined;
  readonly toStatus: WorkspaceStatus;
  readonly reason: TransitionReason;
  readonly detail: string;
  readonly at: number;
}

/** The liveness and health a heartbeat reports. */
export interface HeartbeatReport {
  readonly errorRate: number;
  readonly sampleError: string;
  readonly activeTasks: number;
  readonly uptimeSeconds: number;
  readonly currentTask: string;
  readonly runtimeState: RuntimeState;
  readonly nativeStatusManagement: boolean;
}
