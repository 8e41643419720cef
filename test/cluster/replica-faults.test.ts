import { expect } from 'chai';
import { describeViolations } from '../helpers/cluster-checker.js';
import { CI_TIMINGS } from '../helpers/cluster-fleet.js';
import {
  allOffline,
  finishScenario,
  heartbeatAcks,
  monoNow,
  sidecarsOn,
  skipWithoutEtcd,
  sleep,
  startScenario,
  stopScenario,
  transitionsSeen,
  waitUntil,
  type Scenario,
} from '../helpers/cluster-scenario.js';

const { offlineAfterMs, replicaLeaseMs } = CI_TIMINGS;

describe('cluster: Vigil replica faults (real processes)', function () {
  this.timeout(300_000);
  let scenario: Scenario | undefined;
  before(function () {
    skipWithoutEtcd(this);
  });
  afterEach(async () => {
    await stopScenario(scenario);
    scenario = undefined;
  });

  describe('when a replica is killed -9 with some of its sidecars (300 streaming sidecars)', () => {
    const measured = {
      failoverMaxMs: Infinity,
      deadOfflineMaxMs: Infinity,
      liveOffline: -1,
      valid: false,
      violations: '',
    };
    before(async () => {
      scenario = await startScenario({ workspaces: 300 });
      await sleep(3_000);
      const victim = scenario.fleet.replicas[0]!;
      const placed = await sidecarsOn(scenario, victim);
      const dead = placed.filter((_, i) => i % 10 === 0);
      const liveMoved = placed.filter((_, i) => i % 10 !== 0);
      const killedAt = monoNow();
      scenario.fleet.fault(`kill -9 replica ${victim.id} with ${dead.length} of its sidecars`);
      scenario.sidecars!.kill(dead);
      await victim.kill();
      // Until the dead are OFFLINE (bounded), and long enough for a false OFFLINE to show.
      await sleep(replicaLeaseMs + offlineAfterMs);
      await waitUntil(() => allOffline(scenario!, dead), 20_000);
      await sleep(1_000);
      const result = await finishScenario(scenario, scenario.observers.slice(1));
      const acks = heartbeatAcks(scenario);
      const failover = liveMoved.map((ws) => {
        const next = (acks.get(ws) ?? []).find(
          (a) => a.at > killedAt && a.target !== victim.address,
        );
        return next ? next.at - killedAt : Infinity;
      });
      failover.sort((a, b) => a - b);
      const offline = transitionsSeen(scenario).filter((t) => t.to === 'OFFLINE');
      const deadSet = new Set(dead);
      const deadOffline = dead.map((ws) => {
        const t = offline.find((o) => o.ws === ws);
        return t ? t.t - killedAt : Infinity;
      });
      const p = (q: number) =>
        Math.round(
          failover[Math.min(failover.length - 1, Math.floor(q * failover.length))] ?? Infinity,
        );
      measured.failoverMaxMs = failover[failover.length - 1] ?? Infinity;
      measured.deadOfflineMaxMs = Math.max(...deadOffline);
      measured.liveOffline = offline.filter((o) => !deadSet.has(o.ws ?? '')).length;
      measured.valid = result.valid;
      measured.violations = describeViolations(result);
      console.log(
        `      replica kill -9: ${liveMoved.length} live sidecars re-acknowledged by another replica after p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${Math.round(measured.failoverMaxMs)} ms; ${dead.length} dead sidecars OFFLINE after ${Math.round(Math.min(...deadOffline))}–${Math.round(measured.deadOfflineMaxMs)} ms (bound ${replicaLeaseMs + offlineAfterMs + 2_000} ms); OFFLINE of live sidecars ${measured.liveOffline}, false OFFLINE ${result.stats.falseOffline}`,
      );
      await stopScenario(scenario);
      scenario = undefined;
    });

    it('re-acknowledges its live sidecars elsewhere within 2 s, with 0 false OFFLINE and valid history', () => {
      expect(measured.valid, measured.violations).to.equal(true);
      expect(measured.liveOffline).to.equal(0);
      expect(measured.failoverMaxMs).to.be.at.most(2_000);
    });

    it('takes the sidecars killed with it OFFLINE within lease + offline_after + 2 s', () => {
      expect(measured.deadOfflineMaxMs).to.be.at.most(replicaLeaseMs + offlineAfterMs + 2_000);
    });
  });

  describe('when every replica is stopped for 3 × offline_after and started again (200 streaming sidecars)', () => {
    const measured = { early: -1, liveOffline: -1, deadAll: false, valid: false, violations: '' };
    before(async () => {
      scenario = await startScenario({ workspaces: 200 });
      await sleep(3_000);
      const dead = scenario.workspaces.filter((_, i) => i % 10 === 0).map((w) => w.id);
      const deadSet = new Set(dead);
      const replicas = [...scenario.fleet.replicas];
      scenario.fleet.fault('SIGTERM every replica');
      await Promise.all(replicas.map((r) => r.stop()));
      for (const o of scenario.observers) o.stop();
      const downAt = monoNow();
      await sleep(1_000);
      scenario.sidecars!.kill(dead);
      await sleep(3 * offlineAfterMs - 1_000);
      scenario.fleet.fault('start every replica again');
      const restarted = [];
      for (const r of replicas) {
        restarted.push(
          await scenario.fleet.addReplica(r.id, { port: Number(r.address.split(':')[1]) }),
        );
      }
      const backAt = monoNow();
      const observers = restarted.map((r) => scenario!.fleet.observe(r, 0));
      await Promise.all(observers.map((o) => o.ready));
      await sleep(offlineAfterMs + replicaLeaseMs);
      await waitUntil(() => allOffline(scenario!, dead), 30_000);
      await sleep(1_000);
      const result = await finishScenario(scenario, observers);
      const offline = transitionsSeen(scenario).filter((t) => t.to === 'OFFLINE');
      const early = offline.filter((t) => t.t < backAt + offlineAfterMs);
      const liveOffline = offline.filter((t) => !deadSet.has(t.ws ?? ''));
      const deadOffline = dead.map((ws) => offline.find((t) => t.ws === ws));
      console.log(
        `      all replicas down ${Math.round((backAt - downAt) / 1000)} s: OFFLINE within offline_after of the restart ${early.length}; OFFLINE of live sidecars ${liveOffline.length}; dead sidecars OFFLINE ${deadOffline.filter(Boolean).length}/${dead.length}, ${Math.round(Math.min(...deadOffline.map((t) => (t ? t.t - backAt : Infinity))))}–${Math.round(Math.max(...deadOffline.map((t) => (t ? t.t - backAt : Infinity))))} ms after the restart; false OFFLINE ${result.stats.falseOffline}`,
      );
      measured.early = early.length;
      measured.liveOffline = liveOffline.length;
      measured.deadAll = deadOffline.every(Boolean);
      measured.valid = result.valid;
      measured.violations = describeViolations(result);
      await stopScenario(scenario);
      scenario = undefined;
    });

    it('takes no workspace OFFLINE during the first offline_after after they are back; the dead sidecars go OFFLINE afterwards', () => {
      expect(measured.early).to.equal(0);
      expect(measured.deadAll, 'every dead sidecar went OFFLINE').to.equal(true);
    });

    it('takes no live sidecar OFFLINE (0 false OFFLINE, valid history)', () => {
      expect(measured.valid, measured.violations).to.equal(true);
      expect(measured.liveOffline).to.equal(0);
    });
  });

  describe('when a replica is paused (SIGSTOP) past its lease and resumed (a zombie; 200 streaming sidecars)', () => {
    it('commits no transition while it holds no lease, and its sidecars stay ONLINE elsewhere', async () => {
      scenario = await startScenario({ workspaces: 200 });
      await sleep(3_000);
      const zombie = scenario.fleet.replicas[1]!;
      scenario.fleet.fault(`SIGSTOP replica ${zombie.id}`);
      zombie.pause();
      await sleep(2 * replicaLeaseMs + 1_000);
      scenario.fleet.fault(`SIGCONT replica ${zombie.id}`);
      zombie.resume();
      await sleep(offlineAfterMs + 4_000);
      const result = await finishScenario(scenario);
      const commits = scenario.fleet.history.events.filter(
        (e) =>
          e.kind === 'commit' &&
          e.by === zombie.id &&
          e.reason !== 'CREATED' &&
          e.reason !== 'DELETED',
      ).length;
      console.log(
        `      zombie replica: owner/leader transitions committed by it over the run ${commits}, outside its leases ${result.counts['fenced-commits']}; OFFLINE ${result.stats.offline}, false OFFLINE ${result.stats.falseOffline}`,
      );
      expect(result.valid, describeViolations(result)).to.equal(true);
      expect(result.counts['fenced-commits']).to.equal(0);
      expect(result.stats.offline).to.equal(0);
    });
  });
});
