import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import {
  DeliveryMode,
  RuntimeState,
  TransitionReason,
  WorkspaceStatus,
} from '../../gen/vigil/v1/workspace.js';
import type { ListWorkspacesRequest } from '../../gen/vigil/v1/control_service.js';
import {
  captureState,
  createWorkspace,
  expectUnchanged,
  firstWatchEvent,
  getWorkspace,
  heartbeatRequest,
  listTransitions,
  onlineWorkspace,
  registerRequest,
} from '../helpers/e2e-fixtures.js';
import { CONTROL_TOKEN, card, startHarness, type Harness } from '../helpers/harness.js';
import { call, expectRpcError } from '../helpers/rpc.js';

/**
 * Bad input over real gRPC: the right code and ErrorInfo reason (never the
 * message text), and nothing written.
 */

/** Agent cards the contract refuses, by what is wrong with them. */
const INVALID_CARDS: { readonly what: string; readonly card: Record<string, unknown> }[] = [
  { what: 'is empty ({})', card: {} },
  { what: 'has no name', card: { url: 'http://127.0.0.1:8000', version: '1.0.0' } },
  { what: 'has an empty name', card: { name: '', url: 'http://127.0.0.1:8000' } },
  { what: 'has a non-string name', card: { name: 42, url: 'http://127.0.0.1:8000' } },
  { what: 'has no endpoint', card: { name: 'demo-agent', version: '1.0.0' } },
  {
    what: 'has an empty supportedInterfaces list and no url',
    card: { name: 'demo-agent', supportedInterfaces: [] },
  },
  {
    what: 'is over 64 KiB serialized',
    card: { ...card(), description: 'x'.repeat(64 * 1024) },
  },
];

/** Cards the contract accepts although they are not the `card()` shape. */
const VALID_CARDS: { readonly what: string; readonly card: Record<string, unknown> }[] = [
  {
    what: 'has supportedInterfaces with urls and no top-level url',
    card: { name: 'demo-agent', supportedInterfaces: [{ url: 'http://127.0.0.1:8000' }] },
  },
  {
    what: 'has supported_interfaces with urls and no top-level url',
    card: { name: 'demo-agent', supported_interfaces: [{ url: 'http://127.0.0.1:8000' }] },
  },
  {
    what: 'is just under 64 KiB serialized',
    card: { ...card(), description: 'x'.repeat(60 * 1024) },
  },
];

describe('Register validation', () => {
  let h: Harness;
  let token: string;

  beforeEach(async () => {
    h = await startHarness();
    token = (await onlineWorkspace(h, 'ws-a')).token;
  });

  afterEach(async () => {
    await h.dispose();
  });

  function registerWith(overrides: Parameters<typeof registerRequest>[1]) {
    return call(
      h.clients.runtime,
      h.clients.runtime.register,
      registerRequest('ws-a', overrides),
      token,
    );
  }

  for (const invalid of INVALID_CARDS) {
    describe(`when the agent card ${invalid.what}`, () => {
      it('fails INVALID_ARGUMENT / AGENT_CARD_INVALID and writes nothing', async () => {
        const before = await captureState(h, 'ws-a');
        await expectRpcError(
          registerWith({ agentCard: invalid.card, url: 'http://localhost:9000' }),
          status.INVALID_ARGUMENT,
          'AGENT_CARD_INVALID',
        );
        await expectUnchanged(h, 'ws-a', before);
      });
    });
  }

  for (const valid of VALID_CARDS) {
    describe(`when the agent card ${valid.what}`, () => {
      it('stores it', async () => {
        const response = await registerWith({ agentCard: valid.card });
        expect(response.workspace?.agentCard).to.deep.equal(valid.card);
        expect((await getWorkspace(h, 'ws-a')).agentCard).to.deep.equal(valid.card);
      });
    });
  }

  describe('when there is no agent card', () => {
    it('fails INVALID_ARGUMENT / AGENT_CARD_INVALID and writes nothing', async () => {
      const before = await captureState(h, 'ws-a');
      await expectRpcError(
        registerWith({ agentCard: undefined }),
        status.INVALID_ARGUMENT,
        'AGENT_CARD_INVALID',
      );
      await expectUnchanged(h, 'ws-a', before);
    });
  });

  describe('URL policy', () => {
    const REFUSED: { readonly url: string; readonly why: string; readonly host?: string }[] = [
      {
        url: 'http://metadata.evil/',
        why: 'its host resolves to the cloud metadata address',
        host: 'metadata.evil',
      },
      { url: 'http://169.254.169.254/latest/', why: 'it is a link-local address literal' },
      { url: 'ftp://x', why: 'its scheme is not http or https' },
      {
        url: 'http://nowhere.invalid:8000/',
        why: 'its host does not resolve',
        host: 'nowhere.invalid',
      },
      { url: 'not a url', why: 'it cannot be parsed' },
    ];

    for (const refused of REFUSED) {
      describe(`when the URL is refused because ${refused.why} (${refused.url})`, () => {
        it('fails INVALID_ARGUMENT / URL_VALIDATE_FAILED', async () => {
          const info = await expectRpcError(
            registerWith({ url: refused.url }),
            status.INVALID_ARGUMENT,
            'URL_VALIDATE_FAILED',
          );
          if (refused.host !== undefined) expect(info.metadata['host']).to.equal(refused.host);
        });

        it('keeps the stored URL and card, stamps the marker and degrades the ONLINE workspace', async () => {
          const stored = await getWorkspace(h, 'ws-a');
          h.clock.advance(1_000);
          await expectRpcError(
            registerWith({ url: refused.url, agentCard: card('other-agent') }),
            status.INVALID_ARGUMENT,
            'URL_VALIDATE_FAILED',
          );
          const after = await getWorkspace(h, 'ws-a');
          expect(after.url).to.equal(stored.url);
          expect(after.agentCard).to.deep.equal(stored.agentCard);
          expect(after.lastRegisterFailureAt).to.deep.equal(new Date(h.clock.now()));
          expect(after.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_DEGRADED);
          const last = (await listTransitions(h, 'ws-a')).at(-1);
          expect(last?.reason).to.equal(TransitionReason.TRANSITION_REASON_REGISTER_FAILED);
          expect(last?.toStatus).to.equal(WorkspaceStatus.WORKSPACE_STATUS_DEGRADED);
        });
      });
    }

    describe('when the delivery mode is not a known value', () => {
      it('fails INVALID_ARGUMENT / FIELD_INVALID naming delivery_mode, and writes nothing', async () => {
        const before = await captureState(h, 'ws-a');
        const info = await expectRpcError(
          // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- an unknown wire value on purpose
          registerWith({ deliveryMode: 99 as DeliveryMode }),
          status.INVALID_ARGUMENT,
          'FIELD_INVALID',
        );
        expect(info.metadata['field']).to.equal('delivery_mode');
        await expectUnchanged(h, 'ws-a', before);
      });
    });

    describe('when the delivery mode is UNSPECIFIED', () => {
      it('treats it as PUSH and validates the URL', async () => {
        await expectRpcError(
          registerWith({ url: 'ftp://x', deliveryMode: DeliveryMode.DELIVERY_MODE_UNSPECIFIED }),
          status.INVALID_ARGUMENT,
          'URL_VALIDATE_FAILED',
        );
      });
    });

    const ALLOWED = [
      'http://runtime.internal:8080/a2a',
      'http://localhost:8000',
      'https://10.0.0.7/',
    ];
    for (const url of ALLOWED) {
      describe(`when the URL is allowed by the local policy (${url})`, () => {
        it('registers and stores it', async () => {
          const response = await registerWith({ url });
          expect(response.workspace?.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
          expect((await getWorkspace(h, 'ws-a')).url).to.equal(url);
        });
      });
    }

    describe('when the delivery mode is POLL and the URL is empty', () => {
      it('registers the workspace ONLINE without a URL', async () => {
        const created = await createWorkspace(h, 'ws-poll');
        const response = await call(
          h.clients.runtime,
          h.clients.runtime.register,
          registerRequest('ws-poll', { url: '', deliveryMode: DeliveryMode.DELIVERY_MODE_POLL }),
          created.token,
        );
        expect(response.workspace?.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
        const stored = await getWorkspace(h, 'ws-poll');
        expect(stored.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
        expect(stored.deliveryMode).to.equal(DeliveryMode.DELIVERY_MODE_POLL);
        expect(stored.url).to.equal('');
        expect(stored.lastRegisterFailureAt).to.equal(undefined);
      });
    });
  });
});

describe('Heartbeat validation', () => {
  let h: Harness;
  let token: string;

  beforeEach(async () => {
    h = await startHarness();
    token = (await onlineWorkspace(h, 'ws-a')).token;
  });

  afterEach(async () => {
    await h.dispose();
  });

  function heartbeatWith(overrides: Parameters<typeof heartbeatRequest>[1]) {
    return call(
      h.clients.runtime,
      h.clients.runtime.heartbeat,
      heartbeatRequest('ws-a', overrides),
      token,
    );
  }

  for (const invalid of INVALID_CARDS) {
    describe(`when the agent card ${invalid.what}`, () => {
      it('fails INVALID_ARGUMENT / AGENT_CARD_INVALID and applies nothing of the heartbeat', async () => {
        const before = await captureState(h, 'ws-a');
        await expectRpcError(
          heartbeatWith({ agentCard: invalid.card, activeTasks: 7, errorRate: 0.9 }),
          status.INVALID_ARGUMENT,
          'AGENT_CARD_INVALID',
        );
        await expectUnchanged(h, 'ws-a', before);
      });
    });
  }

  for (const errorRate of [1.5, -0.1, Number.NaN, Number.POSITIVE_INFINITY]) {
    describe(`when error_rate is ${errorRate}`, () => {
      it('fails INVALID_ARGUMENT / FIELD_INVALID naming error_rate, and writes nothing', async () => {
        const before = await captureState(h, 'ws-a');
        const info = await expectRpcError(
          heartbeatWith({ errorRate }),
          status.INVALID_ARGUMENT,
          'FIELD_INVALID',
        );
        expect(info.metadata['field']).to.equal('error_rate');
        await expectUnchanged(h, 'ws-a', before);
      });
    });
  }

  for (const errorRate of [0, 1]) {
    describe(`when error_rate is ${errorRate} (a bound)`, () => {
      it('applies the heartbeat', async () => {
        h.clock.advance(1_000);
        await heartbeatWith({ errorRate });
        const stored = await getWorkspace(h, 'ws-a');
        expect(stored.errorRate).to.equal(errorRate);
        expect(stored.lastHeartbeatAt).to.deep.equal(new Date(h.clock.now()));
      });
    });
  }

  describe('when sample_error is over 4096 bytes', () => {
    for (const [what, sampleError] of [
      ['ASCII', 'x'.repeat(4097)],
      ['counted in UTF-8 bytes, not characters', 'é'.repeat(2049)],
    ] as const) {
      it(`fails INVALID_ARGUMENT / FIELD_INVALID naming sample_error (${what}), and writes nothing`, async () => {
        const before = await captureState(h, 'ws-a');
        const info = await expectRpcError(
          heartbeatWith({ sampleError }),
          status.INVALID_ARGUMENT,
          'FIELD_INVALID',
        );
        expect(info.metadata['field']).to.equal('sample_error');
        await expectUnchanged(h, 'ws-a', before);
      });
    }
  });

  describe('when sample_error is exactly 4096 bytes', () => {
    it('applies the heartbeat and stores it', async () => {
      const sampleError = 'x'.repeat(4096);
      await heartbeatWith({ sampleError });
      expect((await getWorkspace(h, 'ws-a')).sampleError).to.equal(sampleError);
    });
  });

  describe('when runtime_state is not a known value', () => {
    it('fails INVALID_ARGUMENT / FIELD_INVALID naming runtime_state, and writes nothing', async () => {
      const before = await captureState(h, 'ws-a');
      const info = await expectRpcError(
        // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- an unknown wire value on purpose
        heartbeatWith({ runtimeState: 99 as RuntimeState }),
        status.INVALID_ARGUMENT,
        'FIELD_INVALID',
      );
      expect(info.metadata['field']).to.equal('runtime_state');
      await expectUnchanged(h, 'ws-a', before);
    });
  });

  describe('when current_task is over 1024 bytes', () => {
    it('fails INVALID_ARGUMENT / FIELD_INVALID naming current_task, and writes nothing', async () => {
      const before = await captureState(h, 'ws-a');
      const info = await expectRpcError(
        heartbeatWith({ currentTask: 'x'.repeat(1025) }),
        status.INVALID_ARGUMENT,
        'FIELD_INVALID',
      );
      expect(info.metadata['field']).to.equal('current_task');
      await expectUnchanged(h, 'ws-a', before);
    });
  });
});

describe('CreateWorkspace validation', () => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness();
  });

  afterEach(async () => {
    await h.dispose();
  });

  function create(workspaceId: string) {
    return call(
      h.clients.control,
      h.clients.control.createWorkspace,
      { workspaceId, name: '' },
      CONTROL_TOKEN,
    );
  }

  for (const [what, workspaceId] of [
    ['has upper case', 'UPPER'],
    ['starts with a dash', '-x'],
    ['ends with a dash', 'x-'],
    ['has an underscore', 'a_b'],
    ['is 64 characters long', 'a'.repeat(64)],
  ] as const) {
    describe(`when the workspace id ${what}`, () => {
      it('fails INVALID_ARGUMENT / FIELD_INVALID naming workspace_id, and creates nothing', async () => {
        const info = await expectRpcError(
          create(workspaceId),
          status.INVALID_ARGUMENT,
          'FIELD_INVALID',
        );
        expect(info.metadata['field']).to.equal('workspace_id');
        expect(await listTransitions(h)).to.deep.equal([]);
        const listed = await call(
          h.clients.control,
          h.clients.control.listWorkspaces,
          { pageSize: 0, pageToken: '', statuses: [] },
          CONTROL_TOKEN,
        );
        expect(listed.workspaces).to.deep.equal([]);
      });
    });
  }

  describe('when the workspace id is 63 characters long', () => {
    it('creates the workspace', async () => {
      const id = 'a'.repeat(63);
      const response = await create(id);
      expect(response.workspace?.id).to.equal(id);
    });
  });

  describe('when the workspace id already exists', () => {
    it('fails ALREADY_EXISTS / WORKSPACE_EXISTS and leaves the existing workspace and its token alone', async () => {
      const first = await createWorkspace(h, 'ws-a', 'First');
      const before = await captureState(h, 'ws-a');
      await expectRpcError(create('ws-a'), status.ALREADY_EXISTS, 'WORKSPACE_EXISTS');
      await expectUnchanged(h, 'ws-a', before);
      expect((await getWorkspace(h, 'ws-a')).name).to.equal('First');
      const beat = await call(
        h.clients.runtime,
        h.clients.runtime.heartbeat,
        heartbeatRequest('ws-a'),
        first.token,
      );
      expect(beat.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
    });
  });

  describe('when the workspace id belongs to a deleted workspace', () => {
    it('fails ALREADY_EXISTS / WORKSPACE_EXISTS: a tombstone id is never reused', async () => {
      await createWorkspace(h, 'ws-a');
      await call(
        h.clients.control,
        h.clients.control.deleteWorkspace,
        { workspaceId: 'ws-a' },
        CONTROL_TOKEN,
      );
      await expectRpcError(create('ws-a'), status.ALREADY_EXISTS, 'WORKSPACE_EXISTS');
      expect((await getWorkspace(h, 'ws-a')).status).to.equal(
        WorkspaceStatus.WORKSPACE_STATUS_REMOVED,
      );
    });
  });

  describe('when the workspace id is empty', () => {
    it('creates the workspace under a server-picked UUID whose token works', async () => {
      const created = await createWorkspace(h, '');
      const id = created.workspace.id;
      expect(id).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      const stored = await getWorkspace(h, id);
      expect(stored.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_PROVISIONING);
      const registered = await call(
        h.clients.runtime,
        h.clients.runtime.register,
        registerRequest(id),
        created.token,
      );
      expect(registered.workspace?.id).to.equal(id);
    });

    it('picks a different id each time', async () => {
      const a = await createWorkspace(h, '');
      const b = await createWorkspace(h, '');
      expect(a.workspace.id).to.not.equal(b.workspace.id);
    });
  });
});

describe('GetWorkspace validation', () => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness();
  });

  afterEach(async () => {
    await h.dispose();
  });

  describe('when the workspace does not exist', () => {
    it('fails NOT_FOUND / WORKSPACE_NOT_FOUND', async () => {
      await expectRpcError(
        call(
          h.clients.control,
          h.clients.control.getWorkspace,
          { workspaceId: 'ws-nowhere' },
          CONTROL_TOKEN,
        ),
        status.NOT_FOUND,
        'WORKSPACE_NOT_FOUND',
      );
    });
  });

  describe('when the workspace id is malformed', () => {
    it('fails INVALID_ARGUMENT / FIELD_INVALID naming workspace_id', async () => {
      const info = await expectRpcError(
        call(
          h.clients.control,
          h.clients.control.getWorkspace,
          { workspaceId: 'UPPER' },
          CONTROL_TOKEN,
        ),
        status.INVALID_ARGUMENT,
        'FIELD_INVALID',
      );
      expect(info.metadata['field']).to.equal('workspace_id');
    });
  });
});

describe('ListWorkspaces', () => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness();
  });

  afterEach(async () => {
    await h.dispose();
  });

  function list(request: Partial<ListWorkspacesRequest>) {
    return call(
      h.clients.control,
      h.clients.control.listWorkspaces,
      { pageSize: 0, pageToken: '', statuses: [], ...request },
      CONTROL_TOKEN,
    );
  }

  async function listAll(request: Partial<ListWorkspacesRequest>): Promise<string[][]> {
    const pages: string[][] = [];
    let pageToken = '';
    for (let i = 0; i < 100; i += 1) {
      const response = await list({ ...request, pageToken });
      pages.push(response.workspaces.map((w) => w.id));
      if (response.nextPageToken === '') return pages;
      pageToken = response.nextPageToken;
    }
    throw new Error('ListWorkspaces did not finish paging');
  }

  describe('when page_size is negative', () => {
    it('fails INVALID_ARGUMENT / FIELD_INVALID naming page_size', async () => {
      const info = await expectRpcError(
        list({ pageSize: -1 }),
        status.INVALID_ARGUMENT,
        'FIELD_INVALID',
      );
      expect(info.metadata['field']).to.equal('page_size');
    });
  });

  describe('when page_token is garbage', () => {
    for (const pageToken of ['garbage!!', 'bm90LWpzb24', '%%%']) {
      it(`fails INVALID_ARGUMENT / PAGE_TOKEN_INVALID (${pageToken})`, async () => {
        await expectRpcError(list({ pageToken }), status.INVALID_ARGUMENT, 'PAGE_TOKEN_INVALID');
      });
    }
  });

  describe('when the status filter is UNSPECIFIED', () => {
    it('fails INVALID_ARGUMENT / FIELD_INVALID naming statuses', async () => {
      const info = await expectRpcError(
        list({ statuses: [WorkspaceStatus.WORKSPACE_STATUS_UNSPECIFIED] }),
        status.INVALID_ARGUMENT,
        'FIELD_INVALID',
      );
      expect(info.metadata['field']).to.equal('statuses');
    });
  });

  describe('when there are 7 workspaces and page_size is 3', () => {
    const IDS = ['ws-g', 'ws-c', 'ws-e', 'ws-a', 'ws-f', 'ws-b', 'ws-d'];

    beforeEach(async () => {
      for (const id of IDS) await createWorkspace(h, id);
    });

    it('returns pages of 3, 3 and 1 with every workspace exactly once, in id order', async () => {
      const pages = await listAll({ pageSize: 3 });
      expect(pages.map((p) => p.length)).to.deep.equal([3, 3, 1]);
      expect(pages.flat()).to.deep.equal([...IDS].sort());
    });

    it('refuses a page token when the filter changes between pages', async () => {
      const first = await list({ pageSize: 3 });
      expect(first.nextPageToken).to.not.equal('');
      await expectRpcError(
        list({
          pageSize: 3,
          pageToken: first.nextPageToken,
          statuses: [WorkspaceStatus.WORKSPACE_STATUS_ONLINE],
        }),
        status.INVALID_ARGUMENT,
        'PAGE_TOKEN_INVALID',
      );
    });
  });

  describe('when workspaces have different statuses', () => {
    beforeEach(async () => {
      await onlineWorkspace(h, 'ws-online-1');
      await onlineWorkspace(h, 'ws-online-2');
      await createWorkspace(h, 'ws-provisioning');
      await createWorkspace(h, 'ws-removed');
      await call(
        h.clients.control,
        h.clients.control.deleteWorkspace,
        { workspaceId: 'ws-removed' },
        CONTROL_TOKEN,
      );
    });

    it('returns only the workspaces in the filtered statuses', async () => {
      const pages = await listAll({ statuses: [WorkspaceStatus.WORKSPACE_STATUS_ONLINE] });
      expect(pages.flat()).to.deep.equal(['ws-online-1', 'ws-online-2']);
      const provisioning = await listAll({
        statuses: [WorkspaceStatus.WORKSPACE_STATUS_PROVISIONING],
      });
      expect(provisioning.flat()).to.deep.equal(['ws-provisioning']);
    });

    it('excludes REMOVED workspaces when no status is given', async () => {
      const pages = await listAll({});
      expect(pages.flat()).to.deep.equal(['ws-online-1', 'ws-online-2', 'ws-provisioning']);
    });

    it('includes REMOVED workspaces when asked for', async () => {
      const removed = await listAll({ statuses: [WorkspaceStatus.WORKSPACE_STATUS_REMOVED] });
      expect(removed.flat()).to.deep.equal(['ws-removed']);
      const both = await listAll({
        statuses: [
          WorkspaceStatus.WORKSPACE_STATUS_REMOVED,
          WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
        ],
        pageSize: 1,
      });
      expect(both.flat()).to.deep.equal(['ws-online-1', 'ws-online-2', 'ws-removed']);
    });
  });
});

describe('DeleteWorkspace', () => {
  let h: Harness;
  let token: string;

  beforeEach(async () => {
    h = await startHarness();
    token = (await onlineWorkspace(h, 'ws-a')).token;
  });

  afterEach(async () => {
    await h.dispose();
  });

  function remove(workspaceId: string) {
    return call(
      h.clients.control,
      h.clients.control.deleteWorkspace,
      { workspaceId },
      CONTROL_TOKEN,
    );
  }

  describe('when the workspace does not exist', () => {
    it('fails NOT_FOUND / WORKSPACE_NOT_FOUND', async () => {
      await expectRpcError(remove('ws-nowhere'), status.NOT_FOUND, 'WORKSPACE_NOT_FOUND');
    });
  });

  describe('when it is called twice', () => {
    it('succeeds both times and logs exactly one DELETED transition', async () => {
      const first = await remove('ws-a');
      expect(first.workspace?.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_REMOVED);
      const before = await captureState(h, 'ws-a');
      const second = await remove('ws-a');
      expect(second.workspace?.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_REMOVED);
      await expectUnchanged(h, 'ws-a', before);
      const deleted = (await listTransitions(h, 'ws-a')).filter(
        (t) => t.reason === TransitionReason.TRANSITION_REASON_DELETED,
      );
      expect(deleted).to.have.length(1);
      expect(deleted[0]?.fromStatus).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
      expect(deleted[0]?.toStatus).to.equal(WorkspaceStatus.WORKSPACE_STATUS_REMOVED);
    });
  });

  describe('when the removed workspace registers or heartbeats', () => {
    beforeEach(async () => {
      await remove('ws-a');
    });

    it('refuses Register with FAILED_PRECONDITION / WORKSPACE_REMOVED and writes nothing', async () => {
      const before = await captureState(h, 'ws-a');
      await expectRpcError(
        call(h.clients.runtime, h.clients.runtime.register, registerRequest('ws-a'), token),
        status.FAILED_PRECONDITION,
        'WORKSPACE_REMOVED',
      );
      await expectUnchanged(h, 'ws-a', before);
    });

    it('refuses a Register with a blocked URL with WORKSPACE_REMOVED and stamps no marker', async () => {
      const before = await captureState(h, 'ws-a');
      await expectRpcError(
        call(
          h.clients.runtime,
          h.clients.runtime.register,
          registerRequest('ws-a', { url: 'http://metadata.evil/' }),
          token,
        ),
        status.FAILED_PRECONDITION,
        'WORKSPACE_REMOVED',
      );
      await expectUnchanged(h, 'ws-a', before);
    });

    it('refuses Heartbeat with FAILED_PRECONDITION / WORKSPACE_REMOVED and writes nothing', async () => {
      const before = await captureState(h, 'ws-a');
      await expectRpcError(
        call(
          h.clients.runtime,
          h.clients.runtime.heartbeat,
          heartbeatRequest('ws-a', { agentCard: card(), activeTasks: 3 }),
          token,
        ),
        status.FAILED_PRECONDITION,
        'WORKSPACE_REMOVED',
      );
      await expectUnchanged(h, 'ws-a', before);
    });
  });
});

describe('WatchStatus validation', () => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness();
    await createWorkspace(h, 'ws-a');
  });

  afterEach(async () => {
    await h.dispose();
  });

  describe('when after_seq is beyond the head', () => {
    it('fails OUT_OF_RANGE / CURSOR_AHEAD', async () => {
      const head = (await listTransitions(h)).at(-1)?.seq ?? 0;
      expect(head).to.be.greaterThan(0);
      await expectRpcError(
        firstWatchEvent(h.clients.control, { afterSeq: head + 1 }, CONTROL_TOKEN),
        status.OUT_OF_RANGE,
        'CURSOR_AHEAD',
      );
    });
  });

  describe('when workspace_ids holds a malformed id', () => {
    it('fails INVALID_ARGUMENT / FIELD_INVALID naming workspace_ids', async () => {
      const info = await expectRpcError(
        firstWatchEvent(h.clients.control, { workspaceIds: ['ws-a', 'NOT_AN_ID'] }, CONTROL_TOKEN),
        status.INVALID_ARGUMENT,
        'FIELD_INVALID',
      );
      expect(info.metadata['field']).to.equal('workspace_ids');
    });
  });

  describe('when after_seq is the head', () => {
    it('opens the stream and delivers the next transition', async () => {
      const head = (await listTransitions(h)).at(-1)?.seq ?? 0;
      const first = firstWatchEvent(h.clients.control, { afterSeq: head }, CONTROL_TOKEN);
      await createWorkspace(h, 'ws-b');
      const event = await first;
      expect(event.event?.$case).to.equal('transition');
      if (event.event?.$case === 'transition') {
        expect(event.event.value.seq).to.equal(head + 1);
        expect(event.event.value.workspaceId).to.equal('ws-b');
      }
    });
  });
});

describe('ListTransitions validation', () => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness();
    await onlineWorkspace(h, 'ws-a');
    await onlineWorkspace(h, 'ws-b');
  });

  afterEach(async () => {
    await h.dispose();
  });

  function page(workspaceId: string, pageSize: number, pageToken: string) {
    return call(
      h.clients.control,
      h.clients.control.listTransitions,
      { workspaceId, pageSize, pageToken },
      CONTROL_TOKEN,
    );
  }

  describe('when page_size is negative', () => {
    it('fails INVALID_ARGUMENT / FIELD_INVALID naming page_size', async () => {
      const info = await expectRpcError(page('', -5, ''), status.INVALID_ARGUMENT, 'FIELD_INVALID');
      expect(info.metadata['field']).to.equal('page_size');
    });
  });

  describe('when page_token is garbage', () => {
    it('fails INVALID_ARGUMENT / PAGE_TOKEN_INVALID', async () => {
      await expectRpcError(page('', 0, 'garbage!!'), status.INVALID_ARGUMENT, 'PAGE_TOKEN_INVALID');
    });
  });

  describe('when a page token is reused for another workspace', () => {
    it('fails INVALID_ARGUMENT / PAGE_TOKEN_INVALID', async () => {
      const first = await page('ws-a', 1, '');
      expect(first.nextPageToken).to.not.equal('');
      await expectRpcError(
        page('ws-b', 1, first.nextPageToken),
        status.INVALID_ARGUMENT,
        'PAGE_TOKEN_INVALID',
      );
    });
  });

  describe('when paging one transition at a time', () => {
    it('returns every transition exactly once, in seq order', async () => {
      const seqs: number[] = [];
      let pageToken = '';
      for (let i = 0; i < 100; i += 1) {
        const response = await page('', 1, pageToken);
        seqs.push(...response.transitions.map((t) => t.seq));
        if (response.nextPageToken === '') break;
        pageToken = response.nextPageToken;
      }
      // CREATED and REGISTERED for each of the two workspaces.
      expect(seqs).to.have.length(4);
      expect(seqs).to.deep.equal([...seqs].sort((a, b) => a - b));
      expect(new Set(seqs).size).to.equal(4);
    });
  });
});
