import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { DEFAULT_TIMINGS } from '../../src/domain/config.js';
import { hashToken } from '../../src/domain/tokens.js';
import {
  errorOf,
  httpGet,
  openEvents,
  type HttpAnswer,
  type SseReader,
} from '../helpers/console-http.js';
import {
  createWorkspace,
  heartbeatRequest,
  onlineWorkspace,
  registerRequest,
} from '../helpers/e2e-fixtures.js';
import { CONTROL_TOKEN, startHarness, type Harness } from '../helpers/harness.js';
import { runtimeConfig, setConfig, setSecret } from '../helpers/projection-fixtures.js';
import { call, errorInfoOf, openWatch, type WatchReader } from '../helpers/rpc.js';

/**
 * The console's HTTP API on the metrics port: authentication like the control
 * RPCs, paged and filtered reads, one workspace's story, and the event stream
 * (resume, limits shared with WatchStatus).
 */

const READ_TOKEN = 'vgc_console-read-token';

interface ListAnswer {
  workspaces: { id: string; status: string; agentCard?: unknown }[];
  nextPageToken: string;
}

interface TransitionJson {
  seq: number;
  workspaceId: string;
  from: string | null;
  to: string;
  reason: string;
}

describe('console API', () => {
  let h: Harness;
  let port: number;
  const streams: SseReader[] = [];
  const watches: WatchReader[] = [];

  beforeEach(async () => {
    h = await startHarness({
      // One server even where the etcd pass runs several replicas: the console, its
      // counts and its stream quota are those of the process serving it, read right
      // after writes. (A harness without the option starts one anyway.)
      replicas: 1,
      settings: {
        metricsListen: '127.0.0.1:0',
        controlTokens: [
          { name: 'test', scope: 'admin', hash: hashToken(CONTROL_TOKEN) },
          { name: 'viewer', scope: 'read', hash: hashToken(READ_TOKEN) },
        ],
        maxWatchStreamsPerToken: 2,
      },
    });
    port = h.vigil.metricsPort!;
  });

  afterEach(async () => {
    for (const s of streams.splice(0)) s.close();
    for (const w of watches.splice(0)) w.cancel();
    await h.dispose();
  });

  /** `token` null sends no authorization header. */
  const get = (path: string, token: string | null = READ_TOKEN) =>
    httpGet(port, `/api/console/${path}`, token ?? undefined);

  async function events(lastEventId?: number, token = READ_TOKEN): Promise<SseReader> {
    const reader = await openEvents(port, token, lastEventId);
    streams.push(reader);
    return reader;
  }

  function expectRefused(answer: HttpAnswer, httpStatus: number, reason: string) {
    expect(answer.status, answer.text).to.equal(httpStatus);
    expect(errorOf(answer).reason, answer.text).to.equal(reason);
  }

  describe('when a request has no valid control token', () => {
    const paths = ['overview', 'workspaces', 'workspaces/c-one', 'workspaces/c-one/transitions'];

    it('answers 401 TOKEN_MISSING without one and TOKEN_INVALID with a wrong one, on every path', async () => {
      await createWorkspace(h, 'c-one');
      for (const path of [...paths, 'events']) {
        const missing = await get(path, null);
        expectRefused(missing, 401, 'TOKEN_MISSING');
        expect(missing.headers['www-authenticate']).to.equal('Bearer');
        expectRefused(await get(path, 'vgc_wrong'), 401, 'TOKEN_INVALID');
        // A token in the query string is not a token.
        expectRefused(
          await httpGet(port, `/api/console/${path}?token=${READ_TOKEN}`),
          401,
          'TOKEN_MISSING',
        );
      }
    });

    it('answers with the data for a read-scope token, and refuses anything but GET', async () => {
      await createWorkspace(h, 'c-one');
      for (const path of paths) {
        expect((await get(path)).status, path).to.equal(200);
      }
      const post = await httpGet(port, '/api/console/overview', READ_TOKEN, { method: 'POST' });
      expect(post.status).to.equal(405);
      expect(post.headers.allow).to.equal('GET');
    });
  });

  describe('the page', () => {
    it('is served at / and /console/ from the build, to load only its own files', async () => {
      const page = await httpGet(port, '/');
      expect(page.status).to.equal(200);
      expect(page.headers['content-type']).to.equal('text/html; charset=utf-8');
      expect(page.text).to.include('<script type="module" src="/console/app.js">');
      expect(page.headers['content-security-policy'])
        .to.include("default-src 'none'")
        .and.include("script-src 'self'")
        .and.include("connect-src 'self'");
      const script = await httpGet(port, '/console/app.js');
      expect(script.status).to.equal(200);
      expect(script.headers['content-type']).to.equal('text/javascript; charset=utf-8');
      const api = await httpGet(port, '/console/api.js');
      expect(api.text).to.include('/api/console/').and.not.include('http://');
      const cached = await httpGet(port, '/console/app.js', undefined, {
        headers: { 'if-none-match': String(script.headers.etag) },
      });
      expect(cached.status).to.equal(304);
      expect((await httpGet(port, '/console/nothing.js')).status).to.equal(404);
      expect((await httpGet(port, '/metrics')).text).to.include('vigil_');
    });
  });

  describe('overview', () => {
    it('counts workspaces per status as of the head seq and names the caller', async () => {
      await onlineWorkspace(h, 'c-a');
      await createWorkspace(h, 'c-b');
      await createWorkspace(h, 'c-c');
      const answer = await get('overview');
      expect(answer.json).to.deep.include({
        principal: { name: 'viewer', scope: 'read' },
        headSeq: 4,
        counts: { PROVISIONING: 2, ONLINE: 1, DEGRADED: 0, OFFLINE: 0, FAILED: 0, REMOVED: 0 },
      });
      expect(answer.headers['cache-control']).to.equal('no-store');
    });
  });

  describe('workspaces', () => {
    beforeEach(async () => {
      for (const id of ['p-a-1', 'p-a-2', 'p-a-3', 'p-a-4', 'p-a-5', 'p-b-1', 'p-b-2', 'p-a']) {
        await createWorkspace(h, id);
      }
      await onlineWorkspace(h, 'p-a-6');
      await onlineWorkspace(h, 'q-1');
    });

    async function allPages(query: string): Promise<string[][]> {
      const pages: string[][] = [];
      let token = '';
      for (let i = 0; i < 20; i += 1) {
        const answer = await get(
          `workspaces?${query}${token ? `&page_token=${encodeURIComponent(token)}` : ''}`,
        );
        expect(answer.status, answer.text).to.equal(200);
        const body = answer.json as ListAnswer;
        pages.push(body.workspaces.map((w) => w.id));
        if (body.nextPageToken === '') return pages;
        token = body.nextPageToken;
      }
      throw new Error('paging did not end');
    }

    it('pages in id order, filtered by id prefix, with no next token after the last match', async () => {
      expect(await allPages('page_size=3&id_prefix=p-a-')).to.deep.equal([
        ['p-a-1', 'p-a-2', 'p-a-3'],
        ['p-a-4', 'p-a-5', 'p-a-6'],
      ]);
      // The prefix itself is an id too.
      expect(await allPages('page_size=50&id_prefix=p-a')).to.deep.equal([
        ['p-a', 'p-a-1', 'p-a-2', 'p-a-3', 'p-a-4', 'p-a-5', 'p-a-6'],
      ]);
      expect(await allPages('page_size=4')).to.deep.equal([
        ['p-a', 'p-a-1', 'p-a-2', 'p-a-3'],
        ['p-a-4', 'p-a-5', 'p-a-6', 'p-b-1'],
        ['p-b-2', 'q-1'],
      ]);
    });

    it('filters by status, combined with the prefix, and leaves the agent card out of rows', async () => {
      expect(await allPages('status=ONLINE')).to.deep.equal([['p-a-6', 'q-1']]);
      expect(await allPages('status=ONLINE&id_prefix=p-')).to.deep.equal([['p-a-6']]);
      expect(await allPages('status=ONLINE&status=PROVISIONING&id_prefix=p-b')).to.deep.equal([
        ['p-b-1', 'p-b-2'],
      ]);
      const rows = (await get('workspaces?status=ONLINE')).json as ListAnswer;
      expect(rows.workspaces[0]).to.include({ id: 'p-a-6', status: 'ONLINE' });
      expect(rows.workspaces[0]).to.not.have.property('agentCard');
    });

    it('refuses a bad status, prefix or page size, and a page token used with another filter', async () => {
      const bad: [string, string][] = [
        ['status=SLEEPY', 'status'],
        ['id_prefix=P_A', 'id_prefix'],
        ['page_size=-1', 'page_size'],
        ['page_size=ten', 'page_size'],
      ];
      for (const [query, field] of bad) {
        const answer = await get(`workspaces?${query}`);
        expectRefused(answer, 400, 'FIELD_INVALID');
        expect(errorOf(answer).metadata).to.deep.equal({ field });
      }
      const first = (await get('workspaces?page_size=2&id_prefix=p-a-')).json as ListAnswer;
      expectRefused(
        await get(`workspaces?page_size=2&id_prefix=p-b&page_token=${first.nextPageToken}`),
        400,
        'PAGE_TOKEN_INVALID',
      );
    });
  });

  describe('one workspace', () => {
    it('shows the card, the transition history and the register-failure marker with its expiry', async () => {
      const { token } = await onlineWorkspace(h, 'c-story');
      const failedAt = h.clock.now();
      const { runtime } = h.clients;
      await call(
        runtime,
        runtime.register,
        registerRequest('c-story', { url: 'http://nowhere.invalid:8000' }),
        token,
      ).catch(() => undefined);

      const answer = await get('workspaces/c-story');
      expect(answer.status, answer.text).to.equal(200);
      const body = answer.json as {
        workspace: { status: string; agentCard: { name: string } };
        marker: { setAt: number; expiresAt: number; active: boolean };
      };
      expect(body.workspace.status).to.equal('DEGRADED');
      expect(body.workspace.agentCard.name).to.equal('demo-agent');
      expect(body.marker).to.deep.equal({
        setAt: failedAt,
        expiresAt: failedAt + DEFAULT_TIMINGS.registerFailureWindowMs,
        active: true,
      });
      h.clock.advance(DEFAULT_TIMINGS.registerFailureWindowMs);
      const later = (await get('workspaces/c-story')).json as { marker: { active: boolean } };
      expect(later.marker.active).to.equal(false);

      const history = (await get('workspaces/c-story/transitions')).json as {
        transitions: TransitionJson[];
      };
      expect(history.transitions.map((t) => [t.from, t.to, t.reason])).to.deep.equal([
        [null, 'PROVISIONING', 'CREATED'],
        ['PROVISIONING', 'ONLINE', 'REGISTERED'],
        ['ONLINE', 'DEGRADED', 'REGISTER_FAILED'],
      ]);
    });

    it('shows the desired and the applied config version of its runtime projection', async () => {
      const { token } = await onlineWorkspace(h, 'c-proj');
      type Versions = { configVersion: number; appliedConfigVersion: number; ready: boolean };
      const versions = async () =>
        ((await get('workspaces/c-proj')).json as { projection: Versions | null }).projection;
      expect(await versions()).to.deep.equal({
        configVersion: 0,
        appliedConfigVersion: 0,
        ready: true,
      });
      await setSecret(h, 'c-proj', 'MINIMAX_API_KEY', 'sk-console-test-0001');
      const desired = await setConfig(h, 'c-proj', runtimeConfig());
      expect(await versions()).to.deep.equal({
        configVersion: desired,
        appliedConfigVersion: 0,
        ready: true,
      });
      // The runtime reports what it applied with its next heartbeat.
      const { runtime } = h.clients;
      await call(
        runtime,
        runtime.heartbeat,
        heartbeatRequest('c-proj', { appliedConfigVersion: desired }),
        token,
      );
      expect(await versions()).to.deep.equal({
        configVersion: desired,
        appliedConfigVersion: desired,
        ready: true,
      });
    });

    it('has no marker before a register failure, and answers 404 for an unknown workspace', async () => {
      await createWorkspace(h, 'c-plain');
      expect(((await get('workspaces/c-plain')).json as { marker: unknown }).marker).to.equal(null);
      expectRefused(await get('workspaces/c-nobody'), 404, 'WORKSPACE_NOT_FOUND');
      expectRefused(await get('workspaces/c-nobody/transitions'), 404, 'WORKSPACE_NOT_FOUND');
      expectRefused(await get('workspaces/Not_An_Id'), 400, 'FIELD_INVALID');
    });
  });

  describe('events', () => {
    const transitionOf = (data: unknown) => data as TransitionJson;

    it('starts at the head, streams each transition with its seq as the id, and resumes after Last-Event-ID', async () => {
      await createWorkspace(h, 'e-before');
      const stream = await events();
      expect(stream.status).to.equal(200);
      const first = await stream.next();
      expect(first).to.deep.include({ event: 'progress', id: '1', data: { seq: 1 } });

      await createWorkspace(h, 'e-one');
      const one = await stream.next();
      expect(one.event).to.equal('transition');
      expect(one.id).to.equal('2');
      expect(transitionOf(one.data)).to.deep.include({
        seq: 2,
        workspaceId: 'e-one',
        from: null,
        to: 'PROVISIONING',
        reason: 'CREATED',
      });
      stream.close();

      // Missed while disconnected: delivered on resume, in order, none twice.
      await createWorkspace(h, 'e-two');
      await onlineWorkspace(h, 'e-three');
      const resumed = await events(2);
      const got = await resumed.until((e) => e.id === '5');
      expect(got.map((e) => [e.event, transitionOf(e.data).workspaceId, e.id])).to.deep.equal([
        ['transition', 'e-two', '3'],
        ['transition', 'e-three', '4'],
        ['transition', 'e-three', '5'],
      ]);
    });

    it('refuses a cursor beyond the head with CURSOR_AHEAD and a bad one with FIELD_INVALID', async () => {
      const ahead = await events(99);
      expect(ahead.status).to.equal(400);
      expect((ahead.body as { error: { reason: string } }).error.reason).to.equal('CURSOR_AHEAD');
      const bad = await openEvents(port, READ_TOKEN, -1);
      expect(bad.status).to.equal(400);
      expect((bad.body as { error: { reason: string } }).error.reason).to.equal('FIELD_INVALID');
    });

    it('counts against the same per-token stream limit as WatchStatus', async () => {
      const grpcWatch = openWatch(h.clients.control, {}, READ_TOKEN);
      watches.push(grpcWatch);
      await grpcWatch.next();
      const consoleStream = await events();
      expect(consoleStream.status).to.equal(200);

      // Two open (the limit): a third, of either kind, is refused.
      const third = await events();
      expect(third.status).to.equal(429);
      expect((third.body as { error: { reason: string } }).error.reason).to.equal('WATCH_LIMIT');
      const refused = openWatch(h.clients.control, {}, READ_TOKEN);
      watches.push(refused);
      const error = await refused.ended();
      expect(error?.code).to.equal(status.RESOURCE_EXHAUSTED);
      expect(errorInfoOf(error!).reason).to.equal('WATCH_LIMIT');

      // Another token has its own count; closing a console stream frees its slot.
      const admins = await events(undefined, CONTROL_TOKEN);
      expect(admins.status).to.equal(200);
      consoleStream.close();
      await consoleStream.ended();
      let again: SseReader | undefined;
      for (let i = 0; i < 50 && again?.status !== 200; i += 1) {
        again = await events();
        if (again.status !== 200) await new Promise((r) => setTimeout(r, 20));
      }
      expect(again?.status).to.equal(200);
    });

    it('ends open streams when the server stops', async () => {
      const stream = await events();
      await stream.next();
      await h.stop();
      await stream.ended();
    });
  });
});
