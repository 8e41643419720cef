import { expect } from 'chai';
import {
  createControlClient,
  createRuntimeClient,
  runHeartbeatLoop,
  type SidecarEvent,
} from '../../src/client/index.js';
import { DEFAULT_TIMINGS } from '../../src/domain/config.js';
import { CONTROL_TOKEN, startHarness } from '../helpers/harness.js';
import { freePort } from '../helpers/processes.js';

describe('runHeartbeatLoop() when the server keeps rejecting its heartbeats', () => {
  it('backs off from one interval, doubling, instead of retrying about once a second', async () => {
    const server = `127.0.0.1:${await freePort()}`;
    const intervalMs = 200;
    const h = await startHarness({
      settings: {
        listen: server,
        timings: { ...DEFAULT_TIMINGS, heartbeatIntervalMs: intervalMs },
      },
    });
    const control = createControlClient({ server, token: CONTROL_TOKEN });
    try {
      const { workspaceToken } = await control.createWorkspace('ws-rejected');
      const runtime = createRuntimeClient({ server, token: workspaceToken });
      const stop = new AbortController();
      const failures: { retryInMs: number; at: number; reason: string }[] = [];
      await runHeartbeatLoop({
        client: runtime,
        workspaceId: 'ws-rejected',
        url: 'http://127.0.0.1:8000',
        // No name, no url: every heartbeat carrying it is rejected AGENT_CARD_INVALID.
        agentCard: { description: 'not a card' },
        initialIntervalMs: intervalMs,
        random: () => 0,
        signal: stop.signal,
        onEvent: (e: SidecarEvent) => {
          if (e.type !== 'heartbeat-failed') return;
          failures.push({ retryInMs: e.retryInMs, at: Date.now(), reason: e.error.reason });
          if (failures.length === 4) stop.abort();
        },
      });
      runtime.close();
      expect(failures.map((f) => f.reason)).to.deep.equal(Array(4).fill('AGENT_CARD_INVALID'));
      // Equal jitter with random() = 0: half of interval · 2^(n−1).
      expect(failures.map((f) => f.retryInMs)).to.deep.equal([100, 200, 400, 800]);
      // The waits really happened (at least; a busy machine only adds to them).
      expect(failures[3]!.at - failures[0]!.at).to.be.at.least(100 + 200 + 400 - 20);
    } finally {
      control.close();
      await h.dispose();
    }
  });
});
