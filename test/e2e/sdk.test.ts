import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import {
  DeliveryMode,
  VigilClientError,
  WorkspaceStatus,
  createControlClient,
  createRuntimeClient,
  runHeartbeatLoop,
  type ControlClient,
  type SidecarEvent,
  type WatchEvent,
} from '../../src/client/index.js';
import { CONTROL_TOKEN, card, startHarness, type Harness } from '../helpers/harness.js';
import { freePort } from '../helpers/processes.js';

describe('TypeScript SDK', () => {
  let h: Harness;
  let server: string;
  let control: ControlClient;

  beforeEach(async () => {
    server = `127.0.0.1:${await freePort()}`;
    h = await startHarness({ settings: { listen: server } });
    control = createControlClient({ server, token: CONTROL_TOKEN });
  });

  afterEach(async () => {
    control.close();
    await h.dispose();
  });

  describe('promise clients', () => {
    it('create, register, heartbeat and read back', async () => {
      const created = await control.createWorkspace('ws-sdk', 'SDK');
      const runtime = createRuntimeClient({ server, token: created.workspaceToken });
      try {
        const registered = await runtime.register({
          workspaceId: 'ws-sdk',
          url: 'http://127.0.0.1:8000',
          agentCard: card(),
        });
        expect(registered.workspace?.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
        expect(registered.heartbeatInterval?.seconds).to.equal(10);
        const beat = await runtime.heartbeat({ workspaceId: 'ws-sdk', errorRate: 0.7 });
        expect(beat.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_DEGRADED);
        expect((await control.getWorkspace('ws-sdk')).errorRate).to.equal(0.7);
        const ids: string[] = [];
        for await (const w of control.allWorkspaces()) ids.push(w.id);
        expect(ids).to.deep.equal(['ws-sdk']);
      } finally {
        runtime.close();
      }
    });

    it('fails with VigilClientError carrying the code and ErrorInfo reason', async () => {
      try {
        await control.getWorkspace('ws-missing');
        expect.fail('getWorkspace of an unknown id succeeded');
      } catch (error) {
        expect(error).to.be.instanceOf(VigilClientError);
        const e = error as VigilClientError;
        expect(e.code).to.equal(status.NOT_FOUND);
        expect(e.reason).to.equal('WORKSPACE_NOT_FOUND');
        expect(e.metadata['workspaceId']).to.equal('ws-missing');
        expect(e.retryable).to.equal(false);
      }
    });
  });

  describe('watchStatus()', () => {
    it('resumes across a server restart without a gap or a duplicate', async () => {
      const abort = new AbortController();
      const reconnects: string[] = [];
      const events = control.watchStatus({
        signal: abort.signal,
        backoff: { baseMs: 20, maxMs: 200 },
        onReconnect: (error) => reconnects.push(error.reason),
      });
      const seqs: number[] = [];
      const next = async (): Promise<WatchEvent> => {
        const result = await events.next();
        if (result.done) throw new Error('the watch ended');
        if (result.value.$case === 'transition') seqs.push(result.value.value.seq);
        return result.value;
      };
      expect((await next()).$case).to.equal('progress');
      await control.createWorkspace('ws-1');
      await next();

      await h.stop();
      h = await startHarness({ dataDir: h.dataDir, clock: h.clock, settings: { listen: server } });
      await control.createWorkspace('ws-2');
      await control.deleteWorkspace('ws-1');
      while (seqs.length < 3) await next();
      abort.abort();
      expect(await events.next()).to.deep.equal({ done: true, value: undefined });

      expect(seqs).to.deep.equal([1, 2, 3]);
      expect(reconnects).to.include('SHUTTING_DOWN');
    });

    it('yields statuses and reasons by name next to the numeric enums', async () => {
      const abort = new AbortController();
      const events = control.watchStatus({ signal: abort.signal, includeSnapshot: true });
      await control.createWorkspace('ws-named');
      const seen: string[] = [];
      for await (const event of events) {
        if (event.$case === 'snapshotEnd') {
          const { workspaceToken } = await control.createWorkspace('ws-online');
          const runtime = createRuntimeClient({ server, token: workspaceToken });
          await runtime.register({
            workspaceId: 'ws-online',
            url: 'http://127.0.0.1:8000',
            agentCard: card(),
          });
          runtime.close();
        }
        if (event.$case === 'snapshot') {
          expect(event.value.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_PROVISIONING);
          seen.push(`snapshot ${event.value.id} ${event.value.statusName}`);
        }
        if (event.$case === 'transition') {
          const t = event.value;
          seen.push(`${t.workspaceId} ${t.fromStatusName} -> ${t.toStatusName} ${t.reasonName}`);
          if (t.toStatus === WorkspaceStatus.WORKSPACE_STATUS_ONLINE) abort.abort();
        }
      }
      expect(seen).to.deep.equal([
        'snapshot ws-named PROVISIONING',
        'ws-online UNSPECIFIED -> PROVISIONING CREATED',
        'ws-online PROVISIONING -> ONLINE REGISTERED',
      ]);
    });

    it('throws errors that retrying cannot fix', async () => {
      const bad = createControlClient({ server, token: 'vgc_wrong' });
      try {
        await bad.watchStatus({ backoff: { baseMs: 1, maxMs: 1 } }).next();
        expect.fail('a watch with a bad token yielded');
      } catch (error) {
        expect((error as VigilClientError).reason).to.equal('TOKEN_INVALID');
      } finally {
        bad.close();
      }
    });
  });

  describe('runHeartbeatLoop()', () => {
    it('keeps heartbeating with the card after Register is rejected, which recovers the workspace', async () => {
      const { workspaceToken } = await control.createWorkspace('ws-loop');
      const runtime = createRuntimeClient({ server, token: workspaceToken });
      /** One life of the runtime: the loop until its first heartbeat; its events. */
      const life = async (url: string): Promise<SidecarEvent[]> => {
        const stop = new AbortController();
        const events: SidecarEvent[] = [];
        await runHeartbeatLoop({
          client: runtime,
          workspaceId: 'ws-loop',
          url,
          agentCard: card(),
          signal: stop.signal,
          onEvent: (e) => {
            events.push(e);
            if (e.type === 'heartbeat') stop.abort();
          },
        });
        return events;
      };
      // A healthy first life: registered, ONLINE.
      const seen = await life('http://127.0.0.1:8000');
      // The restarted runtime advertises an unresolvable URL.
      const events = await life('http://212851b5693d:8000');
      runtime.close();
      expect(seen.map((e) => e.type)).to.deep.equal(['registered', 'heartbeat']);
      expect(events.map((e) => e.type)).to.deep.equal(['register-failed', 'heartbeat']);
      const [failed, beat] = events;
      expect(
        failed?.type === 'register-failed' && [failed.error.reason, failed.willRetry],
      ).to.deep.equal(['URL_VALIDATE_FAILED', false]);
      expect(beat?.type === 'heartbeat' && beat.status).to.equal(
        WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
      );
      expect(beat?.type === 'heartbeat' && beat.statusName).to.equal('ONLINE');
      const reasons = (await control.listTransitions({ workspaceId: 'ws-loop' })).transitions.map(
        (t) => t.reason,
      );
      expect(reasons.slice(-2)).to.deep.equal([3, 7]); // REGISTER_FAILED, RECOVERED
    });

    it('stops with an error when its workspace is removed', async () => {
      const { workspaceToken } = await control.createWorkspace('ws-gone');
      await control.deleteWorkspace('ws-gone');
      const runtime = createRuntimeClient({ server, token: workspaceToken });
      try {
        await runHeartbeatLoop({
          client: runtime,
          workspaceId: 'ws-gone',
          url: '',
          agentCard: card(),
          deliveryMode: DeliveryMode.DELIVERY_MODE_POLL,
          signal: new AbortController().signal,
        });
        expect.fail('the loop kept running for a removed workspace');
      } catch (error) {
        expect((error as VigilClientError).reason).to.equal('WORKSPACE_REMOVED');
      } finally {
        runtime.close();
      }
    });
  });
});
