import { expect } from 'chai';
import { describeViolations } from '../helpers/cluster-checker.js';
import { requestDelta } from '../helpers/cluster-fleet.js';
import {
  finishScenario,
  skipWithoutEtcd,
  sleep,
  startScenario,
  stopScenario,
  type Scenario,
} from '../helpers/cluster-scenario.js';

async function requestsOf(scenario: Scenario) {
  return Promise.all(scenario.fleet.replicas.map((r) => r.etcdRequests()));
}

async function ackedCount(scenario: Scenario): Promise<number> {
  return (await scenario.sidecars!.stats()).acked;
}

describe('cluster: etcd requests of steady heartbeats (real processes)', function () {
  this.timeout(300_000);
  let scenario: Scenario | undefined;
  before(function () {
    skipWithoutEtcd(this);
  });
  afterEach(async () => {
    await stopScenario(scenario);
    scenario = undefined;
  });

  describe('when 800 sidecars stream steady heartbeats to 3 replicas', () => {
    it('makes 10,000 heartbeats cost at most 100 etcd requests (all ops, keepalives included, from /metrics)', async () => {
      scenario = await startScenario({ workspaces: 800, channelsPerReplica: 2 });
      await sleep(4_000);
      const before = await requestsOf(scenario);
      const acked0 = await ackedCount(scenario);
      let acked = acked0;
      while (acked - acked0 < 10_000) {
        await sleep(250);
        acked = await ackedCount(scenario);
      }
      const after = await requestsOf(scenario);
      const delta = requestDelta(before, after);
      const result = await finishScenario(scenario);
      console.log(
        `      ${acked - acked0} steady heartbeats acknowledged: ${delta.total} etcd requests (${Object.entries(
          delta.byOp,
        )
          .filter(([, n]) => n > 0)
          .map(([op, n]) => `${op} ${n}`)
          .join(
            ', ',
          )}) = ${(delta.total / (acked - acked0)).toFixed(4)} per heartbeat; OFFLINE ${result.stats.offline}`,
      );
      expect(result.valid, describeViolations(result)).to.equal(true);
      expect(delta.total).to.be.at.most(100);
    });
  });

  describe('when 200 sidecars send unary heartbeats through a round-robin balancer over 3 replicas', () => {
    it('forwards them to the owners with 0 false OFFLINE and 0 etcd writes per heartbeat', async () => {
      scenario = await startScenario({ workspaces: 200, mode: 'unary', channelsPerReplica: 2 });
      await sleep(5_000);
      const before = await requestsOf(scenario);
      const acked0 = await ackedCount(scenario);
      await sleep(10_000);
      const acked = (await ackedCount(scenario)) - acked0;
      const after = await requestsOf(scenario);
      const delta = requestDelta(before, after);
      const stats = await scenario.sidecars!.stats();
      const result = await finishScenario(scenario);
      const writes = delta.byOp['txn'] ?? 0;
      const forwarded = scenario.fleet.replicas
        .flatMap((r) => r.logLines())
        .filter((l) => typeof l['msg'] === 'string' && /forward/i.test(l['msg'])).length;
      console.log(
        `      round-robin unary: ${acked} heartbeats acknowledged in 10 s, ${writes} etcd writes (txn) = ${(writes / acked).toFixed(4)} per heartbeat, ${delta.total} etcd requests in all (${Object.entries(
          delta.byOp,
        )
          .filter(([, n]) => n > 0)
          .map(([op, n]) => `${op} ${n}`)
          .join(
            ', ',
          )}); failed ${stats.failed}, indeterminate ${stats.indeterminate}; OFFLINE ${result.stats.offline}, false OFFLINE ${result.stats.falseOffline}; forward log lines ${forwarded}`,
      );
      expect(result.valid, describeViolations(result)).to.equal(true);
      expect(result.stats.offline).to.equal(0);
      expect(acked).to.be.greaterThan(1_000);
      expect(writes).to.equal(0);
    });
  });
});
