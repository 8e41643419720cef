import { expect } from 'chai';
import Database from 'better-sqlite3';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_TIMINGS } from '../../src/domain/config.js';
import { VigilError } from '../../src/domain/errors.js';
import type { HeartbeatReport, Transition } from '../../src/domain/model.js';
import { cardFromValue } from '../../src/domain/agent-card.js';
import type { RegistryStore } from '../../src/domain/registry-store.js';
import { createUseCases, type UseCases } from '../../src/domain/use-cases.js';
import { openDatabase } from '../../src/storage/database.js';
import { SCHEMA_VERSION } from '../../src/storage/migrations.js';
import { createSqliteStore } from '../../src/storage/sqlite-store.js';
import { card, fakeResolver, tempDir } from '../helpers/harness.js';
import { createManualClock, type ManualClock } from '../helpers/manual-clock.js';
import { createUrlChecker } from '../../src/egress/url-policy.js';

const HEALTHY: HeartbeatReport = {
  errorRate: 0,
  sampleError: '',
  activeTasks: 0,
  uptimeSeconds: 1,
  currentTask: '',
  runtimeState: 'HEALTHY',
  nativeStatusManagement: false,
};

interface Fixture {
  file: string;
  db: Database.Database;
  store: RegistryStore;
  useCases: UseCases;
  clock: ManualClock;
  published: Transition[];
}

async function open(file: string, clock: ManualClock): Promise<Fixture> {
  const db = openDatabase(file);
  const store = createSqliteStore(db);
  const published: Transition[] = [];
  store.subscribe((commit) => published.push(...commit.transitions));
  const useCases = createUseCases({
    store,
    clock,
    timings: DEFAULT_TIMINGS,
    checkUrl: createUrlChecker('local', fakeResolver),
    serverStartedAt: clock.now(),
    sweepIntervalMs: 3_600_000,
  });
  // As the server does before serving: take over the liveness of every ONLINE/DEGRADED workspace.
  await useCases.liveness.start();
  return { file, db, store, useCases, clock, published };
}

/** Reads a workspace row straight from the file, bypassing the store. */
function row(file: string, id: string): Record<string, unknown> {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT * FROM workspaces WHERE id = ?').get(id) as Record<string, unknown>;
  } finally {
    db.close();
  }
}

function transitionRows(file: string): Record<string, unknown>[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT * FROM transitions ORDER BY seq').all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

describe('registry on a real SQLite file', () => {
  let dir: string;
  let f: Fixture;

  beforeEach(async () => {
    dir = tempDir();
    f = await open(join(dir, 'vigil.db'), createManualClock());
  });

  afterEach(async () => {
    await f.store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Creates a workspace, registers it with a card, and returns its token. */
  async function onlineWorkspace(id = 'ws-1'): Promise<string> {
    const { workspaceToken } = await f.useCases.admin.create(id, '');
    await f.useCases.runtime.register(workspaceToken, {
      workspaceId: id,
      url: 'http://127.0.0.1:8000',
      agentCard: card(),
      deliveryMode: 'PUSH',
    });
    return workspaceToken;
  }

  async function failRegister(token: string, id = 'ws-1'): Promise<void> {
    try {
      await f.useCases.runtime.register(token, {
        workspaceId: id,
        url: 'http://212851b5693d:8000',
        agentCard: card(),
        deliveryMode: 'PUSH',
      });
    } catch (error) {
      expect(error).to.be.instanceOf(VigilError);
      expect((error as VigilError).reason).to.equal('URL_VALIDATE_FAILED');
      return;
    }
    expect.fail('register with an unresolvable host succeeded');
  }

  describe('listing with a byte bound', () => {
    it('stops at the row that reaches the bound, and pages on losslessly', async () => {
      const padding = 'p'.repeat(30 * 1024);
      for (let i = 0; i < 10; i += 1) {
        const id = `ws-${i}`;
        const { workspaceToken } = await f.useCases.admin.create(id, '');
        await f.useCases.runtime.register(workspaceToken, {
          workspaceId: id,
          url: 'http://127.0.0.1:8000/',
          agentCard: { name: id, url: 'http://127.0.0.1:8000/', padding },
          deliveryMode: 'PUSH',
        });
      }
      const query = { statuses: ['ONLINE' as const], workspaceIds: [], limit: 500 };
      const size = (w: { agentCard?: unknown }) => JSON.stringify(w.agentCard).length;
      const seen: string[] = [];
      let afterId = '';
      for (;;) {
        const page = await f.store.listWorkspaces({ ...query, afterId, maxBytes: 100_000 });
        if (page.length === 0) break;
        // Under the bound until its last row, which reaches it (or is the last row of all).
        const before = page.slice(0, -1).reduce((sum, w) => sum + size(w), 0);
        expect(before).to.be.lessThan(100_000);
        expect(page.length).to.be.lessThan(10);
        seen.push(...page.map((w) => w.id));
        afterId = page.at(-1)?.id ?? '';
      }
      expect(seen).to.deep.equal(Array.from({ length: 10 }, (_, i) => `ws-${i}`));
    });
  });

  describe('schema', () => {
    it('applies every migration, in WAL mode with foreign keys and STRICT tables', () => {
      expect(f.db.pragma('user_version', { simple: true })).to.equal(SCHEMA_VERSION);
      expect(f.db.pragma('journal_mode', { simple: true })).to.equal('wal');
      expect(f.db.pragma('foreign_keys', { simple: true })).to.equal(1);
      const tables = f.db
        .prepare(
          "SELECT name, strict FROM pragma_table_list WHERE schema = 'main' AND name NOT LIKE 'sqlite_%'",
        )
        .all() as { name: string; strict: number }[];
      expect(tables.map((t) => t.name)).to.include.members([
        'workspaces',
        'workspace_tokens',
        'transitions',
      ]);
      for (const table of tables) expect(table.strict, table.name).to.equal(1);
    });

    it('re-opening a migrated file applies nothing twice', async () => {
      await f.store.close();
      f = await open(f.file, f.clock);
      expect(f.db.pragma('user_version', { simple: true })).to.equal(SCHEMA_VERSION);
    });

    it('refuses a database from a newer schema', async () => {
      f.db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
      await f.store.close();
      expect(() => openDatabase(f.file)).to.throw(/newer/);
      f = await open(join(dir, 'other.db'), f.clock);
    });
  });

  describe('tokens', () => {
    it('stores only the SHA-256 of a workspace token', async () => {
      const { workspaceToken } = await f.useCases.admin.create('ws-1', '');
      const stored = f.db.prepare('SELECT token_hash FROM workspace_tokens').all() as {
        token_hash: Buffer;
      }[];
      expect(stored).to.have.length(1);
      expect(stored[0]?.token_hash).to.have.length(32);
      const everything = f.db.serialize().toString('latin1');
      expect(everything.includes(workspaceToken)).to.equal(false);
    });

    it('fails closed when the token store errors', async () => {
      const { workspaceToken } = await f.useCases.admin.create('ws-1', '');
      const failing: RegistryStore = {
        ...f.store,
        findToken: () => Promise.reject(new Error('disk on fire')),
      };
      const useCases = createUseCases({
        store: failing,
        clock: f.clock,
        timings: DEFAULT_TIMINGS,
        checkUrl: createUrlChecker('local', fakeResolver),
        serverStartedAt: f.clock.now(),
        sweepIntervalMs: 3_600_000,
      });
      try {
        await useCases.runtime.heartbeat(workspaceToken, {
          workspaceId: 'ws-1',
          agentCard: undefined,
          report: HEALTHY,
        });
        expect.fail('heartbeat passed auth with a broken token store');
      } catch (error) {
        expect((error as VigilError).reason).to.equal('AUTH_UNAVAILABLE');
      }
      expect(row(f.file, 'ws-1')['last_heartbeat_at']).to.equal(null);
    });
  });

  describe('heartbeat with a card after a failed re-register (the restart shape)', () => {
    it('changes 0 rows in the backfill, 1 in the marker clear, and recovers DEGRADED → ONLINE on that heartbeat', async () => {
      const token = await onlineWorkspace();
      expect(row(f.file, 'ws-1')['agent_card']).to.be.a('string');
      f.clock.advance(1_000);
      await failRegister(token);
      expect(row(f.file, 'ws-1')['status']).to.equal('DEGRADED');
      expect(row(f.file, 'ws-1')['last_register_failure_at']).to.equal(f.clock.now());

      f.clock.advance(1_000);
      const result = await f.useCases.runtime.heartbeat(token, {
        workspaceId: 'ws-1',
        agentCard: cardFromValue(card()),
        report: HEALTHY,
      });

      expect(result.cardBackfillChanges).to.equal(0);
      expect(result.markerClearChanges).to.equal(1);
      expect(result.status).to.equal('ONLINE');
      expect(result.transition).to.include({
        fromStatus: 'DEGRADED',
        toStatus: 'ONLINE',
        reason: 'RECOVERED',
      });
      const stored = row(f.file, 'ws-1');
      expect(stored['status']).to.equal('ONLINE');
      expect(stored['last_register_failure_at']).to.equal(null);
      expect(stored['last_heartbeat_at']).to.equal(f.clock.now());
      const last = transitionRows(f.file).at(-1);
      expect(last).to.include({
        from_status: 'DEGRADED',
        to_status: 'ONLINE',
        reason: 'RECOVERED',
      });
      expect(f.published.at(-1)?.seq).to.equal(last?.['seq']);
    });

    it('backfills a card only when none is stored', async () => {
      const { workspaceToken } = await f.useCases.admin.create('ws-1', '');
      const first = await f.useCases.runtime.heartbeat(workspaceToken, {
        workspaceId: 'ws-1',
        agentCard: cardFromValue(card('first')),
        report: HEALTHY,
      });
      expect(first.cardBackfillChanges).to.equal(1);
      expect(first.markerClearChanges).to.equal(0);
      const second = await f.useCases.runtime.heartbeat(workspaceToken, {
        workspaceId: 'ws-1',
        agentCard: cardFromValue(card('second')),
        report: HEALTHY,
      });
      expect(second.cardBackfillChanges).to.equal(0);
      expect(JSON.parse(row(f.file, 'ws-1')['agent_card'] as string)).to.deep.include({
        name: 'first',
      });
    });

    it('keeps the workspace DEGRADED on heartbeats without a card until the window has passed', async () => {
      const token = await onlineWorkspace();
      await failRegister(token);
      const beat = () =>
        f.useCases.runtime.heartbeat(token, {
          workspaceId: 'ws-1',
          agentCard: undefined,
          report: HEALTHY,
        });

      f.clock.advance(DEFAULT_TIMINGS.registerFailureWindowMs - 1);
      const during = await beat();
      expect(during.status).to.equal('DEGRADED');
      expect(during.transition).to.equal(undefined);
      expect(during.markerClearChanges).to.equal(0);

      f.clock.advance(1);
      const after = await beat();
      expect(after.status).to.equal('ONLINE');
      expect(after.transition?.reason).to.equal('RECOVERED');
    });

    it('writes nothing when any step of the transaction fails', async () => {
      const token = await onlineWorkspace();
      await failRegister(token);
      const before = row(f.file, 'ws-1');
      const count = transitionRows(f.file).length;
      f.clock.advance(1_000);
      try {
        await f.store.applyHeartbeat(
          { id: 'ws-1', report: HEALTHY, agentCard: JSON.stringify(card()), now: f.clock.now() },
          () => {
            throw new Error('evaluation failed');
          },
        );
        expect.fail('the heartbeat transaction did not fail');
      } catch (error) {
        expect((error as Error).message).to.equal('evaluation failed');
      }
      expect(row(f.file, 'ws-1')).to.deep.equal(before);
      expect(transitionRows(f.file)).to.have.length(count);
    });
  });

  describe('liveness sweep', () => {
    it('moves a silent ONLINE workspace OFFLINE only after offline_after', async () => {
      await onlineWorkspace();
      f.clock.advance(DEFAULT_TIMINGS.offlineAfterMs);
      expect(await f.useCases.liveness.sweep()).to.have.length(0);
      f.clock.advance(1);
      const swept = await f.useCases.liveness.sweep();
      expect(swept.map((t) => [t.workspaceId, t.toStatus, t.reason])).to.deep.equal([
        ['ws-1', 'OFFLINE', 'HEARTBEAT_TIMEOUT'],
      ]);
      expect(row(f.file, 'ws-1')['status']).to.equal('OFFLINE');
    });

    it('fails a workspace still PROVISIONING after the provision timeout', async () => {
      await f.useCases.admin.create('ws-1', '');
      f.clock.advance(DEFAULT_TIMINGS.provisionTimeoutMs + 1);
      const swept = await f.useCases.liveness.sweep();
      expect(swept.map((t) => [t.toStatus, t.reason])).to.deep.equal([
        ['FAILED', 'PROVISION_TIMEOUT'],
      ]);
    });

    it('never counts server downtime against a workspace', async () => {
      await onlineWorkspace();
      await f.store.close();
      // The server was down for an hour; the workspace kept heartbeating somewhere we could not see.
      f.clock.advance(3_600_000);
      f = await open(f.file, f.clock);
      expect(await f.useCases.liveness.sweep()).to.have.length(0);
      f.clock.advance(DEFAULT_TIMINGS.offlineAfterMs);
      expect(await f.useCases.liveness.sweep()).to.have.length(0);
      f.clock.advance(1);
      expect((await f.useCases.liveness.sweep()).map((t) => t.toStatus)).to.deep.equal(['OFFLINE']);
    });

    it('decides from liveness in memory: heartbeats answered without a write keep a workspace ONLINE', async () => {
      const token = await onlineWorkspace();
      for (let i = 0; i < 10; i += 1) {
        f.clock.advance(DEFAULT_TIMINGS.offlineAfterMs / 2);
        const beat = await f.useCases.runtime.heartbeat(token, {
          workspaceId: 'ws-1',
          agentCard: undefined,
          report: HEALTHY,
        });
        expect(beat.fromMemory).to.equal(true);
        expect(await f.useCases.liveness.sweep()).to.have.length(0);
      }
      // Five offline_afters of heartbeats, none of them in the file yet.
      expect(row(f.file, 'ws-1')['last_heartbeat_at']).to.equal(null);
      expect(row(f.file, 'ws-1')['status']).to.equal('ONLINE');
      f.clock.advance(DEFAULT_TIMINGS.offlineAfterMs);
      expect(await f.useCases.liveness.sweep()).to.have.length(0);
      f.clock.advance(1);
      expect((await f.useCases.liveness.sweep()).map((t) => t.reason)).to.deep.equal([
        'HEARTBEAT_TIMEOUT',
      ]);
    });

    it('after a restart, counts from the restart: unflushed last-seen times lost in a crash do no harm', async () => {
      const token = await onlineWorkspace();
      f.clock.advance(DEFAULT_TIMINGS.offlineAfterMs * 3);
      await f.useCases.runtime.heartbeat(token, {
        workspaceId: 'ws-1',
        agentCard: undefined,
        report: HEALTHY,
      });
      // A crash: the heartbeat above never reached the file.
      f.db.close();
      f.clock.advance(1_000);
      f = await open(f.file, f.clock);
      expect(row(f.file, 'ws-1')['last_heartbeat_at']).to.equal(null);
      f.clock.advance(DEFAULT_TIMINGS.offlineAfterMs);
      expect(await f.useCases.liveness.sweep()).to.have.length(0);
      f.clock.advance(1);
      expect((await f.useCases.liveness.sweep()).map((t) => t.toStatus)).to.deep.equal(['OFFLINE']);
    });

    it('sweeps more workspaces than one batch holds', async () => {
      for (let i = 0; i < 1_203; i += 1) await f.useCases.admin.create(`ws-${i}`, '');
      f.clock.advance(DEFAULT_TIMINGS.provisionTimeoutMs + 1);
      expect(await f.useCases.liveness.sweep()).to.have.length(1_203);
      expect(await f.useCases.liveness.sweep()).to.have.length(0);
    });
  });

  describe('transition log', () => {
    it('numbers transitions strictly increasing and never reuses a seq after re-opening', async () => {
      await onlineWorkspace('ws-a');
      await f.store.close();
      f = await open(f.file, f.clock);
      await onlineWorkspace('ws-b');
      const seqs = transitionRows(f.file).map((t) => t['seq'] as number);
      expect(seqs).to.deep.equal([...seqs].sort((a, b) => a - b));
      expect(new Set(seqs).size).to.equal(seqs.length);
      expect(await f.store.headSeq()).to.equal(seqs.at(-1));
    });

    it('records every status change with its transition row', async () => {
      const token = await onlineWorkspace();
      await failRegister(token);
      await f.useCases.runtime.heartbeat(token, {
        workspaceId: 'ws-1',
        agentCard: cardFromValue(card()),
        report: HEALTHY,
      });
      await f.useCases.admin.delete('ws-1');
      expect(
        transitionRows(f.file).map(
          (t) => `${String(t['from_status'])}>${String(t['to_status'])}:${String(t['reason'])}`,
        ),
      ).to.deep.equal([
        'null>PROVISIONING:CREATED',
        'PROVISIONING>ONLINE:REGISTERED',
        'ONLINE>DEGRADED:REGISTER_FAILED',
        'DEGRADED>ONLINE:RECOVERED',
        'ONLINE>REMOVED:DELETED',
      ]);
    });
  });
});
