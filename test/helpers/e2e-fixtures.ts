import type { ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type {
  ControlServiceClient,
  WatchStatusRequest,
  WatchStatusResponse,
} from '../../gen/vigil/v1/control_service.js';
import type { HeartbeatRequest, RegisterRequest } from '../../gen/vigil/v1/runtime_service.js';
import {
  DeliveryMode,
  RuntimeState,
  WorkspaceStatus,
  type StatusTransition,
  type Workspace,
} from '../../gen/vigil/v1/workspace.js';
import { CONTROL_TOKEN, card, type Harness } from './harness.js';
import { bearer, call } from './rpc.js';

/** Request builders and read-backs shared by the e2e suites. */

export interface CreatedWorkspace {
  readonly workspace: Workspace;
  readonly token: string;
}

/** CreateWorkspace over gRPC with the control token. */
export async function createWorkspace(
  harness: Harness,
  workspaceId: string,
  name = '',
): Promise<CreatedWorkspace> {
  const { control } = harness.clients;
  const response = await call(
    control,
    control.createWorkspace,
    { workspaceId, name },
    CONTROL_TOKEN,
  );
  expect(response.workspace, 'CreateWorkspace returned no workspace').to.not.equal(undefined);
  expect(response.workspaceToken).to.be.a('string').and.not.equal('');
  return { workspace: response.workspace!, token: response.workspaceToken };
}

/** GetWorkspace over gRPC with the control token. */
export async function getWorkspace(harness: Harness, workspaceId: string): Promise<Workspace> {
  const { control } = harness.clients;
  const response = await call(control, control.getWorkspace, { workspaceId }, CONTROL_TOKEN);
  expect(response.workspace, 'GetWorkspace returned no workspace').to.not.equal(undefined);
  return response.workspace!;
}

/** Every committed transition (of one workspace, or of all when `workspaceId` is ''), paging through. */
export async function listTransitions(
  harness: Harness,
  workspaceId = '',
): Promise<StatusTransition[]> {
  const { control } = harness.clients;
  const all: StatusTransition[] = [];
  let pageToken = '';
  for (let page = 0; page < 1_000; page += 1) {
    const response = await call(
      control,
      control.listTransitions,
      { workspaceId, pageSize: 1000, pageToken },
      CONTROL_TOKEN,
    );
    all.push(...response.transitions);
    if (response.nextPageToken === '') return all;
    pageToken = response.nextPageToken;
  }
  throw new Error('ListTransitions did not finish paging');
}

export function registerRequest(
  workspaceId: string,
  overrides: Partial<RegisterRequest> = {},
): RegisterRequest {
  return {
    workspaceId,
    url: 'http://127.0.0.1:8000/',
    agentCard: card(),
    deliveryMode: DeliveryMode.DELIVERY_MODE_PUSH,
    ...overrides,
  };
}

export function heartbeatRequest(
  workspaceId: string,
  overrides: Partial<HeartbeatRequest> = {},
): HeartbeatRequest {
  return {
    workspaceId,
    agentCard: undefined,
    errorRate: 0,
    sampleError: '',
    activeTasks: 0,
    uptimeSeconds: 1,
    currentTask: '',
    runtimeState: RuntimeState.RUNTIME_STATE_HEALTHY,
    nativeStatusManagement: false,
    appliedConfigVersion: 0,
    ...overrides,
  };
}

/** Register with a valid card and URL. */
export async function register(
  harness: Harness,
  workspaceId: string,
  token: string,
  overrides: Partial<RegisterRequest> = {},
): Promise<Workspace> {
  const { runtime } = harness.clients;
  const response = await call(
    runtime,
    runtime.register,
    registerRequest(workspaceId, overrides),
    token,
  );
  expect(response.workspace?.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
  return response.workspace!;
}

/** Creates a workspace and registers it, so it is ONLINE with a card and URL stored. */
export async function onlineWorkspace(
  harness: Harness,
  workspaceId: string,
): Promise<CreatedWorkspace> {
  const created = await createWorkspace(harness, workspaceId);
  const workspace = await register(harness, workspaceId, created.token);
  return { workspace, token: created.token };
}

/** What a rejected call must leave untouched: the workspace record and the transition log. */
export interface StoredState {
  readonly workspace: Workspace;
  readonly transitions: StatusTransition[];
}

/**
 * Reads a workspace and the whole transition log, then moves the clock on, so
 * any later write would show a different `updated_at` / `last_heartbeat_at`.
 */
export async function captureState(harness: Harness, workspaceId: string): Promise<StoredState> {
  const state = {
    workspace: await getWorkspace(harness, workspaceId),
    transitions: await listTransitions(harness),
  };
  harness.clock.advance(1_000);
  return state;
}

/** Asserts the workspace record and the transition log are exactly as captured. */
export async function expectUnchanged(
  harness: Harness,
  workspaceId: string,
  before: StoredState,
): Promise<void> {
  const after = await getWorkspace(harness, workspaceId);
  expect(after.status, 'status').to.equal(before.workspace.status);
  expect(after.updatedAt, 'updated_at').to.deep.equal(before.workspace.updatedAt);
  expect(after.lastHeartbeatAt, 'last_heartbeat_at').to.deep.equal(
    before.workspace.lastHeartbeatAt,
  );
  expect(after.lastRegisterFailureAt, 'last_register_failure_at').to.deep.equal(
    before.workspace.lastRegisterFailureAt,
  );
  expect(after, 'the whole workspace record').to.deep.equal(before.workspace);
  const transitions = await listTransitions(harness);
  expect(transitions, 'the transition log').to.deep.equal(before.transitions);
}

/**
 * Opens a WatchStatus stream and settles with its first event, or rejects
 * with the stream's error. The stream is cancelled once the first event is in.
 * `token` undefined sends no authorization metadata at all.
 */
export function firstWatchEvent(
  control: ControlServiceClient,
  request: Partial<WatchStatusRequest>,
  token: string | undefined,
): Promise<WatchStatusResponse> {
  return new Promise((resolve, reject) => {
    const stream = control.watchStatus(
      { workspaceIds: [], afterSeq: 0, includeSnapshot: false, resume: false, ...request },
      bearer(token),
    );
    let settled = false;
    stream.on('data', (event: WatchStatusResponse) => {
      if (settled) return;
      settled = true;
      resolve(event);
      stream.cancel();
    });
    stream.on('error', (error: ServiceError) => {
      if (settled) return;
      settled = true;
      reject(error);
    });
    stream.on('end', () => {
      if (settled) return;
      settled = true;
      reject(new Error('watch stream ended without an event'));
    });
  });
}
