import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { StatusTransition } from '../../gen/vigil/v1/workspace.js';
import { TransitionReason, WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { systemResolver } from '../../src/app.js';
import { CONTROL_TOKEN, card, startHarness, type Harness } from '../helpers/harness.js';
import { call, expectRpcError, openWatch, type WatchReader } from '../helpers/rpc.js';

/** The transition carried by a watch event, or a failed assertion. */
function transitionOf(event: {
  event?: { $case: string; value: unknown } | undefined;
}): StatusTransition {
  expect(event.event?.$case).to.equal('transition');
  return event.event?.value as StatusTransition;
}

describe('the restart story over real gRPC', () => {
  let h: Harness;
  let watch: WatchReader | undefined;

  beforeEach(async () => {
    // The real system resolver: the restarted runtime's internal host name must not resolve here.
    h = await startHarness({ resolveHost: systemResolver });
  });

  afterEach(async () => {
    watch?.cancel();
    watch = undefined;
    await h.dispose();
  });

  it('degrades on a failed re-register and recovers on the next heartbeat that carries the stored card', async () => {
    const { runtime, control } = h.clients;
    const created = await call(
      control,
      control.createWorkspace,
      { workspaceId: 'ws-restart', name: 'restart' },
      CONTROL_TOKEN,
    );
    const token = created.workspaceToken;
    const agentCard = card('restart-agent');
    await call(
      runtime,
      runtime.register,
      {
        workspaceId: 'ws-restart',
        url: 'http://127.0.0.1:8000',
        agentCard,
        deliveryMode: 0,
      },
      token,
    );
    const beat = {
      workspaceId: 'ws-restart',
      errorRate: 0,
      sampleError: '',
      activeTasks: 1,
      uptimeSeconds: 60,
      currentTask: '',
      runtimeState: 0,
      nativeStatusManagement: false,
      appliedConfigVersion: 0,
    };
    expect((await call(runtime, runtime.heartbeat, { ...beat, agentCard }, token)).status).to.equal(
      WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
    );

    watch = openWatch(control, { workspaceIds: ['ws-restart'] }, CONTROL_TOKEN);
    const start = await watch.next();
    expect(start.event?.$case).to.equal('progress');

    // The runtime restarts in a new container and advertises a name only its own network knows.
    h.clock.advance(5_000);
    const info = await expectRpcError(
      call(
        runtime,
        runtime.register,
        {
          workspaceId: 'ws-restart',
          url: 'http://212851b5693d:8000',
          agentCard,
          deliveryMode: 0,
        },
        token,
      ),
      status.INVALID_ARGUMENT,
      'URL_VALIDATE_FAILED',
    );
    expect(info.metadata['host']).to.equal('212851b5693d');
    const degraded = transitionOf(await watch.next());
    expect(degraded).to.include({
      workspaceId: 'ws-restart',
      fromStatus: WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
      toStatus: WorkspaceStatus.WORKSPACE_STATUS_DEGRADED,
      reason: TransitionReason.TRANSITION_REASON_REGISTER_FAILED,
    });

    // It keeps heartbeating with the card that is already stored: one heartbeat recovers it,
    // long before the five-minute register-failure window would have.
    h.clock.advance(10_000);
    const response = await call(runtime, runtime.heartbeat, { ...beat, agentCard }, token);
    expect(response.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
    const recovered = transitionOf(await watch.next());
    expect(recovered).to.include({
      workspaceId: 'ws-restart',
      fromStatus: WorkspaceStatus.WORKSPACE_STATUS_DEGRADED,
      toStatus: WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
      reason: TransitionReason.TRANSITION_REASON_RECOVERED,
    });
    expect(recovered.seq).to.equal(degraded.seq + 1);

    const stored = await call(
      control,
      control.getWorkspace,
      { workspaceId: 'ws-restart' },
      CONTROL_TOKEN,
    );
    expect(stored.workspace?.lastRegisterFailureAt).to.equal(undefined);
    expect(stored.workspace?.url).to.equal('http://127.0.0.1:8000/');
  });

  it('stays DEGRADED when the heartbeat carries no card', async () => {
    const { runtime, control } = h.clients;
    const { workspaceToken: token } = await call(
      control,
      control.createWorkspace,
      { workspaceId: 'ws-nocard', name: '' },
      CONTROL_TOKEN,
    );
    await call(
      runtime,
      runtime.register,
      {
        workspaceId: 'ws-nocard',
        url: 'http://127.0.0.1:8000',
        agentCard: card(),
        deliveryMode: 0,
      },
      token,
    );
    await expectRpcError(
      call(
        runtime,
        runtime.register,
        {
          workspaceId: 'ws-nocard',
          url: 'http://212851b5693d:8000',
          agentCard: card(),
          deliveryMode: 0,
        },
        token,
      ),
      status.INVALID_ARGUMENT,
      'URL_VALIDATE_FAILED',
    );
    h.clock.advance(10_000);
    const response = await call(
      runtime,
      runtime.heartbeat,
      {
        workspaceId: 'ws-nocard',
        agentCard: undefined,
        errorRate: 0,
        sampleError: '',
        activeTasks: 0,
        uptimeSeconds: 1,
        currentTask: '',
        runtimeState: 0,
        nativeStatusManagement: false,
        appliedConfigVersion: 0,
      },
      token,
    );
    expect(response.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_DEGRADED);
  });
});
