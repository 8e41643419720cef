import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { Etcd3 } from 'etcd3';
import { createAesGcmCipher } from '../../src/crypto/aes-gcm-cipher.js';
import type {
  ProjectionChange,
  ProjectionStore,
  ProjectionVersions,
} from '../../src/domain/projection-store.js';
import type { SecretCipher } from '../../src/domain/secret-cipher.js';
import {
  createEtcdConnection,
  type EtcdConnection,
} from '../../src/storage/etcd/etcd-connection.js';
import {
  createEtcdProjectionStore,
  shredProjection,
} from '../../src/storage/etcd/etcd-projection-store.js';
import { createEtcdStore, type EtcdStore } from '../../src/storage/etcd/etcd-store.js';
import { etcdInstalled, startEtcdMember, type EtcdMember } from '../helpers/suite-store.js';

/** One replica's stores on a prefix: the etcd RegistryStore and the projection store on it. */
interface Replica {
  readonly store: EtcdStore;
  readonly projections: ProjectionStore;
  /** What its projection listeners heard, in order. */
  readonly heard: { versions: ProjectionVersions; bumped: boolean }[];
  close(): Promise<void>;
}

const cipher: SecretCipher = createAesGcmCipher({
  active: 'k1',
  keys: new Map([['k1', randomBytes(32)]]),
});

/** A plan that stores `value` as secret `name` (sealed under the workspace's data key) and bumps. */
function putSecret(name: string, value: string, onRun?: () => void) {
  return (record: Parameters<Parameters<ProjectionStore['change']>[2]>[0]): ProjectionChange => {
    onRun?.();
    const opened = record.key
      ? { key: cipher.openWorkspaceKey(record.workspaceId, record.key), created: undefined }
      : (() => {
          const fresh = cipher.createWorkspaceKey(record.workspaceId);
          return { key: fresh.key, created: fresh.wrapped };
        })();
    const fingerprint = opened.key.fingerprint(value);
    return {
      ...(opened.created ? { key: opened.created } : {}),
      putSecret: {
        name,
        sealed: opened.key.seal(name, value),
        fingerprint,
        updatedAt: 1,
        updatedBy: 'test',
      },
      state: `digest-of-${name}`,
      bump: true,
      audit: {
        actor: 'test',
        action: 'secret.set',
        workspaceId: record.workspaceId,
        name,
        fingerprint,
      },
    };
  };
}

async function eventually(check: () => void, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

describe('etcd projection store (against a real etcd)', function () {
  this.timeout(60_000);
  let etcd: EtcdMember | undefined;
  const open: Replica[] = [];
  let prefixes = 0;

  before(async function () {
    if (!etcdInstalled()) {
      console.log('      skipped: needs etcd (Debian package etcd-server)');
      this.skip();
    }
    etcd = await startEtcdMember();
  });
  afterEach(async () => {
    for (const r of open.splice(0)) await r.close();
  });
  after(() => {
    etcd?.stop();
  });

  /** A replica on `prefix`; `wrap` may stand between it and etcd (to interleave a write). */
  async function replica(
    prefix: string,
    id: string,
    wrap: (c: EtcdConnection) => EtcdConnection = (c) => c,
  ): Promise<Replica> {
    const connection = wrap(createEtcdConnection({ endpoints: etcd!.endpoints }));
    const store: EtcdStore = createEtcdStore({
      connection,
      prefix,
      replicaId: id,
      inDeleteTransaction: (workspaceId, write) => {
        shredProjection(store.keys, workspaceId, write);
      },
    });
    const projections = createEtcdProjectionStore({ store });
    const heard: Replica['heard'] = [];
    projections.subscribe((versions, bumped) => heard.push({ versions, bumped }));
    await store.start();
    const r: Replica = { store, projections, heard, close: () => store.close() };
    open.push(r);
    return r;
  }

  async function cell(workspaces: readonly string[]): Promise<[Replica, Replica, string]> {
    prefixes += 1;
    const prefix = `projection-it-${prefixes}/`;
    const a = await replica(prefix, 'r-a');
    const b = await replica(prefix, 'r-b');
    for (const id of workspaces) {
      await a.store.createWorkspace({ id, name: id, tokenHash: randomBytes(32), now: 1 });
    }
    return [a, b, prefix];
  }

  describe('when another replica commits between a read and its transaction', () => {
    it('fails the guarded transaction, runs the plan again on a fresh read, and commits both', async () => {
      prefixes += 1;
      const prefix = `projection-it-${prefixes}/`;
      const b = await replica(prefix, 'r-b');
      await b.store.createWorkspace({ id: 'ws-a', name: '', tokenHash: randomBytes(32), now: 1 });
      let interleave: (() => Promise<unknown>) | undefined;
      const a = await replica(prefix, 'r-a', (inner) => ({
        ...inner,
        async txn(compare, success, failure) {
          // The first guarded write of A waits for B's commit of the same workspace.
          const run = compare.length > 0 ? interleave : undefined;
          if (run) {
            interleave = undefined;
            await run();
          }
          return inner.txn(compare, success, failure);
        },
      }));
      let runs = 0;
      let bVersion = 0;
      interleave = async () => {
        bVersion = (await b.projections.change('ws-a', 2, putSecret('FROM_B', 'b'))).configVersion;
      };
      const record = await a.projections.change(
        'ws-a',
        3,
        putSecret('FROM_A', 'a', () => (runs += 1)),
      );
      expect(runs, 'plan runs: the conflicting read, then the fresh one').to.equal(2);
      expect(bVersion).to.equal(1);
      expect(record.configVersion).to.equal(2);
      // Built on B's commit: both secrets, under the one data key B created.
      expect(record.secrets.map((s) => s.name)).to.deep.equal(['FROM_A', 'FROM_B']);
      const stored = await b.projections.read('ws-a');
      expect(stored?.secrets.map((s) => s.name)).to.deep.equal(['FROM_A', 'FROM_B']);
      const key = cipher.openWorkspaceKey('ws-a', stored!.key!);
      expect(stored!.secrets.map((s) => key.open(s.name, s.sealed))).to.deep.equal(['a', 'b']);
      const audit = await a.projections.listAudit({ workspaceId: '', afterSeq: 0, limit: 10 });
      expect(audit.map((e) => [e.seq, e.name, e.configVersion])).to.deep.equal([
        [1, 'FROM_B', 1],
        [2, 'FROM_A', 2],
      ]);
    });
  });

  describe('when two replicas write concurrently', () => {
    it('gives gapless, strictly increasing config_versions and audit seqs in commit order, heard in that order by both', async () => {
      const ids = ['ws-0', 'ws-1', 'ws-2'];
      const [a, b] = await cell(ids);
      const writes = Array.from({ length: 30 }, (_, i) => {
        const writer = i % 2 === 0 ? a : b;
        const id = ids[i % ids.length]!;
        return writer.projections.change(id, 10 + i, putSecret(`S_${i}`, `v${i}`));
      });
      const versions = (await Promise.all(writes)).map((r) => r.configVersion);
      expect([...versions].sort((x, y) => x - y)).to.deep.equal(
        Array.from({ length: 30 }, (_, i) => i + 1),
      );
      const audit = await a.projections.listAudit({ workspaceId: '', afterSeq: 0, limit: 100 });
      expect(audit.map((e) => e.seq)).to.deep.equal(Array.from({ length: 30 }, (_, i) => i + 1));
      // Row and version were written in one transaction: seq order is version order.
      expect(audit.map((e) => e.configVersion)).to.deep.equal(
        Array.from({ length: 30 }, (_, i) => i + 1),
      );
      // Paged per workspace: the same rows, in order.
      const first = await a.projections.listAudit({ workspaceId: 'ws-1', afterSeq: 0, limit: 3 });
      const rest = await a.projections.listAudit({
        workspaceId: 'ws-1',
        afterSeq: first.at(-1)!.seq,
        limit: 100,
      });
      expect([...first, ...rest].map((e) => e.seq)).to.deep.equal(
        audit.filter((e) => e.workspaceId === 'ws-1').map((e) => e.seq),
      );
      // Every replica heard every bump (its own and the other's), in commit order.
      for (const r of [a, b]) {
        await eventually(() => {
          expect(r.heard.filter((h) => h.bumped)).to.have.length(30);
        });
        expect(r.heard.filter((h) => h.bumped).map((h) => h.versions.configVersion)).to.deep.equal(
          Array.from({ length: 30 }, (_, i) => i + 1),
        );
      }
      const rows = await b.projections.versions();
      expect(rows.map((r) => r.workspaceId).sort()).to.deep.equal(ids);
      expect(Math.max(...rows.map((r) => r.configVersion))).to.equal(30);
    });

    it('commits many concurrent writes of one replica though their reads exceed the ops of one etcd transaction', async () => {
      // 30 workspaces × (5 keys + 1 prefix) to read: over etcd's 128 operations per transaction.
      const ids = Array.from({ length: 30 }, (_, i) => `ws-many-${i}`);
      const [a] = await cell(ids);
      const records = await Promise.all(
        ids.map((id, i) => a.projections.change(id, 1, putSecret('K', `v${i}`))),
      );
      expect(records.map((r) => r.configVersion).sort((x, y) => x - y)).to.deep.equal(
        Array.from({ length: 30 }, (_, i) => i + 1),
      );
    });

    it('tells the other replica of an applied version (not a bump), and records only a change', async () => {
      const [a, b] = await cell(['ws-a']);
      const { configVersion } = await a.projections.change('ws-a', 1, putSecret('K', 'v'));
      const before = b.store.requests()['txn'] ?? 0;
      await b.projections.recordApplied('ws-a', configVersion);
      await b.projections.recordApplied('ws-a', configVersion);
      // Each report reads once; only the first writes.
      expect((b.store.requests()['txn'] ?? 0) - before).to.equal(3);
      await eventually(() => {
        expect(a.heard.at(-1)).to.deep.equal({
          versions: {
            workspaceId: 'ws-a',
            configVersion,
            appliedConfigVersion: configVersion,
            state: 'digest-of-K',
          },
          bumped: false,
        });
      });
      expect((await a.projections.read('ws-a'))?.appliedConfigVersion).to.equal(configVersion);
    });
  });

  describe('what reaches etcd', () => {
    it('holds only ciphertext: no planted value in any key, value or file etcd wrote', async () => {
      const sentinel = 'SENTINEL-etcd-5eed-0a1b2c';
      const [a, , prefix] = await cell(['ws-a', 'ws-b']);
      await a.projections.change('ws-a', 1, putSecret('MINIMAX_API_KEY', sentinel));
      await a.projections.change('ws-b', 2, putSecret('OTHER_TOKEN', `${sentinel}-b`));
      const client = new Etcd3({ hosts: [...etcd!.endpoints] });
      try {
        const all = await client.getAll().prefix(prefix).buffers();
        const keys = Object.keys(all);
        expect(keys).to.include.members([
          `${prefix}pk/ws-a`,
          `${prefix}sec/ws-a/MINIMAX_API_KEY`,
          `${prefix}sec/ws-b/OTHER_TOKEN`,
        ]);
        // The ciphertext is there, and it is the secret (so the scan below looks at it).
        const doc = JSON.parse(all[`${prefix}sec/ws-a/MINIMAX_API_KEY`]!.toString()) as {
          sealed: string;
        };
        const key = cipher.openWorkspaceKey('ws-a', (await a.projections.read('ws-a'))!.key!);
        expect(key.open('MINIMAX_API_KEY', Buffer.from(doc.sealed, 'base64'))).to.equal(sentinel);
        const files = filesUnder(etcd!.dataDir);
        expect(files.some((f) => f.includes(join('member', 'wal')))).to.equal(true);
        const texts = [
          ...Object.entries(all).map(([k, v]) => `${k}=${v.toString('latin1')}`),
          ...files.map((f) => readFileSync(f).toString('latin1')),
        ];
        for (const text of texts) expect(text.includes(sentinel)).to.equal(false);
      } finally {
        client.close();
      }
    });

    it('shreds the data key and sealed secrets in the transaction that removes the workspace', async () => {
      const [a, b] = await cell(['ws-a']);
      await a.projections.change('ws-a', 1, putSecret('K', 'v'));
      await b.store.deleteWorkspace('ws-a', 2, (state) =>
        state.status === 'REMOVED' ? undefined : { to: 'REMOVED', reason: 'DELETED' },
      );
      const record = await a.projections.read('ws-a');
      expect(record).to.include({ removed: true, configVersion: 1 });
      expect(record?.key).to.equal(undefined);
      expect(record?.secrets).to.deep.equal([]);
      expect((await a.projections.keyUsage()).get('k1') ?? 0).to.equal(0);
    });
  });
});

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(path) : [path];
  });
}
