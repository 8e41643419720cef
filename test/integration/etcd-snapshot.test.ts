import { expect } from 'chai';
import type { WatchStatusResponse } from '../../gen/vigil/v1/control_service.js';
import { WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { CONTROL_TOKEN, startHarness, tempDir, type Harness } from '../helpers/harness.js';
import { call, openWatch } from '../helpers/rpc.js';
import { etcdInstalled, startEtcdMember, type EtcdMember } from '../helpers/suite-store.js';

const WORKSPACES = 1_500;

describe('WatchStatus snapshot on etcd', function () {
  this.timeout(120_000);
  let etcd: EtcdMember | undefined;
  let h: Harness | undefined;

  before(function () {
    if (!etcdInstalled()) {
      console.log('      skipped: needs etcd (Debian package etcd-server)');
      this.skip();
    }
  });
  after(async () => {
    await h?.dispose();
    etcd?.stop();
  });

  it('shows every page as of one etcd revision: the head its snapshot_end names', async () => {
    etcd = await startEtcdMember();
    h = await startHarness({
      dataDir: tempDir(),
      settings: {
        etcd: {
          endpoints: etcd.endpoints,
          prefix: 'snapshot/',
          replicaId: 'r-snapshot',
          advertise: '127.0.0.1:0',
        },
      },
    });
    const { control } = h.clients;
    const ids = Array.from({ length: WORKSPACES }, (_, i) => `ws-${String(i).padStart(5, '0')}`);
    for (let i = 0; i < ids.length; i += 250) {
      await Promise.all(
        ids
          .slice(i, i + 250)
          .map((workspaceId) =>
            call(control, control.createWorkspace, { workspaceId, name: '' }, CONTROL_TOKEN),
          ),
      );
    }
    const last = ids.at(-1)!;

    // The snapshot is read as the client pulls it: take a few rows, then delete the last
    // workspace (its page is not read yet), then read the rest.
    const watch = openWatch(control, { includeSnapshot: true }, CONTROL_TOKEN);
    const events: WatchStatusResponse[] = [];
    for (let i = 0; i < 5; i += 1) events.push(await watch.next(10_000));
    await call(control, control.deleteWorkspace, { workspaceId: last }, CONTROL_TOKEN);
    events.push(...(await watch.until((e) => e.event?.$case === 'snapshotEnd', 30_000)));
    const removal = await watch.until(
      (e) => e.event?.$case === 'transition' && e.event.value.workspaceId === last,
      10_000,
    );
    watch.cancel();

    const rows = events.flatMap((e) => (e.event?.$case === 'snapshot' ? [e.event.value] : []));
    const endEvent = events.at(-1)?.event;
    const end = endEvent?.$case === 'snapshotEnd' ? endEvent.value : undefined;
    expect(rows.map((w) => w.id)).to.deep.equal(ids);
    // As of the head: the last workspace was still there, PROVISIONING; its removal follows.
    expect(rows.at(-1)?.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_PROVISIONING);
    const removed = removal.at(-1)?.event;
    const transition = removed?.$case === 'transition' ? removed.value : undefined;
    expect(transition?.toStatus).to.equal(WorkspaceStatus.WORKSPACE_STATUS_REMOVED);
    expect(transition!.seq).to.equal(end!.seq + 1);
  });
});
