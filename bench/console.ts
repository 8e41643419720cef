import { mkdirSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { chromium, type Browser, type CDPSession, type Page } from 'playwright-core';
import { DEFAULT_SETTINGS, startVigil, type RunningVigil } from '../src/app.js';
import { DEFAULT_TIMINGS } from '../src/domain/config.js';
import { hashToken } from '../src/domain/tokens.js';
import { seedDatabase, type SeedFate } from './lib/seed.js';
import { round, summarize } from './lib/stats.js';

/**
 * The console's bench (`npm run bench:console`, not part of `npm test` or
 * `npm run bench`): a real Vigil on a SQLite database seeded with 100,000
 * workspaces, the real page in Debian's Chromium (playwright-core).
 *
 * - first screen: a fresh browser context (empty cache) opens `/` signed in,
 *   until the counts and the first table page are rendered, in the page's
 *   own clock (performance.now() since navigation start); several runs;
 * - the API reads behind it, timed from Node over loopback;
 * - 1,000 transitions/s: heartbeats flipping 2,000 workspaces between
 *   ONLINE and DEGRADED (ERROR_RATE_HIGH / RECOVERED) for 10 s while the page
 *   is open, applied through the runtime use-case in the server's process
 *   (the store, the hub and the console stream as in production; gRPC's own
 *   cost per heartbeat is what `npm run bench` measures); the page's frame gaps, long tasks and input latency meanwhile,
 *   and how far behind the commit head its feed ends.
 *
 * Options: --workspaces N (default 100000), --runs N (default 10),
 * --rate N (default 1000), --seconds N (default 10), --screenshot FILE.
 */

const CONTROL_TOKEN = 'vgc_console-bench';
const args = process.argv.slice(2);
const option = (name: string, fallback: number): number => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const WORKSPACES = option('workspaces', 100_000);
const RUNS = option('runs', 10);
const RATE = option('rate', 1_000);
const SECONDS = option('seconds', 10);
const screenshotAt = args.indexOf('--screenshot');
const SCREENSHOT = screenshotAt >= 0 ? args[screenshotAt + 1] : undefined;
const FLIPPERS = 2_000;

const id = (i: number) => `ws-${String(i).padStart(6, '0')}`;
const token = (i: number) => `vgw_console-bench-${i}`;
function fate(i: number): SeedFate {
  if (i < FLIPPERS) return 'online';
  const r = i % 100;
  if (r < 80) return 'online';
  if (r < 88) return 'degraded';
  if (r < 95) return 'provisioning';
  return 'removed';
}

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request(
      { host: '127.0.0.1', port, path, headers: { authorization: `Bearer ${CONTROL_TOKEN}` } },
      (response) => {
        response.resume();
        response.on('end', () => {
          if (response.statusCode !== 200) reject(new Error(`${path}: ${response.statusCode}`));
          else resolve(performance.now() - started);
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

async function openSignedIn(
  browser: Browser,
  base: string,
): Promise<{ page: Page; cdp: CDPSession }> {
  // bypassCSP: the bench's own probes are evaluated strings, which the page's CSP refuses.
  const context = await browser.newContext({
    viewport: { width: 1400, height: 820 },
    bypassCSP: true,
  });
  // Signed in already (the token in this tab's session storage), as after a login.
  await context.addInitScript(
    `sessionStorage.setItem('vigil.console.token', ${JSON.stringify(CONTROL_TOKEN)})`,
  );
  const page = await context.newPage();
  // Renderer metrics count from here: what the page itself costs until its first screen.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  await page.goto(base, { waitUntil: 'commit' });
  return { page, cdp };
}

/** Milliseconds from navigation start until the counts and a full first page are on screen. */
async function firstScreen(page: Page): Promise<number> {
  const handle = await page.waitForFunction(
    `(() => {
      const rows = document.querySelectorAll('#rows tr[data-id]').length;
      const online = document.querySelector('#counts [data-status="ONLINE"] .n')?.textContent;
      return rows >= 50 && online && online !== '0' ? performance.now() : 0;
    })()`,
    undefined,
    { polling: 'raf', timeout: 30_000 },
  );
  return Number(await handle.jsonValue());
}

/** When each part of the first screen arrived (ms since navigation start), to see where time goes. */
async function breakdown(page: Page): Promise<Record<string, number>> {
  return await page.evaluate<Record<string, number>>(`(() => {
    const out = {};
    const nav = performance.getEntriesByType('navigation')[0];
    out.html = nav.responseEnd;
    out.domContentLoaded = nav.domContentLoadedEventEnd;
    for (const e of performance.getEntriesByType('resource')) {
      const name = new URL(e.name).pathname.replace('/api/console/', '').replace('/console/', '');
      out[name] = Math.round(e.responseEnd * 10) / 10;
      out[name + '.start'] = Math.round(e.startTime * 10) / 10;
    }
    return out;
  })()`);
}

async function main(): Promise<void> {
  const dir = join(tmpdir(), `vigil-console-bench-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const report: Record<string, unknown> = { workspaces: WORKSPACES };
  // The machine's load when the bench started: the figures are only as quiet as it was.
  report['loadavg_at_start'] = (await import('node:os')).loadavg().map((v) => round(v, 2));
  let vigil: RunningVigil | undefined;
  let browser: Browser | undefined;
  try {
    const seeded = await seedDatabase({
      file: join(dir, 'vigil.db'),
      count: WORKSPACES,
      id,
      token,
      fate,
      card: (wsId) => ({ name: wsId, url: 'http://127.0.0.1:8000' }),
      url: 'http://127.0.0.1:8000',
    });
    console.log(`seeded ${WORKSPACES} workspaces in ${seeded.ms} ms`, seeded.counts);
    vigil = await startVigil(
      {
        ...DEFAULT_SETTINGS,
        listen: '127.0.0.1:0',
        metricsListen: '127.0.0.1:0',
        dataDir: dir,
        controlTokens: [{ name: 'bench', scope: 'read', hash: hashToken(CONTROL_TOKEN) }],
        // Nothing goes OFFLINE during the bench: the seeded fleet sends no heartbeats.
        timings: { ...DEFAULT_TIMINGS, offlineAfterMs: 3_600_000 },
        heartbeatRateLimit: undefined,
        synchronous: 'NORMAL',
      },
      { logger: pino({ level: 'silent' }) },
    );
    const port = vigil.metricsPort;
    if (port === undefined) throw new Error('the console is not served');
    const base = `http://127.0.0.1:${port}/`;

    // The API reads the first screen makes, timed from Node (warm).
    const api: Record<string, unknown> = {};
    for (const [name, path] of [
      ['overview', '/api/console/overview'],
      ['page', '/api/console/workspaces?page_size=50'],
      ['page_degraded', '/api/console/workspaces?page_size=50&status=DEGRADED'],
      ['page_failed_none', '/api/console/workspaces?page_size=50&status=FAILED'],
      ['page_prefix', '/api/console/workspaces?page_size=50&id_prefix=ws-0999'],
      ['page_last', `/api/console/workspaces?page_size=50&id_prefix=${id(WORKSPACES - 1)}`],
    ] as const) {
      const times: number[] = [];
      for (let i = 0; i < 30; i += 1) times.push(await get(port, path));
      const s = summarize(times);
      api[name] = { p50: round(s.p50, 1), p99: round(s.p99, 1), max: round(s.max, 1) };
    }
    report['api_ms'] = api;
    console.log('API (ms):', api);

    browser = await launch();
    const screens: number[] = [];
    const rendererMs: number[] = [];
    const scriptMs: number[] = [];
    const threadMs: number[] = [];
    for (let run = 0; run < RUNS; run += 1) {
      const { page, cdp } = await openSignedIn(browser, base);
      screens.push(await firstScreen(page));
      const { metrics } = await cdp.send('Performance.getMetrics');
      const m = Object.fromEntries(metrics.map((x) => [x.name, x.value]));
      rendererMs.push(1000 * (m['TaskDuration'] ?? NaN));
      scriptMs.push(1000 * (m['ScriptDuration'] ?? NaN));
      threadMs.push(1000 * (m['ThreadTime'] ?? NaN));
      if (run === RUNS - 1) report['first_screen_breakdown_ms'] = await breakdown(page);
      await page.context().close();
    }
    console.log('first screen breakdown (ms):', report['first_screen_breakdown_ms']);
    const fs = summarize(screens);
    report['first_screen_ms'] = {
      runs: RUNS,
      first: round(screens[0] ?? NaN, 1),
      p50: round(fs.p50, 1),
      max: round(fs.max, 1),
      all: screens.map((v) => round(v, 1)),
      // Until then, in the renderer: main-thread CPU time (what the page costs, whatever
      // else the machine runs), wall time inside tasks, and script time.
      renderer_thread_cpu_p50: round(summarize(threadMs).p50, 1),
      renderer_task_p50: round(summarize(rendererMs).p50, 1),
      renderer_script_p50: round(summarize(scriptMs).p50, 1),
    };
    console.log('first screen (ms):', report['first_screen_ms']);

    // 1,000 transitions/s with the page open.
    const { page, cdp } = await openSignedIn(browser, base);
    await firstScreen(page);
    await page.waitForSelector('#stream-state[data-state="live"]');
    const metric = async (): Promise<Record<string, number>> => {
      const { metrics } = await cdp.send('Performance.getMetrics');
      return Object.fromEntries(metrics.map((m) => [m.name, m.value]));
    };
    const before = await metric();
    const cpuBefore = process.cpuUsage();
    await page.evaluate(`(() => {
      const s = (window.__bench = { gaps: [], longTasks: [], last: performance.now() });
      const tick = (t) => { s.gaps.push(t - s.last); s.last = t; s.raf = requestAnimationFrame(tick); };
      s.raf = requestAnimationFrame(tick);
      new PerformanceObserver((list) => { for (const e of list.getEntries()) s.longTasks.push(e.duration); })
        .observe({ type: 'longtask' });
    })()`);
    const runtime = vigil.useCases.runtime;
    const report_ = (errorRate: number) => ({
      errorRate,
      sampleError: '',
      activeTasks: 0,
      uptimeSeconds: 1,
      currentTask: '',
      runtimeState: 'HEALTHY' as const,
      nativeStatusManagement: false,
    });
    const flipped = new Array<boolean>(FLIPPERS).fill(false);
    let sent = 0;
    let failed = 0;
    const inputLatency: number[] = [];
    const started = Date.now();
    const tickMs = 10;
    const perTick = Math.max(1, Math.round((RATE * tickMs) / 1000));
    // Each workspace has one heartbeat in flight at most; the next flip waits for its answer.
    const inFlight = new Array<boolean>(FLIPPERS).fill(false);
    let skipped = 0;
    const load = (async () => {
      let next = 0;
      for (let tick = 0; Date.now() - started < SECONDS * 1000; tick += 1) {
        const due = started + tick * tickMs;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        for (let k = 0; k < perTick; k += 1) {
          const i = next;
          next = (next + 1) % FLIPPERS;
          if (inFlight[i]) {
            skipped += 1;
            continue;
          }
          inFlight[i] = true;
          flipped[i] = !flipped[i];
          // A promise either way (answered at once or after its write).
          Promise.resolve()
            .then(() =>
              runtime.heartbeat(token(i), {
                workspaceId: id(i),
                agentCard: undefined,
                report: report_(flipped[i] ? 0.9 : 0),
              }),
            )
            .then(
              () => {
                sent += 1;
                inFlight[i] = false;
              },
              () => {
                failed += 1;
                inFlight[i] = false;
              },
            );
        }
      }
      while (inFlight.some(Boolean)) await new Promise((r) => setTimeout(r, 10));
    })();
    // Input latency meanwhile: a click on a count tile, until the page has handled it.
    const probe = (async () => {
      while (Date.now() - started < SECONDS * 1000) {
        await new Promise((r) => setTimeout(r, 500));
        const t = performance.now();
        await page.evaluate(
          `new Promise((resolve) => { const b = document.querySelector('#counts [data-status="FAILED"]'); b.click(); requestAnimationFrame(() => resolve(b.getAttribute('aria-pressed'))); })`,
        );
        inputLatency.push(performance.now() - t);
      }
    })();
    const PROFILE = args.includes('--profile');
    if (PROFILE) {
      await cdp.send('Profiler.enable');
      await cdp.send('Profiler.start');
    }
    await Promise.all([load, probe]);
    if (PROFILE) {
      const { profile } = (await cdp.send('Profiler.stop')) as {
        profile: {
          nodes: {
            id: number;
            hitCount?: number;
            callFrame: { functionName: string; url: string; lineNumber: number };
          }[];
        };
      };
      const byFunction = new Map<string, number>();
      let total = 0;
      for (const node of profile.nodes) {
        const hits = node.hitCount ?? 0;
        total += hits;
        const f = node.callFrame;
        const key = `${f.functionName || '(anonymous)'} ${f.url.split('/').pop() ?? ''}:${f.lineNumber}`;
        byFunction.set(key, (byFunction.get(key) ?? 0) + hits);
      }
      const top = [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, 15);
      console.log('renderer profile (share of samples):');
      for (const [key, hits] of top) console.log(`  ${round((100 * hits) / total, 1)}%  ${key}`);
    }
    const elapsed = (Date.now() - started) / 1000;
    const after = await metric();
    const cpu = process.cpuUsage(cpuBefore);
    const busy = (name: string) => round(((after[name] ?? 0) - (before[name] ?? 0)) / elapsed, 3);
    const overview = await fetch(`${base}api/console/overview`, {
      headers: { authorization: `Bearer ${CONTROL_TOKEN}` },
    });
    const head = ((await overview.json()) as { headSeq: number }).headSeq;
    const caughtUpFrom = performance.now();
    await page.waitForFunction(
      `document.getElementById('head').textContent.replace(/[^0-9]/g, '') === '${head}'`,
      undefined,
      { polling: 'raf', timeout: 30_000 },
    );
    const catchUpMs = performance.now() - caughtUpFrom;
    interface InPage {
      gaps: number[];
      longTasks: number[];
      heapMb: number | null;
      feed: number;
      nodes: number;
    }
    const inPage = await page.evaluate<InPage>(`(() => {
      const s = window.__bench; cancelAnimationFrame(s.raf);
      return { gaps: s.gaps, longTasks: s.longTasks,
        heapMb: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null,
        feed: document.querySelectorAll('#feed li').length,
        nodes: document.getElementsByTagName('*').length };
    })()`);
    if (SCREENSHOT) {
      // The filter the input probe toggled, back off, for a picture of the whole fleet.
      await page.evaluate(
        `document.querySelectorAll('#counts [aria-pressed="true"]').forEach((b) => b.click())`,
      );
      await page.waitForTimeout(1_500);
      await page.screenshot({ path: SCREENSHOT });
    }
    const gaps = summarize(inPage.gaps);
    const input = summarize(inputLatency);
    report['load'] = {
      heartbeats_per_s: round(sent / elapsed, 0),
      failed,
      skipped_in_flight: skipped,
      transitions_per_s: round(sent / elapsed, 0),
      frame_gap_ms: { p50: round(gaps.p50, 1), p99: round(gaps.p99, 1), max: round(gaps.max, 1) },
      long_tasks: {
        count: inPage.longTasks.length,
        max_ms: round(Math.max(0, ...inPage.longTasks), 1),
      },
      input_latency_ms: { p50: round(input.p50, 1), max: round(input.max, 1) },
      feed_caught_up_after_ms: round(catchUpMs, 1),
      // Renderer main-thread CPU seconds per second of load (contention does not inflate it),
      // the renderer process's CPU, then wall time inside tasks, script, layout and style.
      renderer_thread_cpu_s_per_s: busy('ThreadTime'),
      renderer_process_cpu_s_per_s: busy('ProcessTime'),
      renderer_task_s_per_s: busy('TaskDuration'),
      renderer_script_s_per_s: busy('ScriptDuration'),
      renderer_layout_s_per_s: busy('LayoutDuration'),
      renderer_style_s_per_s: busy('RecalcStyleDuration'),
      server_and_load_cpu_s_per_s: round((cpu.user + cpu.system) / 1e6 / elapsed, 3),
      js_heap_mb: inPage.heapMb === null ? null : round(inPage.heapMb, 1),
      feed_items: inPage.feed,
      dom_nodes: inPage.nodes,
    };
    console.log('1,000 transitions/s:', report['load']);
    report['loadavg_at_end'] = (await import('node:os')).loadavg().map((v) => round(v, 2));
    console.log(JSON.stringify(report));
  } finally {
    await browser?.close();
    await vigil?.stop(1_000);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
