import { Client, credentials, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { heartbeatRequest, onlineWorkspace } from '../helpers/e2e-fixtures.js';
import { CONTROL_TOKEN, startHarness, tempDir, type Harness } from '../helpers/harness.js';
import { bearer, call, errorInfoOf, expectRpcError, openWatch } from '../helpers/rpc.js';
import { etcdInstalled, startEtcdMember, type EtcdMember } from '../helpers/suite-store.js';

/** grpc.health.v1.Health/Check for the whole server ("" service): 1 SERVING, 2 NOT_SERVING. */
function healthOf(port: number): Promise<number> {
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      (empty: Buffer) => empty,
      (bytes: Buffer) => bytes,
      Buffer.alloc(0),
      (error, response) => {
        client.close();
        if (error) reject(error);
        // HealthCheckResponse { status = 1 }: tag 0x08, then the enum value.
        else resolve(response && response.length === 2 && response[0] === 0x08 ? response[1]! : 0);
      },
    );
  });
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, ms: number) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('cluster replica that cannot confirm its etcd lease', function () {
  this.timeout(60_000);
  let etcd: EtcdMember | undefined;
  let h: Harness | undefined;

  before(function () {
    if (!etcdInstalled()) {
      console.log('      skipped: needs etcd (Debian package etcd-server)');
      this.skip();
    }
  });
  afterEach(async () => {
    if (etcd) process.kill(etcd.pid, 'SIGCONT');
    await h?.dispose();
    etcd?.stop();
    h = undefined;
    etcd = undefined;
  });

  it('turns NOT_SERVING, ends its streams and refuses calls with NOT_SERVING, then serves again once etcd answers', async () => {
    etcd = await startEtcdMember();
    const dataDir = tempDir();
    h = await startHarness({
      dataDir,
      settings: {
        etcd: {
          endpoints: etcd.endpoints,
          prefix: 'serving/',
          replicaId: 'r-serving',
          advertise: '127.0.0.1:0',
          leaseTtlSeconds: 2,
        },
      },
    });
    const harness = h;
    expect(await healthOf(harness.vigil.port)).to.equal(1);
    const ws = await onlineWorkspace(harness, 'ws-serving');
    const watch = openWatch(harness.clients.control, {}, CONTROL_TOKEN);
    await watch.next();
    const stream = harness.clients.runtime.heartbeatStream(bearer(ws.token));
    const streamEnded = new Promise<Error>((resolve) => {
      stream.on('error', resolve);
    });
    stream.on('data', () => undefined);
    stream.write({ requestId: 1, heartbeat: heartbeatRequest(ws.workspace.id) });

    // etcd stops answering: keepalives go unconfirmed; after half the TTL the replica stops vouching.
    process.kill(etcd.pid, 'SIGSTOP');
    const stoppedAt = Date.now();
    const streamError = (await streamEnded) as Error & { code: number };
    const endedAfterMs = Date.now() - stoppedAt;
    expect(streamError.code).to.equal(status.UNAVAILABLE);
    expect(errorInfoOf(streamError as never).reason).to.equal('NOT_SERVING');
    const watchError = await watch.ended();
    expect(watchError?.code).to.equal(status.UNAVAILABLE);
    expect(errorInfoOf(watchError!).reason).to.equal('NOT_SERVING');
    // TTL/2 = 1 s after the last confirmed keepalive, which is at most TTL/3 before the stop.
    expect(endedAfterMs).to.be.below(2_000);
    expect(await healthOf(harness.vigil.port)).to.equal(2);
    await expectRpcError(
      call(
        harness.clients.runtime,
        harness.clients.runtime.heartbeat,
        heartbeatRequest(ws.workspace.id),
        ws.token,
      ),
      status.UNAVAILABLE,
      'NOT_SERVING',
    );

    // etcd answers again: the replica confirms a lease (a new one, if the old expired) and serves.
    process.kill(etcd.pid, 'SIGCONT');
    await eventually(
      'SERVING again',
      async () => ((await healthOf(harness.vigil.port)) === 1 ? true : undefined),
      15_000,
    );
    const answered = await eventually(
      'a heartbeat answered',
      () =>
        call(
          harness.clients.runtime,
          harness.clients.runtime.heartbeat,
          heartbeatRequest(ws.workspace.id),
          ws.token,
        ),
      15_000,
    );
    expect(answered).to.not.equal(undefined);
  });
});
