import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { changeLine, seconds } from '../../src/cli/sidecar-command.js';
import { VigilClientError } from '../../src/client/errors.js';
import {
  REJECTED_MAX_MS,
  rejectedBackoff,
  type SidecarEvent,
} from '../../src/client/heartbeat-loop.js';

const ok = (intervalMs = 10_054): SidecarEvent => ({
  type: 'heartbeat',
  status: WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
  statusName: 'ONLINE',
  intervalMs,
  via: 'stream',
});
const rejected: SidecarEvent = {
  type: 'heartbeat-failed',
  error: new VigilClientError(status.INVALID_ARGUMENT, 'AGENT_CARD_INVALID', 'bad card', {}),
  retryInMs: 10_000,
};

describe('vigil sidecar output', () => {
  describe('when heartbeats repeat the same outcome', () => {
    it('prints one line per change of state, and says when it recovered', () => {
      const shown = { state: '', failures: 0 };
      const events = [ok(), ok(), rejected, rejected, rejected, ok(), ok(), ok(12_000)];
      const lines = events.map((e) => changeLine(e, shown)).filter((l) => l !== undefined);
      expect(lines).to.deep.equal([
        'heartbeat: ONLINE, every 10.1s',
        'heartbeat failed: INVALID_ARGUMENT AGENT_CARD_INVALID: bad card (retrying with backoff, first in 10.0s; said once until it changes)',
        'heartbeat: ONLINE, every 10.1s (recovered after 3 failed heartbeats)',
        'heartbeat: ONLINE, every 12.0s',
      ]);
    });
  });

  it('writes durations as people read them', () => {
    expect(seconds(10_054)).to.equal('10.1s');
    expect(seconds(250)).to.equal('250ms');
  });
});

describe('rejected heartbeat backoff', () => {
  it('starts at about one interval, doubles, stays within [half, all] of its cap, and stops at 5 minutes', () => {
    const low = () => 0;
    const high = () => 1;
    expect([1, 2, 3].map((n) => rejectedBackoff(n, 10_000, low))).to.deep.equal([
      5_000, 10_000, 20_000,
    ]);
    expect([1, 2, 3].map((n) => rejectedBackoff(n, 10_000, high))).to.deep.equal([
      10_000, 20_000, 40_000,
    ]);
    expect(rejectedBackoff(50, 10_000, high)).to.equal(REJECTED_MAX_MS);
    expect(rejectedBackoff(50, 10_000, low)).to.equal(REJECTED_MAX_MS / 2);
  });
});
