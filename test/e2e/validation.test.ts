import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import {
  DeliveryMode,
  RuntimeState,
  TransitionReason,
  WorkspaceStatus,
} from '../../gen/vigil/v1/workspace.js';
import type { ListWorkspacesRequest } from '../../gen/vigil/v1/control_service.js';
import { ERROR_REASONS, type ErrorReason } from '../../src/domain/errors.js';
import { authMatrixReasons } from '../helpers/auth-matrix.js';
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
import { CONTROL_TOKEN, card, type Harness } from '../helpers/harness.js';
import { harnessPerTest } from '../helpers/harness-per-test.js';
import { describeRefusals, type Refusal, type RefusalContext } from '../helpers/refusals.js';
import { call, openWatch, type WatchReader } from '../helpers/rpc.js';

/**
 * Bad input over real gRPC: the right code and ErrorInfo reason (never the
 * message text), and nothing written. Every refusal is a row run by
 * test/helpers/refusals.ts; the last suite checks that the rows here and the
 * auth matrix use every ErrorInfo reason a client can provoke.
 */

interface Ctx extends RefusalContext {
  /** The token of ws-a, in the suites that have it (or once a row's `arrange` creates it). */
  token: string;
}

const OWN_TOKEN = (c: Ctx): string => c.token;

/** Setups: ws-a created and registered (ONLINE), or nothing in the store. */
async function withWorkspaceA(h: Harness): Promise<{ token: string }> {
  return { token: (await onlineWorkspace(h, 'ws-a')).token };
}

function emptyStore(): { token: string } {
  return { token: '' };
}

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

/** Register on ws-a (ONLINE) refused for what it carries. */
const REGISTER_REFUSALS: readonly Refusal<Ctx>[] = [
  ...INVALID_CARDS.map((invalid): Refusal<Ctx> => ({
    when: `the agent card ${invalid.what}`,
    rpc: 'Register',
    request: registerRequest('ws-a', { agentCard: invalid.card, url: 'http://localhost:9000' }),
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'AGENT_CARD_INVALID',
    unchanged: ['ws-a'],
  })),
  {
    when: 'there is no agent card',
    rpc: 'Register',
    request: registerRequest('ws-a', { agentCard: undefined }),
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'AGENT_CARD_INVALID',
    unchanged: ['ws-a'],
  },
];

/** The URL and card registered with ws-a stay; the failure is stamped and degrades it. */
async function expectRegisterFailureStamped({ h }: Ctx): Promise<void> {
  const after = await getWorkspace(h, 'ws-a');
  expect(after.url).to.equal(registerRequest('ws-a').url);
  expect(after.agentCard).to.deep.equal(card());
  expect(after.lastRegisterFailureAt).to.deep.equal(new Date(h.clock.now()));
  expect(after.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_DEGRADED);
  const last = (await listTransitions(h, 'ws-a')).at(-1);
  expect(last?.reason).to.equal(TransitionReason.TRANSITION_REASON_REGISTER_FAILED);
  expect(last?.toStatus).to.equal(WorkspaceStatus.WORKSPACE_STATUS_DEGRADED);
}

const REFUSED_URLS: { readonly url: string; readonly why: string; readonly host?: string }[] = [
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
  {
    url: 'http://127.0.0.1\\@169.254.169.254/latest/meta-data/',
    why: 'a backslash makes other parsers read another host',
  },
  { url: 'http://127.0.0.1:8000/\r\nX-Injected: 1', why: 'it carries CR/LF' },
  { url: 'http://127.0.0.1:8000/a\tb', why: 'it carries a tab WHATWG would drop' },
  { url: ' http://127.0.0.1:8000/', why: 'it has leading space WHATWG would strip' },
];

/** Register on ws-a (ONLINE) refused by the URL policy. */
const URL_REFUSALS: readonly Refusal<Ctx>[] = [
  ...REFUSED_URLS.map((refused): Refusal<Ctx> => ({
    when: `the URL is refused because ${refused.why} (${refused.url})`,
    rpc: 'Register',
    request: registerRequest('ws-a', { url: refused.url, agentCard: card('other-agent') }),
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'URL_VALIDATE_FAILED',
    ...(refused.host === undefined ? {} : { metadata: { host: refused.host } }),
    unchanged: [],
    writes: 'keeps the stored URL and card, stamps the marker and degrades the ONLINE workspace',
    then: expectRegisterFailureStamped,
  })),
  {
    when: 'the delivery mode is not a known value',
    rpc: 'Register',
    // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- an unknown wire value on purpose
    request: registerRequest('ws-a', { deliveryMode: 99 as DeliveryMode }),
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'FIELD_INVALID',
    metadata: { field: 'delivery_mode' },
    unchanged: ['ws-a'],
  },
  {
    when: 'the delivery mode is UNSPECIFIED and the URL is refused',
    rpc: 'Register',
    request: registerRequest('ws-a', {
      url: 'ftp://x',
      deliveryMode: DeliveryMode.DELIVERY_MODE_UNSPECIFIED,
    }),
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'URL_VALIDATE_FAILED',
    unchanged: [],
    writes: 'stamps the marker: UNSPECIFIED is validated as PUSH',
    then: expectRegisterFailureStamped,
  },
];

describe('Register validation', () => {
  const current = harnessPerTest(withWorkspaceA);

  function registerWith(overrides: Parameters<typeof registerRequest>[1]) {
    const { h, token } = current();
    const { runtime } = h.clients;
    return call(runtime, runtime.register, registerRequest('ws-a', overrides), token);
  }

  describeRefusals(REGISTER_REFUSALS, current);

  for (const valid of VALID_CARDS) {
    describe(`when the agent card ${valid.what}`, () => {
      it('stores it', async () => {
        const { h } = current();
        const response = await registerWith({ agentCard: valid.card });
        expect(response.workspace?.agentCard).to.deep.equal(valid.card);
        expect((await getWorkspace(h, 'ws-a')).agentCard).to.deep.equal(valid.card);
      });
    });
  }

  describe('URL policy', () => {
    describeRefusals(URL_REFUSALS, current);

    // Each with the canonical (WHATWG-serialized) form that was checked and is stored.
    const ALLOWED: readonly (readonly [string, string])[] = [
      ['http://runtime.internal:8080/a2a', 'http://runtime.internal:8080/a2a'],
      ['http://localhost:8000', 'http://localhost:8000/'],
      ['https://10.0.0.7/', 'https://10.0.0.7/'],
      ['HTTP://0x7f.1:80/a/../b', 'http://127.0.0.1/b'],
      ['http://[::FFFF:10.0.0.7]:8080', 'http://[::ffff:a00:7]:8080/'],
    ];
    for (const [url, canonical] of ALLOWED) {
      describe(`when the URL is allowed by the local policy (${url})`, () => {
        it('registers it and stores and returns only its canonical form', async () => {
          const { h } = current();
          const response = await registerWith({ url });
          expect(response.workspace?.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
          expect(response.workspace?.url).to.equal(canonical);
          expect((await getWorkspace(h, 'ws-a')).url).to.equal(canonical);
        });
      });
    }

    describe('when the delivery mode is POLL and the URL is empty', () => {
      it('registers the workspace ONLINE without a URL', async () => {
        const { h } = current();
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

function heartbeatFieldRefusal(
  when: string,
  overrides: Parameters<typeof heartbeatRequest>[1],
  field: string,
): Refusal<Ctx> {
  return {
    when,
    rpc: 'Heartbeat',
    request: heartbeatRequest('ws-a', overrides),
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'FIELD_INVALID',
    metadata: { field },
    unchanged: ['ws-a'],
  };
}

/** Heartbeat on ws-a (ONLINE) refused for what it carries. */
const HEARTBEAT_REFUSALS: readonly Refusal<Ctx>[] = [
  ...INVALID_CARDS.map((invalid): Refusal<Ctx> => ({
    when: `the agent card ${invalid.what}`,
    rpc: 'Heartbeat',
    request: heartbeatRequest('ws-a', { agentCard: invalid.card, activeTasks: 7, errorRate: 0.9 }),
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'AGENT_CARD_INVALID',
    unchanged: ['ws-a'],
    outcome: 'applies nothing of the heartbeat',
  })),
  ...[1.5, -0.1, Number.NaN, Number.POSITIVE_INFINITY].map((errorRate) =>
    heartbeatFieldRefusal(`error_rate is ${errorRate}`, { errorRate }, 'error_rate'),
  ),
  heartbeatFieldRefusal(
    'sample_error is over 4096 bytes (ASCII)',
    { sampleError: 'x'.repeat(4097) },
    'sample_error',
  ),
  heartbeatFieldRefusal(
    'sample_error is over 4096 bytes counted in UTF-8 bytes, not characters',
    { sampleError: 'é'.repeat(2049) },
    'sample_error',
  ),
  heartbeatFieldRefusal(
    'runtime_state is not a known value',
    // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- an unknown wire value on purpose
    { runtimeState: 99 as RuntimeState },
    'runtime_state',
  ),
  heartbeatFieldRefusal(
    'current_task is over 1024 bytes',
    { currentTask: 'x'.repeat(1025) },
    'current_task',
  ),
  {
    when: 'the request bytes are not a HeartbeatRequest',
    rpc: 'Heartbeat',
    // Field 1 (workspace_id) announces 5 bytes and ends after one.
    request: { raw: Uint8Array.from([0x0a, 0x05, 0x77]) },
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'MESSAGE_MALFORMED',
    unchanged: ['ws-a'],
  },
  {
    when: 'the request is over the 1 MiB message limit',
    rpc: 'Heartbeat',
    request: heartbeatRequest('ws-a', { currentTask: 'x'.repeat(1536 * 1024) }),
    token: OWN_TOKEN,
    code: status.RESOURCE_EXHAUSTED,
    reason: 'MESSAGE_TOO_LARGE',
    unchanged: ['ws-a'],
  },
];

describe('Heartbeat validation', () => {
  const current = harnessPerTest(withWorkspaceA);

  function heartbeatWith(overrides: Parameters<typeof heartbeatRequest>[1]) {
    const { h, token } = current();
    const { runtime } = h.clients;
    return call(runtime, runtime.heartbeat, heartbeatRequest('ws-a', overrides), token);
  }

  describeRefusals(HEARTBEAT_REFUSALS, current);

  for (const errorRate of [0, 1]) {
    describe(`when error_rate is ${errorRate} (a bound)`, () => {
      it('applies the heartbeat', async () => {
        const { h } = current();
        h.clock.advance(1_000);
        await heartbeatWith({ errorRate });
        const stored = await getWorkspace(h, 'ws-a');
        expect(stored.errorRate).to.equal(errorRate);
        expect(stored.lastHeartbeatAt).to.deep.equal(new Date(h.clock.now()));
      });
    });
  }

  describe('when sample_error is exactly 4096 bytes', () => {
    it('applies the heartbeat and stores it', async () => {
      const { h } = current();
      const sampleError = 'x'.repeat(4096);
      await heartbeatWith({ sampleError });
      expect((await getWorkspace(h, 'ws-a')).sampleError).to.equal(sampleError);
    });
  });
});

/** CreateWorkspace on a store that starts empty. */
const CREATE_REFUSALS: readonly Refusal<Ctx>[] = [
  ...(
    [
      ['has upper case', 'UPPER'],
      ['starts with a dash', '-x'],
      ['ends with a dash', 'x-'],
      ['has an underscore', 'a_b'],
      ['is 64 characters long', 'a'.repeat(64)],
    ] as const
  ).map(([what, workspaceId]): Refusal<Ctx> => ({
    when: `the workspace id ${what}`,
    rpc: 'CreateWorkspace',
    request: { workspaceId, name: '' },
    token: CONTROL_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'FIELD_INVALID',
    metadata: { field: 'workspace_id' },
    unchanged: [],
    outcome: 'creates nothing',
  })),
  {
    when: 'the workspace id already exists',
    rpc: 'CreateWorkspace',
    arrange: async (c) => {
      c.token = (await createWorkspace(c.h, 'ws-a', 'First')).token;
    },
    request: { workspaceId: 'ws-a', name: '' },
    token: CONTROL_TOKEN,
    code: status.ALREADY_EXISTS,
    reason: 'WORKSPACE_EXISTS',
    unchanged: ['ws-a'],
    outcome: 'leaves the existing workspace and its token alone',
    then: async ({ h, token }) => {
      expect((await getWorkspace(h, 'ws-a')).name).to.equal('First');
      const beat = await call(
        h.clients.runtime,
        h.clients.runtime.heartbeat,
        heartbeatRequest('ws-a'),
        token,
      );
      expect(beat.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
    },
  },
  {
    when: 'the workspace id belongs to a deleted workspace',
    rpc: 'CreateWorkspace',
    arrange: async ({ h }) => {
      await createWorkspace(h, 'ws-a');
      await call(
        h.clients.control,
        h.clients.control.deleteWorkspace,
        { workspaceId: 'ws-a' },
        CONTROL_TOKEN,
      );
    },
    request: { workspaceId: 'ws-a', name: '' },
    token: CONTROL_TOKEN,
    code: status.ALREADY_EXISTS,
    reason: 'WORKSPACE_EXISTS',
    unchanged: ['ws-a'],
    outcome: 'leaves the tombstone: an id is never reused',
    then: async ({ h }) => {
      expect((await getWorkspace(h, 'ws-a')).status).to.equal(
        WorkspaceStatus.WORKSPACE_STATUS_REMOVED,
      );
    },
  },
];

describe('CreateWorkspace validation', () => {
  const current = harnessPerTest(emptyStore);

  describeRefusals(CREATE_REFUSALS, current);

  describe('when the workspace id is 63 characters long', () => {
    it('creates the workspace', async () => {
      const { h } = current();
      const id = 'a'.repeat(63);
      const response = await call(
        h.clients.control,
        h.clients.control.createWorkspace,
        { workspaceId: id, name: '' },
        CONTROL_TOKEN,
      );
      expect(response.workspace?.id).to.equal(id);
    });
  });

  describe('when the workspace id is empty', () => {
    it('creates the workspace under a server-picked UUID whose token works', async () => {
      const { h } = current();
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
      const { h } = current();
      const a = await createWorkspace(h, '');
      const b = await createWorkspace(h, '');
      expect(a.workspace.id).to.not.equal(b.workspace.id);
    });
  });
});

/** GetWorkspace on an empty store. */
const GET_REFUSALS: readonly Refusal<Ctx>[] = [
  {
    when: 'the workspace does not exist',
    rpc: 'GetWorkspace',
    request: { workspaceId: 'ws-nowhere' },
    token: CONTROL_TOKEN,
    code: status.NOT_FOUND,
    reason: 'WORKSPACE_NOT_FOUND',
    unchanged: [],
  },
  {
    when: 'the workspace id is malformed',
    rpc: 'GetWorkspace',
    request: { workspaceId: 'UPPER' },
    token: CONTROL_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'FIELD_INVALID',
    metadata: { field: 'workspace_id' },
    unchanged: [],
  },
];

describe('GetWorkspace validation', () => {
  const current = harnessPerTest(emptyStore);

  describeRefusals(GET_REFUSALS, current);
});

function listWorkspacesRequest(request: Partial<ListWorkspacesRequest>): ListWorkspacesRequest {
  return { pageSize: 0, pageToken: '', statuses: [], ...request };
}

function listWorkspacesRefusal(
  when: string,
  request: Partial<ListWorkspacesRequest>,
  reason: 'FIELD_INVALID' | 'PAGE_TOKEN_INVALID',
  field?: string,
): Refusal<Ctx> {
  return {
    when,
    rpc: 'ListWorkspaces',
    request: listWorkspacesRequest(request),
    token: CONTROL_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason,
    ...(field === undefined ? {} : { metadata: { field } }),
    unchanged: [],
  };
}

/** ListWorkspaces on an empty store. */
const LIST_WORKSPACES_REFUSALS: readonly Refusal<Ctx>[] = [
  listWorkspacesRefusal('page_size is negative', { pageSize: -1 }, 'FIELD_INVALID', 'page_size'),
  ...['garbage!!', 'bm90LWpzb24', '%%%'].map((pageToken) =>
    listWorkspacesRefusal(
      `page_token is garbage (${pageToken})`,
      { pageToken },
      'PAGE_TOKEN_INVALID',
    ),
  ),
  listWorkspacesRefusal(
    'the status filter is UNSPECIFIED',
    { statuses: [WorkspaceStatus.WORKSPACE_STATUS_UNSPECIFIED] },
    'FIELD_INVALID',
    'statuses',
  ),
];

/** ListWorkspaces over 7 workspaces, 3 to a page. */
const PAGED_LIST_WORKSPACES_REFUSALS: readonly Refusal<Ctx>[] = [
  {
    when: 'the filter changes between pages',
    rpc: 'ListWorkspaces',
    request: async ({ h }) => {
      const first = await call(
        h.clients.control,
        h.clients.control.listWorkspaces,
        listWorkspacesRequest({ pageSize: 3 }),
        CONTROL_TOKEN,
      );
      expect(first.nextPageToken).to.not.equal('');
      return listWorkspacesRequest({
        pageSize: 3,
        pageToken: first.nextPageToken,
        statuses: [WorkspaceStatus.WORKSPACE_STATUS_ONLINE],
      });
    },
    token: CONTROL_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'PAGE_TOKEN_INVALID',
    unchanged: [],
  },
];

describe('ListWorkspaces', () => {
  const current = harnessPerTest(emptyStore);

  function list(request: Partial<ListWorkspacesRequest>) {
    const { h } = current();
    return call(
      h.clients.control,
      h.clients.control.listWorkspaces,
      listWorkspacesRequest(request),
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

  describeRefusals(LIST_WORKSPACES_REFUSALS, current);

  describe('when there are 7 workspaces and page_size is 3', () => {
    const IDS = ['ws-g', 'ws-c', 'ws-e', 'ws-a', 'ws-f', 'ws-b', 'ws-d'];

    beforeEach(async () => {
      const { h } = current();
      for (const id of IDS) await createWorkspace(h, id);
    });

    it('returns pages of 3, 3 and 1 with every workspace exactly once, in id order', async () => {
      const pages = await listAll({ pageSize: 3 });
      expect(pages.map((p) => p.length)).to.deep.equal([3, 3, 1]);
      expect(pages.flat()).to.deep.equal([...IDS].sort());
    });

    describeRefusals(PAGED_LIST_WORKSPACES_REFUSALS, current);
  });

  describe('when workspaces have different statuses', () => {
    beforeEach(async () => {
      const { h } = current();
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

/** DeleteWorkspace with ws-a ONLINE. */
const DELETE_REFUSALS: readonly Refusal<Ctx>[] = [
  {
    when: 'the workspace does not exist',
    rpc: 'DeleteWorkspace',
    request: { workspaceId: 'ws-nowhere' },
    token: CONTROL_TOKEN,
    code: status.NOT_FOUND,
    reason: 'WORKSPACE_NOT_FOUND',
    unchanged: ['ws-a'],
  },
];

/** What every call of the removed ws-a is answered with. */
const REMOVED = {
  token: OWN_TOKEN,
  code: status.FAILED_PRECONDITION,
  reason: 'WORKSPACE_REMOVED',
  unchanged: ['ws-a'],
} as const;

/** Register and Heartbeat of ws-a after it was deleted. */
const REMOVED_REFUSALS: readonly Refusal<Ctx>[] = [
  { ...REMOVED, when: 'it registers', rpc: 'Register', request: registerRequest('ws-a') },
  {
    ...REMOVED,
    when: 'it registers with a blocked URL',
    rpc: 'Register',
    request: registerRequest('ws-a', { url: 'http://metadata.evil/' }),
    outcome: 'stamps no marker',
  },
  {
    ...REMOVED,
    when: 'it heartbeats',
    rpc: 'Heartbeat',
    request: heartbeatRequest('ws-a', { agentCard: card(), activeTasks: 3 }),
  },
  {
    ...REMOVED,
    when: 'it heartbeats on a stream',
    rpc: 'HeartbeatStream',
    request: heartbeatRequest('ws-a', { agentCard: card(), activeTasks: 3 }),
    answers: 'message',
  },
];

describe('DeleteWorkspace', () => {
  const current = harnessPerTest(withWorkspaceA);

  function remove(workspaceId: string) {
    const { h } = current();
    return call(
      h.clients.control,
      h.clients.control.deleteWorkspace,
      { workspaceId },
      CONTROL_TOKEN,
    );
  }

  describeRefusals(DELETE_REFUSALS, current);

  describe('when it is called twice', () => {
    it('succeeds both times and logs exactly one DELETED transition', async () => {
      const { h } = current();
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

  describe('when the workspace has been removed', () => {
    beforeEach(async () => {
      await remove('ws-a');
    });

    describeRefusals(REMOVED_REFUSALS, current);
  });
});

/** WatchStatus with ws-a created. */
const WATCH_REFUSALS: readonly Refusal<Ctx>[] = [
  {
    when: 'after_seq is beyond the head',
    rpc: 'WatchStatus',
    request: async ({ h }) => {
      const head = (await listTransitions(h)).at(-1)?.seq ?? 0;
      expect(head).to.be.greaterThan(0);
      return { afterSeq: head + 1 };
    },
    token: CONTROL_TOKEN,
    code: status.OUT_OF_RANGE,
    reason: 'CURSOR_AHEAD',
    unchanged: ['ws-a'],
  },
  {
    when: 'workspace_ids holds a malformed id',
    rpc: 'WatchStatus',
    request: { workspaceIds: ['ws-a', 'NOT_AN_ID'] },
    token: CONTROL_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'FIELD_INVALID',
    metadata: { field: 'workspace_ids' },
    unchanged: ['ws-a'],
  },
];

describe('WatchStatus validation', () => {
  const current = harnessPerTest(async (h) => {
    await createWorkspace(h, 'ws-a');
    return { token: '' };
  });

  describeRefusals(WATCH_REFUSALS, current);

  describe('when after_seq is the head', () => {
    it('opens the stream and delivers the next transition', async () => {
      const { h } = current();
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

/** ListTransitions with ws-a and ws-b ONLINE. */
const LIST_TRANSITIONS_REFUSALS: readonly Refusal<Ctx>[] = [
  {
    when: 'page_size is negative',
    rpc: 'ListTransitions',
    request: { workspaceId: '', pageSize: -5, pageToken: '' },
    token: CONTROL_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'FIELD_INVALID',
    metadata: { field: 'page_size' },
    unchanged: ['ws-a', 'ws-b'],
  },
  {
    when: 'page_token is garbage',
    rpc: 'ListTransitions',
    request: { workspaceId: '', pageSize: 0, pageToken: 'garbage!!' },
    token: CONTROL_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'PAGE_TOKEN_INVALID',
    unchanged: ['ws-a', 'ws-b'],
  },
  {
    when: 'a page token is reused for another workspace',
    rpc: 'ListTransitions',
    request: async ({ h }) => {
      const first = await call(
        h.clients.control,
        h.clients.control.listTransitions,
        { workspaceId: 'ws-a', pageSize: 1, pageToken: '' },
        CONTROL_TOKEN,
      );
      expect(first.nextPageToken).to.not.equal('');
      return { workspaceId: 'ws-b', pageSize: 1, pageToken: first.nextPageToken };
    },
    token: CONTROL_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'PAGE_TOKEN_INVALID',
    unchanged: ['ws-a', 'ws-b'],
  },
];

describe('ListTransitions validation', () => {
  const current = harnessPerTest(async (h) => {
    await onlineWorkspace(h, 'ws-a');
    await onlineWorkspace(h, 'ws-b');
    return { token: '' };
  });

  describeRefusals(LIST_TRANSITIONS_REFUSALS, current);

  describe('when paging one transition at a time', () => {
    it('returns every transition exactly once, in seq order', async () => {
      const { h } = current();
      const seqs: number[] = [];
      let pageToken = '';
      for (let i = 0; i < 100; i += 1) {
        const response = await call(
          h.clients.control,
          h.clients.control.listTransitions,
          { workspaceId: '', pageSize: 1, pageToken },
          CONTROL_TOKEN,
        );
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

/** Heartbeat on ws-a (ONLINE) with one heartbeat allowed per 100 s (test/e2e/limits.test.ts has the rate itself). */
const RATE_LIMIT_REFUSALS: readonly Refusal<Ctx>[] = [
  {
    when: 'the workspace has spent its heartbeat budget',
    rpc: 'Heartbeat',
    arrange: async ({ h, token }) => {
      await call(h.clients.runtime, h.clients.runtime.heartbeat, heartbeatRequest('ws-a'), token);
    },
    request: heartbeatRequest('ws-a', { activeTasks: 9 }),
    token: OWN_TOKEN,
    code: status.RESOURCE_EXHAUSTED,
    reason: 'RATE_LIMITED',
    unchanged: ['ws-a'],
  },
];

/** A card nested `depth` levels deep (one level past 33 hits the protobuf decoder's recursion limit). */
function deepCard(depth: number): Record<string, unknown> {
  let value: Record<string, unknown> = { name: 'deep', url: 'http://127.0.0.1:8000/' };
  for (let level = 1; level < depth; level += 1) value = { name: 'deep', nested: value };
  return value;
}

/** Register with url (field 2) holding the byte 0xff, which is not UTF-8. */
const REGISTER_WITH_BAD_UTF8 = Uint8Array.from([
  0x0a,
  0x04,
  ...Buffer.from('ws-a'),
  0x12,
  0x05,
  ...Buffer.from('http'),
  0xff,
]);

/** The documented answers where the decoder used to answer for the handler (on ws-a, ONLINE). */
const EXACT_REFUSALS: readonly Refusal<Ctx>[] = [
  heartbeatFieldRefusal('uptime_seconds is 2^53', { uptimeSeconds: 2 ** 53 }, 'uptime_seconds'),
  {
    when: 'uptime_seconds is 2^53 on a stream',
    rpc: 'HeartbeatStream',
    request: heartbeatRequest('ws-a', { uptimeSeconds: 2 ** 53 }),
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'FIELD_INVALID',
    metadata: { field: 'uptime_seconds' },
    unchanged: ['ws-a'],
    answers: 'message',
  },
  {
    when: 'after_seq is 2^53',
    rpc: 'WatchStatus',
    request: { afterSeq: 2 ** 53 },
    token: CONTROL_TOKEN,
    code: status.OUT_OF_RANGE,
    reason: 'CURSOR_AHEAD',
    unchanged: ['ws-a'],
  },
  ...[34, 60].map((depth): Refusal<Ctx> => ({
    when: `a Register card nests ${depth} levels deep`,
    rpc: 'Register',
    request: registerRequest('ws-a', { agentCard: deepCard(depth) }),
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'AGENT_CARD_INVALID',
    unchanged: ['ws-a'],
  })),
  {
    when: 'a heartbeat card nests 40 levels deep',
    rpc: 'Heartbeat',
    request: heartbeatRequest('ws-a', { agentCard: deepCard(40) }),
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'AGENT_CARD_INVALID',
    unchanged: ['ws-a'],
  },
  {
    when: 'a streamed heartbeat card nests 40 levels deep',
    rpc: 'HeartbeatStream',
    request: heartbeatRequest('ws-a', { agentCard: deepCard(40) }),
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'AGENT_CARD_INVALID',
    unchanged: ['ws-a'],
    answers: 'message',
  },
  {
    when: 'runtime_state is out of range and the call has no token',
    rpc: 'Heartbeat',
    // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- an unknown wire value on purpose
    request: heartbeatRequest('ws-a', { runtimeState: 99 as RuntimeState }),
    token: undefined,
    code: status.UNAUTHENTICATED,
    reason: 'TOKEN_MISSING',
    unchanged: ['ws-a'],
  },
  {
    when: 'delivery_mode is out of range and the token is invalid',
    rpc: 'Register',
    // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- an unknown wire value on purpose
    request: registerRequest('ws-a', { deliveryMode: 99 as DeliveryMode }),
    token: 'vgw_not-a-token',
    code: status.UNAUTHENTICATED,
    reason: 'TOKEN_INVALID',
    unchanged: ['ws-a'],
  },
  {
    when: 'a string field is not valid UTF-8',
    rpc: 'Register',
    request: { raw: REGISTER_WITH_BAD_UTF8 },
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'MESSAGE_MALFORMED',
    unchanged: ['ws-a'],
  },
  {
    when: 'a card string is not valid UTF-8',
    rpc: 'Heartbeat',
    // agent_card (field 2) = Struct{ fields: { "n": string_value "\xff" } }.
    request: {
      raw: Uint8Array.from([
        0x0a,
        0x04,
        ...Buffer.from('ws-a'),
        0x12,
        0x0b,
        0x0a,
        0x09,
        0x0a,
        0x01,
        0x6e,
        0x12,
        0x04,
        0x1a,
        0x02,
        0xc3,
        0x28,
      ]),
    },
    token: OWN_TOKEN,
    code: status.INVALID_ARGUMENT,
    reason: 'MESSAGE_MALFORMED',
    unchanged: ['ws-a'],
  },
];

/** Cards whose endpoints the URL policy refuses (under every policy): A2A clients would call them. */
const REFUSED_CARD_ENDPOINTS: readonly {
  readonly what: string;
  readonly card: Record<string, unknown>;
}[] = [
  {
    what: 'url is the metadata address',
    card: { name: 'a', url: 'http://169.254.169.254/latest/' },
  },
  { what: 'url is a file URL', card: { name: 'a', url: 'file:///etc/passwd' } },
  {
    what: 'supportedInterfaces url is a mapped-IPv6 metadata address',
    card: {
      name: 'a',
      url: 'http://127.0.0.1:8000/',
      supportedInterfaces: [{ url: 'http://[::ffff:169.254.169.254]/' }],
    },
  },
  {
    what: 'supported_interfaces url names a host resolving to metadata',
    card: { name: 'a', supported_interfaces: [{ url: 'http://metadata.evil/' }] },
  },
  {
    what: 'url carries a backslash',
    card: { name: 'a', url: 'http://127.0.0.1\\@169.254.169.254/' },
  },
];

const CARD_ENDPOINT_REFUSALS: readonly Refusal<Ctx>[] = REFUSED_CARD_ENDPOINTS.flatMap(
  ({ what, card: refused }): Refusal<Ctx>[] => [
    {
      when: `a Register card's ${what}`,
      rpc: 'Register',
      request: registerRequest('ws-a', { agentCard: refused }),
      token: OWN_TOKEN,
      code: status.INVALID_ARGUMENT,
      reason: 'AGENT_CARD_INVALID',
      unchanged: ['ws-a'],
    },
    {
      when: `a heartbeat card's ${what}`,
      rpc: 'Heartbeat',
      request: heartbeatRequest('ws-a', { agentCard: refused }),
      token: OWN_TOKEN,
      code: status.INVALID_ARGUMENT,
      reason: 'AGENT_CARD_INVALID',
      unchanged: ['ws-a'],
    },
    {
      when: `a streamed heartbeat card's ${what}`,
      rpc: 'HeartbeatStream',
      request: heartbeatRequest('ws-a', { agentCard: refused }),
      token: OWN_TOKEN,
      code: status.INVALID_ARGUMENT,
      reason: 'AGENT_CARD_INVALID',
      unchanged: ['ws-a'],
      answers: 'message',
    },
  ],
);

/** Register on ws-a (ONLINE, its one Register of the budget spent by the setup). */
const REGISTER_RATE_REFUSALS: readonly Refusal<Ctx>[] = [
  {
    when: 'the workspace has spent its Register budget',
    rpc: 'Register',
    request: registerRequest('ws-a', {
      url: 'http://10.0.0.9:8000/',
      agentCard: card('other-agent'),
    }),
    token: OWN_TOKEN,
    code: status.RESOURCE_EXHAUSTED,
    reason: 'RATE_LIMITED',
    unchanged: ['ws-a'],
  },
];

interface WatchCapCtx extends Ctx {
  readonly watches: WatchReader[];
}

/** WatchStatus with one open stream allowed per token (test/e2e/limits.test.ts has the cap itself). */
const WATCH_CAP_REFUSALS: readonly Refusal<WatchCapCtx>[] = [
  {
    when: 'the token already has its one stream open',
    rpc: 'WatchStatus',
    arrange: async ({ h, watches }) => {
      const open = openWatch(h.clients.control, {}, CONTROL_TOKEN);
      watches.push(open);
      await open.next();
    },
    request: {},
    token: CONTROL_TOKEN,
    code: status.RESOURCE_EXHAUSTED,
    reason: 'WATCH_LIMIT',
    metadata: { tokenName: 'test', limit: '1' },
    unchanged: ['ws-a'],
  },
];

describe('limits', () => {
  describe('Heartbeat rate limit', () => {
    const current = harnessPerTest(withWorkspaceA, {
      settings: { heartbeatRateLimit: { ratePerSecond: 0.01, burst: 1 } },
    });

    describeRefusals(RATE_LIMIT_REFUSALS, current);
  });

  describe('exact answers', () => {
    const current = harnessPerTest(withWorkspaceA);

    describeRefusals(EXACT_REFUSALS, current);
  });

  describe('agent card endpoints', () => {
    const current = harnessPerTest(withWorkspaceA);

    describeRefusals(CARD_ENDPOINT_REFUSALS, current);
  });

  describe('Register rate limit', () => {
    // The Register budget is per server (per replica in a cluster: a Register is served
    // where it lands): one replica serves every call.
    const current = harnessPerTest(withWorkspaceA, {
      settings: { registerRateLimit: { ratePerSecond: 0.01, burst: 1 } },
      replicas: 1,
    });

    describeRefusals(REGISTER_RATE_REFUSALS, current);
  });

  describe('WatchStatus stream cap', () => {
    const watches: WatchReader[] = [];
    afterEach(() => {
      for (const watch of watches.splice(0)) watch.cancel();
    });
    // The cap is per server (per replica in a cluster): one replica serves every call.
    const current = harnessPerTest(async (h) => ({ ...(await withWorkspaceA(h)), watches }), {
      settings: { maxWatchStreamsPerToken: 1 },
      replicas: 1,
    });

    describeRefusals(WATCH_CAP_REFUSALS, current);
  });
});

/**
 * Reasons no client call can provoke, each with the suite that asserts it
 * (the check below reads that suite for the reason).
 */
const NOT_FROM_A_CLIENT: Readonly<Partial<Record<ErrorReason, { suite: string; how: string }>>> = {
  URL_RESOLVE_UNAVAILABLE: {
    suite: 'test/e2e/resolver-starvation.test.ts',
    how: 'a DNS server that never answers, in a private network namespace',
  },
  AUTH_UNAVAILABLE: {
    suite: 'test/integration/registry-storage.test.ts',
    how: 'the token store failing under authentication',
  },
  STORE_UNAVAILABLE: {
    suite: 'test/e2e/storage-faults.test.ts',
    how: 'database files turned immutable under a running server',
  },
  SHUTTING_DOWN: {
    suite: 'test/e2e/watch.test.ts',
    how: 'the server stopping with streams open',
  },
  NOT_SERVING: {
    suite: 'test/integration/replica-serving.test.ts',
    how: 'a cluster replica whose etcd stops answering its lease keepalives',
  },
  SECRET_NAME_INVALID: {
    suite: 'test/unit/projection.test.ts',
    how: 'a secret or env name outside the allowed pattern',
  },
  SECRET_VALUE_INVALID: {
    suite: 'test/unit/projection.test.ts',
    how: 'a secret value with NUL or over 32 KiB',
  },
  PROJECTION_INCOMPLETE: {
    suite: 'test/unit/projection.test.ts',
    how: 'a provider whose credential is not stored',
  },
  PROVIDER_UNRESOLVED: {
    suite: 'test/unit/projection.test.ts',
    how: 'a model no provider derives from',
  },
  PROVIDER_AMBIGUOUS: {
    suite: 'test/unit/projection.test.ts',
    how: 'both anthropic credentials stored for a claude model',
  },
  PROVIDER_UNSUPPORTED_BY_ADAPTER: {
    suite: 'test/unit/projection.test.ts',
    how: 'an adapter that cannot drive the provider',
  },
  SECRET_UNREADABLE: {
    suite: 'test/unit/projection.test.ts',
    how: 'a ciphertext copied to another row',
  },
  SECRET_NOT_FOUND: {
    suite: 'test/e2e/projection.test.ts',
    how: 'deleting a secret that is not stored',
  },
  CONFIG_VERSION_MISMATCH: {
    suite: 'test/e2e/projection.test.ts',
    how: 'two Sets racing with one expected_config_version',
  },
  SECRETS_DISABLED: {
    suite: 'test/e2e/projection.test.ts',
    how: 'a server running with --secrets-keyring off',
  },
  STORE_UNSUPPORTED: {
    suite: 'test/unit/projection-use-cases.test.ts',
    how: 'use-cases composed without a projection store (the SQLite and etcd stores both have one)',
  },
  INTERNAL: {
    suite: 'test/unit/wire.test.ts',
    how: 'a handler throwing something that is not a VigilError',
  },
};

const REFUSAL_TABLES: readonly (readonly { readonly reason: ErrorReason }[])[] = [
  REGISTER_REFUSALS,
  URL_REFUSALS,
  HEARTBEAT_REFUSALS,
  CREATE_REFUSALS,
  GET_REFUSALS,
  LIST_WORKSPACES_REFUSALS,
  PAGED_LIST_WORKSPACES_REFUSALS,
  DELETE_REFUSALS,
  REMOVED_REFUSALS,
  WATCH_REFUSALS,
  LIST_TRANSITIONS_REFUSALS,
  RATE_LIMIT_REFUSALS,
  REGISTER_RATE_REFUSALS,
  EXACT_REFUSALS,
  CARD_ENDPOINT_REFUSALS,
  WATCH_CAP_REFUSALS,
];

describe('ErrorInfo reasons', () => {
  const refused = new Set([
    ...REFUSAL_TABLES.flat().map((row) => row.reason),
    ...authMatrixReasons(),
  ]);
  const excepted = Object.keys(NOT_FROM_A_CLIENT) as ErrorReason[];

  describe('when the refusal rows here and the auth matrix are taken together', () => {
    it('refuse with every reason in ERROR_REASONS but the few no client call can provoke', () => {
      expect(
        excepted.filter((reason) => refused.has(reason)),
        'listed as not provoked, yet some row provokes it',
      ).to.deep.equal([]);
      expect([...refused, ...excepted].sort()).to.deep.equal(Object.keys(ERROR_REASONS).sort());
    });

    it('leave out only reasons whose named suite asserts them', () => {
      const root = join(__dirname, '..', '..', '..');
      for (const [reason, { suite }] of Object.entries(NOT_FROM_A_CLIENT)) {
        const text = readFileSync(join(root, suite), 'utf8');
        expect(text, `${suite} asserts ${reason}`).to.include(`'${reason}'`);
      }
    });
  });
});
