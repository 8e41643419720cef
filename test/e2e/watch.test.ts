import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { WatchStatusResponse } from '../../gen/vigil/v1/control_service.js';
import { WorkspaceStatus, type StatusTransition } from '../../gen/vigil/v1/workspace.js';
import { CONTROL_TOKEN, card, startHarness, type Harness } from '../helpers/harness.js';
import { bearer, call, errorInfoOf, openWatch, type WatchReader } from '../helpers/rpc.js';

function transitions(events: readonly WatchStatusResponse[]): StatusTransition[] {
  return events.flatMap((e) => (e.event?.$case === 'transition' ? [e.event.value] : []));
}

const isTransitionFor = (id: string, to: WorkspaceStatus) => (e: WatchStatusResponse) =>
  e.event?.$case === 'transition' &&
  e.event.value.workspaceId === id &&
  e.event.value.toStatus === to;

describe('WatchStatus', () => {
  let h: Harness;
  const readers: WatchReader[] = [];

  beforeEach(async () => {
    h = await startHarness();
  });

  afterEach(async () => {
    for (const r of readers.splice(0)) r.cancel();
    await h.dispose();
  });

  function watch(request: Parameters<typeof openWatch>[1]): WatchReader {
    const reader = openWatch(h.clients.control, request, CONTROL_TOKEN);
    readers.push(reader);
    return reader;
  }

  async function create(id: string): Promise<string> {
    const { control } = h.clients;
    const created = await call(
      control,
      control.createWorkspace,
      { workspaceId: id, name: '' },
      CONTROL_TOKEN,
    );
    return created.workspaceToken;
  }

  async function register(id: string, token: string): Promise<void> {
    const { runtime } = h.clients;
    await call(
      runtime,
      runtime.register,
      { workspaceId: id, url: 'http://127.0.0.1:9000', agentCard: card(), deliveryMode: 0 },
      token,
    );
  }

  async function remove(id: string): Promise<void> {
    const { control } = h.clients;
    await call(control, control.deleteWorkspace, { workspaceId: id }, CONTROL_TOKEN);
  }

  describe('when started at the head (after_seq 0, no snapshot)', () => {
    it('first tells the head seq, then streams only new transitions in seq order', async () => {
      await create('ws-old');
      const reader = watch({});
      const first = await reader.next();
      expect(first.event?.$case).to.equal('progress');
      const head = first.event?.$case === 'progress' ? first.event.value.seq : -1;
      expect(head).to.equal(1);
      const token = await create('ws-new');
      await register('ws-new', token);
      const events = await reader.until(
        isTransitionFor('ws-new', WorkspaceStatus.WORKSPACE_STATUS_ONLINE),
      );
      expect(transitions(events).map((t) => t.seq)).to.deep.equal([2, 3]);
    });
  });

  describe('when a snapshot is asked for', () => {
    it('sends every workspace, then snapshot_end with the head, then later transitions', async () => {
      const t1 = await create('ws-a');
      await register('ws-a', t1);
      await create('ws-b');
      const reader = watch({ includeSnapshot: true });
      const events = await reader.until((e) => e.event?.$case === 'snapshotEnd');
      const snapshot = events.flatMap((e) =>
        e.event?.$case === 'snapshot' ? [e.event.value] : [],
      );
      expect(snapshot.map((w) => [w.id, w.status])).to.deep.equal([
        ['ws-a', WorkspaceStatus.WORKSPACE_STATUS_ONLINE],
        ['ws-b', WorkspaceStatus.WORKSPACE_STATUS_PROVISIONING],
      ]);
      const end = events.at(-1)?.event;
      expect(end?.$case === 'snapshotEnd' && end.value).to.deep.equal({ seq: 3, reset: false });
      await remove('ws-b');
      const next = await reader.next();
      expect(next.event?.$case === 'transition' && next.event.value.seq).to.equal(4);
    });
  });

  describe('when filtered by workspace ids', () => {
    it('streams only those workspaces', async () => {
      await create('ws-x');
      await create('ws-y');
      const reader = watch({ workspaceIds: ['ws-y'] });
      await reader.next(); // progress at the head
      await remove('ws-x');
      await remove('ws-y');
      const event = await reader.next();
      expect(event.event?.$case === 'transition' && event.event.value.workspaceId).to.equal('ws-y');
    });
  });

  describe('when a client disconnects and resumes', () => {
    it('receives every transition committed while it was away, with no gap and no duplicate', async () => {
      const first = watch({});
      await first.next();
      await create('ws-1');
      const seen = transitions(
        await first.until(isTransitionFor('ws-1', WorkspaceStatus.WORKSPACE_STATUS_PROVISIONING)),
      );
      first.cancel();
      const lastSeq = seen.at(-1)?.seq ?? 0;

      // Transitions happen while nobody watches.
      const token = await create('ws-2');
      await register('ws-2', token);
      await remove('ws-1');

      const resumed = watch({ afterSeq: lastSeq });
      const events = await resumed.until(
        isTransitionFor('ws-1', WorkspaceStatus.WORKSPACE_STATUS_REMOVED),
      );
      const seqs = transitions(events).map((t) => t.seq);
      expect(seqs).to.deep.equal([lastSeq + 1, lastSeq + 2, lastSeq + 3]);
    });

    it('resumes across a server restart on the same data directory', async () => {
      const token = await create('ws-r');
      const before = watch({});
      await before.next();
      await register('ws-r', token);
      const seen = transitions(
        await before.until(isTransitionFor('ws-r', WorkspaceStatus.WORKSPACE_STATUS_ONLINE)),
      );
      const lastSeq = seen.at(-1)?.seq ?? 0;
      const ended = before.ended();

      await h.stop();
      const failure = await ended;
      expect(failure?.code).to.equal(status.UNAVAILABLE);
      expect(errorInfoOf(failure!).reason).to.equal('SHUTTING_DOWN');

      h = await startHarness({ dataDir: h.dataDir, clock: h.clock });
      await remove('ws-r');
      const after = watch({ afterSeq: lastSeq });
      const event = await after.next();
      expect(event.event?.$case === 'transition' && event.event.value).to.include({
        seq: lastSeq + 1,
        workspaceId: 'ws-r',
        toStatus: WorkspaceStatus.WORKSPACE_STATUS_REMOVED,
      });
    });
  });

  describe('when the stream is idle', () => {
    it('sends progress frames carrying the cursor', async () => {
      await h.dispose();
      h = await startHarness({ settings: { progressIntervalMs: 50 } });
      await create('ws-p');
      const reader = watch({ afterSeq: 1 });
      // Idle time is the injected clock's: move it past the interval while the stream waits.
      const ticking = setInterval(() => {
        h.clock.advance(25);
      }, 10);
      const events = await reader
        .until((e) => e.event?.$case === 'progress')
        .finally(() => {
          clearInterval(ticking);
        });
      expect(events).to.have.length(1);
      expect(events[0]?.event?.$case === 'progress' && events[0].event.value.seq).to.equal(1);
    });
  });

  describe('when a consumer is deliberately slow', () => {
    it('blocks neither writers nor other watchers, and later catches up with no gap', async () => {
      await h.dispose();
      h = await startHarness({ settings: { watchTailCapacity: 50 } });
      const { control } = h.clients;
      // A raw stream we stop reading from: HTTP/2 flow control pushes back on the server.
      const slow = control.watchStatus(
        { workspaceIds: [], afterSeq: 0, includeSnapshot: false, resume: false },
        bearer(CONTROL_TOKEN),
      );
      const slowSeqs: number[] = [];
      slow.on('data', (e: WatchStatusResponse) => {
        if (e.event?.$case === 'transition') slowSeqs.push(e.event.value.seq);
      });
      await new Promise((resolve) => slow.once('data', resolve));
      slow.pause();

      const fast = watch({});
      await fast.next();
      const total = 2_000;
      // Enough transitions to fill the stream's HTTP/2 window many times over.
      for (let i = 0; i < total; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, j) =>
            call(
              control,
              control.createWorkspace,
              { workspaceId: `ws-${i + j}`, name: '' },
              CONTROL_TOKEN,
            ),
          ),
        );
      }
      const fastEvents = await fast.until(
        (e) => e.event?.$case === 'transition' && e.event.value.seq === total,
      );
      expect(transitions(fastEvents)).to.have.length(total);
      expect(slowSeqs.length).to.be.below(total);

      slow.resume();
      while (slowSeqs.length < total) await new Promise((resolve) => setImmediate(resolve));
      expect(slowSeqs).to.deep.equal(Array.from({ length: total }, (_, i) => i + 1));
      slow.on('error', () => undefined); // the CANCELLED status our own cancel causes
      slow.cancel();
    });
  });

  describe('when many transitions arrive at once', () => {
    it('delivers all of them in strictly increasing seq order', async () => {
      const reader = watch({});
      await reader.next();
      const { control } = h.clients;
      await Promise.all(
        Array.from({ length: 300 }, (_, i) =>
          call(
            control,
            control.createWorkspace,
            { workspaceId: `ws-${i}`, name: '' },
            CONTROL_TOKEN,
          ),
        ),
      );
      const events = await reader.until(
        (e) => e.event?.$case === 'transition' && e.event.value.seq === 300,
      );
      expect(transitions(events).map((t) => t.seq)).to.deep.equal(
        Array.from({ length: 300 }, (_, i) => i + 1),
      );
    });
  });
});
