import { Client, credentials, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type {
  CreateWorkspaceRequest,
  DeleteWorkspaceRequest,
  GetWorkspaceRequest,
  ListTransitionsRequest,
  ListWorkspacesRequest,
  RevokeWorkspaceTokensRequest,
  RotateWorkspaceTokenRequest,
  WatchStatusRequest,
} from '../../gen/vigil/v1/control_service.js';
import type {
  HeartbeatError,
  HeartbeatRequest,
  HeartbeatResponse,
  HeartbeatStreamResponse,
  RegisterRequest,
} from '../../gen/vigil/v1/runtime_service.js';
import { WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import type { ErrorReason } from '../../src/domain/errors.js';
import {
  captureState,
  expectUnchanged,
  firstWatchEvent,
  listTransitions,
  type StoredState,
} from './e2e-fixtures.js';
import { CONTROL_TOKEN, type Harness } from './harness.js';
import { bearer, call, expectRpcError } from './rpc.js';

/** The ErrorInfo a refusal carried. */
type ErrorInfo = Awaited<ReturnType<typeof expectRpcError>>;

/**
 * Refusals as rows: which RPC, what request, which credentials, the gRPC code
 * and ErrorInfo reason the server must answer, and what must stay as it was.
 * One runner performs every row the same way, so each refusal is said once.
 */

/** What each RPC is called with. WatchStatus: defaults fill in the rest. HeartbeatStream: the one heartbeat sent on a new stream. */
export interface RpcRequests {
  Register: RegisterRequest;
  Heartbeat: HeartbeatRequest;
  HeartbeatStream: HeartbeatRequest;
  CreateWorkspace: CreateWorkspaceRequest;
  GetWorkspace: GetWorkspaceRequest;
  ListWorkspaces: ListWorkspacesRequest;
  DeleteWorkspace: DeleteWorkspaceRequest;
  RotateWorkspaceToken: RotateWorkspaceTokenRequest;
  RevokeWorkspaceTokens: RevokeWorkspaceTokensRequest;
  ListTransitions: ListTransitionsRequest;
  WatchStatus: Partial<WatchStatusRequest>;
}

export type Rpc = keyof RpcRequests;

/** Bytes sent as the request of a unary RPC as they are: what no generated client would encode. */
export interface RawRequest {
  readonly raw: Uint8Array;
}

/** The setup a row runs in: at least a harness. */
export interface RefusalContext {
  readonly h: Harness;
}

/** A value, or how to get it from the context (called once, before the state is captured). */
export type Given<C, T> = T | ((ctx: C) => T | Promise<T>);

/** One refusal of `rpc`; `Refusal<C>` below is the union that checks a literal row's request against its rpc. */
export interface RefusalOf<C, R extends Rpc> {
  /** Completes `describe('when …')`: what is wrong with the call. */
  readonly when: string;
  readonly rpc: R;
  readonly request: Given<C, RpcRequests[R] | RawRequest>;
  /** The bearer token; `undefined` sends no authorization metadata at all. */
  readonly token: Given<C, string | undefined>;
  readonly code: status;
  readonly reason: ErrorReason;
  /** ErrorInfo metadata that must be present (other keys may be too). */
  readonly metadata?: Readonly<Record<string, string>>;
  /**
   * Workspaces whose whole record must stay exactly as captured. The transition
   * log and the set of workspaces must always stay, unless `writes` is set.
   */
  readonly unchanged: readonly string[];
  /** HeartbeatStream only: the refusal answers the message and the stream stays open (otherwise the stream ends with it). */
  readonly answers?: 'message';
  /** How the title says what stays unchanged, where "writes nothing" is not the clearest. */
  readonly outcome?: string;
  /** A refusal that writes on purpose: what the title says it writes; `then` asserts it. */
  readonly writes?: string;
  /** Before the state is captured: put the store where the row needs it. */
  readonly arrange?: (ctx: C) => Promise<void>;
  /** More that must hold afterwards. */
  readonly then?: (ctx: C) => Promise<void>;
}

/** One refusal the server makes. */
export type Refusal<C> = { [R in Rpc]: RefusalOf<C, R> }[Rpc];

/** A refused streamed heartbeat: the error response that answered it. */
export class MessageRefusal extends Error {
  /** What expectRpcError prints, should a row that expects the stream to end get this instead. */
  readonly details: string;

  constructor(readonly answer: HeartbeatError) {
    super(`the stream stayed open and answered the message ${answer.code} / ${answer.reason}`);
    this.details = this.message;
  }
}

const SENDERS: {
  readonly [R in Rpc]: (
    h: Harness,
    request: RpcRequests[R],
    token: string | undefined,
  ) => Promise<unknown>;
} = {
  Register: (h, request, token) =>
    call(h.clients.runtime, h.clients.runtime.register, request, token),
  Heartbeat: (h, request, token) =>
    call(h.clients.runtime, h.clients.runtime.heartbeat, request, token),
  HeartbeatStream: (h, request, token) => heartbeatOnNewStream(h, request, token),
  CreateWorkspace: (h, request, token) =>
    call(h.clients.control, h.clients.control.createWorkspace, request, token),
  GetWorkspace: (h, request, token) =>
    call(h.clients.control, h.clients.control.getWorkspace, request, token),
  ListWorkspaces: (h, request, token) =>
    call(h.clients.control, h.clients.control.listWorkspaces, request, token),
  DeleteWorkspace: (h, request, token) =>
    call(h.clients.control, h.clients.control.deleteWorkspace, request, token),
  RotateWorkspaceToken: (h, request, token) =>
    call(h.clients.control, h.clients.control.rotateWorkspaceToken, request, token),
  RevokeWorkspaceTokens: (h, request, token) =>
    call(h.clients.control, h.clients.control.revokeWorkspaceTokens, request, token),
  ListTransitions: (h, request, token) =>
    call(h.clients.control, h.clients.control.listTransitions, request, token),
  WatchStatus: (h, request, token) => firstWatchEvent(h.clients.control, request, token),
};

const SERVICE_OF: Readonly<Record<Rpc, string>> = {
  Register: 'RuntimeService',
  Heartbeat: 'RuntimeService',
  HeartbeatStream: 'RuntimeService',
  CreateWorkspace: 'ControlService',
  GetWorkspace: 'ControlService',
  ListWorkspaces: 'ControlService',
  DeleteWorkspace: 'ControlService',
  RotateWorkspaceToken: 'ControlService',
  RevokeWorkspaceTokens: 'ControlService',
  ListTransitions: 'ControlService',
  WatchStatus: 'ControlService',
};

function isRaw(request: object): request is RawRequest {
  return 'raw' in request;
}

/**
 * Calls `rpc` once. Unary: the response. WatchStatus: the first event.
 * HeartbeatStream: opens a stream, sends one heartbeat and settles with its
 * answer, or rejects with the stream's error; an error answer rejects with a
 * MessageRefusal once the same message, sent again on the same stream, is
 * answered too (the refusal left the stream open). The stream is cancelled
 * once settled.
 */
export function sendRpc<R extends Rpc>(
  h: Harness,
  rpc: R,
  request: RpcRequests[R] | RawRequest,
  token: string | undefined,
): Promise<unknown> {
  if (isRaw(request)) return sendRaw(h, rpc, request.raw, token);
  const send: (h: Harness, request: RpcRequests[R], token: string | undefined) => Promise<unknown> =
    SENDERS[rpc];
  return send(h, request, token);
}

function sendRaw(h: Harness, rpc: Rpc, bytes: Uint8Array, token: string | undefined) {
  if (rpc === 'HeartbeatStream' || rpc === 'WatchStatus') {
    throw new Error(`raw requests are sent to unary RPCs only, not ${rpc}`);
  }
  const raw = new Client(`127.0.0.1:${h.vigil.port}`, credentials.createInsecure());
  return new Promise<Buffer>((resolve, reject) => {
    raw.makeUnaryRequest(
      `/vigil.v1.${SERVICE_OF[rpc]}/${rpc}`,
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.from(bytes),
      bearer(token),
      (error: ServiceError | null, response?: Buffer) => {
        if (error) reject(error);
        else resolve(response ?? Buffer.alloc(0));
      },
    );
  }).finally(() => {
    raw.close();
  });
}

function heartbeatOnNewStream(
  h: Harness,
  heartbeat: HeartbeatRequest,
  token: string | undefined,
): Promise<HeartbeatResponse> {
  const stream = h.clients.runtime.heartbeatStream(bearer(token));
  return new Promise<HeartbeatResponse>((resolve, reject) => {
    let refused: MessageRefusal | undefined;
    stream.on('data', (response: HeartbeatStreamResponse) => {
      const { result } = response;
      if (refused !== undefined) {
        // The same message again: answered too, so the refusal left the stream open.
        reject(refused);
      } else if (result?.$case === 'heartbeat') {
        resolve(result.value);
      } else if (result?.$case === 'error') {
        refused = new MessageRefusal(result.value);
        stream.write({ requestId: 2, heartbeat });
      } else {
        reject(new Error('the stream answered with an empty response'));
      }
    });
    stream.on('error', (error: ServiceError) => {
      reject(
        refused === undefined ? error : new Error('the stream ended after refusing a message'),
      );
    });
    stream.on('end', () => {
      reject(new Error('the stream ended without an answer'));
    });
    stream.write({ requestId: 1, heartbeat });
  }).finally(() => {
    stream.cancel();
  });
}

/** Asserts that `outcome` is a streamed heartbeat answered `code` / `reason`, with the stream left open. */
async function expectMessageRefusal(
  outcome: Promise<unknown>,
  code: status,
  reason: string,
): Promise<ErrorInfo> {
  let caught: unknown;
  try {
    await outcome;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected the message to be answered with ${reason}`).to.be.instanceOf(
    MessageRefusal,
  );
  const { answer } = caught as MessageRefusal;
  expect(answer.code, 'gRPC code of the answer').to.equal(code);
  expect(answer.reason).to.equal(reason);
  return { reason: answer.reason, domain: 'vigil', metadata: answer.metadata };
}

const EVERY_STATUS = Object.values(WorkspaceStatus)
  .filter((value): value is WorkspaceStatus => typeof value === 'number')
  .filter(
    (value) =>
      value !== WorkspaceStatus.WORKSPACE_STATUS_UNSPECIFIED &&
      value !== WorkspaceStatus.UNRECOGNIZED,
  );

/** The ids of every workspace in the store, REMOVED ones too. */
export async function workspaceIds(h: Harness): Promise<string[]> {
  const { control } = h.clients;
  const ids: string[] = [];
  let pageToken = '';
  for (let page = 0; page < 1_000; page += 1) {
    const response = await call(
      control,
      control.listWorkspaces,
      { pageSize: 1000, pageToken, statuses: EVERY_STATUS },
      CONTROL_TOKEN,
    );
    ids.push(...response.workspaces.map((w) => w.id));
    if (response.nextPageToken === '') return ids;
    pageToken = response.nextPageToken;
  }
  throw new Error('ListWorkspaces did not finish paging');
}

/** Resolves a `Given` value. */
export async function given<C, T>(value: Given<C, T>, ctx: C): Promise<T> {
  return typeof value === 'function' ? (value as (ctx: C) => T | Promise<T>)(ctx) : value;
}

/**
 * Runs one row: arrange → capture the stored state → call → expect the code
 * AND the ErrorInfo reason (never message text) → expect nothing changed.
 * Returns the ErrorInfo.
 */
export async function expectRefusal<C extends RefusalContext>(
  ctx: C,
  row: RefusalOf<C, Rpc>,
): Promise<ErrorInfo> {
  const { h } = ctx;
  await row.arrange?.(ctx);
  const request = await given(row.request, ctx);
  const token = await given(row.token, ctx);
  const captured: [string, StoredState][] = [];
  for (const id of row.unchanged) captured.push([id, await captureState(h, id)]);
  const log = row.writes === undefined ? await listTransitions(h) : undefined;
  const ids = await workspaceIds(h);
  // Any write would now show a new updated_at / last_heartbeat_at.
  h.clock.advance(1_000);

  const outcome = sendRpc(h, row.rpc, request, token);
  const info =
    row.answers === 'message'
      ? await expectMessageRefusal(outcome, row.code, row.reason)
      : await expectRpcError(outcome, row.code, row.reason);
  if (row.metadata !== undefined) {
    expect(info.metadata, 'ErrorInfo metadata').to.include(row.metadata);
  }

  for (const [id, before] of captured) await expectUnchanged(h, id, before);
  if (log !== undefined) expect(await listTransitions(h), 'the transition log').to.deep.equal(log);
  expect(await workspaceIds(h), 'the workspaces in the store').to.deep.equal(ids);
  await row.then?.(ctx);
  return info;
}

/** `fails INVALID_ARGUMENT / FIELD_INVALID naming error_rate and writes nothing`, and the like. */
export function refusalTitle<C>(row: RefusalOf<C, Rpc>): string {
  const verb = row.answers === 'message' ? 'answers the message' : 'fails';
  const field = row.metadata?.['field'];
  const naming = field === undefined ? '' : ` naming ${field}`;
  const outcome = row.writes ?? row.outcome ?? 'writes nothing';
  return `${verb} ${status[row.code]} / ${row.reason}${naming} and ${outcome}`;
}

/** `describe('when …')` → `it('fails CODE / REASON and writes nothing')` for each row. */
export function describeRefusals<C extends RefusalContext>(
  rows: readonly RefusalOf<C, Rpc>[],
  context: () => C,
): void {
  for (const row of rows) {
    describe(`when ${row.when}`, () => {
      it(refusalTitle(row), async () => {
        await expectRefusal(context(), row);
      });
    });
  }
}
