import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  copyFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { killAll, sleep, watchForeignLoad } from './lib/children.js';
import {
  BUSY_CORES,
  describeError,
  makeTempDir,
  type BenchContext,
  type Scenario,
} from './lib/context.js';
import { failedRow, formatTable, formatTarget, type Row } from './lib/report.js';
import { formatSummary, summarizeProfileDir } from './profile-summary.js';
import { cluster } from './scenarios/cluster.js';
import { fleet } from './scenarios/fleet.js';
import { heartbeatThroughput } from './scenarios/heartbeat-throughput.js';
import { memory } from './scenarios/memory.js';
import { scale } from './scenarios/scale.js';
import { watchFanout } from './scenarios/watch-fanout.js';

/**
 * `npm run bench`: starts the real `vigil serve` and bare grpc-js baselines
 * as child processes on 127.0.0.1, drives them from load-worker processes,
 * prints one table of ratios and writes it as JSON. Not part of `npm test`.
 */

const SCENARIOS: readonly Scenario[] = [
  heartbeatThroughput,
  watchFanout,
  scale,
  fleet,
  memory,
  cluster,
];

const USAGE = `Usage: node dist/bench/run.js [--quick] [--only NAME[,NAME]] [--out FILE] [--keep-temp]
                             [--cpu-prof DIR]

  --quick       smoke run: shorter durations and smaller counts (labelled QUICK)
  --only NAME   run only these scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}
  --out FILE    where to write the JSON results (default: bench-results.json in the repo root)
  --keep-temp   keep the temporary data directories and server logs
  --quiet-wait S  before each measured window, wait up to S seconds for other
                processes to leave the CPU idle (default 60, quick 15; 0 = never wait)
  --no-snapshot run the live dist/ instead of a private copy taken at start
  --cpu-prof DIR  profiling mode (needs the heartbeat scenario): its Vigil server runs
                under node --cpu-prof writing into DIR; at the end the profile's
                HeartbeatStream window is summarised as CPU µs per heartbeat per
                category (also: node dist/bench/profile-summary.js DIR)`;

/** Set in the copy the bench runs from; it names the real repository. */
const SNAPSHOT_ENV = 'VIGIL_BENCH_REPO_ROOT';
const REPO_ROOT = process.env[SNAPSHOT_ENV] ?? join(__dirname, '..', '..');

/**
 * Copies the build (dist/src, dist/gen, dist/bench, gen/descriptors; the
 * node_modules linked) to a private directory and runs the bench from there,
 * so a rebuild of dist/ while the bench runs cannot mix two versions of the
 * server into one table. Forwards arguments, signals and the exit code.
 */
async function runFromSnapshot(args: readonly string[]): Promise<number> {
  const copy = mkdtempSync(join(tmpdir(), 'vigil-bench-build-'));
  try {
    for (const dir of [
      ['dist', 'src'],
      ['dist', 'gen'],
      ['dist', 'bench'],
      // The cluster scenario drives the cluster tests' kit (etcd members, replicas, sidecars).
      ['dist', 'test', 'helpers'],
      ['gen', 'descriptors'],
    ]) {
      cpSync(join(REPO_ROOT, ...dir), join(copy, ...dir), { recursive: true });
    }
    copyFileSync(join(REPO_ROOT, 'package.json'), join(copy, 'package.json'));
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(copy, 'node_modules'), 'dir');
    const child = spawn(process.execPath, [join(copy, 'dist', 'bench', 'run.js'), ...args], {
      stdio: 'inherit',
      env: { ...process.env, [SNAPSHOT_ENV]: REPO_ROOT },
    });
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    return await new Promise<number>((done) => {
      child.once('exit', (code, signal) => {
        done(code ?? (signal === null ? 1 : 128));
      });
    });
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}

/** The commit and whether the work tree differs from it (read-only git queries). */
function revision(): string {
  try {
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', REPO_ROOT, ...args], { encoding: 'utf8' }).trim();
    const dirty = git('status', '--porcelain', '--untracked-files=no') !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? ' (+ uncommitted changes)' : ''}`;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string' },
      'keep-temp': { type: 'boolean', default: false },
      'quiet-wait': { type: 'string' },
      'no-snapshot': { type: 'boolean', default: false },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (process.env[SNAPSHOT_ENV] === undefined && !values['no-snapshot']) {
    return runFromSnapshot(process.argv.slice(2));
  }
  const quick = values.quick;
  const only = values.only
    ?.split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const unknown = only?.filter((name) => !SCENARIOS.some((s) => s.name === name)) ?? [];
  if (unknown.length > 0) {
    process.stderr.write(`unknown scenario ${unknown.join(', ')}\n${USAGE}\n`);
    return 2;
  }
  const selected = SCENARIOS.filter((s) => !only || only.includes(s.name));
  const quietWaitMs = Number(values['quiet-wait'] ?? (quick ? 15 : 60)) * 1000;
  if (!Number.isFinite(quietWaitMs) || quietWaitMs < 0) {
    process.stderr.write(`--quiet-wait: not a number of seconds\n${USAGE}\n`);
    return 2;
  }
  const out =
    values.out === undefined ? join(REPO_ROOT, 'bench-results.json') : resolve(values.out);
  const cpuProfDir = values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof']);
  if (cpuProfDir !== undefined) {
    if (!selected.includes(heartbeatThroughput)) {
      process.stderr.write(`--cpu-prof profiles the heartbeat scenario: add it to --only\n`);
      return 2;
    }
    mkdirSync(cpuProfDir, { recursive: true });
  }

  const tmpRoot = mkdtempSync(join(tmpdir(), 'vigil-bench-'));
  const began = Date.now();
  const progress = (message: string) => {
    const seconds = ((Date.now() - began) / 1000).toFixed(1).padStart(6);
    process.stderr.write(`[bench ${seconds}s] ${message}\n`);
  };
  const foreignLoad: { window: string; cores: number }[] = [];
  const context: BenchContext = {
    quick,
    tmpRoot,
    controlToken: `vgc_${randomBytes(32).toString('base64url')}`,
    cpuProfDir,
    progress,
    tempDir: (name) => makeTempDir(tmpRoot, name),
    async awaitQuiet(before) {
      if (quietWaitMs === 0) return;
      const started = Date.now();
      let waiting = false;
      for (;;) {
        const load = watchForeignLoad();
        await sleep(1_000);
        const cores = load();
        if (cores <= BUSY_CORES) {
          if (waiting) progress(`quiet (${cores.toFixed(2)} cores used by others); resuming`);
          return;
        }
        if (Date.now() - started >= quietWaitMs) {
          progress(`still busy (${cores.toFixed(2)} cores used by others); measuring anyway`);
          return;
        }
        if (!waiting) {
          progress(
            `other processes are using ${cores.toFixed(2)} cores; waiting up to ${quietWaitMs / 1000} s before "${before}"`,
          );
          waiting = true;
        }
      }
    },
    recordForeignLoad(window, cores) {
      foreignLoad.push({ window, cores });
      if (cores > BUSY_CORES) {
        progress(`warning: other processes used ${cores.toFixed(2)} cores during "${window}"`);
      }
    },
  };
  const stopOnSignal = (signal: NodeJS.Signals) => {
    progress(`${signal}: stopping every child process`);
    void killAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);

  const idle = watchForeignLoad();
  await sleep(1_000);
  context.recordForeignLoad('before the bench (1 s idle)', idle());
  if (quick) progress('QUICK smoke run: reduced counts and durations; not the real targets');
  const built = revision();
  progress(
    `build ${built}${process.env[SNAPSHOT_ENV] === undefined ? '' : ` (private copy in ${join(__dirname, '..', '..')})`}`,
  );
  progress(`scenarios: ${selected.map((s) => s.name).join(', ')}; temp ${tmpRoot}`);
  const rows: Row[] = [];
  const details: Record<string, unknown> = {};
  let failures = 0;
  try {
    for (const scenario of selected) {
      progress(`== ${scenario.name}: ${scenario.title}`);
      const started = Date.now();
      try {
        const outcome = await scenario.run(context);
        rows.push(...outcome.rows);
        details[scenario.name] = { ...outcome.details, seconds: (Date.now() - started) / 1000 };
      } catch (error) {
        failures += 1;
        progress(`${scenario.name} failed: ${describeError(error)}`);
        rows.push(failedRow(scenario.name, describeError(error)));
        details[scenario.name] = { error: describeError(error) };
        await killAll();
      }
      progress(`== ${scenario.name} done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  } finally {
    await killAll();
    if (values['keep-temp'] || failures > 0) progress(`temporary files kept in ${tmpRoot}`);
    else rmSync(tmpRoot, { recursive: true, force: true });
  }

  const title = `${
    quick
      ? 'Vigil bench — QUICK smoke run (reduced counts and durations; targets are for the full run)'
      : 'Vigil bench — full run'
  }; build ${built}`;
  const missed = rows.filter((r) => r.pass === false);
  process.stdout.write(`\n${title}\n\n${formatTable(rows)}\n\n`);
  for (const r of rows) {
    if (r.note !== undefined) process.stdout.write(`  ${r.id}: ${r.note}\n`);
  }
  if (cpuProfDir !== undefined) {
    try {
      const summary = summarizeProfileDir(cpuProfDir);
      writeFileSync(join(cpuProfDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
      process.stdout.write(`\nCPU profile of the Vigil server (--cpu-prof ${cpuProfDir}):\n`);
      process.stdout.write(`${formatSummary(summary)}\n`);
      details['profile'] = summary;
    } catch (error) {
      process.stdout.write(`\nno profile summary: ${describeError(error)}\n`);
    }
  }
  const busy = foreignLoad.filter((l) => l.cores > BUSY_CORES);
  if (busy.length > 0) {
    process.stdout.write(
      `\nwarning: other processes were using the CPU during ${busy.length} of ${foreignLoad.length} measured windows (max ${Math.max(...busy.map((l) => l.cores)).toFixed(2)} cores of ${cpus().length}); those numbers are skewed: ${busy.map((l) => l.window).join('; ')}\n`,
    );
  }
  process.stdout.write(
    `\n${missed.length === 0 ? 'every target met' : `targets missed: ${missed.map((r) => `${r.id} (${formatTarget(r.target)})`).join('; ')}`}\n`,
  );

  const cpu = cpus();
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        tool: 'vigil bench',
        quick,
        startedAt: new Date(began).toISOString(),
        seconds: (Date.now() - began) / 1000,
        host: {
          cpus: cpu.length,
          cpuModel: cpu[0]?.model ?? 'unknown',
          memoryBytes: totalmem(),
          node: process.version,
          platform: `${process.platform} ${process.arch}`,
        },
        revision: built,
        scenarios: selected.map((s) => s.name),
        foreignLoad,
        rows: rows.map((r) => ({ ...r, target: r.target ? formatTarget(r.target) : null })),
        details,
      },
      (_key, value: unknown) => (value instanceof Float64Array ? undefined : value),
      2,
    )}\n`,
  );
  progress(`results written to ${out}`);
  return failures > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (error: unknown) => {
    process.stderr.write(`bench: ${describeError(error)}\n`);
    await killAll();
    process.exitCode = 1;
  },
);
