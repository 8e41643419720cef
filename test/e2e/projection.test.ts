import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { SecretUse } from '../../gen/vigil/v1/projection.js';
import { addActiveKey, removeKey } from '../../src/crypto/keyring-file.js';
import { hashToken } from '../../src/domain/tokens.js';
import { CONTROL_TOKEN, startHarness, tempDir, type Harness } from '../helpers/harness.js';
import { createWorkspace, getWorkspace, heartbeatRequest } from '../helpers/e2e-fixtures.js';
import {
  getProjection,
  runtimeConfig,
  setConfig,
  setSecret,
  watchProjection,
} from '../helpers/projection-fixtures.js';
import { call, createClients, errorInfoOf, expectRpcError } from '../helpers/rpc.js';
import { copySealedSecret, rawStorage, storedKeyMaterial } from '../helpers/stored.js';
import { onEtcd } from '../helpers/suite-store.js';

const K = 'sk-minimax-test-value-0001';
const READ_TOKEN = 'vgc_test-read-token';
const controlTokens = [
  { name: 'test', scope: 'admin' as const, hash: hashToken(CONTROL_TOKEN) },
  { name: 'dashboard', scope: 'read' as const, hash: hashToken(READ_TOKEN) },
];

/** The §3.3 worked example of PROJECTION.md for workspace `id` at version `v`. */
function workedExample(id: string, v: number): Record<string, string> {
  return {
    ANTHROPIC_AUTH_TOKEN: K,
    ANTHROPIC_BASE_URL: 'https://api.minimax.io/anthropic',
    MINIMAX_API_KEY: K,
    MODEL: 'MiniMax-M2.7',
    VIGIL_CONFIG_VERSION: String(v),
    VIGIL_MODEL: 'MiniMax-M2.7',
    VIGIL_PROVIDER: 'minimax',
    VIGIL_WORKSPACE_ID: id,
  };
}

describe('runtime projection', function () {
  let harness: Harness;
  let logs: string[];
  const start = async (dataDir?: string, settings = {}) => {
    logs = [];
    const logger = pino(
      { level: 'trace' },
      {
        write(line: string) {
          logs.push(line);
        },
      },
    );
    harness = await startHarness({
      ...(dataDir ? { dataDir } : {}),
      logger,
      settings: { controlTokens, ...settings },
    });
    return harness;
  };
  afterEach(async () => {
    await harness.dispose();
  });

  describe('when a claude-code workspace on MiniMax has its key and config set', () => {
    it('projects the worked example for its own token, the same after a restart', async () => {
      await start();
      const { token } = await createWorkspace(harness, 'ws-a');
      const v1 = await setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', K);
      const v2 = await setConfig(harness, 'ws-a', runtimeConfig());
      expect(v2).to.be.greaterThan(v1);
      const first = await getProjection(harness, 'ws-a', token);
      expect(first.env).to.deep.equal(workedExample('ws-a', v2));
      expect(first.configVersion).to.equal(v2);
      expect(first.resolvedProvider).to.equal('minimax');
      expect(first.digest).to.match(/^[0-9a-f]{32}$/);
      const shown = await getWorkspace(harness, 'ws-a');
      expect(shown).to.include({
        configVersion: v2,
        appliedConfigVersion: 0,
        projectionReady: true,
      });

      const { dataDir } = harness;
      await harness.stop();
      await start(dataDir);
      const again = await getProjection(harness, 'ws-a', token);
      expect(again.configVersion).to.equal(v2);
      expect(again.digest).to.equal(first.digest);
      expect(again.env).to.deep.equal(first.env);
    });
  });

  describe('when the provider key is missing', () => {
    it('fails PROJECTION_INCOMPLETE naming it, with no environment; projection_ready is false', async () => {
      await start();
      const { token } = await createWorkspace(harness, 'ws-a');
      await setSecret(harness, 'ws-a', 'OTHER_TOOL_TOKEN', 'tool-value-0001');
      await setConfig(harness, 'ws-a', runtimeConfig());
      const info = await expectRpcError(
        getProjection(harness, 'ws-a', token),
        status.FAILED_PRECONDITION,
        'PROJECTION_INCOMPLETE',
      );
      expect(info.metadata).to.include({ missing: 'MINIMAX_API_KEY' });
      expect((await getWorkspace(harness, 'ws-a')).projectionReady).to.equal(false);
      const stream = watchProjection(harness.clients.runtime, 'ws-a', token);
      const event = await stream.next();
      expect(event.event?.$case).to.equal('error');
      if (event.event?.$case === 'error') {
        expect(event.event.value.reason).to.equal('PROJECTION_INCOMPLETE');
        expect(event.event.value.metadata).to.include({ missing: 'MINIMAX_API_KEY' });
      }
      stream.cancel();
    });
  });

  describe('who may read what', () => {
    it("refuses another workspace's token (PERMISSION_DENIED, audited) and read tokens' writes", async () => {
      await start();
      await createWorkspace(harness, 'ws-a');
      const b = await createWorkspace(harness, 'ws-b');
      await setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', K);
      await expectRpcError(
        getProjection(harness, 'ws-a', b.token),
        status.PERMISSION_DENIED,
        'WRONG_WORKSPACE',
      );
      const stream = watchProjection(harness.clients.runtime, 'ws-a', b.token);
      const ended = await stream.ended();
      expect(ended?.code).to.equal(status.PERMISSION_DENIED);
      await expectRpcError(
        setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', 'x', { token: READ_TOKEN }),
        status.PERMISSION_DENIED,
        'SCOPE_INSUFFICIENT',
      );
      await expectRpcError(
        setConfig(harness, 'ws-a', runtimeConfig(), READ_TOKEN),
        status.PERMISSION_DENIED,
        'SCOPE_INSUFFICIENT',
      );
      const { control } = harness.clients;
      const listed = await call(
        control,
        control.listWorkspaceSecrets,
        { workspaceId: 'ws-a' },
        READ_TOKEN,
      );
      expect(listed.secrets.map((s) => s.name)).to.deep.equal(['MINIMAX_API_KEY']);
      await call(control, control.explainProjection, { workspaceId: 'ws-a' }, READ_TOKEN);
      await eventually(async () => {
        const audit = await call(
          control,
          control.listAuditEvents,
          { workspaceId: 'ws-a', pageSize: 0, pageToken: '' },
          READ_TOKEN,
        );
        const denied = audit.events.filter((e) => e.action === 'projection.denied');
        expect(denied.map((e) => e.actor)).to.include('workspace:ws-b');
      });
    });
  });

  describe('when values are planted as sentinels', () => {
    it('never shows them in logs, errors, metrics, audit, control responses, the database or its WAL', async () => {
      const sentinel = 'SENTINEL-c0ffee-7d1e5a';
      const other = 'SENTINEL-beef42-91ab0c';
      await start(undefined, { metricsListen: '127.0.0.1:0' });
      const { token } = await createWorkspace(harness, 'ws-a');
      await setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', sentinel);
      await setSecret(harness, 'ws-a', 'CLAUDE_CODE_OAUTH_TOKEN', other);
      await setConfig(harness, 'ws-a', runtimeConfig());
      // The runtime receives it: that is the one place it may appear.
      expect((await getProjection(harness, 'ws-a', token)).env['MINIMAX_API_KEY']).to.equal(
        sentinel,
      );
      const { control } = harness.clients;
      const responses: unknown[] = [];
      // A refused value: the error names the field only.
      try {
        await setSecret(harness, 'ws-a', 'BAD', `${sentinel}\0`);
      } catch (error) {
        const e = error as { details: string; metadata: { getMap(): unknown } };
        expect(errorInfoOf(error as never).reason).to.equal('SECRET_VALUE_INVALID');
        responses.push(e.details, JSON.stringify(errorInfoOf(error as never)));
      }
      responses.push(
        await call(control, control.listWorkspaceSecrets, { workspaceId: 'ws-a' }, CONTROL_TOKEN),
        await call(control, control.explainProjection, { workspaceId: 'ws-a' }, CONTROL_TOKEN),
        await call(control, control.getWorkspace, { workspaceId: 'ws-a' }, CONTROL_TOKEN),
        await call(
          control,
          control.listAuditEvents,
          { workspaceId: '', pageSize: 1000, pageToken: '' },
          CONTROL_TOKEN,
        ),
      );
      const explain = responses[3] as {
        dropped: { name: string; use: SecretUse; fingerprint: string }[];
      };
      expect(explain.dropped).to.deep.include({
        name: 'CLAUDE_CODE_OAUTH_TOKEN',
        source: 'secret',
        use: SecretUse.SECRET_USE_SUPPRESSED,
        fingerprint: explain.dropped.find((d) => d.name === 'CLAUDE_CODE_OAUTH_TOKEN')?.fingerprint,
      });
      let metrics = '';
      // On etcd the scraped replica counts data keys from its watch: it may trail the write a moment.
      await eventually(async () => {
        metrics = await (
          await fetch(`http://127.0.0.1:${harness.vigil.metricsPort ?? 0}/metrics`)
        ).text();
        expect(metrics).to.match(/^vigil_secret_deks\{kek_id="k1"\} 1$/m);
      });
      const raw = await rawStorage(harness);
      // The places the ciphertext must be: else the scan below proves nothing.
      const sealed = onEtcd ? ['etcd keys under', 'member/wal/'] : ['vigil.db', 'vigil.db-wal'];
      for (const where of sealed) {
        expect(
          raw.map((r) => r.what).some((w) => w.includes(where)),
          where,
        ).to.equal(true);
      }
      if (harness.etcd) {
        // The scan covers the sealed secret's own key (and so its value).
        expect(raw[0]?.text).to.include(`${harness.etcd.prefix}sec/ws-a/MINIMAX_API_KEY=`);
      }
      await harness.stop();
      const afterStop = await rawStorage(harness);
      for (const value of [sentinel, other]) {
        for (const [what, text] of [
          ['logs', logs.join('')],
          ['metrics', metrics],
          ['control responses and errors', JSON.stringify(responses)],
          ...raw.map((r) => [`${r.what} while running`, r.text] as const),
          ...afterStop.map((r) => [`${r.what} after stop`, r.text] as const),
        ] as const) {
          expect(text.includes(value), `${value} in ${what}`).to.equal(false);
        }
      }
      expect(logs.join('')).to.include('control action');
    });
  });

  describe('when a ciphertext is copied to another row', () => {
    it('fails DATA_LOSS SECRET_UNREADABLE naming it: no plaintext, no partial environment', async () => {
      await start();
      await createWorkspace(harness, 'ws-a');
      const b = await createWorkspace(harness, 'ws-b');
      await setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', K);
      await setSecret(harness, 'ws-b', 'MINIMAX_API_KEY', 'sk-b-original-0001');
      await setConfig(harness, 'ws-b', runtimeConfig());
      await copySealedSecret(
        harness,
        { workspaceId: 'ws-a', name: 'MINIMAX_API_KEY' },
        { workspaceId: 'ws-b', name: 'MINIMAX_API_KEY' },
      );
      const info = await expectRpcError(
        getProjection(harness, 'ws-b', b.token),
        status.DATA_LOSS,
        'SECRET_UNREADABLE',
      );
      expect(info.metadata).to.include({ name: 'MINIMAX_API_KEY' });
    });
  });

  describe('when two Sets race with one expected_config_version', () => {
    it('commits exactly one, ABORTs the other; versions strictly increase', async () => {
      await start();
      await createWorkspace(harness, 'ws-a');
      const base = await setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', K);
      const results = await Promise.allSettled([
        setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', 'sk-one-0001', { expected: base }),
        setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', 'sk-two-0002', { expected: base }),
      ]);
      const fulfilled = results.filter((r) => r.status === 'fulfilled');
      const rejected = results.filter((r) => r.status === 'rejected');
      expect(fulfilled).to.have.length(1);
      expect(rejected).to.have.length(1);
      await expectRpcError(
        Promise.reject((rejected[0] as PromiseRejectedResult).reason as Error),
        status.ABORTED,
        'CONFIG_VERSION_MISMATCH',
      );
      const next = await setSecret(harness, 'ws-a', 'OTHER', 'o');
      expect(next).to.be.greaterThan((fulfilled[0] as PromiseFulfilledResult<number>).value);
      const { control } = harness.clients;
      const deleted = await call(
        control,
        control.deleteWorkspaceSecret,
        { workspaceId: 'ws-a', name: 'OTHER', expectedConfigVersion: next },
        CONTROL_TOKEN,
      );
      expect(deleted.configVersion).to.be.greaterThan(next);
      await expectRpcError(
        call(
          control,
          control.deleteWorkspaceSecret,
          { workspaceId: 'ws-a', name: 'OTHER', expectedConfigVersion: 0 },
          CONTROL_TOKEN,
        ),
        status.NOT_FOUND,
        'SECRET_NOT_FOUND',
      );
    });
  });

  describe('WatchProjection', () => {
    it('sends the state at once, the rotated key within 1 s, and applied_config_version converges', async () => {
      await start();
      const { token } = await createWorkspace(harness, 'ws-a');
      await setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', K);
      const v = await setConfig(harness, 'ws-a', runtimeConfig());
      const stream = watchProjection(harness.clients.runtime, 'ws-a', token, v);
      const first = await stream.next();
      expect(first.event?.$case).to.equal('projection');
      // Past the per-stream rate limit, so the write below goes out at once.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const written = Date.now();
      const rotated = await setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', 'sk-rotated-0002');
      const next = await stream.next(3_000);
      const latency = Date.now() - written;
      expect(next.event?.$case).to.equal('projection');
      if (next.event?.$case === 'projection') {
        expect(next.event.value.configVersion).to.equal(rotated);
        expect(next.event.value.env['ANTHROPIC_AUTH_TOKEN']).to.equal('sk-rotated-0002');
      }
      expect(latency, 'write → stream (ms)').to.be.lessThan(1_000);
      const { runtime } = harness.clients;
      const hint = await call(runtime, runtime.heartbeat, heartbeatRequest('ws-a'), token);
      expect(hint.configVersion).to.equal(rotated);
      await call(
        runtime,
        runtime.heartbeat,
        heartbeatRequest('ws-a', { appliedConfigVersion: rotated }),
        token,
      );
      await eventually(async () => {
        expect((await getWorkspace(harness, 'ws-a')).appliedConfigVersion).to.equal(rotated);
      });
      stream.cancel();
    });

    it('delivers a write to the streams open on every replica, and every replica hints and shows it', async () => {
      await start();
      const { token } = await createWorkspace(harness, 'ws-a');
      await setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', K);
      const v = await setConfig(harness, 'ws-a', runtimeConfig());
      // One client per replica (on etcd: 3), so each stream is served by a different replica.
      const each = harness.ports.map((port) => createClients(port));
      try {
        const streams = each.map((c) => watchProjection(c.runtime, 'ws-a', token, v));
        for (const stream of streams) {
          const first = await stream.next();
          expect(first.event?.$case).to.equal('projection');
        }
        await new Promise((resolve) => setTimeout(resolve, 1_100));
        // Written through the first replica only.
        const [writer] = each;
        const written = Date.now();
        const rotated = (
          await call(
            writer!.control,
            writer!.control.setWorkspaceSecret,
            {
              workspaceId: 'ws-a',
              name: 'MINIMAX_API_KEY',
              value: 'sk-rotated-0003',
              expectedConfigVersion: 0,
            },
            CONTROL_TOKEN,
          )
        ).configVersion;
        const latencies: number[] = [];
        for (const stream of streams) {
          const next = await stream.next(3_000);
          latencies.push(Date.now() - written);
          expect(next.event?.$case).to.equal('projection');
          if (next.event?.$case === 'projection') {
            expect(next.event.value.configVersion).to.equal(rotated);
            expect(next.event.value.env['ANTHROPIC_AUTH_TOKEN']).to.equal('sk-rotated-0003');
          }
          stream.cancel();
        }
        expect(Math.max(...latencies), 'write → slowest replica stream (ms)').to.be.lessThan(1_000);
        for (const c of each) {
          // A heartbeat (and GetWorkspace) is answered by the workspace's owner; ListWorkspaces
          // by the replica asked, from what its watch told it: the version a new owner would hint.
          const hint = await call(c.runtime, c.runtime.heartbeat, heartbeatRequest('ws-a'), token);
          expect(hint.configVersion).to.equal(rotated);
          const listed = await call(
            c.control,
            c.control.listWorkspaces,
            { pageSize: 0, pageToken: '', statuses: [] },
            CONTROL_TOKEN,
          );
          expect(listed.workspaces.find((w) => w.id === 'ws-a')).to.include({
            configVersion: rotated,
            projectionReady: true,
          });
        }
      } finally {
        for (const c of each) c.close();
      }
    });

    it('coalesces a burst of writes: the last message reflects every commit', async () => {
      await start();
      const { token } = await createWorkspace(harness, 'ws-a');
      await setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', K);
      const stream = watchProjection(harness.clients.runtime, 'ws-a', token);
      await stream.next();
      const [v1, v2] = await Promise.all([
        setSecret(harness, 'ws-a', 'FIRST_TOOL', 'one'),
        setSecret(harness, 'ws-a', 'SECOND_TOOL', 'two'),
      ]);
      const last = Math.max(v1, v2);
      const versions: number[] = [];
      for (;;) {
        const event = await stream.next(5_000);
        if (event.event?.$case !== 'projection') continue;
        versions.push(event.event.value.configVersion);
        if (event.event.value.configVersion === last) {
          expect(event.event.value.env).to.include({ FIRST_TOOL: 'one', SECOND_TOOL: 'two' });
          break;
        }
      }
      // Strictly increasing, and at most one message per commit.
      expect(versions).to.deep.equal([...new Set(versions)].sort((a, b) => a - b));
      expect(versions.length).to.be.at.most(2);
      stream.cancel();
    });

    it('ends WORKSPACE_REMOVED on DeleteWorkspace, which shreds the data key and secrets', async () => {
      await start();
      const { token } = await createWorkspace(harness, 'ws-a');
      await setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', K);
      const stream = watchProjection(harness.clients.runtime, 'ws-a', token);
      await stream.next();
      const { control } = harness.clients;
      await call(control, control.deleteWorkspace, { workspaceId: 'ws-a' }, CONTROL_TOKEN);
      const ended = await stream.ended();
      expect(ended?.code).to.equal(status.FAILED_PRECONDITION);
      expect(errorInfoOf(ended!).reason).to.equal('WORKSPACE_REMOVED');
      expect(await storedKeyMaterial(harness, 'ws-a')).to.deep.equal({ secrets: 0, dataKeys: 0 });
    });

    it('ends UNAUTHENTICATED on RevokeWorkspaceTokens', async () => {
      await start();
      const { token } = await createWorkspace(harness, 'ws-a');
      const stream = watchProjection(harness.clients.runtime, 'ws-a', token);
      await stream.next();
      const { control } = harness.clients;
      await call(control, control.revokeWorkspaceTokens, { workspaceId: 'ws-a' }, CONTROL_TOKEN);
      const ended = await stream.ended();
      expect(ended?.code).to.equal(status.UNAUTHENTICATED);
    });
  });

  describe('the keyring', () => {
    it('refuses to start on mode 0644 or a keyring lacking a stored key; a KEK rotation changes nothing', async () => {
      await start();
      const { token } = await createWorkspace(harness, 'ws-a');
      await setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', K);
      await setConfig(harness, 'ws-a', runtimeConfig());
      const before = await getProjection(harness, 'ws-a', token);
      const { dataDir } = harness;
      const keyringFile = join(dataDir, 'secrets-keyring');
      await harness.stop();

      chmodSync(keyringFile, 0o644);
      let refused: unknown;
      await start(dataDir).catch((error: unknown) => (refused = error));
      expect(String(refused)).to.match(/mode 0644/);
      chmodSync(keyringFile, 0o600);

      const saved = readFileSync(keyringFile, 'utf8');
      writeFileSync(
        keyringFile,
        JSON.stringify({ active: 'k7', keys: { k7: Buffer.alloc(32, 1).toString('base64') } }),
        { mode: 0o600 },
      );
      refused = undefined;
      await start(dataDir).catch((error: unknown) => (refused = error));
      expect(String(refused)).to.match(/lacks key "k1"/);
      // The right id, other bytes (say, a replica that generated a keyring of its own).
      writeFileSync(
        keyringFile,
        JSON.stringify({ active: 'k1', keys: { k1: Buffer.alloc(32, 2).toString('base64') } }),
        { mode: 0o600 },
      );
      refused = undefined;
      await start(dataDir).catch((error: unknown) => (refused = error));
      expect(String(refused)).to.match(/key "k1" does not open the data keys stored under it/);
      writeFileSync(keyringFile, saved, { mode: 0o600 });

      expect(addActiveKey(keyringFile)).to.equal('k2');
      await start(dataDir);
      const rotated = await getProjection(harness, 'ws-a', token);
      expect(rotated.configVersion).to.equal(before.configVersion);
      expect(rotated.digest).to.equal(before.digest);
      const { control } = harness.clients;
      const audit = await call(
        control,
        control.listAuditEvents,
        { workspaceId: 'ws-a', pageSize: 0, pageToken: '' },
        CONTROL_TOKEN,
      );
      expect(audit.events.map((e) => e.action)).to.include('keyring.rewrap');
      await harness.stop();
      removeKey(keyringFile, 'k1');
      await start(dataDir);
      expect((await getProjection(harness, 'ws-a', token)).digest).to.equal(before.digest);
    });

    it("refuses a replica whose keyring is not the cell's, even before any secret is stored", async function () {
      if (!onEtcd) this.skip(); // One SQLite server holds the one keyring of its database.
      await start();
      const { dataDir } = harness;
      // Another replica of the same cell that generates a keyring of its own (same id "k1").
      const stray = tempDir();
      let refused: unknown;
      await startHarness({
        dataDir: stray,
        settings: { controlTokens, etcd: { ...harness.etcd!, replicaId: 'r-stray' } },
      }).catch((error: unknown) => (refused = error));
      rmSync(stray, { recursive: true, force: true });
      expect(String(refused)).to.match(/key "k1" is not the key of that id the other replicas/);
      // The cell's own keyring still starts.
      await harness.stop();
      await start(dataDir);
    });

    it('without one ("off") every projection call is SECRETS_DISABLED, never plaintext', async () => {
      await start(undefined, { secretsKeyring: 'off' });
      const { token } = await createWorkspace(harness, 'ws-a');
      await expectRpcError(
        setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', K),
        status.FAILED_PRECONDITION,
        'SECRETS_DISABLED',
      );
      await expectRpcError(
        getProjection(harness, 'ws-a', token),
        status.FAILED_PRECONDITION,
        'SECRETS_DISABLED',
      );
    });
  });

  describe('when the provider catalog changes', () => {
    it('bumps the version only of workspaces whose environment changed', async () => {
      await start();
      const a = await createWorkspace(harness, 'ws-a');
      const b = await createWorkspace(harness, 'ws-b');
      await setSecret(harness, 'ws-a', 'MINIMAX_API_KEY', K);
      const va = await setConfig(harness, 'ws-a', runtimeConfig());
      await setSecret(harness, 'ws-b', 'KIMI_API_KEY', 'sk-kimi-0001');
      const vb = await setConfig(harness, 'ws-b', runtimeConfig({ model: 'kimi-k2' }));
      const { dataDir } = harness;
      await harness.stop();
      const { BUILT_IN_PROVIDERS } = await import('../../src/domain/projection.js');
      const providers = {
        providers: BUILT_IN_PROVIDERS.providers.map((p) =>
          p.name === 'minimax' ? { ...p, defaultBaseUrl: 'https://api.minimaxi.com/anthropic' } : p,
        ),
      };
      await start(dataDir, { providers });
      const pa = await getProjection(harness, 'ws-a', a.token);
      const pb = await getProjection(harness, 'ws-b', b.token);
      expect(pa.configVersion).to.be.greaterThan(Math.max(va, vb));
      expect(pa.env['ANTHROPIC_BASE_URL']).to.equal('https://api.minimaxi.com/anthropic');
      expect(pb.configVersion).to.equal(vb);
    });
  });
});

/** Retries `check` until it passes or 5 s have gone by. */
async function eventually(check: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
