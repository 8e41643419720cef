import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_TIMINGS } from '../../src/domain/config.js';
import type { HeartbeatReport, Transition } from '../../src/domain/model.js';
import type { HeartbeatBatchItem, RegistryStore } from '../../src/domain/registry-store.js';
import { createRegistry, type Registry } from '../../src/domain/registry.js';
import { VigilError } from '../../src/domain/errors.js';
import { openDatabase } from '../../src/storage/database.js';
import { createSqliteStore } from '../../src/storage/sqlite-store.js';
import { card, fakeResolver, tempDir } from '../helpers/harness.js';
import { createManualClock } from '../helpers/manual-clock.js';

const HEALTHY: HeartbeatReport = {
  errorRate: 0,
  sampleError: '',
  activeTasks: 0,
  uptimeSeconds: 1,
  currentTask: '',
  runtimeState: 'HEALTHY',
  nativeStatusManagement: false,
};

describe('heartbeat group commit', () => {
  let dir: string;
  let store: RegistryStore;
  let registry: Registry;
  let batches: number[];
  let events: string[];
  const tokens: Record<string, string> = {};

  beforeEach(async () => {
    dir = tempDir();
    const real = createSqliteStore(openDatabase(join(dir, 'vigil.db')));
    batches = [];
    events = [];
    // Records every batch the registry hands the store, and when commits happen relative to publication.
    store = {
      ...real,
      applyHeartbeats: async (batch: readonly HeartbeatBatchItem[]) => {
        batches.push(batch.length);
        const outcomes = await real.applyHeartbeats(batch);
        events.push(`commit:${batch.length}`);
        return outcomes;
      },
    };
    const clock = createManualClock();
    registry = createRegistry({
      store,
      clock,
      timings: DEFAULT_TIMINGS,
      urlPolicy: 'local',
      resolveHost: fakeResolver,
      serverStartedAt: clock.now(),
      onCommitted: (transitions: readonly Transition[]) => {
        events.push(`publish:${transitions.map((t) => t.seq).join(',')}`);
      },
    });
    for (let i = 0; i < 50; i += 1) {
      tokens[`ws-${i}`] = (await registry.createWorkspace(`ws-${i}`, '')).workspaceToken;
    }
    events = [];
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const beat = (id: string, report: Partial<HeartbeatReport> = {}, agentCard?: unknown) =>
    registry.heartbeat(tokens[id], {
      workspaceId: id,
      agentCard,
      report: { ...HEALTHY, ...report },
    });

  it('applies heartbeats arriving in one event-loop turn in one commit', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => beat(`ws-${i}`)));
    expect(batches).to.deep.equal([50]);
    expect(results.every((r) => r.status === 'ONLINE')).to.equal(true);
    // 50 PROVISIONING → ONLINE transitions, published once, after the commit, in seq order.
    expect(events).to.have.length(2);
    expect(events[0]).to.equal('commit:50');
    const seqs = (events[1] ?? '').replace('publish:', '').split(',').map(Number);
    expect(seqs).to.deep.equal(Array.from({ length: 50 }, (_, i) => 51 + i));
  });

  it('isolates a failing heartbeat: it writes nothing, the others commit', async () => {
    await registry.deleteWorkspace('ws-7');
    const outcomes = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => beat(`ws-${i}`, { activeTasks: 3 }, card())),
    );
    expect(batches).to.deep.equal([10]);
    const rejected = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [i] : []));
    expect(rejected).to.deep.equal([7]);
    const failure = outcomes[7];
    expect(failure?.status === 'rejected' && (failure.reason as VigilError).reason).to.equal(
      'WORKSPACE_REMOVED',
    );
    const removed = await store.getWorkspace('ws-7');
    expect(removed?.lastHeartbeatAt).to.equal(undefined);
    expect(removed?.agentCard).to.equal(undefined);
    expect((await store.getWorkspace('ws-8'))?.activeTasks).to.equal(3);
    expect((await store.getWorkspace('ws-8'))?.agentCard).to.deep.equal(card());
  });

  it('isolates an unexpected failure mid-heartbeat too: that one rolls back alone', async () => {
    const now = Date.UTC(2026, 0, 2);
    const item = (id: string, fail: boolean) => ({
      input: { id, report: { ...HEALTHY, activeTasks: 7 }, agentCard: JSON.stringify(card()), now },
      decide: () => {
        if (fail) throw new Error('evaluation blew up');
        return undefined;
      },
    });
    const outcomes = await store.applyHeartbeats([
      item('ws-1', false),
      item('ws-2', true),
      item('ws-3', false),
    ]);
    expect(outcomes.map((o) => o.ok)).to.deep.equal([true, false, true]);
    expect((await store.getWorkspace('ws-1'))?.activeTasks).to.equal(7);
    expect((await store.getWorkspace('ws-3'))?.activeTasks).to.equal(7);
    const failed = await store.getWorkspace('ws-2');
    expect(failed?.activeTasks).to.equal(0);
    expect(failed?.agentCard).to.equal(undefined);
    expect(failed?.lastHeartbeatAt).to.equal(undefined);
  });

  it("keeps each heartbeat's own evaluation when several for one workspace share a commit", async () => {
    const [first, second, third] = await Promise.all([
      beat('ws-1'),
      beat('ws-1', { errorRate: 0.8 }),
      beat('ws-1', { errorRate: 0 }),
    ]);
    expect(batches).to.deep.equal([3]);
    expect([
      first.transition?.reason,
      second.transition?.reason,
      third.transition?.reason,
    ]).to.deep.equal(['HEARTBEAT_RESUMED', 'ERROR_RATE_HIGH', 'RECOVERED']);
  });

  it('answers only after the commit, and a failed commit fails every heartbeat in it', async () => {
    const failing: RegistryStore = {
      ...store,
      applyHeartbeats: () => Promise.reject(new VigilError('STORE_UNAVAILABLE', 'disk full')),
    };
    const clock = createManualClock();
    const broken = createRegistry({
      store: failing,
      clock,
      timings: DEFAULT_TIMINGS,
      urlPolicy: 'local',
      resolveHost: fakeResolver,
      serverStartedAt: clock.now(),
      onCommitted: () => {
        events.push('publish');
      },
    });
    const outcomes = await Promise.allSettled(
      ['ws-1', 'ws-2'].map((id) =>
        broken.heartbeat(tokens[id], { workspaceId: id, agentCard: undefined, report: HEALTHY }),
      ),
    );
    expect(
      outcomes.map((o) => o.status === 'rejected' && (o.reason as VigilError).reason),
    ).to.deep.equal(['STORE_UNAVAILABLE', 'STORE_UNAVAILABLE']);
    expect(events).to.deep.equal([]);
  });
});
