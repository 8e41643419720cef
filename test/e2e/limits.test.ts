import { Client, Metadata, credentials, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ErrorInfo, RetryInfo } from '../../gen/google/rpc/error_details.js';
import {
  HeartbeatRequest,
  type HeartbeatStreamResponse,
} from '../../gen/vigil/v1/runtime_service.js';
import {
  VigilClientError,
  createControlClient,
  createRuntimeClient,
} from '../../src/client/index.js';
import { hashToken } from '../../src/domain/tokens.js';
import { CONTROL_TOKEN, card, startHarness, type Harness } from '../helpers/harness.js';
import { bearer, call, errorInfoOf } from '../helpers/rpc.js';

describe('limits', () => {
  let h: Harness;

  afterEach(async () => {
    await h.dispose();
  });

  async function onlineWorkspace(id: string): Promise<string> {
    const { control, runtime } = h.clients;
    const { workspaceToken } = await call(
      control,
      control.createWorkspace,
      { workspaceId: id, name: '' },
      CONTROL_TOKEN,
    );
    await call(
      runtime,
      runtime.register,
      { workspaceId: id, url: 'http://127.0.0.1:8000', agentCard: card(), deliveryMode: 0 },
      workspaceToken,
    );
    return workspaceToken;
  }

  describe('per-workspace heartbeat rate limit', () => {
    beforeEach(async () => {
      h = await startHarness({ settings: { heartbeatRateLimit: { ratePerSecond: 2, burst: 3 } } });
    });

    it('answers RESOURCE_EXHAUSTED / RATE_LIMITED with a retry hint past the burst, and refills with time', async () => {
      const token = await onlineWorkspace('ws-r');
      const other = await onlineWorkspace('ws-other');
      const server = `127.0.0.1:${h.vigil.port}`;
      const runtime = createRuntimeClient({ server, token });
      const otherRuntime = createRuntimeClient({ server, token: other });
      try {
        for (let i = 0; i < 3; i += 1) await runtime.heartbeat({ workspaceId: 'ws-r' });
        const before = await h.vigil.useCases.admin.get('ws-r');
        h.clock.advance(1);
        let limited: VigilClientError | undefined;
        try {
          await runtime.heartbeat({ workspaceId: 'ws-r', activeTasks: 9 });
        } catch (error) {
          limited = error as VigilClientError;
        }
        expect(limited?.code).to.equal(status.RESOURCE_EXHAUSTED);
        expect(limited?.reason).to.equal('RATE_LIMITED');
        expect(limited?.retryAfterMs).to.be.within(400, 500);
        expect(limited?.metadata['retryAfterMs']).to.equal(String(limited?.retryAfterMs));
        // Nothing written, and other workspaces are unaffected.
        expect(await h.vigil.useCases.admin.get('ws-r')).to.deep.equal(before);
        await otherRuntime.heartbeat({ workspaceId: 'ws-other' });

        h.clock.advance(limited?.retryAfterMs ?? 0);
        await runtime.heartbeat({ workspaceId: 'ws-r' });
      } finally {
        runtime.close();
        otherRuntime.close();
      }
    });

    /** An SDK heartbeat stream for a new ONLINE workspace, and `count` heartbeats sent on it at once. */
    async function burstOnStream(workspaceId: string, count: number) {
      const token = await onlineWorkspace(workspaceId);
      const runtime = createRuntimeClient({ server: `127.0.0.1:${h.vigil.port}`, token });
      const stream = runtime.openHeartbeatStream();
      const outcomes = await Promise.allSettled(
        Array.from({ length: count }, () => stream.send({ workspaceId })),
      );
      return { runtime, stream, outcomes };
    }

    it('answers a streamed heartbeat over the limit with an error response and keeps the stream', async () => {
      const { runtime, stream, outcomes } = await burstOnStream('ws-s', 5);
      try {
        expect(outcomes.map((o) => o.status)).to.deep.equal([
          'fulfilled',
          'fulfilled',
          'fulfilled',
          'rejected',
          'rejected',
        ]);
        const rejected = outcomes[3];
        expect(
          rejected?.status === 'rejected' && (rejected.reason as VigilClientError).reason,
        ).to.equal('RATE_LIMITED');
        h.clock.advance(1_000);
        await stream.send({ workspaceId: 'ws-s' });
        expect(stream.closed).to.equal(false);
      } finally {
        stream.close();
        runtime.close();
      }
    });

    it('answers a streamed heartbeat over the limit with the unary error shape: a google.rpc.Status with ErrorInfo and RetryInfo', async () => {
      const token = await onlineWorkspace('ws-st');
      const stream = h.clients.runtime.heartbeatStream(bearer(token));
      const responses: HeartbeatStreamResponse[] = [];
      const fourth = new Promise<void>((resolve, reject) => {
        stream.on('data', (response: HeartbeatStreamResponse) => {
          responses.push(response);
          if (responses.length === 4) resolve();
        });
        stream.on('error', reject);
      });
      try {
        for (let requestId = 1; requestId <= 4; requestId += 1) {
          stream.write({
            requestId,
            heartbeat: HeartbeatRequest.fromPartial({ workspaceId: 'ws-st' }),
          });
        }
        await fourth;
        const result = responses[3]?.result;
        expect(result?.$case).to.equal('error');
        const answer = result?.$case === 'error' ? result.value : undefined;
        // The clock stands still: the bucket (2/s) is empty, one token is 500 ms away.
        expect(answer?.status?.code).to.equal(status.RESOURCE_EXHAUSTED);
        expect(answer?.status?.message).to.equal(answer?.message);
        const details = answer?.status?.details ?? [];
        expect(details.map((d) => d.typeUrl)).to.deep.equal([
          'type.googleapis.com/google.rpc.ErrorInfo',
          'type.googleapis.com/google.rpc.RetryInfo',
        ]);
        expect(ErrorInfo.decode(details[0]!.value)).to.deep.equal({
          reason: 'RATE_LIMITED',
          domain: 'vigil',
          metadata: { workspaceId: 'ws-st', retryAfterMs: '500' },
        });
        expect(RetryInfo.decode(details[1]!.value).retryDelay).to.deep.equal({
          seconds: 0,
          nanos: 500_000_000,
        });
        // The plain fields repeat the status for clients that do not read it.
        expect([answer?.code, answer?.reason, answer?.metadata]).to.deep.equal([
          status.RESOURCE_EXHAUSTED,
          'RATE_LIMITED',
          { workspaceId: 'ws-st', retryAfterMs: '500' },
        ]);
      } finally {
        stream.end();
        stream.cancel();
      }
    });

    it('surfaces retryAfterMs on the SDK heartbeat stream for a streamed RATE_LIMITED, like unary does', async () => {
      const { runtime, stream, outcomes } = await burstOnStream('ws-sr', 4);
      try {
        const rejected = outcomes[3];
        expect(rejected?.status).to.equal('rejected');
        const limited: unknown = rejected?.status === 'rejected' ? rejected.reason : undefined;
        expect(limited).to.be.instanceOf(VigilClientError);
        const error = limited as VigilClientError;
        expect([error.code, error.reason]).to.deep.equal([
          status.RESOURCE_EXHAUSTED,
          'RATE_LIMITED',
        ]);
        expect(error.retryAfterMs).to.equal(500);
        expect(error.metadata['retryAfterMs']).to.equal('500');
        expect(stream.closed).to.equal(false);

        h.clock.advance(error.retryAfterMs ?? 0);
        await stream.send({ workspaceId: 'ws-sr' });
      } finally {
        stream.close();
        runtime.close();
      }
    });
  });

  describe('per-token cap on open watch streams', () => {
    it('answers RESOURCE_EXHAUSTED / WATCH_LIMIT past the cap, per token, and frees a slot when a stream ends', async () => {
      const OTHER = 'vgc_second-control-token';
      h = await startHarness({
        settings: {
          maxWatchStreamsPerToken: 2,
          controlTokens: [
            { name: 'one', scope: 'admin', hash: hashToken(CONTROL_TOKEN) },
            { name: 'two', scope: 'read', hash: hashToken(OTHER) },
          ],
        },
      });
      const { control } = h.clients;
      const open = (token: string) => {
        const stream = control.watchStatus(
          { workspaceIds: [], afterSeq: 0, includeSnapshot: false, resume: false },
          bearer(token),
        );
        const first = new Promise<'ok' | ServiceError>((resolve) => {
          stream.once('data', () => {
            resolve('ok');
          });
          stream.once('error', resolve);
        });
        stream.on('error', () => undefined);
        return { stream, first };
      };
      const a = open(CONTROL_TOKEN);
      const b = open(CONTROL_TOKEN);
      expect(await a.first).to.equal('ok');
      expect(await b.first).to.equal('ok');
      const c = open(CONTROL_TOKEN);
      const refused = await c.first;
      expect(refused).to.not.equal('ok');
      const error = refused as ServiceError;
      expect(error.code).to.equal(status.RESOURCE_EXHAUSTED);
      const info = errorInfoOf(error);
      expect(info.reason).to.equal('WATCH_LIMIT');
      expect(info.metadata).to.include({ tokenName: 'one', limit: '2' });
      // Another token has its own allowance.
      const d = open(OTHER);
      expect(await d.first).to.equal('ok');

      a.stream.cancel();
      let again: 'ok' | ServiceError = refused;
      for (let i = 0; i < 50 && again !== 'ok'; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        again = await open(CONTROL_TOKEN).first;
      }
      expect(again).to.equal('ok');
      b.stream.cancel();
      d.stream.cancel();
    });
  });

  describe('configured field limits', () => {
    it('apply --max-sample-error and --max-current-task to heartbeats', async () => {
      h = await startHarness({
        settings: { fieldLimits: { sampleErrorBytes: 10, currentTaskBytes: 5 } },
      });
      const token = await onlineWorkspace('ws-f');
      const runtime = createRuntimeClient({ server: `127.0.0.1:${h.vigil.port}`, token });
      const fieldOf = async (request: { sampleError?: string; currentTask?: string }) => {
        try {
          await runtime.heartbeat({ workspaceId: 'ws-f', ...request });
          return 'ok';
        } catch (error) {
          const e = error as VigilClientError;
          return `${e.reason}:${e.metadata['field'] ?? ''}`;
        }
      };
      try {
        expect(await fieldOf({ sampleError: 'x'.repeat(10), currentTask: 'y'.repeat(5) })).to.equal(
          'ok',
        );
        expect(await fieldOf({ sampleError: 'x'.repeat(11) })).to.equal(
          'FIELD_INVALID:sample_error',
        );
        expect(await fieldOf({ currentTask: 'y'.repeat(6) })).to.equal(
          'FIELD_INVALID:current_task',
        );
      } finally {
        runtime.close();
      }
    });
  });

  describe('message size', () => {
    it('answers a request over --max-message-size with RESOURCE_EXHAUSTED / MESSAGE_TOO_LARGE, undecoded', async () => {
      h = await startHarness({ settings: { maxMessageBytes: 100 * 1024 } });
      const token = await onlineWorkspace('ws-big');
      const raw = new Client(`127.0.0.1:${h.vigil.port}`, credentials.createInsecure());
      try {
        const bytes = Buffer.from(
          HeartbeatRequest.encode(
            HeartbeatRequest.fromPartial({
              workspaceId: 'ws-big',
              currentTask: 'x'.repeat(150 * 1024),
            }),
          ).finish(),
        );
        const metadata = new Metadata();
        metadata.set('authorization', `Bearer ${token}`);
        const error = await new Promise<ServiceError | null>((resolve) => {
          raw.makeUnaryRequest(
            '/vigil.v1.RuntimeService/Heartbeat',
            (b: Buffer) => b,
            (b: Buffer) => b,
            bytes,
            metadata,
            (e) => {
              resolve(e);
            },
          );
        });
        expect(error?.code, error?.details).to.equal(status.RESOURCE_EXHAUSTED);
        expect(errorInfoOf(error!).reason).to.equal('MESSAGE_TOO_LARGE');
      } finally {
        raw.close();
      }
    });
  });

  describe('defaults', () => {
    it('limits heartbeats and watch streams out of the box', async () => {
      const { DEFAULT_SETTINGS } = await import('../../src/app.js');
      expect(DEFAULT_SETTINGS.heartbeatRateLimit).to.deep.equal({ ratePerSecond: 5, burst: 20 });
      expect(DEFAULT_SETTINGS.maxWatchStreamsPerToken).to.equal(1_000);
      expect(DEFAULT_SETTINGS.maxMessageBytes).to.equal(1024 * 1024);
      h = await startHarness();
      expect(createControlClient).to.be.a('function');
    });
  });
});
