import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { WatchStatusResponse } from '../../gen/vigil/v1/control_service.js';
import { WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { DEFAULT_TIMINGS } from '../../src/domain/config.js';
import { hashToken } from '../../src/domain/tokens.js';
import { artifactsDir, hasChromium, launchChromium, NO_CHROMIUM } from '../helpers/browser.js';
import { CLEAN_ENV } from '../helpers/cli-run.js';
import { createWorkspace } from '../helpers/e2e-fixtures.js';
import { CONTROL_TOKEN, startHarness, tempDir, type Harness } from '../helpers/harness.js';
import { vigil, freePort, type Proc } from '../helpers/processes.js';
import { openWatch, type WatchReader } from '../helpers/rpc.js';

/**
 * The console in a real browser (Debian's Chromium through playwright-core)
 * against a real server, with real `vigil sidecar` processes driving a
 * workspace through ONLINE → DEGRADED → ONLINE.
 */

const READ_TOKEN = 'vgc_console-browser-read';
/** How soon a committed transition must be on the page. */
const SHOWN_WITHIN_MS = 1_000;

describe('console in Chromium', function () {
  this.timeout(60_000);
  let browser: Browser | undefined;
  let h: Harness;
  let dataDir: string;
  let metricsPort: number;
  let context: BrowserContext;
  const procs: Proc[] = [];
  const watches: WatchReader[] = [];

  before(async function () {
    if (!hasChromium()) {
      console.log(NO_CHROMIUM);
      this.skip();
    }
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
  });

  const start = async () => {
    h = await startHarness({
      // One server even where the etcd pass runs several replicas: the console, its
      // counts and its stream quota are those of the process serving it, read right
      // after writes. (A harness without the option starts one anyway.)
      replicas: 1,
      dataDir,
      settings: {
        metricsListen: `127.0.0.1:${metricsPort}`,
        // The sidecars heartbeat twice a second.
        timings: { ...DEFAULT_TIMINGS, heartbeatIntervalMs: 500 },
        controlTokens: [
          { name: 'test', scope: 'admin', hash: hashToken(CONTROL_TOKEN) },
          { name: 'viewer', scope: 'read', hash: hashToken(READ_TOKEN) },
        ],
      },
    });
  };

  beforeEach(async () => {
    dataDir = tempDir();
    metricsPort = await freePort();
    await start();
    context = await browser!.newContext({ viewport: { width: 1400, height: 820 } });
  });

  afterEach(async function () {
    const title = (this.currentTest?.title ?? 'test').replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
    for (const page of context.pages()) {
      await page.screenshot({ path: join(artifactsDir(), `last-${title}.png`) }).catch(() => {});
    }
    await context.close();
    for (const w of watches.splice(0)) w.cancel();
    for (const p of procs.splice(0)) await p.kill('SIGKILL');
    await h.dispose();
  });

  const base = () => `http://127.0.0.1:${metricsPort}/`;

  async function signIn(page: Page, token: string): Promise<void> {
    await page.goto(base());
    await page.fill('#token', token);
    await page.click('#login-form button[type=submit]');
  }

  const countOf = (page: Page, status: string) =>
    page.textContent(`#counts [data-status="${status}"] .n`);

  async function waitForCount(page: Page, status: string, n: number): Promise<void> {
    // Expressions run in the page (this project's TypeScript has no DOM types outside web/).
    await page.waitForFunction(
      `document.querySelector('#counts [data-status="${status}"] .n')?.textContent === '${n}'`,
      undefined,
      { timeout: 10_000 },
    );
  }

  function sidecar(id: string, token: string, url: string): Proc {
    const tokenFile = join(dataDir, `${id}.token`);
    writeFileSync(tokenFile, `${token}\n`);
    const cardFile = join(dataDir, `${id}.card.json`);
    // The card's own endpoint stays one that resolves: cards follow the URL policy too, and
    // only the advertised URL is what this story breaks.
    writeFileSync(cardFile, JSON.stringify({ name: `${id}-agent`, url: 'http://127.0.0.1:8000' }));
    const proc = vigil(
      [
        'sidecar',
        '--json',
        '--workspace',
        id,
        '--token-file',
        tokenFile,
        '--url',
        url,
        '--card',
        cardFile,
        '--server',
        `127.0.0.1:${h.vigil.port}`,
      ],
      CLEAN_ENV,
    );
    procs.push(proc);
    return proc;
  }

  /**
   * Waits for the transition of `id` to `to` on a gRPC watch, then for the
   * page to show it; returns its seq. The page must show it within SHOWN_WITHIN_MS.
   */
  async function expectShown(
    page: Page,
    watch: WatchReader,
    id: string,
    to: WorkspaceStatus,
    toName: string,
  ): Promise<number> {
    const events = await watch.until(
      (e: WatchStatusResponse) =>
        e.event?.$case === 'transition' &&
        e.event.value.workspaceId === id &&
        e.event.value.toStatus === to,
      15_000,
    );
    const last = events.at(-1)?.event;
    const seq = last?.$case === 'transition' ? last.value.seq : 0;
    const committedAt = Date.now();
    await page.waitForSelector(`#feed li[data-seq="${seq}"][data-to="${toName}"]`, {
      timeout: 10_000,
    });
    const shownAfterMs = Date.now() - committedAt;
    expect(shownAfterMs, `#${seq} ${id} → ${toName} shown after ${shownAfterMs} ms`).to.be.below(
      SHOWN_WITHIN_MS,
    );
    return seq;
  }

  describe('when signed in with a read-scope token', () => {
    it('shows the counts and each transition of a real sidecar as it happens, recoveries distinctly, and the story', async () => {
      const page = await context.newPage();
      const requests: { url: string; authorization: string | undefined }[] = [];
      page.on('request', (r) => {
        requests.push({ url: r.url(), authorization: r.headers()['authorization'] });
      });
      const { token } = await createWorkspace(h, 'web-a');
      await createWorkspace(h, 'web-b');

      await signIn(page, READ_TOKEN);
      await page.waitForSelector('#stream-state[data-state="live"]');
      await waitForCount(page, 'PROVISIONING', 2);
      expect(await countOf(page, 'ONLINE')).to.equal('0');
      expect(await page.isVisible('#login')).to.equal(false);
      expect(await page.textContent('#who')).to.equal('viewer (read)');
      await page.waitForSelector('#rows tr[data-id="web-a"]');

      const watch = openWatch(h.clients.control, {}, CONTROL_TOKEN);
      watches.push(watch);
      await watch.next();

      // PROVISIONING → ONLINE: a sidecar registers.
      const first = sidecar('web-a', token, 'http://127.0.0.1:8000');
      const online = await expectShown(
        page,
        watch,
        'web-a',
        WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
        'ONLINE',
      );
      await waitForCount(page, 'ONLINE', 1);
      await waitForCount(page, 'PROVISIONING', 1);
      expect(await page.textContent('#rows tr[data-id="web-a"] .badge')).to.equal('ONLINE');
      expect(await page.getAttribute(`#feed li[data-seq="${online}"]`, 'data-reason')).to.equal(
        'REGISTERED',
      );

      // ONLINE → DEGRADED: it restarts advertising a host that does not resolve…
      await first.kill('SIGKILL');
      sidecar('web-a', token, 'http://web-a.unresolvable:8000');
      const degraded = await expectShown(
        page,
        watch,
        'web-a',
        WorkspaceStatus.WORKSPACE_STATUS_DEGRADED,
        'DEGRADED',
      );
      // … → ONLINE: and recovers on its first heartbeat.
      const recovered = await expectShown(
        page,
        watch,
        'web-a',
        WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
        'ONLINE',
      );
      const degradedItem = `#feed li[data-seq="${degraded}"]`;
      const recoveredItem = `#feed li[data-seq="${recovered}"]`;
      expect(await page.getAttribute(degradedItem, 'data-reason')).to.equal('REGISTER_FAILED');
      expect(await page.getAttribute(recoveredItem, 'data-reason')).to.equal('RECOVERED');
      expect(await page.getAttribute(recoveredItem, 'class')).to.equal('recovery');
      expect(await page.getAttribute(degradedItem, 'class')).to.not.equal('recovery');
      await waitForCount(page, 'ONLINE', 1);
      await waitForCount(page, 'DEGRADED', 0);
      await page.screenshot({ path: join(artifactsDir(), 'fleet.png') });

      // One workspace's story.
      await page.click('#rows tr[data-id="web-a"]');
      await page.waitForSelector('#detail:not([hidden])');
      await page.waitForFunction(
        "document.querySelectorAll('#detail-history li').length === 4",
        undefined,
        { timeout: 10_000 },
      );
      const history = await page.locator('#detail-history li').allTextContents();
      expect(
        history.map((text) => /(CREATED|REGISTERED|REGISTER_FAILED|RECOVERED)/.exec(text)?.[1]),
      ).to.deep.equal(['CREATED', 'REGISTERED', 'REGISTER_FAILED', 'RECOVERED']);
      const facts = await page.textContent('#detail-facts');
      expect(facts).to.include('Register-failure marker').and.include('none');
      expect(facts).to.include('Config version');
      expect(facts).to.match(/desired 0 \/ applied 0: nothing configured/);
      expect(await page.textContent('#detail-card')).to.include('web-a-agent');
      await page.screenshot({ path: join(artifactsDir(), 'detail.png') });

      // The token went only in the authorization header: no URL, cookie or local storage has it.
      const api = requests.filter((r) => r.url.includes('/api/'));
      expect(api.length).to.be.greaterThan(2);
      for (const r of api) expect(r.authorization, r.url).to.equal(`Bearer ${READ_TOKEN}`);
      for (const r of requests) expect(r.url).to.not.include(READ_TOKEN);
      expect(await context.cookies()).to.deep.equal([]);
      expect(await page.evaluate('localStorage.length')).to.equal(0);
      expect(page.url()).to.equal(base());
    });

    it('resumes after the last seq it saw: across a reload and across a server restart, with no gap', async () => {
      const page = await context.newPage();
      await createWorkspace(h, 'web-r');
      await signIn(page, READ_TOKEN);
      await page.waitForSelector('#stream-state[data-state="live"]');
      await waitForCount(page, 'PROVISIONING', 1);

      // Away from the page (the tab keeps its session storage) while a transition commits.
      await page.goto('about:blank');
      await createWorkspace(h, 'web-away');
      await page.goto(base());
      await page.waitForSelector('#feed li[data-id="web-away"][data-reason="CREATED"]');
      expect(await page.isVisible('#login')).to.equal(false);
      expect(await page.textContent('#feed')).to.include('resumed after #1');
      await waitForCount(page, 'PROVISIONING', 2);

      // A plain reload stays signed in.
      await page.reload();
      await page.waitForSelector('#stream-state[data-state="live"]');
      await waitForCount(page, 'PROVISIONING', 2);

      // The server goes away (a laptop asleep, a restart) and comes back with more history.
      await h.stop();
      await page.waitForSelector('#stream-state[data-state="reconnecting"]');
      await start();
      await createWorkspace(h, 'web-later');
      await createWorkspace(h, 'web-later-2');
      await page.waitForSelector('#feed li[data-id="web-later-2"][data-reason="CREATED"]', {
        timeout: 20_000,
      });
      await page.waitForSelector('#stream-state[data-state="live"]');
      await waitForCount(page, 'PROVISIONING', 4);
      const seqs: number[] = [];
      for (const item of await page.locator('#feed li[data-seq]').all()) {
        seqs.push(Number(await item.getAttribute('data-seq')));
      }
      // The reload started at the head (#2); everything after it, newest first, once each.
      expect(seqs, 'the feed').to.deep.equal([4, 3]);
    });
  });

  describe('without a valid token', () => {
    it('shows nothing but the login form, and refuses a wrong token', async () => {
      const page = await context.newPage();
      const apiRequests: string[] = [];
      page.on('request', (r) => {
        if (r.url().includes('/api/')) apiRequests.push(r.url());
      });
      await createWorkspace(h, 'web-secret');
      await page.goto(base());
      await page.waitForSelector('#login:not([hidden])');
      expect(await page.isVisible('#app')).to.equal(false);
      expect(apiRequests, 'no request without a token').to.deep.equal([]);

      await signIn(page, 'vgc_wrong-token');
      await page.waitForFunction(
        "(document.getElementById('login-error')?.textContent ?? '').includes('TOKEN_INVALID')",
        undefined,
        { timeout: 10_000 },
      );
      expect(await page.isVisible('#app')).to.equal(false);
      expect(await page.textContent('body')).to.not.include('web-secret');
      expect(await page.evaluate('sessionStorage.length')).to.equal(0);
      await page.screenshot({ path: join(artifactsDir(), 'login-refused.png') });
    });
  });
});
