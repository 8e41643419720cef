import {
  ApiError,
  STATUSES,
  getJson,
  readEvents,
  session,
  type Marker,
  type ProjectionVersions,
  type Overview,
  type Status,
  type StreamEvent,
  type Transition,
  type TransitionPage,
  type Workspace,
  type WorkspacePage,
} from './api.js';

/**
 * The Vigil console: counts per status, a paged table of workspaces, a live
 * transition feed and one workspace's story. Plain DOM: the view is a few
 * fixed regions updated in place, which needs no framework.
 *
 * Rendering is coalesced: stream events only update state and queue; at most
 * every RENDER_MS one animation frame renders whatever arrived since the last
 * (counts, the rows on this page, at most FEED_SIZE feed entries), so a
 * thousand transitions a second cost ten small DOM updates a second.
 */

const PAGE_SIZE = 50;
/** Arrivals are rendered together at most this often: ten renders a second, however many arrive. */
const RENDER_MS = 100;
const FEED_SIZE = 200;
/**
 * Feed entries drawn per render: more arriving than this in a tenth of a second
 * is more than anyone can read, so the older ones are summed up in one line.
 */
const FEED_PER_RENDER = 40;
/** Counts and the visible page are re-read this often (last heartbeat, error rate), while visible. */
const REFRESH_MS = 5_000;
/** A page that transitions may have changed is re-read at most this often. */
const STALE_PAGE_MS = 1_000;
const CURSOR_KEY = 'vigil.console.cursor';

function $(id: string): HTMLElement;
function $<T extends HTMLElement>(id: string, type: new () => T): T;
function $(id: string, type: new () => HTMLElement = HTMLElement): HTMLElement {
  const element = document.getElementById(id);
  if (!(element instanceof type)) throw new Error(`#${id} is missing`);
  return element;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { className?: string; text?: string; title?: string } = {},
  children: (Node | string)[] = [],
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (props.className) node.className = props.className;
  if (props.text !== undefined) node.textContent = props.text;
  if (props.title) node.title = props.title;
  node.append(...children);
  return node;
}

interface State {
  /** Server time minus local time, so relative times follow the server's clock. */
  clockOffset: number;
  counts: Record<Status, number>;
  /** The counts include every transition up to this seq. */
  countsSeq: number;
  /** Transitions received after countsSeq: replayed onto fresher counts. */
  received: Transition[];
  /** The last seq the stream delivered (the resume point). */
  cursor: number;
  progressIntervalMs: number;
  statuses: Set<Status>;
  prefix: string;
  /** Page tokens of the pages visited: tokens[i] opens page i. */
  tokens: string[];
  page: number;
  nextToken: string;
  rows: Map<string, { workspace: Workspace; row: HTMLTableRowElement }>;
  selected: string | undefined;
  historyToken: string;
  /** Arrived, not yet rendered. */
  pending: Transition[];
  notes: string[];
  pageStaleSince: number | undefined;
  frame: number | undefined;
  stop: AbortController | undefined;
}

const state: State = {
  clockOffset: 0,
  counts: Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<Status, number>,
  countsSeq: 0,
  received: [],
  cursor: 0,
  progressIntervalMs: 15_000,
  statuses: new Set(),
  prefix: '',
  tokens: [''],
  page: 0,
  nextToken: '',
  rows: new Map(),
  selected: undefined,
  historyToken: '',
  pending: [],
  notes: [],
  pageStaleSince: undefined,
  frame: undefined,
  stop: undefined,
};

// ---- formatting

const now = (): number => Date.now() + state.clockOffset;

function ago(t: number | undefined): string {
  if (t === undefined) return '—';
  const s = Math.max(0, Math.round((now() - t) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

const iso = (t: number | undefined): string => (t === undefined ? '' : new Date(t).toISOString());
const pad = (n: number): string => String(n).padStart(2, '0');
/** HH:MM:SS local time (by hand: Intl formatting costs more than the rest of a feed entry). */
function clock(t: number): string {
  const d = new Date(t);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function relTime(t: number | undefined): HTMLElement {
  const span = el('span', { text: ago(t), title: iso(t) });
  if (t !== undefined) span.dataset['t'] = String(t);
  return span;
}

function badge(status: Status | null): HTMLElement {
  const span = el('span', { className: 'badge', text: status ?? '∅' });
  if (status) span.dataset['status'] = status;
  return span;
}

/** Recoveries stand out: back ONLINE from DEGRADED, or the RECOVERED reason. */
const isRecovery = (t: Transition): boolean =>
  (t.from === 'DEGRADED' && t.to === 'ONLINE') || t.reason === 'RECOVERED';

// ---- login

function showLogin(message = ''): void {
  state.stop?.abort();
  state.stop = undefined;
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('token', HTMLInputElement).value = '';
  $('token', HTMLInputElement).focus();
}

function signOut(message = ''): void {
  session.clear();
  sessionStorage.removeItem(CURSOR_KEY);
  showLogin(message);
}

function refusal(error: unknown): string {
  return error instanceof ApiError
    ? `Refused: ${error.reason} — ${error.message}`
    : `Vigil did not answer: ${String(error)}`;
}

async function signIn(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const input = $('token', HTMLInputElement);
  const token = input.value.trim();
  input.value = '';
  try {
    const overview = await getJson<Overview>('overview', token);
    session.setToken(token);
    sessionStorage.removeItem(CURSOR_KEY);
    start(overview);
  } catch (error) {
    showLogin(refusal(error));
  }
}

// ---- the fleet view

function start(overview: Overview, firstPage?: Promise<WorkspacePage>): void {
  $('login').hidden = true;
  $('app').hidden = false;
  $('who').textContent = `${overview.principal.name} (${overview.principal.scope})`;
  state.stop?.abort();
  state.stop = new AbortController();
  state.progressIntervalMs = overview.progressIntervalMs;
  applyOverview(overview);
  const saved = Number(sessionStorage.getItem(CURSOR_KEY) ?? '0');
  // A reload resumes after the last seq this tab saw: what happened meanwhile is in the feed.
  state.cursor = saved > 0 && saved <= overview.headSeq ? saved : overview.headSeq;
  if (state.cursor < overview.headSeq) note(`resumed after #${state.cursor}`);
  sessionStorage.setItem(CURSOR_KEY, String(state.cursor));
  renderCounts();
  void loadPage(firstPage);
  void streamLoop(state.stop.signal);
}

function applyOverview(overview: Overview): void {
  state.clockOffset = overview.serverTime - Date.now();
  state.counts = { ...overview.counts };
  state.countsSeq = overview.headSeq;
  state.received = state.received.filter((t) => t.seq > overview.headSeq);
  for (const t of state.received) countTransition(t);
  renderCounts();
}

function countTransition(t: Transition): void {
  if (t.from) state.counts[t.from] -= 1;
  state.counts[t.to] += 1;
}

function renderCounts(): void {
  const box = $('counts');
  if (box.childElementCount === 0) {
    for (const status of STATUSES) {
      const tile = el('button', {}, [
        el('span', { className: 'n', text: '0' }),
        el('span', { className: 'label', text: status }),
      ]);
      tile.type = 'button';
      tile.dataset['status'] = status;
      tile.style.setProperty('--c', `var(--${status})`);
      tile.addEventListener('click', () => {
        if (state.statuses.has(status)) state.statuses.delete(status);
        else state.statuses.add(status);
        firstPage();
      });
      box.append(tile);
    }
  }
  for (const tile of box.children) {
    const status = (tile as HTMLElement).dataset['status'] as Status;
    const n = tile.querySelector('.n');
    const text = state.counts[status].toLocaleString('en-US');
    if (n && n.textContent !== text) n.textContent = text;
    tile.setAttribute('aria-pressed', String(state.statuses.has(status)));
  }
  $('head').textContent = `seq ${state.cursor.toLocaleString('en-US')}`;
}

function firstPage(): void {
  state.tokens = [''];
  state.page = 0;
  renderCounts();
  void loadPage();
}

function pageQuery(token: string): string {
  const query = new URLSearchParams({ page_size: String(PAGE_SIZE) });
  for (const s of state.statuses) query.append('status', s);
  if (state.prefix !== '') query.set('id_prefix', state.prefix);
  if (token !== '') query.set('page_token', token);
  return query.toString();
}

let pageRequest = 0;
/** Reads the current page (or takes the one already asked for) and renders it. */
async function loadPage(already?: Promise<WorkspacePage>): Promise<void> {
  const ticket = (pageRequest += 1);
  state.pageStaleSince = undefined;
  try {
    const page = await (already ??
      getJson<WorkspacePage>(`workspaces?${pageQuery(state.tokens[state.page] ?? '')}`));
    if (ticket !== pageRequest) return;
    state.nextToken = page.nextPageToken;
    renderPage(page.workspaces);
  } catch (error) {
    handleFailure(error);
  }
}

function renderPage(workspaces: Workspace[]): void {
  const body = $('rows');
  const rows = new Map<string, { workspace: Workspace; row: HTMLTableRowElement }>();
  const fragment = document.createDocumentFragment();
  for (const workspace of workspaces) {
    const row = document.createElement('tr');
    row.dataset['id'] = workspace.id;
    fillRow(row, workspace);
    rows.set(workspace.id, { workspace, row });
    fragment.append(row);
  }
  body.replaceChildren(fragment);
  state.rows = rows;
  if (workspaces.length === 0) {
    body.append(el('tr', {}, [el('td', { text: 'No workspaces match.' })]));
  }
  const filter = [...state.statuses].join(', ') || 'every status but REMOVED';
  $('filter-label').textContent =
    `Showing ${filter}${state.prefix ? `, ids ${state.prefix}…` : ''}`;
  $('page-label').textContent = `page ${state.page + 1}`;
  $('prev', HTMLButtonElement).disabled = state.page === 0;
  $('next', HTMLButtonElement).disabled = state.nextToken === '';
}

function fillRow(row: HTMLTableRowElement, w: Workspace): void {
  row.replaceChildren(
    el('td', { className: 'ws', text: w.id, title: w.name }),
    el('td', {}, [badge(w.status)]),
    el('td', {}, [relTime(w.statusChangedAt)]),
    el('td', {}, [relTime(w.lastHeartbeatAt)]),
    el('td', { text: `${(w.errorRate * 100).toFixed(1)}%` }),
    el('td', { text: w.url || '—', title: w.url }),
  );
  row.classList.toggle('left-filter', !matchesFilter(w.id, w.status));
}

function matchesFilter(id: string, status: Status): boolean {
  const statusOk = state.statuses.size > 0 ? state.statuses.has(status) : status !== 'REMOVED';
  return statusOk && id.startsWith(state.prefix);
}

// ---- live stream

async function streamLoop(signal: AbortSignal): Promise<void> {
  let backoffMs = 250;
  let first = true;
  const aborted = () => signal.aborted;
  while (!aborted()) {
    const attempt = { opened: false };
    try {
      await readEvents(state.cursor, onEvent, signal, 2 * state.progressIntervalMs + 5_000, () => {
        attempt.opened = true;
        backoffMs = 250;
        setStreamState('live');
        // After a gap the counts and the page may have moved: read them again.
        if (!first) void refresh();
        first = false;
      });
    } catch (error) {
      if (error instanceof ApiError && error.unauthenticated) {
        signOut(refusal(error));
        return;
      }
      if (error instanceof ApiError && error.reason === 'CURSOR_AHEAD') {
        // The server's history is behind this tab's (a new database): start at its head.
        note('the server has no history past this tab’s cursor; starting at its head');
        state.cursor = 0;
      }
    }
    if (aborted()) return;
    setStreamState('reconnecting');
    if (!attempt.opened) backoffMs = Math.min(backoffMs * 2, 10_000);
    await wake(Math.random() * backoffMs, signal);
  }
}

/** Waits `ms`, or less when the network comes back or the tab becomes visible. */
function wake(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      window.removeEventListener('online', done);
      document.removeEventListener('visibilitychange', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    window.addEventListener('online', done);
    document.addEventListener('visibilitychange', done);
    signal.addEventListener('abort', done);
  });
}

function setStreamState(value: 'live' | 'reconnecting'): void {
  const badgeEl = $('stream-state');
  badgeEl.dataset['state'] = value;
  badgeEl.textContent = value;
}

function onEvent(event: StreamEvent): void {
  switch (event.type) {
    case 'transition': {
      const t = event.transition;
      state.cursor = t.seq;
      if (t.seq > state.countsSeq) {
        countTransition(t);
        state.received.push(t);
        // Bounded: past this many, fresher counts replace the replay.
        if (state.received.length > 20_000) void refresh();
      }
      state.pending.push(t);
      break;
    }
    case 'progress':
      state.cursor = Math.max(state.cursor, event.seq);
      break;
    case 'reset':
      state.cursor = event.seq;
      state.pending = [];
      note('history before this point was compacted: view reloaded');
      void refresh();
      break;
  }
  schedule();
}

function note(text: string): void {
  state.notes.push(text);
  schedule();
}

let lastFlush = 0;
/** At most one render per RENDER_MS, in an animation frame. */
function schedule(): void {
  if (state.frame !== undefined) return;
  const wait = Math.max(0, lastFlush + RENDER_MS - performance.now());
  state.frame = window.setTimeout(() => {
    requestAnimationFrame(flush);
  }, wait);
}

/** Renders everything that arrived since the last frame. */
function flush(): void {
  state.frame = undefined;
  lastFlush = performance.now();
  const batch = state.pending;
  state.pending = [];
  sessionStorage.setItem(CURSOR_KEY, String(state.cursor));
  renderCounts();

  // The visible rows: the last transition of each wins.
  const latest = new Map<string, Transition>();
  for (const t of batch) latest.set(t.workspaceId, t);
  for (const [id, t] of latest) {
    const shown = state.rows.get(id);
    if (shown) {
      const workspace = { ...shown.workspace, status: t.to, statusChangedAt: t.at };
      shown.workspace = workspace;
      fillRow(shown.row, workspace);
    }
    // Entering or leaving the filter reorders the page: re-read it soon.
    if (!shown && matchesFilter(id, t.to)) state.pageStaleSince ??= Date.now();
    if (shown && !matchesFilter(id, t.to)) state.pageStaleSince ??= Date.now();
  }

  // The feed: only what can stay visible is built.
  const feed = $('feed');
  const fragment = document.createDocumentFragment();
  for (const text of state.notes) fragment.prepend(el('li', { className: 'note', text }));
  state.notes = [];
  const drawn = batch.slice(-FEED_PER_RENDER);
  for (const t of drawn) fragment.prepend(feedItem(t));
  const skipped = batch.slice(0, batch.length - drawn.length);
  const firstSkipped = skipped[0];
  const lastSkipped = skipped.at(-1);
  if (firstSkipped && lastSkipped) {
    const recoveries = skipped.filter(isRecovery).length;
    fragment.append(
      el('li', {
        className: 'note',
        text: `… ${skipped.length} more, #${firstSkipped.seq}–#${lastSkipped.seq} (${recoveries} recoveries): too fast to list; each workspace's story has them`,
      }),
    );
  }
  feed.prepend(fragment);
  while (feed.childElementCount > FEED_SIZE) feed.lastElementChild?.remove();

  // The open story.
  if (state.selected !== undefined) {
    const history = $('detail-history');
    for (const t of batch) {
      if (t.workspaceId === state.selected) history.append(historyItem(t));
    }
    const last = latest.get(state.selected);
    if (last) void openDetail(state.selected, false);
  }
}

function transitionParts(t: Transition): (Node | string)[] {
  return [
    el('span', { className: 'seq', text: `#${t.seq}` }),
    el('span', { className: 'time', text: clock(t.at), title: iso(t.at) }),
    badge(t.from),
    '→',
    badge(t.to),
    el('span', { className: 'reason', text: t.reason, title: t.detail }),
  ];
}

function feedItem(t: Transition): HTMLLIElement {
  const id = el('span', { className: 'ws', text: t.workspaceId });
  const parts = transitionParts(t);
  parts.splice(2, 0, id);
  const li = el('li', isRecovery(t) ? { className: 'recovery' } : {}, parts);
  li.dataset['seq'] = String(t.seq);
  li.dataset['id'] = t.workspaceId;
  li.dataset['from'] = t.from ?? '';
  li.dataset['to'] = t.to;
  li.dataset['reason'] = t.reason;
  return li;
}

function historyItem(t: Transition): HTMLLIElement {
  const li = el('li', isRecovery(t) ? { className: 'recovery' } : {}, transitionParts(t));
  li.dataset['seq'] = String(t.seq);
  return li;
}

let refreshing = false;
/** Re-reads the counts and the visible page. */
async function refresh(): Promise<void> {
  if (refreshing) return;
  refreshing = true;
  try {
    const [overview] = await Promise.all([getJson<Overview>('overview'), loadPage()]);
    applyOverview(overview);
  } catch (error) {
    handleFailure(error);
  } finally {
    refreshing = false;
  }
}

function handleFailure(error: unknown): void {
  if (error instanceof ApiError && error.unauthenticated) signOut(refusal(error));
}

// ---- one workspace's story

async function openDetail(id: string, fresh: boolean): Promise<void> {
  const panel = $('detail');
  try {
    const { workspace, marker, projection } = await getJson<{
      workspace: Workspace;
      marker: Marker | null;
      projection: ProjectionVersions | null;
    }>(`workspaces/${encodeURIComponent(id)}`);
    if (fresh) {
      state.selected = id;
      state.historyToken = '';
      $('detail-history').replaceChildren();
      await loadHistory(id);
    }
    if (state.selected !== id) return;
    $('detail-title').textContent = `${workspace.name} (${workspace.id})`;
    renderFacts(workspace, marker, projection);
    $('detail-card').textContent = workspace.agentCard
      ? JSON.stringify(workspace.agentCard, null, 2)
      : 'no card stored';
    panel.hidden = false;
  } catch (error) {
    handleFailure(error);
  }
}

async function loadHistory(id: string): Promise<void> {
  const query = new URLSearchParams({ page_size: '100' });
  if (state.historyToken !== '') query.set('page_token', state.historyToken);
  const page = await getJson<TransitionPage>(
    `workspaces/${encodeURIComponent(id)}/transitions?${query.toString()}`,
  );
  if (state.selected !== id) return;
  const history = $('detail-history');
  const seen = new Set([...history.children].map((li) => (li as HTMLElement).dataset['seq']));
  for (const t of page.transitions) {
    if (!seen.has(String(t.seq))) history.append(historyItem(t));
  }
  state.historyToken = page.nextPageToken;
  $('detail-more').hidden = page.nextPageToken === '';
}

/** Desired vs applied config version, and what the difference means for the runtime. */
function configVersionText(p: ProjectionVersions | null): string {
  if (p === null) return 'no runtime projection on this Vigil';
  const versions = `desired ${p.configVersion} / applied ${p.appliedConfigVersion}`;
  if (!p.ready) return `${versions}: the projection fails (see vigil projection explain)`;
  if (p.configVersion === 0) return `${versions}: nothing configured (the generic default)`;
  if (p.appliedConfigVersion === p.configVersion) return `${versions}: in sync`;
  return `${versions}: the runtime has not applied the latest version yet`;
}

function renderFacts(w: Workspace, marker: Marker | null, p: ProjectionVersions | null): void {
  const facts: [string, Node | string][] = [
    ['Status', badge(w.status)],
    ['Since', relTime(w.statusChangedAt)],
    ['Last heartbeat', relTime(w.lastHeartbeatAt)],
    ['Error rate', `${(w.errorRate * 100).toFixed(1)}%`],
    ['Active tasks', String(w.activeTasks)],
    ['Current task', w.currentTask || '—'],
    ['Runtime state', w.runtimeState],
    ['Sample error', w.sampleError || '—'],
    ['URL', w.url || '—'],
    ['Registered', relTime(w.lastRegisteredAt)],
    [
      'Register-failure marker',
      marker
        ? `${marker.active ? 'active' : 'expired'}: set ${iso(marker.setAt)}, ${marker.active ? 'expires' : 'expired'} ${iso(marker.expiresAt)}`
        : 'none',
    ],
    ['Config version', configVersionText(p)],
    ['Created', iso(w.createdAt)],
  ];
  $('detail-facts').replaceChildren(
    ...facts.flatMap(([term, value]) => [el('dt', { text: term }), el('dd', {}, [value])]),
  );
}

// ---- wiring

function wire(): void {
  $('login-form', HTMLFormElement).addEventListener('submit', (event) => void signIn(event));
  $('logout').addEventListener('click', () => {
    signOut();
  });
  $('prev').addEventListener('click', () => {
    if (state.page === 0) return;
    state.page -= 1;
    void loadPage();
  });
  $('next').addEventListener('click', () => {
    if (state.nextToken === '') return;
    state.tokens[state.page + 1] = state.nextToken;
    state.page += 1;
    void loadPage();
  });
  let typing: number | undefined;
  $('prefix', HTMLInputElement).addEventListener('input', (event) => {
    clearTimeout(typing);
    typing = window.setTimeout(() => {
      state.prefix = (event.target as HTMLInputElement).value.trim().toLowerCase();
      firstPage();
    }, 200);
  });
  $('feed').addEventListener('click', (event) => {
    const item = (event.target as HTMLElement).closest('li');
    const id = item?.dataset['id'];
    if (id && (event.target as HTMLElement).classList.contains('ws')) void openDetail(id, true);
  });
  $('rows').addEventListener('click', (event) => {
    const row = (event.target as HTMLElement).closest('tr');
    const id = row?.dataset['id'];
    if (id) void openDetail(id, true);
  });
  $('detail-close').addEventListener('click', () => {
    state.selected = undefined;
    $('detail').hidden = true;
  });
  $('detail-more').addEventListener('click', () => {
    if (state.selected) void loadHistory(state.selected).catch(handleFailure);
  });
  // Relative times tick; a stale page is re-read; counts and heartbeats refresh.
  setInterval(() => {
    for (const span of document.querySelectorAll<HTMLElement>('[data-t]')) {
      span.textContent = ago(Number(span.dataset['t']));
    }
    const stale = state.pageStaleSince;
    if (stale !== undefined && Date.now() - stale >= STALE_PAGE_MS && !$('app').hidden) {
      void loadPage();
    }
  }, 1_000);
  setInterval(() => {
    if (document.visibilityState === 'visible' && !$('app').hidden && session.token()) {
      void refresh();
    }
  }, REFRESH_MS);
}

async function boot(): Promise<void> {
  wire();
  if (!session.token()) {
    showLogin();
    return;
  }
  // The first page is read beside the overview: the first screen waits for one round trip.
  const firstPage = getJson<WorkspacePage>(`workspaces?${pageQuery('')}`);
  firstPage.catch(() => undefined);
  try {
    start(await getJson<Overview>('overview'), firstPage);
  } catch (error) {
    if (error instanceof ApiError && error.unauthenticated) signOut(refusal(error));
    else showLogin(refusal(error));
  }
}

void boot();
