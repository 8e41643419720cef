import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_TIMINGS } from '../../src/domain/config.js';
import type { Transition } from '../../src/domain/model.js';
import type { RegistryStore, TransitionsQuery } from '../../src/domain/registry-store.js';
import { createUseCases, type UseCases } from '../../src/domain/use-cases.js';
import { openDatabase } from '../../src/storage/database.js';
import { createSqliteStore } from '../../src/storage/sqlite-store.js';
import { createTransitionHub, type TransitionHub } from '../../src/watch/transition-hub.js';
import { openWatch, type WatchEvent, type WatchRequest } from '../../src/watch/watch-session.js';
import { fakeResolver, tempDir } from '../helpers/harness.js';
import { createManualClock, type ManualClock } from '../helpers/manual-clock.js';
import { createUrlChecker } from '../../src/egress/url-policy.js';

interface Fixture {
  store: RegistryStore;
  hub: TransitionHub;
  useCases: UseCases;
  clock: ManualClock;
  /** Every readTransitions call the hub made to the store. */
  reads: TransitionsQuery[];
}

describe('watch fan-out', () => {
  let dir: string;
  let f: Fixture;
  const aborts: AbortController[] = [];

  async function setUp(tailCapacity: number): Promise<Fixture> {
    const real = createSqliteStore(openDatabase(join(dir, 'vigil.db')));
    const reads: TransitionsQuery[] = [];
    const store: RegistryStore = {
      ...real,
      readTransitions: (query) => {
        reads.push(query);
        return real.readTransitions(query);
      },
    };
    const clock = createManualClock();
    const hub = createTransitionHub({
      store,
      clock,
      initialHead: await store.headSeq(),
      tailCapacity,
    });
    const useCases = createUseCases({
      store,
      clock,
      timings: DEFAULT_TIMINGS,
      checkUrl: createUrlChecker('local', fakeResolver),
      serverStartedAt: clock.now(),
      sweepIntervalMs: 3_600_000,
    });
    store.subscribe((commit) => {
      hub.publish(commit.transitions);
    });
    return { store, hub, useCases, clock, reads };
  }

  beforeEach(() => {
    dir = tempDir();
  });

  afterEach(async () => {
    for (const a of aborts.splice(0)) a.abort();
    await f.store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function watch(request: Partial<WatchRequest> = {}) {
    const abort = new AbortController();
    aborts.push(abort);
    return openWatch(
      { store: f.store, hub: f.hub, clock: f.clock, progressIntervalMs: 60_000 },
      { workspaceIds: [], afterSeq: 0, includeSnapshot: false, ...request },
      abort.signal,
    );
  }

  async function take(events: AsyncGenerator<WatchEvent>, count: number): Promise<Transition[]> {
    const got: Transition[] = [];
    while (got.length < count) {
      const next = await events.next();
      if (next.done) throw new Error('the watch ended');
      if (next.value.type === 'transition') got.push(next.value.transition);
    }
    return got;
  }

  async function createMany(count: number, prefix = 'ws'): Promise<void> {
    for (let i = 0; i < count; i += 1) await f.useCases.admin.create(`${prefix}-${i}`, '');
  }

  describe('when many watchers follow the head', () => {
    it('serves all of them from the shared tail: no store reads at all', async () => {
      f = await setUp(1_000);
      const watchers = await Promise.all(Array.from({ length: 200 }, () => watch()));
      for (const w of watchers)
        expect((await w.next()).value).to.deep.equal({ type: 'progress', seq: 0 });
      await createMany(50);
      for (const w of watchers) {
        expect((await take(w, 50)).map((t) => t.seq)).to.deep.equal(
          Array.from({ length: 50 }, (_, i) => i + 1),
        );
      }
      expect(f.reads).to.deep.equal([]);
    });

    it('gives every watcher the very same transition objects (one read, shared)', async () => {
      f = await setUp(1_000);
      const [a, b] = [await watch(), await watch()];
      await a.next();
      await b.next();
      await createMany(3);
      const [fromA, fromB] = [await take(a, 3), await take(b, 3)];
      fromA.forEach((t, i) => expect(t).to.equal(fromB[i]));
    });
  });

  describe('when a watcher is slow', () => {
    it('holds nothing for it, blocks no one, and lets it catch up from the store in bounded pages', async () => {
      f = await setUp(100);
      const slow = await watch();
      const fast = await watch();
      await slow.next();
      await fast.next();

      // 2,000 transitions while the slow watcher pulls nothing: writers and the fast watcher go on.
      const fastGot = take(fast, 2_000);
      await createMany(2_000);
      expect((await fastGot).at(-1)?.seq).to.equal(2_000);
      // Nothing was read on the slow watcher's behalf while it did not ask.
      expect(f.reads).to.deep.equal([]);

      // Its cursor (0) is older than the 100-200 transitions in memory: it reads the store, a page at a time.
      const caughtUp = await take(slow, 2_000);
      expect(caughtUp.map((t) => t.seq)).to.deep.equal(
        Array.from({ length: 2_000 }, (_, i) => i + 1),
      );
      expect(f.reads.length).to.be.within(2, 2_000 / 256 + 2);
      for (const read of f.reads) expect(read.limit).to.be.at.most(256);
    });
  });

  describe('when history older than the retention is compacted', () => {
    it('gives a cursor in the compacted part a snapshot marked reset, then the new transitions', async () => {
      f = await setUp(10);
      await createMany(30, 'old');
      f.clock.advance(DEFAULT_TIMINGS.retentionMs + 1);
      await createMany(2, 'new');
      expect(await f.useCases.liveness.compactHistory()).to.equal(30);
      expect(await f.store.compactedThrough()).to.equal(30);

      const resumed = await watch({ afterSeq: 5 });
      const events: WatchEvent[] = [];
      for (;;) {
        const next = await resumed.next();
        if (next.done) throw new Error('ended');
        events.push(next.value);
        if (next.value.type === 'snapshotEnd') break;
      }
      expect(events.filter((e) => e.type === 'snapshot')).to.have.length(32);
      expect(events.at(-1)).to.deep.equal({ type: 'snapshotEnd', seq: 32, reset: true });
      await f.useCases.admin.delete('new-1');
      expect((await take(resumed, 1))[0]).to.include({ seq: 33, toStatus: 'REMOVED' });

      // A cursor at the compaction point or later is not a gap.
      const exact = await watch({ afterSeq: 30 });
      expect((await take(exact, 3)).map((t) => t.seq)).to.deep.equal([31, 32, 33]);
    });

    it('never reuses a compacted seq', async () => {
      f = await setUp(10);
      await createMany(5);
      f.clock.advance(DEFAULT_TIMINGS.retentionMs + 1);
      await f.useCases.liveness.compactHistory();
      await f.useCases.admin.create('after', '');
      expect(await f.store.headSeq()).to.equal(6);
    });
  });
});
