import Database from 'better-sqlite3';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { CONTROL_TOKEN, tempDir } from '../helpers/harness.js';
import { runVigil, startServe, type Served } from '../helpers/cli-run.js';
import { call, createClients } from '../helpers/rpc.js';
import { onEtcd } from '../helpers/suite-store.js';

describe('vigil backup and vigil restore', function () {
  this.timeout(120_000);
  let dir: string;
  let served: Served | undefined;

  before(function () {
    // Backups are of the SQLite file; on etcd, etcd's own snapshots apply.
    if (onEtcd) this.skip();
  });

  beforeEach(() => {
    dir = tempDir();
  });

  afterEach(async () => {
    await served?.proc.kill('SIGKILL');
    served = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  describe('when the server is running and taking writes', () => {
    it('copies a consistent database holding every transition acknowledged before the backup began', async () => {
      const data = join(dir, 'data');
      served = await startServe(
        ['--listen', '127.0.0.1:0', '--metrics-listen', 'off', '--data-dir', data],
        { VIGIL_CONTROL_TOKEN: CONTROL_TOKEN },
      );
      const clients = createClients(served.port);
      const acknowledged: string[] = [];
      const state = { writing: true };
      let n = 0;
      // One writer, bounded: it stops when the backup is done (or after 2,000 workspaces).
      const writer = (async () => {
        while (state.writing && n < 2_000) {
          const id = `ws-${n++}`;
          await call(
            clients.control,
            clients.control.createWorkspace,
            { workspaceId: id, name: id },
            CONTROL_TOKEN,
          );
          acknowledged.push(id);
        }
      })();
      try {
        while (acknowledged.length < 50) await new Promise((r) => setTimeout(r, 20));
        const before = [...acknowledged];
        const file = join(dir, 'copy.db');
        const result = await runVigil(['backup', file, '--data-dir', data], {}, 60_000);
        const after = acknowledged.length;
        state.writing = false;
        await writer;
        expect(result.code, result.stderr.join('\n')).to.equal(0);
        expect(result.stdout).to.have.length(1);
        expect(result.stdout[0]).to.include('integrity_check ok');
        expect(existsSync(`${file}.partial`)).to.equal(false);

        const copy = new Database(file, { readonly: true });
        try {
          expect(copy.pragma('integrity_check', { simple: true })).to.equal('ok');
          const ids = new Set(
            (
              copy
                .prepare("SELECT workspace_id AS id FROM transitions WHERE reason = 'CREATED'")
                .all() as { id: string }[]
            ).map((r) => r.id),
          );
          for (const id of before) expect(ids.has(id), id).to.equal(true);
          // A snapshot: seqs without gaps, and nothing acknowledged after the backup ended.
          const seqs = copy
            .prepare('SELECT seq FROM transitions ORDER BY seq')
            .pluck()
            .all() as number[];
          expect(seqs).to.deep.equal(seqs.map((_, i) => i + 1));
          expect(ids.size).to.be.at.most(after);
          const workspaces = copy
            .prepare('SELECT COUNT(*) FROM workspaces')
            .pluck()
            .get() as number;
          expect(workspaces).to.equal(ids.size);
        } finally {
          copy.close();
        }
      } finally {
        state.writing = false;
        await writer.catch(() => undefined);
        clients.close();
      }
    });
  });

  describe('when restoring', () => {
    it('refuses while the server runs, then puts the backup in place and keeps the replaced file', async () => {
      const data = join(dir, 'data');
      const args = ['--listen', '127.0.0.1:0', '--metrics-listen', 'off', '--data-dir', data];
      const env = { VIGIL_CONTROL_TOKEN: CONTROL_TOKEN };
      served = await startServe(args, env);
      let clients = createClients(served.port);
      await call(
        clients.control,
        clients.control.createWorkspace,
        { workspaceId: 'ws-kept', name: 'k' },
        CONTROL_TOKEN,
      );
      const file = join(dir, 'copy.db');
      expect((await runVigil(['backup', file, '--data-dir', data])).code).to.equal(0);
      await call(
        clients.control,
        clients.control.createWorkspace,
        { workspaceId: 'ws-later', name: 'l' },
        CONTROL_TOKEN,
      );
      clients.close();

      const refused = await runVigil(['restore', file, '--data-dir', data]);
      expect(refused.code).to.equal(1);
      expect(refused.stderr).to.have.length(1);
      expect(refused.stderr[0]).to.include(`is in use by pid ${served.proc.child.pid}`);

      expect(await served.proc.kill('SIGTERM')).to.equal(0);
      const restored = await runVigil(['restore', file, '--data-dir', data]);
      expect(restored.code, restored.stderr.join('\n')).to.equal(0);
      expect(readdirSync(data).some((f) => f.startsWith('vigil.db.replaced-'))).to.equal(true);

      served = await startServe(args, env);
      clients = createClients(served.port);
      try {
        const kept = await call(
          clients.control,
          clients.control.getWorkspace,
          { workspaceId: 'ws-kept' },
          CONTROL_TOKEN,
        );
        expect(kept.workspace?.id).to.equal('ws-kept');
        const later = await call(
          clients.control,
          clients.control.getWorkspace,
          { workspaceId: 'ws-later' },
          CONTROL_TOKEN,
        ).then(
          () => 'found',
          () => 'gone',
        );
        expect(later).to.equal('gone');
      } finally {
        clients.close();
      }
    });
  });
});
