import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { expect } from 'chai';
import {
  TransitionReason,
  WorkspaceStatus,
  createControlClient,
  createRuntimeClient,
  type ControlClient,
} from '../../src/client/index.js';
import { CONTROL_TOKEN, card, tempDir } from '../helpers/harness.js';
import { expectConsistent } from '../helpers/db-state.js';
import { freePort, vigil, type Proc } from '../helpers/processes.js';

interface Seen {
  workspaceId: string;
  to: WorkspaceStatus;
  reason: TransitionReason;
}

describe('crash safety: SIGKILL under load', function () {
  this.timeout(120_000);
  let dir: string;
  let server: Proc | undefined;

  beforeEach(() => {
    dir = tempDir();
  });

  afterEach(async () => {
    await server?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('loses no acknowledged write, reuses no seq, and a resuming watcher sees no gap and no duplicate', async () => {
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const dataDir = join(dir, 'data');
    const dbFile = join(dataDir, 'vigil.db');
    const start = async () => {
      server = vigil(
        ['serve', '--listen', address, '--data-dir', dataDir, '--metrics-listen', 'off'],
        { VIGIL_CONTROL_TOKEN: CONTROL_TOKEN },
      );
      await server.waitForLine((l) => l.includes('"listening"'));
      // Ready when a call goes through.
      const probe = createControlClient({ server: address, token: CONTROL_TOKEN });
      try {
        for (;;) {
          try {
            await probe.listWorkspaces({ pageSize: 1 }, { timeoutMs: 1_000 });
            return;
          } catch {
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }
      } finally {
        probe.close();
      }
    };
    await start();

    const control: ControlClient = createControlClient({ server: address, token: CONTROL_TOKEN });
    // The watcher: every transition it is shown, by seq.
    const seen = new Map<number, Seen>();
    const order: number[] = [];
    const stopWatch = new AbortController();
    const watching = (async () => {
      for await (const event of control.watchStatus({
        signal: stopWatch.signal,
        backoff: { baseMs: 20, maxMs: 300 },
      })) {
        if (event.$case !== 'transition') continue;
        const t = event.value;
        order.push(t.seq);
        seen.set(t.seq, { workspaceId: t.workspaceId, to: t.toStatus, reason: t.reason });
      }
    })();

    // Acknowledged outcomes, checked against the database after every restart.
    const created = new Set<string>();
    const deleted = new Set<string>();
    const online = new Set<string>();
    let stop = false;
    const running = () => !stop;
    let acknowledged = 0;
    const worker = async (w: number) => {
      for (let i = 0; running(); i += 1) {
        const id = `w${w}-${i}`;
        try {
          const { workspaceToken } = await control.createWorkspace(id, '', { timeoutMs: 2_000 });
          created.add(id);
          acknowledged += 1;
          const runtime = createRuntimeClient({ server: address, token: workspaceToken });
          try {
            const registered = await runtime.register(
              { workspaceId: id, url: 'http://127.0.0.1:8000', agentCard: card() },
              { timeoutMs: 2_000 },
            );
            if (registered.workspace?.status === WorkspaceStatus.WORKSPACE_STATUS_ONLINE)
              online.add(id);
            for (let b = 0; b < 3 && running(); b += 1) {
              await runtime.heartbeat(
                { workspaceId: id, errorRate: b === 1 ? 0.9 : 0 },
                { timeoutMs: 2_000 },
              );
              acknowledged += 1;
            }
            if (i % 3 === 0) {
              await control.deleteWorkspace(id, { timeoutMs: 2_000 });
              deleted.add(id);
            }
          } finally {
            runtime.close();
          }
        } catch {
          // The server was killed mid-call: nothing was acknowledged.
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    };
    const workers = Array.from({ length: 6 }, (_, w) => worker(w));

    const verify = () => {
      expectConsistent(dbFile);
      const db = new Database(dbFile, { readonly: true });
      try {
        const rows = db
          .prepare('SELECT seq, workspace_id, to_status, reason FROM transitions')
          .all() as {
          seq: number;
          workspace_id: string;
          to_status: string;
          reason: string;
        }[];
        const bySeq = new Map(rows.map((r) => [r.seq, r]));
        // Every transition a watcher was shown is in the log, unchanged: its seq was not reused.
        for (const [seq, t] of seen) {
          const row = bySeq.get(seq);
          expect(row, `seq ${seq} was shown to a watcher but is not in the log`).to.not.equal(
            undefined,
          );
          expect(row?.workspace_id).to.equal(t.workspaceId);
          expect(row?.to_status).to.equal(WorkspaceStatus[t.to].replace('WORKSPACE_STATUS_', ''));
          expect(row?.reason).to.equal(
            TransitionReason[t.reason].replace('TRANSITION_REASON_', ''),
          );
        }
        const status = new Map(
          (
            db.prepare('SELECT id, status FROM workspaces').all() as {
              id: string;
              status: string;
            }[]
          ).map((r) => [r.id, r.status]),
        );
        for (const id of created)
          expect(status.has(id), `acknowledged create of ${id} lost`).to.equal(true);
        for (const id of deleted)
          expect(status.get(id), `acknowledged delete of ${id} lost`).to.equal('REMOVED');
        for (const id of online)
          expect(status.get(id), `acknowledged register of ${id} lost`).to.not.equal(
            'PROVISIONING',
          );
      } finally {
        db.close();
      }
    };

    for (let crash = 0; crash < 3; crash += 1) {
      await new Promise((resolve) => setTimeout(resolve, 1_500 + Math.random() * 1_000));
      await server?.kill('SIGKILL');
      verify();
      await start();
    }
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    stop = true;
    await Promise.all(workers);
    // Let the watcher catch up with the head, then stop it.
    const head = Math.max(
      ...(new Database(dbFile, { readonly: true })
        .prepare('SELECT seq FROM transitions')
        .pluck()
        .all() as number[]),
    );
    while ((order.at(-1) ?? 0) < head) await new Promise((resolve) => setTimeout(resolve, 20));
    stopWatch.abort();
    await watching;
    control.close();
    verify();

    expect(acknowledged, 'the load did real work').to.be.above(50);
    // No gap and no duplicate across three crashes: exactly 1..head, in order.
    expect(order).to.deep.equal(Array.from({ length: head }, (_, i) => i + 1));
  });
});
