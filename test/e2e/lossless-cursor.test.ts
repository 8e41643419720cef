import { expect } from 'chai';
import { createWorkspace, register } from '../helpers/e2e-fixtures.js';
import { CONTROL_TOKEN, startHarness, type Harness } from '../helpers/harness.js';
import { openWatch } from '../helpers/rpc.js';

/**
 * Every cursor the server hands out resumes losslessly: `progress { seq: 0 }`
 * from an empty log, sent back with `resume`, means "after nothing", so the
 * transitions committed meanwhile all arrive. Without `resume`, 0 keeps its
 * old meaning (start at the head), for clients that predate the field.
 */
describe('WatchStatus cursors at the edges', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.dispose();
  });

  it('resumes progress{0} from an empty log with every transition since', async () => {
    const first = openWatch(h.clients.control, {}, CONTROL_TOKEN);
    const progress = await first.next();
    first.cancel();
    expect(progress.event?.$case).to.equal('progress');
    const cursor = progress.event?.$case === 'progress' ? progress.event.value.seq : -1;
    expect(cursor).to.equal(0);

    // Committed while the client was away: CREATED (seq 1) and REGISTERED (seq 2).
    const created = await createWorkspace(h, 'ws-a');
    await register(h, 'ws-a', created.token);

    const resumed = openWatch(h.clients.control, { afterSeq: cursor, resume: true }, CONTROL_TOKEN);
    try {
      const events = [await resumed.next(), await resumed.next()];
      expect(
        events.map((e) =>
          e.event?.$case === 'transition' ? e.event.value.seq : `${e.event?.$case}`,
        ),
      ).to.deep.equal([1, 2]);
    } finally {
      resumed.cancel();
    }

    // An old client's 0 still means the head.
    const old = openWatch(h.clients.control, { afterSeq: 0 }, CONTROL_TOKEN);
    try {
      const head = await old.next();
      expect(head.event?.$case === 'progress' && head.event.value.seq).to.equal(2);
    } finally {
      old.cancel();
    }
  });
});
