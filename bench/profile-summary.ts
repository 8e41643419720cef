import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';

/**
 * Summarises a V8 .cpuprofile of the Vigil server (written by
 * `node dist/bench/run.js --only heartbeat --cpu-prof DIR`): the self time of
 * every sample is attributed to a category by the function name and script
 * URL of its frame (native frames and generic Node internals take the
 * category of the nearest caller that has one), restricted to the measured
 * HeartbeatStream window recorded in DIR/window.json, and divided by the
 * heartbeats the server received in that window: CPU µs per heartbeat per
 * category.
 *
 * Usage: node dist/bench/profile-summary.js DIR|FILE.cpuprofile
 *          [--window FILE] [--whole] [--heartbeats N] [--top N] [--json]
 */

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** What the bench records next to the profile (see scenarios/heartbeat-throughput.ts). */
export interface ProfileWindow {
  readonly what?: string;
  readonly pid?: number;
  /** CLOCK_MONOTONIC µs, the clock of .cpuprofile timestamps. */
  readonly startUs: number;
  readonly endUs: number;
  /** Δ vigil_heartbeats_received_total over the window. */
  readonly heartbeats?: number | null;
  /** Heartbeats acknowledged to the load workers in the window. */
  readonly acked?: number;
  readonly sqlStatements?: number | null;
  /** The server's CPU over the window from /proc (every thread). */
  readonly serverCpuMs?: number;
}

export const CATEGORIES = [
  'HTTP/2 framing & grpc-js',
  'protobuf decode/encode',
  'agent card (validation, Struct)',
  'rate limiter',
  'liveness tracker',
  'token auth / hashing',
  'SQL (better-sqlite3 + storage/)',
  'GC',
  'Vigil, other src/',
  'other',
  '(program): native, no JS frame',
  'idle',
] as const;

export type Category = (typeof CATEGORIES)[number];

/**
 * Generic Node internals: their time belongs to whoever called them (an
 * `emit` from grpc-js is grpc-js work, a Buffer copy in a decoder is decoding).
 */
const NEUTRAL_NODE_PREFIXES = [
  'node:events',
  'node:buffer',
  'node:internal/buffer',
  'node:internal/streams',
  'node:stream',
  'node:internal/util',
  'node:internal/validators',
  'node:internal/errors',
  'node:internal/async_hooks',
  'node:internal/process/task_queues',
  'node:internal/timers',
  'node:timers',
  'node:internal/fixed_queue',
  'node:internal/priority_queue',
  'node:internal/linkedlist',
  'node:internal/encoding',
  'node:util',
];

const TRANSPORT_NODE_PREFIXES = [
  'node:internal/http2',
  'node:http2',
  'node:net',
  'node:internal/net',
  'node:internal/stream_base_commons',
  'node:internal/js_stream_socket',
];

/** The category of one frame, or 'neutral' when its caller decides. */
export function classifyFrame(
  frame: Pick<CallFrame, 'functionName' | 'url'>,
): Category | 'neutral' {
  const { functionName: name, url } = frame;
  switch (name) {
    case '(garbage collector)':
      return 'GC';
    case '(idle)':
      return 'idle';
    case '(program)':
      return '(program): native, no JS frame';
    case '(root)':
      return 'other';
    default:
      break;
  }
  if (url === '') return 'neutral';
  if (url.includes('/domain/liveness-tracker')) return 'liveness tracker';
  if (url.includes('/domain/agent-card') || url.includes('/gen/google/protobuf/struct')) {
    return 'agent card (validation, Struct)';
  }
  if (url.includes('/domain/rate-limiter')) return 'rate limiter';
  if (
    url.includes('/domain/tokens') ||
    url.startsWith('node:internal/crypto') ||
    url.startsWith('node:crypto') ||
    name === 'resolveWorkspaceToken'
  ) {
    return 'token auth / hashing';
  }
  if (url.includes('/better-sqlite3/') || (url.includes('/src/storage/') && !isDependency(url))) {
    return 'SQL (better-sqlite3 + storage/)';
  }
  if (url.includes('/@bufbuild/protobuf/') || (url.includes('/gen/') && !isDependency(url))) {
    return 'protobuf decode/encode';
  }
  if (url.includes('/@grpc/grpc-js/') || TRANSPORT_NODE_PREFIXES.some((p) => url.startsWith(p))) {
    return 'HTTP/2 framing & grpc-js';
  }
  if (url.startsWith('node:')) {
    return NEUTRAL_NODE_PREFIXES.some((p) => url.startsWith(p)) ? 'neutral' : 'other';
  }
  if (url.includes('/src/') && !isDependency(url)) return 'Vigil, other src/';
  return 'other';
}

function isDependency(url: string): boolean {
  return url.includes('/node_modules/');
}

export interface FunctionTime {
  readonly name: string;
  readonly where: string;
  readonly category: Category;
  readonly selfUs: number;
}

export interface ProfileSummary {
  readonly file: string;
  readonly window: { readonly startUs: number; readonly endUs: number } | undefined;
  readonly windowMs: number;
  readonly samples: number;
  readonly heartbeats: number | undefined;
  readonly heartbeatsSource: string;
  readonly selfUs: Readonly<Record<Category, number>>;
  /** Everything but idle, µs. */
  readonly cpuUs: number;
  readonly serverCpuMs: number | undefined;
  readonly sqlStatements: number | undefined;
  readonly top: readonly FunctionTime[];
}

export function summarizeProfile(
  file: string,
  options: {
    window?: ProfileWindow | undefined;
    whole?: boolean;
    heartbeats?: number | undefined;
    top?: number;
  } = {},
): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const parent = new Map<number, number>();
  const byId = new Map<number, ProfileNode>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const categoryOf = new Map<number, Category>();
  const categorize = (id: number): Category => {
    const known = categoryOf.get(id);
    if (known !== undefined) return known;
    let category: Category = 'other';
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const node = byId.get(at);
      if (!node) break;
      const own = classifyFrame(node.callFrame);
      if (own !== 'neutral') {
        category = own;
        break;
      }
    }
    categoryOf.set(id, category);
    return category;
  };

  const window = options.whole ? undefined : options.window;
  const from = window?.startUs ?? Number.NEGATIVE_INFINITY;
  const to = window?.endUs ?? Number.POSITIVE_INFINITY;
  const selfUs = Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as Record<Category, number>;
  const perNode = new Map<number, number>();
  let samples = 0;
  // Sample i stands for the time until sample i + 1 (the last: until endTime).
  const stamps: number[] = [];
  let t = profile.startTime;
  for (const delta of profile.timeDeltas) {
    t += delta;
    stamps.push(t);
  }
  for (let i = 0; i < profile.samples.length; i += 1) {
    const at = stamps[i] ?? profile.endTime;
    if (at < from || at >= to) continue;
    const id = profile.samples[i] ?? 0;
    const next = i + 1 < stamps.length ? (stamps[i + 1] ?? at) : profile.endTime;
    const duration = Math.max(0, Math.min(next, to) - at);
    selfUs[categorize(id)] += duration;
    perNode.set(id, (perNode.get(id) ?? 0) + duration);
    samples += 1;
  }

  // Self time per function (nodes of the same function and script merged).
  const functions = new Map<string, FunctionTime>();
  for (const [id, us] of perNode) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url === '' ? '(native)' : `${shortUrl(url)}:${lineNumber + 1}`;
    const name = functionName === '' ? '(anonymous)' : functionName;
    const key = `${name} ${where} ${categorize(id)}`;
    const prior = functions.get(key);
    functions.set(key, {
      name,
      where,
      category: categorize(id),
      selfUs: (prior?.selfUs ?? 0) + us,
    });
  }
  const top = [...functions.values()]
    .filter((f) => f.category !== 'idle')
    .sort((a, b) => b.selfUs - a.selfUs)
    .slice(0, options.top ?? 20);

  const heartbeats = options.heartbeats ?? window?.heartbeats ?? undefined;
  const acked = window?.acked;
  const counted = heartbeats ?? acked;
  const windowMs =
    ((window ? window.endUs : profile.endTime) - (window ? window.startUs : profile.startTime)) /
    1000;
  return {
    file,
    window: window ? { startUs: window.startUs, endUs: window.endUs } : undefined,
    windowMs,
    samples,
    heartbeats: counted,
    heartbeatsSource:
      options.heartbeats !== undefined
        ? '--heartbeats'
        : heartbeats !== undefined
          ? 'vigil_heartbeats_received_total over the window'
          : acked !== undefined
            ? 'heartbeats acked to the load workers in the window'
            : 'unknown',
    selfUs,
    cpuUs: CATEGORIES.filter((c) => c !== 'idle').reduce((n, c) => n + selfUs[c], 0),
    serverCpuMs: window?.serverCpuMs,
    sqlStatements: window?.sqlStatements ?? undefined,
    top,
  };
}

function shortUrl(url: string): string {
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) return url.slice(modules + '/node_modules/'.length);
  const dist = url.lastIndexOf('/dist/');
  if (dist >= 0) return url.slice(dist + '/dist/'.length);
  return url.replace(/^file:\/\//, '');
}

/** Finds the profile of `pid` in `dir` (or the newest one there). */
export function findProfile(dir: string, pid?: number): string {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f));
  const own = pid === undefined ? [] : files.filter((f) => basename(f).includes(`.${pid}.`));
  const candidates = own.length > 0 ? own : files;
  const newest = candidates.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (newest === undefined) throw new Error(`no .cpuprofile in ${dir}`);
  return newest;
}

export function readWindow(file: string): ProfileWindow | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ProfileWindow;
  } catch {
    return undefined;
  }
}

/** The summary of the profile in `dir` over the window recorded there. */
export function summarizeProfileDir(dir: string): ProfileSummary {
  const window = readWindow(join(dir, 'window.json'));
  return summarizeProfile(findProfile(dir, window?.pid), { window });
}

export function formatSummary(summary: ProfileSummary): string {
  const n = summary.heartbeats;
  const perHb = (us: number) => (n === undefined || n === 0 ? '?' : (us / n).toFixed(2));
  const ms = (us: number) => (us / 1000).toFixed(1);
  const share = (us: number) =>
    summary.cpuUs === 0 ? '-' : `${((us / summary.cpuUs) * 100).toFixed(1)}%`;
  const lines: string[] = [];
  lines.push(`profile ${summary.file}`);
  lines.push(
    summary.window
      ? `window: the measured HeartbeatStream window, ${(summary.windowMs / 1000).toFixed(2)} s, ${summary.samples} samples`
      : `window: the whole profile, ${(summary.windowMs / 1000).toFixed(2)} s, ${summary.samples} samples`,
  );
  lines.push(
    `heartbeats: ${n === undefined ? '?' : n.toLocaleString('en-US')} (${summary.heartbeatsSource})${summary.sqlStatements === undefined ? '' : `; SQL statements ${summary.sqlStatements}`}`,
  );
  lines.push('');
  const width = Math.max(...CATEGORIES.map((c) => c.length), 'total CPU (all but idle)'.length);
  lines.push(
    `${'category'.padEnd(width)}  ${'self ms'.padStart(9)}  ${'µs/heartbeat'.padStart(12)}  ${'of CPU'.padStart(7)}`,
  );
  for (const category of CATEGORIES) {
    if (category === 'idle') continue;
    const us = summary.selfUs[category];
    lines.push(
      `${category.padEnd(width)}  ${ms(us).padStart(9)}  ${perHb(us).padStart(12)}  ${share(us).padStart(7)}`,
    );
  }
  lines.push(
    `${'total CPU (all but idle)'.padEnd(width)}  ${ms(summary.cpuUs).padStart(9)}  ${perHb(summary.cpuUs).padStart(12)}  ${'100%'.padStart(7)}`,
  );
  lines.push(
    `${'idle'.padEnd(width)}  ${ms(summary.selfUs.idle).padStart(9)}  ${perHb(summary.selfUs.idle).padStart(12)}`,
  );
  if (summary.serverCpuMs !== undefined) {
    lines.push(
      `server process CPU over the window from /proc (every thread): ${summary.serverCpuMs.toFixed(0)} ms = ${perHb(summary.serverCpuMs * 1000)} µs/heartbeat; the profile samples the main thread only`,
    );
  }
  lines.push('');
  lines.push('top functions by self time:');
  for (const f of summary.top) {
    lines.push(
      `  ${ms(f.selfUs).padStart(8)} ms  ${perHb(f.selfUs).padStart(7)} µs/hb  ${f.name} ${f.where}  [${f.category}]`,
    );
  }
  return lines.join('\n');
}

function main(): number {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      window: { type: 'string' },
      whole: { type: 'boolean', default: false },
      heartbeats: { type: 'string' },
      top: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const target = positionals[0];
  if (values.help || target === undefined) {
    process.stdout.write(
      'Usage: node dist/bench/profile-summary.js DIR|FILE.cpuprofile [--window FILE] [--whole] [--heartbeats N] [--top N] [--json]\n',
    );
    return target === undefined && !values.help ? 2 : 0;
  }
  const isDir = statSync(target).isDirectory();
  const window = readWindow(
    values.window ?? join(isDir ? target : join(target, '..'), 'window.json'),
  );
  const file = isDir ? findProfile(target, window?.pid) : target;
  const summary = summarizeProfile(file, {
    window,
    whole: values.whole,
    heartbeats: values.heartbeats === undefined ? undefined : Number(values.heartbeats),
    top: values.top === undefined ? 20 : Number(values.top),
  });
  process.stdout.write(
    values.json ? `${JSON.stringify(summary, null, 2)}\n` : `${formatSummary(summary)}\n`,
  );
  return 0;
}

if (require.main === module) process.exitCode = main();
