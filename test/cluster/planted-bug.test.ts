import { join } from 'node:path';
import { expect } from 'chai';
import { checkHistory, describeViolations, type CheckResult } from '../helpers/cluster-checker.js';
import { CI_TIMINGS, startFleet } from '../helpers/cluster-fleet.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd-cluster.js';
import { skipWithoutEtcd, sleep } from '../helpers/cluster-scenario.js';

const PLANTED = join(__dirname, '..', 'helpers', 'planted-unfenced-owner.js');

/**
 * The checker must be able to fail. Replica r1 runs with a test-only module
 * preloaded (`node --require`) that hides take-overs from it, so it keeps
 * believing it owns workspaces whose sidecars moved to r2. With its owner
 * writes fenced (the shipped behaviour) its stale OFFLINE decisions cannot
 * commit and the history is valid; with the fence dropped (the planted bug)
 * they commit and the checker names no-false-offline.
 */
async function runWith(
  cluster: EtcdCluster,
  planted: 'withhold' | 'unfenced',
): Promise<{ result: CheckResult; refused: number }> {
  const fleet = await startFleet({
    cluster,
    replicas: 2,
    nodeArgs: (index) => (index === 0 ? ['--require', PLANTED] : []),
    env: (index): Record<string, string> => (index === 0 ? { VIGIL_PLANTED: planted } : {}),
  });
  try {
    const observers = fleet.replicas.map((r) => fleet.observe(r));
    await Promise.all(observers.map((o) => o.ready));
    const workspaces = await fleet.createWorkspaces(40, `planted-${planted}`);
    const sidecars = fleet.startSidecars({
      workspaces,
      mode: 'stream',
      intervalMs: CI_TIMINGS.heartbeatIntervalMs,
      channelsPerReplica: 1,
      register: true,
      answerTimeoutMs: 2_500,
    });
    await sidecars.ready;
    await sleep(3_000);
    const stats = await sidecars.stats();
    const onR1 = Object.entries(stats.placement)
      .filter(([, r]) => r === 0)
      .map(([id]) => id);
    fleet.fault(`move ${onR1.length} sidecars from r1 (${planted}) to r2`);
    sidecars.move(onR1);
    await sleep(CI_TIMINGS.offlineAfterMs + 4_000);
    await sidecars.finish();
    await sleep(1_000);
    const head = Math.max(...observers.map((o) => o.cursor()));
    await Promise.all(observers.map((o) => o.reach(head)));
    for (const o of observers) o.stop(head);
    await fleet.recordEtcdFacts();
    const result = checkHistory(fleet.history.events, {
      offlineAfterMs: CI_TIMINGS.offlineAfterMs,
    });
    // r1's stale decisions that its fence refused (logged by its sweep).
    const refused = fleet.replicas[0]!.logLines().filter(
      (l) => l['msg'] === 'liveness sweep, flush or compaction failed',
    ).length;
    console.log(
      `      r1 ${planted}: ${onR1.length} sidecars moved to r2; checker ${
        result.valid
          ? 'valid'
          : `found ${result.violations.length} violations (${Object.entries(result.counts)
              .filter(([, n]) => n > 0)
              .map(([p, n]) => `${p} ${n}`)
              .join(', ')})`
      }; OFFLINE ${result.stats.offline}, false OFFLINE ${result.stats.falseOffline}; sweep writes refused on r1 ${refused}`,
    );
    return { result, refused };
  } finally {
    await fleet.stop();
  }
}

describe('cluster checker against a planted bug (real processes)', function () {
  this.timeout(300_000);
  let cluster: EtcdCluster | undefined;
  before(async function () {
    skipWithoutEtcd(this);
    cluster = await startEtcdCluster();
  });
  after(async () => {
    await cluster?.stop();
  });

  describe('when a replica that missed a take-over keeps its owner fence', () => {
    it('commits none of its stale decisions: the history is valid', async () => {
      const { result, refused } = await runWith(cluster!, 'withhold');
      expect(result.valid, describeViolations(result)).to.equal(true);
      expect(result.stats.offline).to.equal(0);
      expect(refused, 'r1 tried to commit its stale OFFLINE decisions').to.be.greaterThan(0);
    });
  });

  describe('when its owner writes are unfenced (the planted bug)', () => {
    it('is caught by the checker as no-false-offline', async () => {
      const { result } = await runWith(cluster!, 'unfenced');
      expect(result.valid).to.equal(false);
      expect(result.counts['no-false-offline']).to.be.greaterThan(0);
    });
  });
});
