import { expect } from 'chai';
import { describeViolations } from '../helpers/cluster-checker.js';
import type { Replica } from '../helpers/cluster-fleet.js';
import {
  finishScenario,
  SCHEDULES,
  skipWithoutEtcd,
  sleep,
  startScenario,
  stopScenario,
  type Scenario,
} from '../helpers/cluster-scenario.js';

/** mulberry32: a small seeded PRNG, so a failing schedule can be replayed with its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const BASE_SEED = Number(process.env['VIGIL_CLUSTER_SEED'] ?? String(Date.now() % 1_000_000));
const SCHEDULE_MS = 60_000;

/**
 * One randomized fault schedule: for 60 s, one fault at a time, each held
 * 1–6 s then healed, then 1–3 s of calm — kill -9 or SIGSTOP of a random etcd
 * member, kill -9 of a random replica (restarted under a new id on its
 * address, as a supervisor would), SIGSTOP of a random replica (often past
 * its 3 s lease: a zombie) — under streaming sidecars and a steady churn of
 * CreateWorkspace calls; then the checker runs over the whole history.
 */
async function runSchedule(scenario: Scenario, random: () => number): Promise<string[]> {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
  const hold = () => 1_000 + Math.floor(random() * 5_000);
  const applied: string[] = [];
  const end = Date.now() + SCHEDULE_MS;
  let generation = 0;
  while (Date.now() < end) {
    const kind = pick(['etcd-kill', 'etcd-pause', 'replica-kill', 'replica-pause'] as const);
    const ms = hold();
    const { cluster, fleet } = scenario;
    if (kind === 'etcd-kill' || kind === 'etcd-pause') {
      const member = pick(cluster.members.filter((m) => m.alive()));
      const what = `${kind} ${member.name} ${ms} ms`;
      fleet.fault(what);
      applied.push(what);
      if (kind === 'etcd-kill') {
        await cluster.kill(member);
        await sleep(ms);
        fleet.fault(`restart ${member.name}`);
        await cluster.restart(member);
      } else {
        cluster.pause(member);
        await sleep(ms);
        fleet.fault(`resume ${member.name}`);
        cluster.resume(member);
      }
    } else {
      const replica = pick(fleet.replicas.filter((r) => r.alive()));
      const what = `${kind} ${replica.id} ${ms} ms`;
      fleet.fault(what);
      applied.push(what);
      if (kind === 'replica-kill') {
        await replica.kill();
        await sleep(ms);
        generation += 1;
        const id = `${replica.id.split('-')[0] ?? replica.id}-${generation}`;
        fleet.fault(`start ${id} on ${replica.address}`);
        const port = Number(replica.address.split(':')[1]);
        const restarted: Replica = await fleet.addReplica(id, { port });
        applied.push(`restarted as ${restarted.id}`);
      } else {
        replica.pause();
        await sleep(ms);
        fleet.fault(`resume ${replica.id}`);
        replica.resume();
      }
    }
    await sleep(1_000 + Math.floor(random() * 2_000));
  }
  return applied;
}

describe('cluster: randomized fault schedules through the checker (real processes)', function () {
  this.timeout(400_000);
  let scenario: Scenario | undefined;
  before(function () {
    skipWithoutEtcd(this);
  });
  afterEach(async () => {
    await stopScenario(scenario);
    scenario = undefined;
  });

  for (let i = 0; i < SCHEDULES; i += 1) {
    const seed = BASE_SEED + i;
    it(`keeps the five properties over a 60 s schedule (${i + 1} of ${SCHEDULES}; VIGIL_CLUSTER_SCHEDULES=N runs more; seed ${seed}, VIGIL_CLUSTER_SEED replays)`, async () => {
      scenario = await startScenario({ workspaces: 100 });
      const churn = scenario.fleet.startChurn('churn', 200);
      const applied = await runSchedule(scenario, prng(seed));
      await scenario.cluster.healthy();
      await sleep(5_000);
      await churn.stop();
      const result = await finishScenario(scenario);
      console.log(
        `      seed ${seed}: ${applied.join('; ')}\n      → ${result.stats.transitions} transitions on ${result.stats.observers} streams, ${result.stats.acknowledgedHeartbeats} acknowledged heartbeats, OFFLINE ${result.stats.offline}, false OFFLINE ${result.stats.falseOffline}, violations ${result.violations.length}`,
      );
      expect(result.valid, describeViolations(result)).to.equal(true);
    });
  }
});
