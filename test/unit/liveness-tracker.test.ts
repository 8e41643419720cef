import { ownsEverything } from '../../src/domain/ownership.js';
import { expect } from 'chai';
import { createLivenessTracker } from '../../src/domain/liveness-tracker.js';
import type { HeartbeatReport } from '../../src/domain/model.js';
import type { WorkspaceState } from '../../src/domain/registry-store.js';

const STARTED = 1_000_000;
const REPORT: HeartbeatReport = {
  errorRate: 0,
  sampleError: '',
  activeTasks: 1,
  uptimeSeconds: 1,
  currentTask: '',
  runtimeState: 'HEALTHY',
  nativeStatusManagement: false,
};

function state(id: string, overrides: Partial<WorkspaceState> = {}): WorkspaceState {
  return {
    id,
    status: 'ONLINE',
    lastHeartbeatAt: undefined,
    lastRegisteredAt: STARTED - 60_000,
    lastRegisterFailureAt: undefined,
    createdAt: STARTED - 120_000,
    hasCard: true,
    ...overrides,
  };
}

describe('liveness tracker', () => {
  describe('expired', () => {
    it('counts from max(lastSeen, ownedSince): time before the start never counts', () => {
      const tracker = createLivenessTracker(ownsEverything(STARTED));
      tracker.observe([state('old'), state('fresh')]);
      tracker.beat('fresh', STARTED + 30_000, REPORT);
      expect(tracker.expired(STARTED + 40_000, 40_000, 10)).to.deep.equal([]);
      expect(tracker.expired(STARTED + 40_001, 40_000, 10)).to.deep.equal(['old']);
      expect(tracker.expired(STARTED + 70_001, 40_000, 10)).to.deep.equal(['old', 'fresh']);
    });

    it('never counts the time before the owner last turned SERVING again (its own downtime)', () => {
      let servingSince = STARTED;
      const ownership = { ...ownsEverything(STARTED), servingSince: () => servingSince };
      const tracker = createLivenessTracker(ownership);
      tracker.observe([state('a')]);
      tracker.beat('a', STARTED + 10_000, REPORT);
      // NOT_SERVING from +12 s to +30 s (its streams ended, its calls refused), SERVING again at +30 s.
      servingSince = STARTED + 30_000;
      expect(tracker.expired(STARTED + 60_000, 40_000, 10)).to.deep.equal([]);
      expect(tracker.expired(STARTED + 70_000, 40_000, 10)).to.deep.equal([]);
      expect(tracker.expired(STARTED + 70_001, 40_000, 10)).to.deep.equal(['a']);
    });

    it('only considers ONLINE and DEGRADED workspaces, and forgets REMOVED ones', () => {
      const tracker = createLivenessTracker(ownsEverything(STARTED));
      tracker.observe([state('a', { status: 'OFFLINE' }), state('b', { status: 'DEGRADED' })]);
      tracker.observe([state('c'), state('c', { status: 'REMOVED' })]);
      expect(tracker.expired(STARTED + 100_000, 40_000, 10)).to.deep.equal(['b']);
      expect(tracker.get('c')).to.equal(undefined);
      expect(tracker.size).to.equal(2);
    });
  });

  describe('takeDirty', () => {
    it('hands out each beaten workspace once, oldest first, only once it has waited long enough', () => {
      const tracker = createLivenessTracker(ownsEverything(STARTED));
      tracker.observe([state('a'), state('b')]);
      tracker.beat('a', STARTED + 1, REPORT);
      tracker.beat('b', STARTED + 2, REPORT);
      tracker.beat('a', STARTED + 3, { ...REPORT, activeTasks: 5 });
      expect(tracker.takeDirty(STARTED, 10)).to.deep.equal([]);
      expect(tracker.takeDirty(STARTED + 1, 10)).to.deep.equal([
        { id: 'a', lastHeartbeatAt: STARTED + 3, report: { ...REPORT, activeTasks: 5 } },
      ]);
      expect(tracker.takeDirty(Infinity, 10).map((r) => r.id)).to.deep.equal(['b']);
      expect(tracker.takeDirty(Infinity, 10)).to.deep.equal([]);
    });

    it('gives back records whose write failed, unless newer heartbeats came', () => {
      const tracker = createLivenessTracker(ownsEverything(STARTED));
      tracker.observe([state('a'), state('b')]);
      tracker.beat('a', STARTED + 1, REPORT);
      tracker.beat('b', STARTED + 1, REPORT);
      const taken = tracker.takeDirty(Infinity, 10);
      tracker.beat('b', STARTED + 9, REPORT);
      tracker.restore(taken);
      expect(
        tracker.takeDirty(Infinity, 10).map((r) => [r.id, r.lastHeartbeatAt]),
      ).to.have.deep.members([
        ['a', STARTED + 1],
        ['b', STARTED + 9],
      ]);
    });
  });

  it('ignores heartbeats of workspaces it does not track', () => {
    const tracker = createLivenessTracker(ownsEverything(STARTED));
    tracker.beat('unknown', STARTED, REPORT);
    expect(tracker.size).to.equal(0);
    expect(tracker.takeDirty(Infinity, 10)).to.deep.equal([]);
  });
});
