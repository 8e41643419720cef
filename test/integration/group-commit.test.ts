import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_TIMINGS } from '../../src/domain/config.js';
import { cardFromValue } from '../../src/domain/agent-card.js';
import type { HeartbeatReport } from '../../src/domain/model.js';
import type { RegistryStore } from '../../src/domain/registry-store.js';
import { createUseCases, type UseCases } from '../../src/domain/use-cases.js';
import { VigilError } from '../../src/domain/errors.js';
import { openDatabase } from '../../src/storage/database.js';
import { createSqliteStore } from '../../src/storage/sqlite-store.js';
import { card, fakeResolver, tempDir } from '../helpers/harness.js';
import { createManualClock } from '../helpers/manual-clock.js';
import { createUrlChecker } from '../../src/egress/url-policy.js';

const HEALTHY: HeartbeatReport = {
  errorRate: 0,
  sampleError: '',
  activeTasks: 0,
  uptimeSeconds: 1,
  currentTask: '',
  runtimeState: 'HEALTHY',
  nativeStatusManagement: false,
};

describe('heartbeat group commit in the store', () => {
  let dir: string;
  let store: RegistryStore;
  let useCases: UseCases;
  /** One entry per commit the store told its listeners of: the seqs it committed. */
  let commits: number[][];
  let listenerErrors: unknown[];
  const tokens: Record<string, string> = {};

  beforeEach(async () => {
    dir = tempDir();
    listenerErrors = [];
    store = createSqliteStore(openDatabase(join(dir, 'vigil.db')), {
      onListenerError: (error) => listenerErrors.push(error),
    });
    commits = [];
    store.subscribe((commit) => {
      commits.push(commit.transitions.map((t) => t.seq));
    });
    const clock = createManualClock();
    useCases = createUseCases({
      store,
      clock,
      timings: DEFAULT_TIMINGS,
      checkUrl: createUrlChecker('local', fakeResolver),
      serverStartedAt: clock.now(),
      sweepIntervalMs: 3_600_000,
    });
    for (let i = 0; i < 50; i += 1) {
      tokens[`ws-${i}`] = (await useCases.admin.create(`ws-${i}`, '')).workspaceToken;
    }
    commits = [];
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // Always a promise (the use-case may answer at once).
  const beat = async (id: string, report: Partial<HeartbeatReport> = {}, agentCard?: unknown) =>
    useCases.runtime.heartbeat(tokens[id], {
      workspaceId: id,
      agentCard: agentCard === undefined ? undefined : cardFromValue(agentCard),
      report: { ...HEALTHY, ...report },
    });

  it('applies heartbeats arriving in one event-loop turn in one commit, told once, in seq order', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => beat(`ws-${i}`)));
    expect(results.every((r) => r.status === 'ONLINE')).to.equal(true);
    // 50 PROVISIONING → ONLINE transitions in one commit, published by the store once.
    expect(commits).to.deep.equal([Array.from({ length: 50 }, (_, i) => 51 + i)]);
  });

  it('tells listeners before the writes settle', async () => {
    let told = false;
    store.subscribe(() => {
      told = true;
    });
    const result = await beat('ws-1');
    expect(result.transition?.reason).to.equal('HEARTBEAT_RESUMED');
    expect(told).to.equal(true);
  });

  describe('when a commit listener throws', () => {
    it('answers that heartbeat and every later one, reports the error, and keeps telling the others', async () => {
      store.subscribe(() => {
        throw new Error('listener bug');
      });
      const seen: number[] = [];
      store.subscribe((commit) => {
        seen.push(...commit.transitions.map((t) => t.seq));
      });
      const first = await Promise.all(Array.from({ length: 10 }, (_, i) => beat(`ws-${i}`)));
      expect(first.map((r) => r.status)).to.deep.equal(Array(10).fill('ONLINE'));
      // Later commits, in later turns, still go through and are still told.
      const later = await beat('ws-20', { runtimeState: 'WEDGED' });
      expect(later.status).to.equal('DEGRADED');
      const deleted = await useCases.admin.delete('ws-21');
      expect(deleted.status).to.equal('REMOVED');
      expect(seen).to.have.length(12);
      expect(listenerErrors).to.have.length(3);
      expect((listenerErrors[0] as Error).message).to.equal('listener bug');
      expect((await store.getWorkspace('ws-20'))?.status).to.equal('DEGRADED');
    });
  });

  it('isolates a failing heartbeat: it writes nothing, the others commit', async () => {
    await useCases.admin.delete('ws-7');
    commits = [];
    const outcomes = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => beat(`ws-${i}`, { activeTasks: 3 }, card())),
    );
    expect(commits).to.have.length(1);
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
    const outcomes = await Promise.allSettled(
      [item('ws-1', false), item('ws-2', true), item('ws-3', false)].map(({ input, decide }) =>
        store.applyHeartbeat(input, decide),
      ),
    );
    expect(outcomes.map((o) => o.status)).to.deep.equal(['fulfilled', 'rejected', 'fulfilled']);
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
    expect(commits).to.have.length(1);
    expect([
      first.transition?.reason,
      second.transition?.reason,
      third.transition?.reason,
    ]).to.deep.equal(['HEARTBEAT_RESUMED', 'ERROR_RATE_HIGH', 'RECOVERED']);
  });

  it('answers no heartbeat from memory while an earlier one of the same workspace waits for its commit', async () => {
    await beat('ws-1');
    expect((await beat('ws-1')).fromMemory, 'a steady heartbeat').to.equal(true);
    // The first changes the status and waits for the shared commit; the second, in the same
    // turn, must be judged on what that commit leaves, not on the mirror before it.
    const [wedged, healthy] = await Promise.all([
      beat('ws-1', { runtimeState: 'WEDGED' }),
      beat('ws-1', { runtimeState: 'HEALTHY' }),
    ]);
    expect([wedged.status, wedged.transition?.reason]).to.deep.equal([
      'DEGRADED',
      'RUNTIME_WEDGED',
    ]);
    expect([healthy.status, healthy.fromMemory, healthy.transition?.reason]).to.deep.equal([
      'ONLINE',
      false,
      'RECOVERED',
    ]);
    expect((await store.getWorkspace('ws-1'))?.status).to.equal('ONLINE');
  });

  it('answers only after the commit, and a failed commit fails every heartbeat in it', async () => {
    const failing: RegistryStore = {
      ...store,
      applyHeartbeat: () => Promise.reject(new VigilError('STORE_UNAVAILABLE', 'disk full')),
    };
    const clock = createManualClock();
    const broken = createUseCases({
      store: failing,
      clock,
      timings: DEFAULT_TIMINGS,
      checkUrl: createUrlChecker('local', fakeResolver),
      serverStartedAt: clock.now(),
      sweepIntervalMs: 3_600_000,
    });
    const outcomes = await Promise.allSettled(
      ['ws-1', 'ws-2'].map(async (id) =>
        broken.runtime.heartbeat(tokens[id], {
          workspaceId: id,
          agentCard: undefined,
          report: HEALTHY,
        }),
      ),
    );
    expect(
      outcomes.map((o) => o.status === 'rejected' && (o.reason as VigilError).reason),
    ).to.deep.equal(['STORE_UNAVAILABLE', 'STORE_UNAVAILABLE']);
    expect(commits).to.deep.equal([]);
  });
});
