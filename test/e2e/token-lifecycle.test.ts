import { Writable } from 'node:stream';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import pino from 'pino';
import { hashToken } from '../../src/domain/tokens.js';
import { CONTROL_TOKEN, card, startHarness, type Harness } from '../helpers/harness.js';
import { bearer, call, errorInfoOf, expectRpcError } from '../helpers/rpc.js';
import { SUITE_REPLICAS, onEtcd } from '../helpers/suite-store.js';

/**
 * How long another replica may still accept a token the replica that served
 * the revocation refuses at once: until its etcd watch delivers the change
 * (milliseconds; the bound here is generous). One server: no delay at all.
 */
const REVOCATION_REACH_MS = onEtcd && SUITE_REPLICAS > 1 ? 1_000 : 0;

/** `attempt` refused with TOKEN_INVALID now, or on every replica within REVOCATION_REACH_MS. */
async function expectRevoked(attempt: () => Promise<unknown>): Promise<void> {
  const deadline = Date.now() + REVOCATION_REACH_MS;
  for (;;) {
    const accepted = await attempt().then(
      () => true,
      () => false,
    );
    if (!accepted || Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  // Settled: from now on every attempt is refused, whichever replica answers.
  for (let i = 0; i < Math.max(1, SUITE_REPLICAS); i += 1) {
    await expectRpcError(attempt(), status.UNAUTHENTICATED, 'TOKEN_INVALID');
  }
}

const READ_TOKEN = 'vgc_read-only-dashboard-token';

function beat(workspaceId: string) {
  return {
    workspaceId,
    agentCard: undefined,
    errorRate: 0,
    sampleError: '',
    activeTasks: 0,
    uptimeSeconds: 1,
    currentTask: '',
    runtimeState: 0,
    nativeStatusManagement: false,
    appliedConfigVersion: 0,
  };
}

describe('token lifecycle and scopes', () => {
  let h: Harness;
  let logs: Record<string, unknown>[];
  let token: string;

  beforeEach(async () => {
    logs = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    h = await startHarness({
      logger: pino({ level: 'info' }, sink),
      settings: {
        controlTokens: [
          { name: 'ops', scope: 'admin', hash: hashToken(CONTROL_TOKEN) },
          { name: 'dashboard', scope: 'read', hash: hashToken(READ_TOKEN) },
        ],
      },
    });
    const { control, runtime } = h.clients;
    token = (
      await call(control, control.createWorkspace, { workspaceId: 'ws-t', name: '' }, CONTROL_TOKEN)
    ).workspaceToken;
    await call(
      runtime,
      runtime.register,
      { workspaceId: 'ws-t', url: 'http://127.0.0.1:8000', agentCard: card(), deliveryMode: 0 },
      token,
    );
  });

  afterEach(async () => {
    await h.dispose();
  });

  const heartbeat = (t: string) =>
    call(h.clients.runtime, h.clients.runtime.heartbeat, beat('ws-t'), t);
  const rotate = (revokePrevious: boolean) =>
    call(
      h.clients.control,
      h.clients.control.rotateWorkspaceToken,
      { workspaceId: 'ws-t', revokePrevious },
      CONTROL_TOKEN,
    );

  describe('when a token is rotated', () => {
    it('keeps the previous token valid for the overlap, then rejects it', async () => {
      const rotated = await rotate(false);
      expect(rotated.previousTokensExpireAt?.getTime()).to.equal(h.clock.now() + 60_000);
      await heartbeat(token);
      await heartbeat(rotated.workspaceToken);
      h.clock.advance(59_999);
      await heartbeat(token);
      h.clock.advance(1);
      await expectRpcError(heartbeat(token), status.UNAUTHENTICATED, 'TOKEN_INVALID');
      await heartbeat(rotated.workspaceToken);
    });

    it('ends the previous token at once with revoke_previous', async () => {
      const rotated = await rotate(true);
      await expectRevoked(() => heartbeat(token));
      await heartbeat(rotated.workspaceToken);
    });
  });

  describe('when the tokens are revoked', () => {
    it('rejects them at once, and ends an open heartbeat stream with UNAUTHENTICATED', async () => {
      const stream = h.clients.runtime.heartbeatStream(bearer(token));
      const failed = new Promise<Error & { code?: number }>((resolve) =>
        stream.on('error', resolve),
      );
      const responses: unknown[] = [];
      stream.on('data', (r) => responses.push(r));
      stream.write({ requestId: 1, heartbeat: beat('ws-t') });
      while (responses.length < 1) await new Promise((resolve) => setImmediate(resolve));

      const { control } = h.clients;
      const revoked = await call(
        control,
        control.revokeWorkspaceTokens,
        { workspaceId: 'ws-t' },
        CONTROL_TOKEN,
      );
      expect(revoked.revokedCount).to.equal(1);
      await expectRevoked(() => heartbeat(token));

      stream.write({ requestId: 2, heartbeat: beat('ws-t') });
      const error = await failed;
      expect(error.code).to.equal(status.UNAUTHENTICATED);
      expect(errorInfoOf(error as never).reason).to.equal('TOKEN_INVALID');
    });
  });

  describe('when a token is used', () => {
    it('keeps when it was last used', async () => {
      const { control } = h.clients;
      const before = (
        await call(control, control.getWorkspace, { workspaceId: 'ws-t' }, CONTROL_TOKEN)
      ).workspace;
      h.clock.advance(5_000);
      await heartbeat(token);
      await h.vigil.useCases.tokens.flushUsage();
      const after = (
        await call(control, control.getWorkspace, { workspaceId: 'ws-t' }, CONTROL_TOKEN)
      ).workspace;
      expect(before?.tokenLastUsedAt, 'not yet flushed').to.equal(undefined);
      expect(after?.tokenLastUsedAt?.getTime()).to.equal(h.clock.now());
    });

    it('leaves it as it was when the call is refused after authentication', async () => {
      const { control, runtime } = h.clients;
      await heartbeat(token);
      const served = h.clock.now();
      await call(
        control,
        control.createWorkspace,
        { workspaceId: 'ws-u', name: '' },
        CONTROL_TOKEN,
      );
      h.clock.advance(5_000);
      // A valid token, each time refused for what the call carries or names.
      await expectRpcError(
        call(runtime, runtime.heartbeat, { ...beat('ws-t'), errorRate: 2 }, token),
        status.INVALID_ARGUMENT,
        'FIELD_INVALID',
      );
      await expectRpcError(
        call(runtime, runtime.heartbeat, beat('ws-u'), token),
        status.PERMISSION_DENIED,
        'WRONG_WORKSPACE',
      );
      await expectRpcError(
        call(
          runtime,
          runtime.register,
          { workspaceId: 'ws-t', url: '', agentCard: card(), deliveryMode: 0 },
          token,
        ),
        status.INVALID_ARGUMENT,
        'FIELD_INVALID',
      );
      const stream = runtime.heartbeatStream(bearer(token));
      const answered = new Promise<{ result?: { $case: string } }>((resolve, reject) => {
        stream.once('data', resolve);
        stream.once('error', reject);
      });
      stream.write({ requestId: 1, heartbeat: { ...beat('ws-t'), errorRate: -1 } });
      expect((await answered).result?.$case).to.equal('error');
      stream.end();
      await h.vigil.useCases.tokens.flushUsage();
      const workspace = (
        await call(control, control.getWorkspace, { workspaceId: 'ws-t' }, CONTROL_TOKEN)
      ).workspace;
      expect(workspace?.tokenLastUsedAt?.getTime()).to.equal(served);
      // Served again: recorded at once.
      await heartbeat(token);
      await h.vigil.useCases.tokens.flushUsage();
      const later = (
        await call(control, control.getWorkspace, { workspaceId: 'ws-t' }, CONTROL_TOKEN)
      ).workspace;
      expect(later?.tokenLastUsedAt?.getTime()).to.equal(h.clock.now());
    });
  });

  describe('when a read-scoped control token is used', () => {
    it('may read and watch', async () => {
      const { control } = h.clients;
      await call(control, control.getWorkspace, { workspaceId: 'ws-t' }, READ_TOKEN);
      await call(
        control,
        control.listWorkspaces,
        { pageSize: 0, pageToken: '', statuses: [] },
        READ_TOKEN,
      );
      await call(
        control,
        control.listTransitions,
        { workspaceId: '', pageSize: 0, pageToken: '' },
        READ_TOKEN,
      );
      const watch = control.watchStatus(
        { workspaceIds: [], afterSeq: 0, includeSnapshot: false, resume: false },
        bearer(READ_TOKEN),
      );
      const first = await new Promise((resolve, reject) => {
        watch.once('data', resolve);
        watch.once('error', reject);
      });
      expect(first).to.have.nested.property('event.$case', 'progress');
      watch.on('error', () => undefined);
      watch.cancel();
    });

    it('gets PERMISSION_DENIED / SCOPE_INSUFFICIENT for every admin call, which writes nothing', async () => {
      const { control } = h.clients;
      const head = (
        await call(
          control,
          control.listTransitions,
          { workspaceId: '', pageSize: 1000, pageToken: '' },
          CONTROL_TOKEN,
        )
      ).transitions.length;
      const calls = [
        call(control, control.createWorkspace, { workspaceId: 'ws-x', name: '' }, READ_TOKEN),
        call(control, control.deleteWorkspace, { workspaceId: 'ws-t' }, READ_TOKEN),
        call(
          control,
          control.rotateWorkspaceToken,
          { workspaceId: 'ws-t', revokePrevious: true },
          READ_TOKEN,
        ),
        call(control, control.revokeWorkspaceTokens, { workspaceId: 'ws-t' }, READ_TOKEN),
      ];
      for (const pending of calls) {
        const info = await expectRpcError(pending, status.PERMISSION_DENIED, 'SCOPE_INSUFFICIENT');
        expect(info.metadata).to.deep.equal({ tokenName: 'dashboard', required: 'admin' });
      }
      await heartbeat(token);
      const after = (
        await call(
          control,
          control.listTransitions,
          { workspaceId: '', pageSize: 1000, pageToken: '' },
          CONTROL_TOKEN,
        )
      ).transitions.length;
      expect(after).to.equal(head);
      expect(logs.filter((l) => l['audit'] === true)).to.have.length(1); // only the create in beforeEach
    });
  });

  describe('audit log', () => {
    it('names the control token of every control action, never the token itself', async () => {
      await rotate(false);
      const { control } = h.clients;
      await call(control, control.revokeWorkspaceTokens, { workspaceId: 'ws-t' }, CONTROL_TOKEN);
      await call(control, control.deleteWorkspace, { workspaceId: 'ws-t' }, CONTROL_TOKEN);
      const audit = logs
        .filter((l) => l['audit'] === true)
        .map((l) => [l['action'], l['workspaceId'], l['tokenName']]);
      expect(audit).to.deep.equal([
        ['workspace.create', 'ws-t', 'ops'],
        ['workspace.rotate_token', 'ws-t', 'ops'],
        ['workspace.revoke_tokens', 'ws-t', 'ops'],
        ['workspace.delete', 'ws-t', 'ops'],
      ]);
      const text = JSON.stringify(logs);
      expect(text).not.to.include(CONTROL_TOKEN);
      expect(text).not.to.include(token);
    });
  });
});
