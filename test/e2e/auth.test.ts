import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { RuntimeState, WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import {
  captureState,
  createWorkspace,
  expectUnchanged,
  firstWatchEvent,
  getWorkspace,
  heartbeatRequest,
  listTransitions,
  onlineWorkspace,
  registerRequest,
} from '../helpers/e2e-fixtures.js';
import { CONTROL_TOKEN, startHarness, type Harness } from '../helpers/harness.js';
import { call, expectRpcError } from '../helpers/rpc.js';

/**
 * The auth matrix over real gRPC: RuntimeService takes workspace tokens only
 * for their own workspace, ControlService takes the control token only, and a
 * refused call writes nothing.
 */

const UNKNOWN_TOKEN = 'vgw_not-a-token-this-server-issued';

describe('RuntimeService auth', () => {
  let h: Harness;
  /** ONLINE, registered with a card. */
  let tokenA: string;
  /** PROVISIONING, never registered. */
  let tokenB: string;

  beforeEach(async () => {
    h = await startHarness();
    tokenA = (await onlineWorkspace(h, 'ws-a')).token;
    tokenB = (await createWorkspace(h, 'ws-b')).token;
  });

  afterEach(async () => {
    await h.dispose();
  });

  const methods = [
    {
      name: 'Register',
      invoke: (workspaceId: string, token: string | undefined) =>
        call(h.clients.runtime, h.clients.runtime.register, registerRequest(workspaceId), token),
    },
    {
      name: 'Heartbeat',
      invoke: (workspaceId: string, token: string | undefined) =>
        call(h.clients.runtime, h.clients.runtime.heartbeat, heartbeatRequest(workspaceId), token),
    },
  ];

  for (const method of methods) {
    describe(method.name, () => {
      describe('when no authorization metadata is sent', () => {
        it('fails UNAUTHENTICATED / TOKEN_MISSING and writes nothing', async () => {
          const before = await captureState(h, 'ws-b');
          await expectRpcError(
            method.invoke('ws-b', undefined),
            status.UNAUTHENTICATED,
            'TOKEN_MISSING',
          );
          await expectUnchanged(h, 'ws-b', before);
        });
      });

      describe('when the token is unknown', () => {
        it('fails UNAUTHENTICATED / TOKEN_INVALID and writes nothing', async () => {
          const before = await captureState(h, 'ws-b');
          await expectRpcError(
            method.invoke('ws-b', UNKNOWN_TOKEN),
            status.UNAUTHENTICATED,
            'TOKEN_INVALID',
          );
          await expectUnchanged(h, 'ws-b', before);
        });
      });

      describe('when the token belongs to another workspace', () => {
        it('fails PERMISSION_DENIED / WRONG_WORKSPACE and writes to neither workspace', async () => {
          const beforeA = await captureState(h, 'ws-a');
          const beforeB = await captureState(h, 'ws-b');
          await expectRpcError(
            method.invoke('ws-b', tokenA),
            status.PERMISSION_DENIED,
            'WRONG_WORKSPACE',
          );
          await expectUnchanged(h, 'ws-a', beforeA);
          await expectUnchanged(h, 'ws-b', beforeB);
        });

        it('fails PERMISSION_DENIED / WRONG_WORKSPACE for a workspace that does not exist', async () => {
          await expectRpcError(
            method.invoke('ws-nowhere', tokenA),
            status.PERMISSION_DENIED,
            'WRONG_WORKSPACE',
          );
        });
      });

      describe('when the control token is used', () => {
        it('fails UNAUTHENTICATED / TOKEN_INVALID and writes nothing', async () => {
          const before = await captureState(h, 'ws-b');
          await expectRpcError(
            method.invoke('ws-b', CONTROL_TOKEN),
            status.UNAUTHENTICATED,
            'TOKEN_INVALID',
          );
          await expectUnchanged(h, 'ws-b', before);
        });
      });

      describe("when the workspace's own token is used", () => {
        it('succeeds and moves the workspace ONLINE', async () => {
          await method.invoke('ws-b', tokenB);
          const workspace = await getWorkspace(h, 'ws-b');
          expect(workspace.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
        });
      });
    });
  }

  describe('Register', () => {
    describe('when an unauthenticated call also carries an invalid card', () => {
      it('answers the auth failure, not the validation failure', async () => {
        await expectRpcError(
          call(
            h.clients.runtime,
            h.clients.runtime.register,
            registerRequest('ws-b', { agentCard: {} }),
            UNKNOWN_TOKEN,
          ),
          status.UNAUTHENTICATED,
          'TOKEN_INVALID',
        );
      });
    });

    describe('when a wrong-workspace call advertises a blocked URL', () => {
      it('stamps no register-failure marker and does not degrade the target', async () => {
        await call(h.clients.runtime, h.clients.runtime.register, registerRequest('ws-b'), tokenB);
        const before = await captureState(h, 'ws-b');
        await expectRpcError(
          call(
            h.clients.runtime,
            h.clients.runtime.register,
            registerRequest('ws-b', { url: 'http://metadata.evil/' }),
            tokenA,
          ),
          status.PERMISSION_DENIED,
          'WRONG_WORKSPACE',
        );
        await expectUnchanged(h, 'ws-b', before);
        const workspace = await getWorkspace(h, 'ws-b');
        expect(workspace.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
        expect(workspace.lastRegisterFailureAt).to.equal(undefined);
      });
    });
  });

  describe('Heartbeat', () => {
    describe('when an unauthenticated heartbeat reports a wedged, failing runtime', () => {
      it('leaves an ONLINE workspace ONLINE', async () => {
        const before = await captureState(h, 'ws-a');
        await expectRpcError(
          call(
            h.clients.runtime,
            h.clients.runtime.heartbeat,
            heartbeatRequest('ws-a', {
              errorRate: 0.9,
              runtimeState: RuntimeState.RUNTIME_STATE_WEDGED,
            }),
            UNKNOWN_TOKEN,
          ),
          status.UNAUTHENTICATED,
          'TOKEN_INVALID',
        );
        await expectUnchanged(h, 'ws-a', before);
      });
    });
  });
});

describe('RotateWorkspaceToken auth', () => {
  let h: Harness;
  let tokenA: string;
  let tokenB: string;

  beforeEach(async () => {
    h = await startHarness();
    tokenA = (await onlineWorkspace(h, 'ws-a')).token;
    tokenB = (await onlineWorkspace(h, 'ws-b')).token;
  });

  afterEach(async () => {
    await h.dispose();
  });

  function rotate(workspaceId: string, token: string | undefined, revokePrevious = true) {
    return call(
      h.clients.control,
      h.clients.control.rotateWorkspaceToken,
      { workspaceId, revokePrevious },
      token,
    );
  }

  describe('when the token has been rotated', () => {
    let newToken: string;

    beforeEach(async () => {
      newToken = (await rotate('ws-a', CONTROL_TOKEN)).workspaceToken;
    });

    it('returns a new token different from the old one', () => {
      expect(newToken).to.be.a('string').and.not.equal('');
      expect(newToken).to.not.equal(tokenA);
    });

    it('refuses the old token on Register with TOKEN_INVALID and writes nothing', async () => {
      const before = await captureState(h, 'ws-a');
      await expectRpcError(
        call(h.clients.runtime, h.clients.runtime.register, registerRequest('ws-a'), tokenA),
        status.UNAUTHENTICATED,
        'TOKEN_INVALID',
      );
      await expectUnchanged(h, 'ws-a', before);
    });

    it('refuses the old token on Heartbeat with TOKEN_INVALID and writes nothing', async () => {
      const before = await captureState(h, 'ws-a');
      await expectRpcError(
        call(h.clients.runtime, h.clients.runtime.heartbeat, heartbeatRequest('ws-a'), tokenA),
        status.UNAUTHENTICATED,
        'TOKEN_INVALID',
      );
      await expectUnchanged(h, 'ws-a', before);
    });

    it('accepts the new token on Register and Heartbeat', async () => {
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
      const beat = await call(
        h.clients.runtime,
        h.clients.runtime.heartbeat,
        heartbeatRequest('ws-b'),
        tokenB,
      );
      expect(beat.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
    });

    it('does not let the new token act for another workspace', async () => {
      await expectRpcError(
        call(h.clients.runtime, h.clients.runtime.heartbeat, heartbeatRequest('ws-b'), newToken),
        status.PERMISSION_DENIED,
        'WRONG_WORKSPACE',
      );
    });
  });

  describe('when the rotation is refused for a bad control token', () => {
    it('keeps the old token working', async () => {
      await expectRpcError(rotate('ws-a', tokenA), status.UNAUTHENTICATED, 'TOKEN_INVALID');
      const beat = await call(
        h.clients.runtime,
        h.clients.runtime.heartbeat,
        heartbeatRequest('ws-a'),
        tokenA,
      );
      expect(beat.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
    });
  });
});

describe('ControlService auth', () => {
  let h: Harness;
  let tokenA: string;

  beforeEach(async () => {
    h = await startHarness();
    tokenA = (await onlineWorkspace(h, 'ws-a')).token;
  });

  afterEach(async () => {
    await h.dispose();
  });

  /** Every ControlService RPC, called on ws-a (or creating ws-new), with `token`. */
  const methods: { name: string; invoke: (token: string | undefined) => Promise<unknown> }[] = [
    {
      name: 'CreateWorkspace',
      invoke: (token) =>
        call(
          h.clients.control,
          h.clients.control.createWorkspace,
          { workspaceId: 'ws-new', name: '' },
          token,
        ),
    },
    {
      name: 'GetWorkspace',
      invoke: (token) =>
        call(h.clients.control, h.clients.control.getWorkspace, { workspaceId: 'ws-a' }, token),
    },
    {
      name: 'ListWorkspaces',
      invoke: (token) =>
        call(
          h.clients.control,
          h.clients.control.listWorkspaces,
          { pageSize: 0, pageToken: '', statuses: [] },
          token,
        ),
    },
    {
      name: 'DeleteWorkspace',
      invoke: (token) =>
        call(h.clients.control, h.clients.control.deleteWorkspace, { workspaceId: 'ws-a' }, token),
    },
    {
      name: 'RotateWorkspaceToken',
      invoke: (token) =>
        call(
          h.clients.control,
          h.clients.control.rotateWorkspaceToken,
          { workspaceId: 'ws-a', revokePrevious: true },
          token,
        ),
    },
    {
      name: 'ListTransitions',
      invoke: (token) =>
        call(
          h.clients.control,
          h.clients.control.listTransitions,
          { workspaceId: '', pageSize: 0, pageToken: '' },
          token,
        ),
    },
    {
      name: 'WatchStatus',
      invoke: (token) => firstWatchEvent(h.clients.control, { includeSnapshot: true }, token),
    },
  ];

  /** A refused control call must leave ws-a, its token and the log alone, and create nothing. */
  async function expectRefusedCallWroteNothing(
    before: Awaited<ReturnType<typeof captureState>>,
  ): Promise<void> {
    await expectUnchanged(h, 'ws-a', before);
    await expectRpcError(
      call(
        h.clients.control,
        h.clients.control.getWorkspace,
        { workspaceId: 'ws-new' },
        CONTROL_TOKEN,
      ),
      status.NOT_FOUND,
      'WORKSPACE_NOT_FOUND',
    );
    const beat = await call(
      h.clients.runtime,
      h.clients.runtime.heartbeat,
      heartbeatRequest('ws-a'),
      tokenA,
    );
    expect(beat.status, 'the workspace token still works').to.equal(
      WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
    );
  }

  for (const method of methods) {
    describe(method.name, () => {
      describe('when no authorization metadata is sent', () => {
        it('fails UNAUTHENTICATED / TOKEN_MISSING and writes nothing', async () => {
          const before = await captureState(h, 'ws-a');
          await expectRpcError(method.invoke(undefined), status.UNAUTHENTICATED, 'TOKEN_MISSING');
          await expectRefusedCallWroteNothing(before);
        });
      });

      describe('when the token is unknown', () => {
        it('fails UNAUTHENTICATED / TOKEN_INVALID and writes nothing', async () => {
          const before = await captureState(h, 'ws-a');
          await expectRpcError(
            method.invoke('vgc_not-the-control-token'),
            status.UNAUTHENTICATED,
            'TOKEN_INVALID',
          );
          await expectRefusedCallWroteNothing(before);
        });
      });

      describe('when a workspace token is used', () => {
        it('fails UNAUTHENTICATED / TOKEN_INVALID and writes nothing', async () => {
          const before = await captureState(h, 'ws-a');
          await expectRpcError(method.invoke(tokenA), status.UNAUTHENTICATED, 'TOKEN_INVALID');
          await expectRefusedCallWroteNothing(before);
        });
      });

      describe('when the control token is used', () => {
        it('succeeds', async () => {
          await method.invoke(CONTROL_TOKEN);
        });
      });
    });
  }

  describe('when the control token is used', () => {
    it('CreateWorkspace creates the workspace and logs its CREATED transition', async () => {
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
        h.clients.control,
        { includeSnapshot: true },
        CONTROL_TOKEN,
      );
      expect(event.event?.$case).to.equal('snapshot');
      if (event.event?.$case === 'snapshot') expect(event.event.value.id).to.equal('ws-a');
    });
  });
});
