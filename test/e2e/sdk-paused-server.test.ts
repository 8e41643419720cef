import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  createControlClient,
  createRuntimeClient,
  runHeartbeatLoop,
  type SidecarEvent,
} from '../../src/client/index.js';
import { card, tempDir } from '../helpers/harness.js';
import { freePort, vigil, type Proc } from '../helpers/processes.js';

const CONTROL_TOKEN = 'vgc_sdk-paused-server-token';

/**
 * A server that stops answering keeps its TCP connection up (SIGSTOP: no FIN,
 * no RST), so a sidecar waiting on its HeartbeatStream would sit there until
 * keepalive notices, tens of seconds, past offline_after. The SDK gives a
 * stream up when a heartbeat stays unanswered for an interval (2 s at least)
 * and opens a new connection — behind a balancer, to another replica.
 */
describe('TypeScript SDK and a server that stops answering (SIGSTOP)', function () {
  this.timeout(60_000);
  let dir: string;
  let serve: Proc | undefined;

  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(async () => {
    if (serve?.child.pid !== undefined) process.kill(serve.child.pid, 'SIGCONT');
    await serve?.kill('SIGKILL');
    serve = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives the stream up after 2 s without an answer (ANSWER_TIMEOUT), reconnects, and beats again once the server answers', async () => {
    const server = `127.0.0.1:${await freePort()}`;
    serve = vigil(
      [
        'serve',
        '--listen',
        server,
        '--data-dir',
        join(dir, 'data'),
        '--metrics-listen',
        'off',
        '--heartbeat-interval',
        '1s',
      ],
      { VIGIL_CONTROL_TOKEN: CONTROL_TOKEN },
    );
    await serve.waitForLine((l) => l.includes('"listening"'));
    const control = createControlClient({ server, token: CONTROL_TOKEN });
    const { workspaceToken } = await control.createWorkspace('ws-paused', '');
    control.close();
    const runtime = createRuntimeClient({ server, token: workspaceToken });
    const events: { at: number; event: SidecarEvent }[] = [];
    const abort = new AbortController();
    const loop = runHeartbeatLoop({
      client: runtime,
      workspaceId: 'ws-paused',
      url: 'http://127.0.0.1:8000',
      agentCard: card(),
      signal: abort.signal,
      onEvent: (event) => events.push({ at: Date.now(), event }),
    });
    const waitFor = async (predicate: (e: SidecarEvent) => boolean, after: number, ms: number) => {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = events.find((e) => e.at >= after && predicate(e.event));
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no such event within ${ms} ms`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    try {
      await waitFor((e) => e.type === 'heartbeat' && e.via === 'stream', 0, 10_000);

      const pid = serve.child.pid!;
      process.kill(pid, 'SIGSTOP');
      const pausedAt = Date.now();
      const gaveUp = await waitFor(
        (e) => e.type === 'heartbeat-failed' && e.error.reason === 'ANSWER_TIMEOUT',
        pausedAt,
        10_000,
      );
      // The heartbeat in flight at the pause, or the next (≤ 1 s later), unanswered for 2 s.
      expect(gaveUp.at - pausedAt).to.be.within(1_900, 5_000);

      process.kill(pid, 'SIGCONT');
      const resumedAt = Date.now();
      const again = await waitFor(
        (e) => e.type === 'heartbeat' && e.via === 'stream',
        resumedAt,
        15_000,
      );
      expect(again.at).to.be.at.least(resumedAt);
    } finally {
      abort.abort();
      await loop.catch(() => undefined);
      runtime.close();
    }
  });
});
