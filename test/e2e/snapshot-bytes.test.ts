import { expect } from 'chai';
import { createWorkspace, register } from '../helpers/e2e-fixtures.js';
import { CONTROL_TOKEN, startHarness, type Harness } from '../helpers/harness.js';
import { openWatch } from '../helpers/rpc.js';
import { SNAPSHOT_PAGE_BYTES } from '../../src/watch/watch-session.js';

/**
 * Snapshot pages are bounded by bytes, not only by rows: with cards of
 * ~40 KB, a page stops after about SNAPSHOT_PAGE_BYTES of stored workspaces
 * (so a stream that stops reading pins that, not 500 full workspaces), and
 * the snapshot pages on across the cut pages without losing or repeating a
 * workspace — on either store.
 */
describe('WatchStatus snapshot pages bounded by bytes', function () {
  this.timeout(60_000);
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.dispose();
  });

  it('delivers every workspace once, in id order, across byte-cut pages', async () => {
    const count = 16;
    const padding = 'z'.repeat(40 * 1024);
    for (let i = 0; i < count; i += 1) {
      const id = `ws-${String(i).padStart(2, '0')}`;
      const created = await createWorkspace(h, id);
      await register(h, id, created.token, {
        agentCard: { name: id, url: 'http://127.0.0.1:8000/', padding },
      });
    }
    // The cards alone are more than two pages' worth.
    expect(count * padding.length).to.be.greaterThan(2 * SNAPSHOT_PAGE_BYTES);
    const watch = openWatch(h.clients.control, { includeSnapshot: true }, CONTROL_TOKEN);
    try {
      const events = await watch.until((e) => e.event?.$case === 'snapshotEnd', 30_000);
      const ids = events.flatMap((e) => (e.event?.$case === 'snapshot' ? [e.event.value.id] : []));
      expect(ids).to.deep.equal(
        Array.from({ length: count }, (_, i) => `ws-${String(i).padStart(2, '0')}`),
      );
    } finally {
      watch.cancel();
    }
  });
});
