import { status, type ClientDuplexStream } from '@grpc/grpc-js';
import { expect } from 'chai';
import type {
  HeartbeatRequest,
  HeartbeatStreamRequest,
  HeartbeatStreamResponse,
} from '../../gen/vigil/v1/runtime_service.js';
import { RuntimeState, WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { LIVENESS_FLUSH_MS } from '../../src/domain/liveness.js';
import {
  captureState,
  expectUnchanged,
  getWorkspace,
  heartbeatRequest,
  onlineWorkspace,
  registerRequest,
} from '../helpers/e2e-fixtures.js';
import { card, startHarness, type Harness } from '../helpers/harness.js';
import { scrape } from '../helpers/prometheus-text.js';
import { storeRequests, storedRow } from '../helpers/stored.js';
import { bearer, call, expectRpcError } from '../helpers/rpc.js';

/** A HeartbeatStream answering one request at a time. */
function openStream(h: Harness, token: string) {
  const stream: ClientDuplexStream<HeartbeatStreamRequest, HeartbeatStreamResponse> =
    h.clients.runtime.heartbeatStream(bearer(token));
  const pending: ((response: HeartbeatStreamResponse) => void)[] = [];
  stream.on('data', (response: HeartbeatStreamResponse) => pending.shift()?.(response));
  stream.on('error', () => undefined);
  let requestId = 0;
  return {
    send(heartbeat: HeartbeatRequest): Promise<HeartbeatStreamResponse> {
      requestId += 1;
      return new Promise((resolve) => {
        pending.push(resolve);
        stream.write({ requestId, heartbeat });
      });
    },
    close() {
      stream.cancel();
    },
  };
}

describe('liveness in memory', () => {
  let h: Harness;
  let metricsUrl: string;

  beforeEach(async () => {
    // One process's hot path and store requests: on etcd too, one replica serves every call.
    h = await startHarness({ settings: { metricsListen: '127.0.0.1:0' }, replicas: 1 });
    metricsUrl = `http://127.0.0.1:${String(h.vigil.metricsPort)}/metrics`;
  });

  afterEach(async () => {
    await h.dispose();
  });

  const counters = async () => {
    const m = await scrape(metricsUrl);
    return {
      sql: storeRequests(h, m),
      memory: m.value('vigil_heartbeats_applied_total', { path: 'memory' }) ?? NaN,
      store: m.value('vigil_heartbeats_applied_total', { path: 'store' }) ?? NaN,
      validated: m.value('vigil_agent_cards_validated_total') ?? NaN,
    };
  };

  describe('when heartbeats change no status, marker or card', () => {
    it('answers unary and streamed heartbeats, with and without the stored card, without one store request (SQL statement or etcd request)', async () => {
      const { token } = await onlineWorkspace(h, 'ws-1');
      const stream = openStream(h, token);
      // The first card-bearing heartbeat after Register is validated once and remembered.
      const first = await stream.send(heartbeatRequest('ws-1', { agentCard: card() }));
      expect(first.result?.$case).to.equal('heartbeat');
      // A scrape itself reads the store (workspaces per status): measure what one costs.
      const idle = await counters();
      const before = await counters();
      const scrapeCost = before.sql - idle.sql;
      for (let i = 0; i < 20; i += 1) {
        h.clock.advance(1_000);
        const unary = await call(
          h.clients.runtime,
          h.clients.runtime.heartbeat,
          heartbeatRequest('ws-1', { activeTasks: i, agentCard: i % 2 === 0 ? card() : undefined }),
          token,
        );
        expect(unary.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
        const streamed = await stream.send(
          heartbeatRequest('ws-1', { activeTasks: i, agentCard: card() }),
        );
        expect(streamed.result?.$case === 'heartbeat' && streamed.result.value.status).to.equal(
          WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
        );
      }
      const after = await counters();
      expect(
        after.sql - before.sql - scrapeCost,
        'store requests (SQL statements or etcd requests) for 40 steady heartbeats',
      ).to.equal(0);
      expect(after.memory - before.memory).to.equal(40);
      expect(after.store - before.store).to.equal(0);
      // The unchanged card was neither decoded nor validated again.
      expect(after.validated - before.validated).to.equal(0);
      stream.close();
    });

    it('shows the latest liveness on reads at once, and persists it lazily', async () => {
      const { token } = await onlineWorkspace(h, 'ws-1');
      const registeredAt = (await storedRow(h, 'ws-1'))['last_registered_at'] as number;
      h.clock.advance(5_000);
      await call(
        h.clients.runtime,
        h.clients.runtime.heartbeat,
        heartbeatRequest('ws-1', { activeTasks: 1 }),
        token,
      );
      h.clock.advance(5_000);
      await call(
        h.clients.runtime,
        h.clients.runtime.heartbeat,
        heartbeatRequest('ws-1', { activeTasks: 7, currentTask: 'indexing' }),
        token,
      );
      const beatAt = h.clock.now();
      // The file still has what Register wrote …
      expect((await storedRow(h, 'ws-1'))['active_tasks']).to.equal(0);
      // … while reads show what the server knows.
      const read = await getWorkspace(h, 'ws-1');
      expect(read.lastHeartbeatAt?.getTime()).to.equal(beatAt);
      expect(read.activeTasks).to.equal(7);
      expect(read.currentTask).to.equal('indexing');

      // Not yet due: a flush now writes nothing.
      expect(await h.vigil.useCases.liveness.flush(false)).to.equal(0);
      h.clock.advance(LIVENESS_FLUSH_MS);
      expect(await h.vigil.useCases.liveness.flush(false)).to.equal(1);
      const row = await storedRow(h, 'ws-1');
      expect(row['last_heartbeat_at']).to.equal(beatAt);
      expect(row['active_tasks']).to.equal(7);
      expect(row['current_task']).to.equal('indexing');
      expect(row['last_registered_at']).to.equal(registeredAt);
    });

    it('writes what is unflushed on a graceful stop', async () => {
      const { token } = await onlineWorkspace(h, 'ws-1');
      h.clock.advance(3_000);
      await call(
        h.clients.runtime,
        h.clients.runtime.heartbeat,
        heartbeatRequest('ws-1', { uptimeSeconds: 99 }),
        token,
      );
      await h.stop();
      const row = await storedRow(h, 'ws-1');
      expect(row['last_heartbeat_at']).to.equal(h.clock.now());
      expect(row['uptime_seconds']).to.equal(99);
    });
  });

  describe('when a heartbeat changes something durable', () => {
    it('goes through the heartbeat transaction and is in the file before the reply', async () => {
      const { token } = await onlineWorkspace(h, 'ws-1');
      const before = await counters();
      h.clock.advance(1_000);
      const wedged = await call(
        h.clients.runtime,
        h.clients.runtime.heartbeat,
        heartbeatRequest('ws-1', { runtimeState: RuntimeState.RUNTIME_STATE_WEDGED }),
        token,
      );
      expect(wedged.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_DEGRADED);
      expect((await storedRow(h, 'ws-1'))['status']).to.equal('DEGRADED');
      expect((await storedRow(h, 'ws-1'))['last_heartbeat_at']).to.equal(h.clock.now());
      const after = await counters();
      expect(after.store - before.store).to.equal(1);
      expect(after.sql - before.sql).to.be.greaterThan(0);
    });
  });

  describe('agent cards', () => {
    it('validates a card again only when its bytes change, and refuses an invalid one with nothing written', async () => {
      const { token } = await createdAndRegistered();
      const stream = openStream(h, token);
      const c0 = await counters();
      await stream.send(heartbeatRequest('ws-1', { agentCard: card('a') }));
      await stream.send(heartbeatRequest('ws-1', { agentCard: card('a') }));
      await stream.send(heartbeatRequest('ws-1', { agentCard: card('a') }));
      const c1 = await counters();
      expect(c1.validated - c0.validated, 'one card, three times').to.equal(1);
      await stream.send(heartbeatRequest('ws-1', { agentCard: card('b') }));
      await stream.send(heartbeatRequest('ws-1', { agentCard: card('b') }));
      const c2 = await counters();
      expect(c2.validated - c1.validated, 'a changed card').to.equal(1);

      const state = await captureState(h, 'ws-1');
      const refused = await stream.send(heartbeatRequest('ws-1', { agentCard: { url: 'x' } }));
      expect(refused.result?.$case === 'error' && refused.result.value.reason).to.equal(
        'AGENT_CARD_INVALID',
      );
      expect(refused.result?.$case === 'error' && refused.result.value.code).to.equal(
        status.INVALID_ARGUMENT,
      );
      await expectUnchanged(h, 'ws-1', state);
      // The last accepted card is still the one that skips validation.
      await stream.send(heartbeatRequest('ws-1', { agentCard: card('b') }));
      const c3 = await counters();
      expect(c3.validated - c2.validated, 'the invalid card, then the accepted one again').to.equal(
        1,
      );
      stream.close();
    });

    it('still clears the marker with an unchanged card: DEGRADED → ONLINE on that heartbeat', async () => {
      const { token } = await createdAndRegistered();
      const stream = openStream(h, token);
      await stream.send(heartbeatRequest('ws-1', { agentCard: card() }));
      await stream.send(heartbeatRequest('ws-1', { agentCard: card() }));
      h.clock.advance(1_000);
      await expectRpcError(
        call(
          h.clients.runtime,
          h.clients.runtime.register,
          registerRequest('ws-1', { url: 'http://212851b5693d:8000' }),
          token,
        ),
        status.INVALID_ARGUMENT,
        'URL_VALIDATE_FAILED',
      );
      expect((await storedRow(h, 'ws-1'))['status']).to.equal('DEGRADED');
      const without = await stream.send(heartbeatRequest('ws-1'));
      expect(without.result?.$case === 'heartbeat' && without.result.value.status).to.equal(
        WorkspaceStatus.WORKSPACE_STATUS_DEGRADED,
      );
      const recovered = await stream.send(heartbeatRequest('ws-1', { agentCard: card() }));
      expect(recovered.result?.$case === 'heartbeat' && recovered.result.value.status).to.equal(
        WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
      );
      const row = await storedRow(h, 'ws-1');
      expect(row['status']).to.equal('ONLINE');
      expect(row['last_register_failure_at']).to.equal(null);
      stream.close();
    });

    async function createdAndRegistered() {
      return onlineWorkspace(h, 'ws-1');
    }
  });
});
