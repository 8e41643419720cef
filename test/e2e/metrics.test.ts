import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { WatchStatusResponse } from '../../gen/vigil/v1/control_service.js';
import { WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { startServe, type Served } from '../helpers/cli-run.js';
import {
  createWorkspace,
  firstWatchEvent,
  heartbeatRequest,
  register,
  registerRequest,
} from '../helpers/e2e-fixtures.js';
import { CONTROL_TOKEN, startHarness, tempDir, type Harness } from '../helpers/harness.js';
import { scrape, scrapeUntil, type Scrape } from '../helpers/prometheus-text.js';
import { bearer, call, createClients, expectRpcError, openWatch } from '../helpers/rpc.js';

/** Prometheus metrics at /metrics, and the structured logs of `vigil serve`. */

function transitionOf(response: WatchStatusResponse) {
  return response.event?.$case === 'transition' ? response.event.value : undefined;
}

describe('metrics', () => {
  describe('on an in-process server', () => {
    let harness: Harness;
    let url: string;

    beforeEach(async () => {
      // Metrics are one process's: on etcd too, one replica serves every call.
      harness = await startHarness({ settings: { metricsListen: '127.0.0.1:0' }, replicas: 1 });
      expect(harness.vigil.metricsPort, 'metrics port').to.be.a('number');
      url = `http://127.0.0.1:${String(harness.vigil.metricsPort)}/metrics`;
    });

    afterEach(async () => {
      await harness.dispose();
    });

    const heartbeat = (id: string, token: string, overrides = {}) =>
      call(
        harness.clients.runtime,
        harness.clients.runtime.heartbeat,
        heartbeatRequest(id, overrides),
        token,
      );

    describe('when RPCs succeed and fail', () => {
      it('counts them by method and code, with a latency histogram per method, and counts heartbeats', async () => {
        await createWorkspace(harness, 'm-a');
        await createWorkspace(harness, 'm-b');
        const { token } = await createWorkspace(harness, 'm-c');
        await register(harness, 'm-c', token);
        for (let i = 0; i < 3; i += 1) await heartbeat('m-c', token);
        await expectRpcError(
          heartbeat('m-c', 'vgw_not-a-token'),
          status.UNAUTHENTICATED,
          'TOKEN_INVALID',
        );
        await expectRpcError(
          heartbeat('m-c', token, { agentCard: {} }),
          status.INVALID_ARGUMENT,
          'AGENT_CARD_INVALID',
        );
        await expectRpcError(
          call(
            harness.clients.control,
            harness.clients.control.getWorkspace,
            { workspaceId: 'm-missing' },
            CONTROL_TOKEN,
          ),
          status.NOT_FOUND,
          'WORKSPACE_NOT_FOUND',
        );

        const m = await scrape(url);
        const requests = (method: string, code: string) =>
          m.value('vigil_rpc_requests_total', { method, code });
        expect(requests('CreateWorkspace', 'OK'), 'CreateWorkspace OK').to.equal(3);
        expect(requests('Register', 'OK'), 'Register OK').to.equal(1);
        expect(requests('Heartbeat', 'OK'), 'Heartbeat OK').to.equal(3);
        expect(requests('Heartbeat', 'UNAUTHENTICATED'), 'Heartbeat UNAUTHENTICATED').to.equal(1);
        expect(requests('Heartbeat', 'INVALID_ARGUMENT'), 'Heartbeat INVALID_ARGUMENT').to.equal(1);
        expect(requests('GetWorkspace', 'NOT_FOUND'), 'GetWorkspace NOT_FOUND').to.equal(1);
        const heartbeatTotal = m
          .all('vigil_rpc_requests_total', { method: 'Heartbeat' })
          .reduce((sum, s) => sum + s.value, 0);
        expect(heartbeatTotal, 'no Heartbeat counted under another code').to.equal(5);

        // The histogram: cumulative buckets ending in +Inf, _count and _sum.
        const buckets = m
          .all('vigil_rpc_duration_seconds_bucket', { method: 'Heartbeat' })
          .map((s) => [s.labels['le'] === '+Inf' ? Infinity : Number(s.labels['le']), s.value])
          .sort((a, b) => a[0]! - b[0]!);
        expect(buckets.length, 'Heartbeat latency buckets').to.be.at.least(3);
        expect(buckets.at(-1)).to.deep.equal([Infinity, 5]);
        for (let i = 1; i < buckets.length; i += 1) {
          expect(buckets[i]![1], 'buckets are cumulative').to.be.at.least(buckets[i - 1]![1]!);
        }
        expect(m.value('vigil_rpc_duration_seconds_count', { method: 'Heartbeat' })).to.equal(5);
        expect(m.value('vigil_rpc_duration_seconds_sum', { method: 'Heartbeat' })).to.be.above(0);
        expect(
          m.value('vigil_rpc_duration_seconds_bucket', { method: 'CreateWorkspace', le: '+Inf' }),
        ).to.equal(3);

        // Every heartbeat that reached the server, valid or not.
        expect(m.value('vigil_heartbeats_received_total')).to.equal(5);
      });
    });

    describe('when workspaces change status', () => {
      it('reports workspaces by status and committed transitions by reason and new status', async () => {
        const a = await createWorkspace(harness, 'm-a');
        const b = await createWorkspace(harness, 'm-b');
        await createWorkspace(harness, 'm-c');
        await createWorkspace(harness, 'm-d');
        await register(harness, 'm-a', a.token);
        expect((await heartbeat('m-b', b.token)).status).to.equal(
          WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
        );
        expect((await heartbeat('m-b', b.token, { errorRate: 0.9 })).status).to.equal(
          WorkspaceStatus.WORKSPACE_STATUS_DEGRADED,
        );
        await call(
          harness.clients.control,
          harness.clients.control.deleteWorkspace,
          { workspaceId: 'm-c' },
          CONTROL_TOKEN,
        );

        const workspaces = (m: Scrape, s: string) => m.value('vigil_workspaces', { status: s });
        const transitions = (m: Scrape, reason: string, to: string) =>
          m.value('vigil_transitions_total', { reason, to });
        let m = await scrape(url);
        expect(workspaces(m, 'PROVISIONING'), 'PROVISIONING').to.equal(1);
        expect(workspaces(m, 'ONLINE'), 'ONLINE').to.equal(1);
        expect(workspaces(m, 'DEGRADED'), 'DEGRADED').to.equal(1);
        expect(workspaces(m, 'OFFLINE'), 'OFFLINE').to.equal(0);
        expect(workspaces(m, 'FAILED'), 'FAILED').to.equal(0);
        expect(workspaces(m, 'REMOVED'), 'REMOVED').to.equal(1);
        expect(transitions(m, 'CREATED', 'PROVISIONING'), 'CREATED').to.equal(4);
        expect(transitions(m, 'REGISTERED', 'ONLINE'), 'REGISTERED').to.equal(1);
        expect(transitions(m, 'HEARTBEAT_RESUMED', 'ONLINE'), 'HEARTBEAT_RESUMED').to.equal(1);
        expect(transitions(m, 'ERROR_RATE_HIGH', 'DEGRADED'), 'ERROR_RATE_HIGH').to.equal(1);
        expect(transitions(m, 'DELETED', 'REMOVED'), 'DELETED').to.equal(1);

        // Transitions the liveness sweep commits are counted too.
        harness.clock.advance(11 * 60_000);
        await harness.vigil.useCases.liveness.sweep();
        m = await scrape(url);
        expect(workspaces(m, 'ONLINE'), 'ONLINE after the sweep').to.equal(0);
        expect(workspaces(m, 'DEGRADED'), 'DEGRADED after the sweep').to.equal(0);
        expect(workspaces(m, 'OFFLINE'), 'OFFLINE after the sweep').to.equal(2);
        expect(workspaces(m, 'PROVISIONING'), 'PROVISIONING after the sweep').to.equal(0);
        expect(workspaces(m, 'FAILED'), 'FAILED after the sweep').to.equal(1);
        expect(transitions(m, 'HEARTBEAT_TIMEOUT', 'OFFLINE'), 'HEARTBEAT_TIMEOUT').to.equal(2);
        expect(transitions(m, 'PROVISION_TIMEOUT', 'FAILED'), 'PROVISION_TIMEOUT').to.equal(1);
      });
    });

    describe('when watch streams open and close', () => {
      it('reports open streams and the largest watcher lag, and notices cancellation', async () => {
        const a = await createWorkspace(harness, 'm-a');
        const { control } = harness.clients;
        const all = openWatch(control, {}, CONTROL_TOKEN);
        const onlyA = openWatch(control, { workspaceIds: ['m-a'] }, CONTROL_TOKEN);
        try {
          // Both start at the head (seq 1) with a progress frame.
          expect((await all.next()).event?.$case).to.equal('progress');
          expect((await onlyA.next()).event?.$case).to.equal('progress');
          let m = await scrape(url);
          expect(m.value('vigil_watch_streams'), 'open streams').to.equal(2);
          expect(m.value('vigil_watch_lag_max'), 'lag when all is delivered').to.equal(0);

          // Seq 2 is m-b's: the unfiltered stream delivers it and the m-a stream passes over
          // it, so neither lags.
          await createWorkspace(harness, 'm-b');
          expect(transitionOf(await all.next())?.workspaceId).to.equal('m-b');
          m = await scrape(url);
          expect(m.value('vigil_watch_lag_max'), 'filtered streams pass over others').to.equal(0);

          // Seq 3 is m-a's: both streams deliver it and the lag is gone.
          await heartbeat('m-a', a.token);
          expect(transitionOf(await onlyA.next())?.seq).to.equal(3);
          expect(transitionOf(await all.next())?.seq).to.equal(3);
          m = await scrapeUntil(url, (s) => s.value('vigil_watch_lag_max') === 0);
          expect(m.value('vigil_watch_lag_max'), 'lag once delivered').to.equal(0);
          expect(m.value('vigil_watch_streams')).to.equal(2);
        } finally {
          all.cancel();
          onlyA.cancel();
        }
        let m = await scrapeUntil(url, (s) => s.value('vigil_watch_streams') === 0);
        expect(m.value('vigil_watch_streams'), 'open streams after cancel').to.equal(0);
        expect(
          m.value('vigil_rpc_requests_total', { method: 'WatchStatus', code: 'CANCELLED' }),
        ).to.equal(2);

        // A stream refused at once is opened and closed too, and counted by its code.
        await expectRpcError(
          firstWatchEvent(control, {}, 'vgc_not-the-token'),
          status.UNAUTHENTICATED,
          'TOKEN_INVALID',
        );
        m = await scrape(url);
        expect(m.value('vigil_watch_streams')).to.equal(0);
        expect(
          m.value('vigil_rpc_requests_total', { method: 'WatchStatus', code: 'UNAUTHENTICATED' }),
        ).to.equal(1);
      });
    });

    describe('when streams end', () => {
      it('records HeartbeatStream and WatchStatus with their real duration, cancellations counted', async () => {
        const { token } = await createWorkspace(harness, 'm-s');
        await register(harness, 'm-s', token);
        const { runtime, control } = harness.clients;
        const stream = runtime.heartbeatStream(bearer(token));
        stream.on('error', () => undefined);
        await new Promise<void>((resolve) => {
          stream.once('data', () => {
            resolve();
          });
          stream.write({ requestId: 1, heartbeat: heartbeatRequest('m-s') });
        });
        const watch = openWatch(control, {}, CONTROL_TOKEN);
        await watch.next();
        const openFor = 200;
        await new Promise((resolve) => setTimeout(resolve, openFor));
        stream.cancel();
        watch.cancel();
        const m = await scrapeUntil(
          url,
          (s) =>
            s.value('vigil_rpc_requests_total', {
              method: 'HeartbeatStream',
              code: 'CANCELLED',
            }) === 1 &&
            s.value('vigil_rpc_requests_total', { method: 'WatchStatus', code: 'CANCELLED' }) === 1,
        );
        for (const method of ['HeartbeatStream', 'WatchStatus']) {
          expect(m.value('vigil_rpc_duration_seconds_count', { method }), method).to.equal(1);
          const seconds = m.value('vigil_rpc_duration_seconds_sum', { method }) ?? 0;
          expect(seconds, `${method} duration`).to.be.at.least(openFor / 1000);
          expect(seconds, `${method} duration`).to.be.below(10);
        }
      });
    });

    describe('when heartbeats arrive over HeartbeatStream', () => {
      it('counts and times each streamed heartbeat by its answer, apart from the stream', async () => {
        const { token } = await createWorkspace(harness, 'm-p');
        await register(harness, 'm-p', token);
        const stream = harness.clients.runtime.heartbeatStream(bearer(token));
        stream.on('error', () => undefined);
        await new Promise<void>((resolve) => {
          let answers = 0;
          stream.on('data', () => {
            answers += 1;
            if (answers === 3) resolve();
          });
          stream.write({ requestId: 1, heartbeat: heartbeatRequest('m-p') });
          stream.write({ requestId: 2, heartbeat: heartbeatRequest('m-p') });
          // Another workspace's id with this token: refused in-band, the stream stays open.
          stream.write({ requestId: 3, heartbeat: heartbeatRequest('m-other') });
        });
        const m = await scrape(url);
        stream.cancel();
        const method = 'HeartbeatStream:message';
        expect(m.value('vigil_rpc_requests_total', { method, code: 'OK' })).to.equal(2);
        expect(m.value('vigil_rpc_requests_total', { method, code: 'PERMISSION_DENIED' })).to.equal(
          1,
        );
        expect(m.value('vigil_rpc_duration_seconds_count', { method })).to.equal(3);
        // The stream itself is still open: not counted yet.
        expect(m.value('vigil_rpc_duration_seconds_count', { method: 'HeartbeatStream' })).to.equal(
          undefined,
        );
      });
    });

    describe('when another path is asked for', () => {
      it('answers 404 (/ is the web console)', async () => {
        const base = `http://127.0.0.1:${String(harness.vigil.metricsPort)}`;
        for (const path of ['/metric', '/metrics/extra', '/api/console']) {
          const response = await fetch(`${base}${path}`);
          await response.arrayBuffer();
          expect(response.status, path).to.equal(404);
        }
        const ok = await fetch(`${base}/metrics?format=text`);
        await ok.arrayBuffer();
        expect(ok.status).to.equal(200);
        const unknown = await fetch(`${base}/nothing`);
        expect(await unknown.text()).to.include('try /, /metrics, /healthz or /readyz');
      });
    });
  });
});

describe('vigil serve logs (a real process)', function () {
  this.timeout(30_000);
  let dir: string;
  let served: Served | undefined;
  let clients: ReturnType<typeof createClients> | undefined;

  beforeEach(() => {
    dir = tempDir('vigil-logs-');
  });

  afterEach(async () => {
    clients?.close();
    clients = undefined;
    await served?.proc.kill('SIGKILL');
    served = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes JSON lines, one per transition and per failed RPC (method, code, reason), never a token', async () => {
    served = await startServe([
      '--listen',
      '127.0.0.1:0',
      '--metrics-listen',
      '127.0.0.1:0',
      '--data-dir',
      dir,
    ]);
    const controlToken = readFileSync(join(dir, 'control-token'), 'utf8').trim();
    clients = createClients(served.port);
    const { control, runtime } = clients;
    const wrongWorkspaceToken = 'vgw_sentinel-wrong-workspace-token-4f1c';
    const wrongControlToken = 'vgc_sentinel-wrong-control-token-9b7e';

    const createdWs = await call(
      control,
      control.createWorkspace,
      { workspaceId: 'log-ws', name: '' },
      controlToken,
    );
    const workspaceToken = createdWs.workspaceToken;
    await call(runtime, runtime.register, registerRequest('log-ws'), workspaceToken);
    await call(
      runtime,
      runtime.heartbeat,
      heartbeatRequest('log-ws', { errorRate: 0.9 }),
      workspaceToken,
    );
    const rotatedToken = (
      await call(
        control,
        control.rotateWorkspaceToken,
        { workspaceId: 'log-ws', revokePrevious: true },
        controlToken,
      )
    ).workspaceToken;

    await expectRpcError(
      call(runtime, runtime.heartbeat, heartbeatRequest('log-ws'), wrongWorkspaceToken),
      status.UNAUTHENTICATED,
      'TOKEN_INVALID',
    );
    await expectRpcError(
      call(runtime, runtime.heartbeat, heartbeatRequest('log-ws'), workspaceToken),
      status.UNAUTHENTICATED,
      'TOKEN_INVALID',
    );
    await expectRpcError(
      call(control, control.getWorkspace, { workspaceId: 'log-ws' }, wrongControlToken),
      status.UNAUTHENTICATED,
      'TOKEN_INVALID',
    );
    await expectRpcError(
      call(control, control.getWorkspace, { workspaceId: 'log-missing' }, controlToken),
      status.NOT_FOUND,
      'WORKSPACE_NOT_FOUND',
    );
    await expectRpcError(
      call(runtime, runtime.heartbeat, heartbeatRequest('log-ws', { agentCard: {} }), rotatedToken),
      status.INVALID_ARGUMENT,
      'AGENT_CARD_INVALID',
    );
    // The log is one ordered stream: once this later event is in, every earlier line is too.
    await call(
      control,
      control.createWorkspace,
      { workspaceId: 'log-last', name: '' },
      controlToken,
    );
    await served.proc.waitForLine((l) => l.includes('"log-last"') && l.includes('"CREATED"'));

    // The metrics endpoint `vigil serve --metrics-listen` wired up counts the same calls.
    expect(served.metrics).to.match(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const m = await scrape(served.metrics);
    expect(
      m.value('vigil_rpc_requests_total', { method: 'Heartbeat', code: 'UNAUTHENTICATED' }),
    ).to.equal(2);
    expect(
      m.value('vigil_rpc_requests_total', { method: 'GetWorkspace', code: 'NOT_FOUND' }),
    ).to.equal(1);

    const lines = served.proc.lines;
    expect(served.proc.stderr, 'stderr').to.deep.equal([]);
    const entries = lines.map((line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      expect(entry, line).to.include.keys('level', 'time', 'msg');
      return entry;
    });

    // No token, whole or without its prefix, in any line.
    const secrets = [
      controlToken,
      workspaceToken,
      rotatedToken,
      wrongWorkspaceToken,
      wrongControlToken,
    ];
    for (const secret of secrets) {
      const bare = secret.slice(secret.indexOf('_') + 1);
      for (const line of lines) {
        expect(line, 'a log line holds a token').not.to.include(bare);
      }
    }

    // One "rpc failed" line per failed call, naming method, code and reason; but a refusal
    // without a valid token only the first time in a second: the others in that second are
    // counted in one line when it ends (a flood of them must not flood the log).
    const failures = entries
      .filter((e) => e['msg'] === 'rpc failed')
      .map((e) => [e['method'], e['code'], e['reason']]);
    const [unauthenticated, others] = [
      failures.filter((f) => f[1] === 'UNAUTHENTICATED'),
      failures.filter((f) => f[1] !== 'UNAUTHENTICATED'),
    ];
    expect(others).to.have.deep.members([
      ['GetWorkspace', 'NOT_FOUND', 'WORKSPACE_NOT_FOUND'],
      ['Heartbeat', 'INVALID_ARGUMENT', 'AGENT_CARD_INVALID'],
    ]);
    expect(unauthenticated[0]).to.deep.equal(['Heartbeat', 'UNAUTHENTICATED', 'TOKEN_INVALID']);
    const { proc } = served;
    const logged = (): number => {
      const summarised = proc.lines
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .filter((e) => e['reason'] === 'TOKEN_INVALID' && typeof e['suppressed'] === 'number')
        .reduce((sum, e) => sum + (e['suppressed'] as number), 0);
      return unauthenticated.length + summarised;
    };
    // The summary comes when its one-second window ends.
    const until = Date.now() + 5_000;
    while (logged() < 3 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(logged(), 'every refusal logged or counted').to.equal(3);

    // One line per transition, in seq order.
    const transitions = entries
      .filter((e) => e['workspaceId'] === 'log-ws' && 'seq' in e && 'to' in e)
      .map((e) => [e['seq'], e['from'] ?? '-', e['to'], e['reason']]);
    expect(transitions).to.deep.equal([
      [1, '-', 'PROVISIONING', 'CREATED'],
      [2, 'PROVISIONING', 'ONLINE', 'REGISTERED'],
      [3, 'ONLINE', 'DEGRADED', 'ERROR_RATE_HIGH'],
    ]);
  });
});
