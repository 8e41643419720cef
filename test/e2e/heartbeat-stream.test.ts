import { status, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type {
  HeartbeatRequest,
  HeartbeatStreamRequest,
  HeartbeatStreamResponse,
} from '../../gen/vigil/v1/runtime_service.js';
import { WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { heartbeatRequest, onlineWorkspace } from '../helpers/e2e-fixtures.js';
import { CONTROL_TOKEN, card, startHarness, type Harness } from '../helpers/harness.js';
import { bearer, call, errorInfoOf, expectRpcError } from '../helpers/rpc.js';

type Stream = ClientDuplexStream<HeartbeatStreamRequest, HeartbeatStreamResponse>;

/** A stream with its responses collected, and a way to await the n-th one. */
function open(h: Harness, token: string | undefined) {
  const stream: Stream = h.clients.runtime.heartbeatStream(bearer(token));
  const responses: HeartbeatStreamResponse[] = [];
  let failure: ServiceError | undefined;
  const waiters: (() => void)[] = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  stream.on('data', (r: HeartbeatStreamResponse) => {
    responses.push(r);
    wake();
  });
  stream.on('error', (e: ServiceError) => {
    failure = e;
    wake();
  });
  stream.on('end', wake);
  return {
    stream,
    responses,
    send(requestId: number, heartbeat: HeartbeatRequest | undefined) {
      stream.write({ requestId, heartbeat });
    },
    async count(n: number): Promise<HeartbeatStreamResponse[]> {
      while (responses.length < n) {
        if (failure) throw failure;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 5_000);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      return responses.slice(0, n);
    },
    async failed(): Promise<ServiceError> {
      while (!failure) {
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
        });
      }
      return failure;
    },
  };
}

describe('RuntimeService.HeartbeatStream', () => {
  let h: Harness;
  let token: string;

  beforeEach(async () => {
    h = await startHarness();
    token = (await onlineWorkspace(h, 'ws-s')).token;
  });

  afterEach(async () => {
    await h.dispose();
  });

  async function workspace(id = 'ws-s') {
    const { control } = h.clients;
    return (await call(control, control.getWorkspace, { workspaceId: id }, CONTROL_TOKEN))
      .workspace!;
  }

  describe('when heartbeats are pipelined', () => {
    it('answers every one, in order, with its request id and the resulting status', async () => {
      const s = open(h, token);
      for (let i = 1; i <= 200; i += 1) {
        // Every 50th reports a high error rate, the next one recovers.
        const errorRate = i % 50 === 0 ? 0.9 : 0;
        s.send(i, heartbeatRequest('ws-s', { errorRate, activeTasks: i }));
      }
      const responses = await s.count(200);
      expect(responses.map((r) => r.requestId)).to.deep.equal(
        Array.from({ length: 200 }, (_, i) => i + 1),
      );
      const statuses = responses.map((r) =>
        r.result?.$case === 'heartbeat' ? r.result.value.status : -1,
      );
      expect(statuses[48]).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
      expect(statuses[49]).to.equal(WorkspaceStatus.WORKSPACE_STATUS_DEGRADED);
      expect(statuses[50]).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
      expect((await workspace()).activeTasks).to.equal(200);
      s.stream.end();
    });
  });

  describe('when one message is bad', () => {
    it('answers it with an error, writes nothing for it, and keeps the stream open', async () => {
      const s = open(h, token);
      s.send(1, heartbeatRequest('ws-s', { activeTasks: 1 }));
      await s.count(1);
      const before = await workspace();
      h.clock.advance(1_000);
      s.send(2, heartbeatRequest('ws-s', { errorRate: 1.5, activeTasks: 2 }));
      s.send(3, heartbeatRequest('ws-s', { agentCard: {}, activeTasks: 3 }));
      s.send(4, undefined);
      const [, r2, r3, r4] = await s.count(4);
      expect(r2?.result?.$case === 'error' && r2.result.value).to.deep.include({
        code: status.INVALID_ARGUMENT,
        reason: 'FIELD_INVALID',
        metadata: { field: 'error_rate' },
      });
      expect(r3?.result?.$case === 'error' && r3.result.value.reason).to.equal(
        'AGENT_CARD_INVALID',
      );
      expect(r4?.result?.$case === 'error' && r4.result.value.metadata).to.deep.equal({
        field: 'heartbeat',
      });
      expect(await workspace()).to.deep.equal(before);

      s.send(5, heartbeatRequest('ws-s', { activeTasks: 5 }));
      const [, , , , r5] = await s.count(5);
      expect(r5?.result?.$case).to.equal('heartbeat');
      expect((await workspace()).activeTasks).to.equal(5);
      s.stream.end();
    });

    it('answers heartbeats of a removed workspace with WORKSPACE_REMOVED', async () => {
      const { control } = h.clients;
      const s = open(h, token);
      s.send(1, heartbeatRequest('ws-s'));
      await s.count(1);
      await call(control, control.deleteWorkspace, { workspaceId: 'ws-s' }, CONTROL_TOKEN);
      s.send(2, heartbeatRequest('ws-s'));
      const [, r2] = await s.count(2);
      expect(
        r2?.result?.$case === 'error' && [r2.result.value.code, r2.result.value.reason],
      ).to.deep.equal([status.FAILED_PRECONDITION, 'WORKSPACE_REMOVED']);
      s.stream.end();
    });
  });

  describe('when a streamed heartbeat carries the stored card after a failed re-register', () => {
    it('recovers the workspace just like a unary heartbeat', async () => {
      const { runtime } = h.clients;
      await expectRpcError(
        call(
          runtime,
          runtime.register,
          {
            workspaceId: 'ws-s',
            url: 'http://212851b5693d:8000',
            agentCard: card(),
            deliveryMode: 0,
          },
          token,
        ),
        status.INVALID_ARGUMENT,
        'URL_VALIDATE_FAILED',
      );
      expect((await workspace()).status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_DEGRADED);
      const s = open(h, token);
      s.send(1, heartbeatRequest('ws-s', { agentCard: card() }));
      const [r1] = await s.count(1);
      expect(r1?.result?.$case === 'heartbeat' && r1.result.value.status).to.equal(
        WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
      );
      expect((await workspace()).lastRegisterFailureAt).to.equal(undefined);
      s.stream.end();
    });
  });

  describe('when the server shuts down', () => {
    it('ends open streams with UNAVAILABLE', async () => {
      const s = open(h, token);
      s.send(1, heartbeatRequest('ws-s'));
      await s.count(1);
      await h.stop();
      const error = await s.failed();
      expect(error.code).to.equal(status.UNAVAILABLE);
      expect(errorInfoOf(error).reason).to.equal('SHUTTING_DOWN');
    });
  });
});
