import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { RuntimeState, WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { hashToken } from '../../src/domain/tokens.js';
import {
  CONTROL_AUTH,
  RUNTIME_AUTH,
  SUCCEEDS,
  type ControlCredential,
  type ControlRpc,
  type Refused,
  type RuntimeCredential,
  type RuntimeRpc,
} from '../helpers/auth-matrix.js';
import {
  createWorkspace,
  firstWatchEvent,
  getWorkspace,
  heartbeatRequest,
  listTransitions,
  onlineWorkspace,
  registerRequest,
} from '../helpers/e2e-fixtures.js';
import { CONTROL_TOKEN, type Harness, type HarnessOptions } from '../helpers/harness.js';
import { harnessPerTest } from '../helpers/harness-per-test.js';
import {
  describeRefusals,
  given,
  sendRpc,
  type Given,
  type Refusal,
  type RefusalContext,
  type RefusalOf,
  type RpcRequests,
} from '../helpers/refusals.js';
import { call } from '../helpers/rpc.js';

/**
 * The auth matrix over real gRPC (test/helpers/auth-matrix.ts, one test per
 * cell): RuntimeService takes workspace tokens only for their own workspace,
 * ControlService takes control tokens only, admin calls only with the admin
 * scope, and a refused call writes nothing.
 */

const UNKNOWN_TOKEN = 'vgw_not-a-token-this-server-issued';
const READ_TOKEN = 'vgc_read-only-dashboard-token';

/** The admin control token and a read-scoped one named `dashboard`. */
const AUTH_HARNESS: HarnessOptions = {
  settings: {
    controlTokens: [
      { name: 'test', scope: 'admin', hash: hashToken(CONTROL_TOKEN) },
      { name: 'dashboard', scope: 'read', hash: hashToken(READ_TOKEN) },
    ],
  },
};

/** How a column of the matrix gets its token, and how its `describe('when …')` reads. */
interface Credential<C> {
  readonly when: string;
  readonly token: Given<C, string | undefined>;
  /** What the title says stays unchanged, where "writes nothing" is not the clearest. */
  readonly outcome?: string;
}

/** One cell of the matrix as a refusal row (plus what the suite adds to every row). */
function refusalRow<C, R extends keyof RpcRequests>(
  rpc: R,
  request: RpcRequests[R],
  credential: Credential<C>,
  refused: Refused,
  rest: Pick<RefusalOf<C, R>, 'unchanged'> & Partial<RefusalOf<C, R>>,
): RefusalOf<C, R> {
  return {
    when: credential.when,
    rpc,
    request,
    token: credential.token,
    ...refused,
    ...(credential.outcome === undefined ? {} : { outcome: credential.outcome }),
    ...rest,
  };
}

async function rotate(h: Harness, workspaceId: string): Promise<string> {
  const { control } = h.clients;
  const rotated = await call(
    control,
    control.rotateWorkspaceToken,
    { workspaceId, revokePrevious: true },
    CONTROL_TOKEN,
  );
  return rotated.workspaceToken;
}

describe('RuntimeService auth', () => {
  interface Ctx extends RefusalContext {
    /** ws-a: ONLINE, registered with a card. */
    readonly tokenA: string;
    /** ws-b: PROVISIONING, never registered; the target of every call. */
    tokenB: string;
  }
  const current = harnessPerTest(
    async (h): Promise<Omit<Ctx, 'h'>> => ({
      tokenA: (await onlineWorkspace(h, 'ws-a')).token,
      tokenB: (await createWorkspace(h, 'ws-b')).token,
    }),
    AUTH_HARNESS,
  );

  const CREDENTIALS: Readonly<Record<RuntimeCredential, Credential<Ctx>>> = {
    none: { when: 'no authorization metadata is sent', token: undefined },
    unknown: { when: 'the token is unknown', token: UNKNOWN_TOKEN },
    otherWorkspace: {
      when: 'the token belongs to another workspace',
      token: (c) => c.tokenA,
      outcome: 'writes to neither workspace',
    },
    control: { when: 'the control token is used', token: CONTROL_TOKEN },
    readControl: { when: 'a read-scoped control token is used', token: READ_TOKEN },
    rotatedOut: {
      when: 'the token has been rotated out',
      token: async (c) => {
        const old = c.tokenB;
        c.tokenB = await rotate(c.h, 'ws-b');
        return old;
      },
    },
    revoked: {
      when: 'the tokens have been revoked',
      token: async (c) => {
        const { control } = c.h.clients;
        await call(control, control.revokeWorkspaceTokens, { workspaceId: 'ws-b' }, CONTROL_TOKEN);
        return c.tokenB;
      },
    },
    own: { when: "the workspace's own token is used", token: (c) => c.tokenB },
  };

  const REQUESTS: { readonly [R in RuntimeRpc]: (workspaceId: string) => RpcRequests[R] } = {
    Register: (workspaceId) => registerRequest(workspaceId),
    Heartbeat: (workspaceId) => heartbeatRequest(workspaceId),
    HeartbeatStream: (workspaceId) => heartbeatRequest(workspaceId),
  };

  /** Refusals that are not one cell of the matrix, by RPC. */
  const MORE: Readonly<Record<RuntimeRpc, readonly Refusal<Ctx>[]>> = {
    Register: [
      {
        when: 'an unauthenticated call also carries an invalid card',
        rpc: 'Register',
        request: registerRequest('ws-b', { agentCard: {} }),
        token: UNKNOWN_TOKEN,
        // The auth failure, not the validation failure.
        code: status.UNAUTHENTICATED,
        reason: 'TOKEN_INVALID',
        unchanged: ['ws-a', 'ws-b'],
      },
      {
        when: 'a wrong-workspace call advertises a blocked URL',
        rpc: 'Register',
        arrange: async (c) => {
          await call(
            c.h.clients.runtime,
            c.h.clients.runtime.register,
            registerRequest('ws-b'),
            c.tokenB,
          );
        },
        request: registerRequest('ws-b', { url: 'http://metadata.evil/' }),
        token: (c) => c.tokenA,
        code: status.PERMISSION_DENIED,
        reason: 'WRONG_WORKSPACE',
        unchanged: ['ws-a', 'ws-b'],
        outcome: "leaves the target's marker and status alone",
        then: async (c) => {
          const workspace = await getWorkspace(c.h, 'ws-b');
          expect(workspace.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
          expect(workspace.lastRegisterFailureAt).to.equal(undefined);
        },
      },
    ],
    Heartbeat: [wedgedAndUnauthenticated('Heartbeat')],
    HeartbeatStream: [wedgedAndUnauthenticated('HeartbeatStream')],
  };

  function wedgedAndUnauthenticated(rpc: 'Heartbeat' | 'HeartbeatStream'): Refusal<Ctx> {
    return {
      when: 'an unauthenticated heartbeat reports a wedged, failing runtime',
      rpc,
      request: heartbeatRequest('ws-a', {
        errorRate: 0.9,
        runtimeState: RuntimeState.RUNTIME_STATE_WEDGED,
      }),
      token: UNKNOWN_TOKEN,
      code: status.UNAUTHENTICATED,
      reason: 'TOKEN_INVALID',
      unchanged: ['ws-a'],
      outcome: 'leaves the ONLINE workspace ONLINE',
    };
  }

  for (const rpc of Object.keys(RUNTIME_AUTH) as RuntimeRpc[]) {
    describe(rpc, () => {
      for (const [name, expected] of Object.entries(RUNTIME_AUTH[rpc])) {
        const credential = CREDENTIALS[name as RuntimeCredential];
        if (expected !== SUCCEEDS) {
          const row = refusalRow(rpc, REQUESTS[rpc]('ws-b'), credential, expected, {
            unchanged: ['ws-a', 'ws-b'],
          });
          describeRefusals([row], current);
          continue;
        }
        describe(`when ${credential.when}`, () => {
          it('succeeds and moves the workspace ONLINE', async () => {
            const ctx = current();
            const token = await given(credential.token, ctx);
            await sendRpc(ctx.h, rpc, REQUESTS[rpc]('ws-b'), token);
            const workspace = await getWorkspace(ctx.h, 'ws-b');
            expect(workspace.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
          });
        });
      }
      const wrongWorkspace = RUNTIME_AUTH[rpc].otherWorkspace;
      if (wrongWorkspace !== SUCCEEDS) {
        const nowhere: Credential<Ctx> = {
          when: 'the token names a workspace that does not exist',
          token: (c) => c.tokenA,
        };
        const row = refusalRow(rpc, REQUESTS[rpc]('ws-nowhere'), nowhere, wrongWorkspace, {
          unchanged: ['ws-a', 'ws-b'],
        });
        describeRefusals([row], current);
      }
      describeRefusals(MORE[rpc], current);
    });
  }
});

describe('RotateWorkspaceToken auth', () => {
  interface Ctx extends RefusalContext {
    readonly tokenA: string;
    readonly tokenB: string;
    readonly newToken: string;
  }
  const current = harnessPerTest(async (h): Promise<Omit<Ctx, 'h'>> => {
    const tokenA = (await onlineWorkspace(h, 'ws-a')).token;
    const tokenB = (await onlineWorkspace(h, 'ws-b')).token;
    return { tokenA, tokenB, newToken: await rotate(h, 'ws-a') };
  });

  // The rotated-out token is refused: RUNTIME_AUTH's `rotatedOut` column.
  describe('when the token has been rotated', () => {
    it('returns a new token different from the old one', () => {
      const { newToken, tokenA } = current();
      expect(newToken).to.be.a('string').and.not.equal('');
      expect(newToken).to.not.equal(tokenA);
    });

    it('accepts the new token on Register and Heartbeat', async () => {
      const { h, newToken } = current();
      h.clock.advance(1_000);
      const registered = await call(
        h.clients.runtime,
        h.clients.runtime.register,
        registerRequest('ws-a'),
        newToken,
      );
      expect(registered.workspace?.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
      const beat = await call(
        h.clients.runtime,
        h.clients.runtime.heartbeat,
        heartbeatRequest('ws-a'),
        newToken,
      );
      expect(beat.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
      const workspace = await getWorkspace(h, 'ws-a');
      expect(workspace.lastHeartbeatAt).to.deep.equal(new Date(h.clock.now()));
    });

    it("leaves another workspace's token working", async () => {
      const { h, tokenB } = current();
      const beat = await call(
        h.clients.runtime,
        h.clients.runtime.heartbeat,
        heartbeatRequest('ws-b'),
        tokenB,
      );
      expect(beat.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
    });

    describeRefusals<Ctx>(
      [
        {
          when: 'the new token is used for another workspace',
          rpc: 'Heartbeat',
          request: heartbeatRequest('ws-b'),
          token: (c) => c.newToken,
          code: status.PERMISSION_DENIED,
          reason: 'WRONG_WORKSPACE',
          unchanged: ['ws-a', 'ws-b'],
          outcome: 'writes to neither workspace',
        },
      ],
      current,
    );
  });
});

describe('ControlService auth', () => {
  interface Ctx extends RefusalContext {
    readonly tokenA: string;
  }
  const current = harnessPerTest(
    async (h): Promise<Omit<Ctx, 'h'>> => ({ tokenA: (await onlineWorkspace(h, 'ws-a')).token }),
    AUTH_HARNESS,
  );

  const CREDENTIALS: Readonly<Record<ControlCredential, Credential<Ctx>>> = {
    none: { when: 'no authorization metadata is sent', token: undefined },
    unknown: { when: 'the token is unknown', token: 'vgc_not-the-control-token' },
    workspace: { when: 'a workspace token is used', token: (c) => c.tokenA },
    read: { when: 'a read-scoped control token is used', token: READ_TOKEN },
    admin: { when: 'the control token is used', token: CONTROL_TOKEN },
  };

  /** Every ControlService RPC, called on ws-a (or creating ws-new). */
  const REQUESTS: { readonly [R in ControlRpc]: RpcRequests[R] } = {
    CreateWorkspace: { workspaceId: 'ws-new', name: '' },
    GetWorkspace: { workspaceId: 'ws-a' },
    ListWorkspaces: { pageSize: 0, pageToken: '', statuses: [] },
    DeleteWorkspace: { workspaceId: 'ws-a' },
    RotateWorkspaceToken: { workspaceId: 'ws-a', revokePrevious: true },
    RevokeWorkspaceTokens: { workspaceId: 'ws-a' },
    ListTransitions: { workspaceId: '', pageSize: 0, pageToken: '' },
    WatchStatus: { includeSnapshot: true },
  };

  /** A refused control call must also leave ws-a's token working. */
  async function workspaceTokenStillWorks(c: Ctx): Promise<void> {
    const beat = await call(
      c.h.clients.runtime,
      c.h.clients.runtime.heartbeat,
      heartbeatRequest('ws-a'),
      c.tokenA,
    );
    expect(beat.status, 'the workspace token still works').to.equal(
      WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
    );
  }

  for (const rpc of Object.keys(CONTROL_AUTH) as ControlRpc[]) {
    describe(rpc, () => {
      for (const [name, expected] of Object.entries(CONTROL_AUTH[rpc])) {
        const credential = CREDENTIALS[name as ControlCredential];
        if (expected !== SUCCEEDS) {
          const row = refusalRow(rpc, REQUESTS[rpc], credential, expected, {
            unchanged: ['ws-a'],
            then: workspaceTokenStillWorks,
          });
          describeRefusals([row], current);
          continue;
        }
        describe(`when ${credential.when}`, () => {
          it('succeeds', async () => {
            const ctx = current();
            await sendRpc(ctx.h, rpc, REQUESTS[rpc], await given(credential.token, ctx));
          });
        });
      }
    });
  }

  describe('when the control token is used', () => {
    it('CreateWorkspace creates the workspace and logs its CREATED transition', async () => {
      const { h } = current();
      const before = (await listTransitions(h)).length;
      await call(
        h.clients.control,
        h.clients.control.createWorkspace,
        { workspaceId: 'ws-new', name: '' },
        CONTROL_TOKEN,
      );
      const workspace = await getWorkspace(h, 'ws-new');
      expect(workspace.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_PROVISIONING);
      expect(await listTransitions(h)).to.have.length(before + 1);
    });

    it('GetWorkspace returns the workspace', async () => {
      const { h } = current();
      const response = await call(
        h.clients.control,
        h.clients.control.getWorkspace,
        { workspaceId: 'ws-a' },
        CONTROL_TOKEN,
      );
      expect(response.workspace?.id).to.equal('ws-a');
      expect(response.workspace?.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
    });

    it('ListWorkspaces lists the workspace', async () => {
      const { h } = current();
      const response = await call(
        h.clients.control,
        h.clients.control.listWorkspaces,
        { pageSize: 0, pageToken: '', statuses: [] },
        CONTROL_TOKEN,
      );
      expect(response.workspaces.map((w) => w.id)).to.deep.equal(['ws-a']);
    });

    it('WatchStatus streams the snapshot', async () => {
      const event = await firstWatchEvent(
        current().h.clients.control,
        { includeSnapshot: true },
        CONTROL_TOKEN,
      );
      expect(event.event?.$case).to.equal('snapshot');
      if (event.event?.$case === 'snapshot') expect(event.event.value.id).to.equal('ws-a');
    });
  });
});
