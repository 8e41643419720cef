import { expect } from 'chai';
import { VigilError } from '../../src/domain/errors.js';
import {
  createEtcdConnection,
  SLOW_MS,
  type EtcdConnection,
} from '../../src/storage/etcd/etcd-connection.js';
import {
  ETCD_INSTALLED,
  ETCD_SKIP_REASON,
  startEtcdCluster,
  type EtcdCluster,
} from '../helpers/etcd-cluster.js';

const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms);
  });

describe('etcd connection on a real 3-member cluster', function () {
  this.timeout(90_000);
  let cluster: EtcdCluster | undefined;
  let connection: EtcdConnection | undefined;

  before(async function () {
    if (!ETCD_INSTALLED) {
      console.log(`      ${ETCD_SKIP_REASON}`);
      this.skip();
    }
    cluster = await startEtcdCluster();
  });
  afterEach(() => {
    for (const m of cluster?.members ?? []) if (m.paused()) cluster?.resume(m);
    connection?.close();
    connection = undefined;
  });
  after(async () => {
    await cluster?.stop();
  });

  const key = { key: Buffer.from('vigil-connection-test') };

  it(`passes over a paused member once it has owed an answer for ${SLOW_MS} ms, long before the call deadline`, async () => {
    connection = createEtcdConnection({ endpoints: cluster!.members.map((m) => m.clientUrl) });
    for (let i = 0; i < 3; i += 1) await connection.range(key);
    const leader = await cluster!.leader();
    const paused = cluster!.members.find((m) => m !== leader)!;
    // Streams on a member learn when the calls found it unresponsive (they move too).
    const suspected: string[] = [];
    connection.onSuspect((member) => suspected.push(member));
    cluster!.pause(paused);
    // Calls go out every 100 ms: the ones that fall to the paused member in turn wait on it.
    const early: Promise<unknown>[] = [];
    const start = Date.now();
    while (Date.now() - start < SLOW_MS + 500) {
      early.push(connection.range(key).catch(() => undefined));
      await sleep(100);
    }
    // By now the member has owed an answer for over SLOW_MS: no call goes to it any more,
    // though no call has reached its 5 s deadline yet.
    const late: number[] = [];
    for (let i = 0; i < 12; i += 1) {
      const t0 = Date.now();
      await connection.range(key);
      late.push(Date.now() - t0);
    }
    expect(Date.now() - start).to.be.below(5_000);
    expect(Math.max(...late), `durations ${late.join(', ')} ms`).to.be.below(500);
    expect(suspected).to.deep.equal([paused.clientUrl]);
    cluster!.resume(paused);
    await Promise.all(early);
  });

  it('fails a call etcd does not answer with STORE_UNAVAILABLE (retryable, its outcome unknown) at its own deadline', async () => {
    connection = createEtcdConnection({ endpoints: cluster!.members.map((m) => m.clientUrl) });
    await connection.range(key);
    for (const m of cluster!.members) cluster!.pause(m);
    const t0 = Date.now();
    const error = await connection
      .txn([], [{ request_put: { ...key, value: Buffer.from('x') } }], [], { timeoutMs: 300 })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    const took = Date.now() - t0;
    expect(error).to.be.instanceOf(VigilError);
    expect((error as VigilError).reason).to.equal('STORE_UNAVAILABLE');
    expect((error as VigilError).cause).to.be.instanceOf(Error);
    expect(took).to.be.below(2_000);
  });
});
