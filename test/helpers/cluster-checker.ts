import type {
  CommitEvent,
  HistoryEvent,
  LeaseEvent,
  OpEvent,
  WatchEndEvent,
  WatchEvent,
} from './history.js';

/**
 * The five properties of CLUSTER.md, checked over a recorded history:
 *
 * - `workspace-order`: per workspace, seq rises and each transition's `from`
 *   is the previous one's `to`;
 * - `acknowledged-once`: every acknowledged transition appears exactly once,
 *   an indeterminate one at most once, a failed one never;
 * - `streams-agree`: the seq → transition map is the same on every replica,
 *   and every stream is gapless and duplicate-free from its cursor across
 *   reconnects (and all streams end at the same head);
 * - `no-false-offline`: no OFFLINE while a heartbeat of the workspace,
 *   acknowledged before the OFFLINE was decided, was sent less than
 *   offline_after − margin before it (the
 *   OFFLINE's time is when the replica decided it, from its `at` and the
 *   history's clock event, else when it was first seen);
 * - `fenced-commits`: no owner or leader transition (every reason but the
 *   control plane's CREATED and DELETED) committed by a replica outside the
 *   lifetime of a lease it held (after it lost its lease).
 */
export type Property =
  'workspace-order' | 'acknowledged-once' | 'streams-agree' | 'no-false-offline' | 'fenced-commits';

export const PROPERTIES: readonly Property[] = [
  'workspace-order',
  'acknowledged-once',
  'streams-agree',
  'no-false-offline',
  'fenced-commits',
];

export interface Violation {
  readonly property: Property;
  readonly detail: string;
}

export interface CheckOptions {
  readonly offlineAfterMs: number;
  /** Slack for scheduling and observation delays; default 1,000 ms. */
  readonly marginMs?: number;
}

export interface CheckResult {
  readonly valid: boolean;
  readonly violations: readonly Violation[];
  /** Violations per property (0 for a property that held). */
  readonly counts: Readonly<Record<Property, number>>;
  /** Figures for the report. */
  readonly stats: {
    readonly transitions: number;
    readonly observers: number;
    readonly offline: number;
    readonly falseOffline: number;
    readonly acknowledgedHeartbeats: number;
  };
}

interface Seen {
  readonly ws: string;
  readonly from: string | null;
  readonly to: string;
  readonly reason: string;
  readonly at: number | undefined;
  /** Earliest time any observer saw it. */
  firstSeen: number;
  readonly observer: string;
}

const MAX_DETAILS_PER_PROPERTY = 20;

/** Transitions a control RPC commits on any replica: not fenced on ownership or leadership. */
const CONTROL_PLANE_REASONS = new Set(['CREATED', 'DELETED']);

function sameTransition(a: Seen, b: WatchEvent): boolean {
  return (
    a.ws === b.ws &&
    (a.from ?? null) === (b.from ?? null) &&
    a.to === b.to &&
    a.reason === b.reason &&
    (a.at === undefined || b.at === undefined || a.at === b.at)
  );
}

/** Checks a history against the five properties; every violation is named by its property. */
export function checkHistory(events: readonly HistoryEvent[], options: CheckOptions): CheckResult {
  const margin = options.marginMs ?? 1_000;
  const violations: Violation[] = [];
  const counts: Record<Property, number> = {
    'workspace-order': 0,
    'acknowledged-once': 0,
    'streams-agree': 0,
    'no-false-offline': 0,
    'fenced-commits': 0,
  };
  const violate = (property: Property, detail: string) => {
    counts[property] += 1;
    if (counts[property] <= MAX_DETAILS_PER_PROPERTY) violations.push({ property, detail });
  };

  const watch = events.filter((e): e is WatchEvent => e.kind === 'watch');
  const ends = events.filter((e): e is WatchEndEvent => e.kind === 'watch-end');
  const ops = events.filter((e): e is OpEvent => e.kind === 'op');
  const commits = events.filter((e): e is CommitEvent => e.kind === 'commit');
  const leases = events.filter((e): e is LeaseEvent => e.kind === 'lease');

  // streams-agree: each observer's frames in the order they arrived.
  const byObserver = new Map<string, WatchEvent[]>();
  for (const e of watch) {
    const list = byObserver.get(e.observer) ?? [];
    list.push(e);
    byObserver.set(e.observer, list);
  }
  const map = new Map<number, Seen>();
  for (const [observer, frames] of byObserver) {
    let cursor: number | undefined;
    const delivered = new Set<number>();
    for (const frame of frames) {
      switch (frame.frame) {
        case 'open':
          if (cursor !== undefined && frame.seq !== cursor) {
            violate(
              'streams-agree',
              `${observer} reopened after seq ${frame.seq} but had reached ${cursor}`,
            );
          }
          if (frame.seq > 0) cursor = frame.seq;
          break;
        case 'snapshot-end':
        case 'reset':
          cursor = frame.seq;
          break;
        case 'progress':
          if (cursor !== undefined && frame.seq !== cursor) {
            violate(
              'streams-agree',
              frame.seq > cursor
                ? `${observer}: progress ${frame.seq} skipped seqs ${cursor + 1}..${frame.seq}`
                : `${observer}: progress ${frame.seq} went back from ${cursor}`,
            );
          }
          cursor = Math.max(cursor ?? frame.seq, frame.seq);
          break;
        case 'transition': {
          if (delivered.has(frame.seq)) {
            violate('streams-agree', `${observer} delivered seq ${frame.seq} twice`);
          } else if (cursor !== undefined && frame.seq !== cursor + 1) {
            violate(
              'streams-agree',
              frame.seq > cursor + 1
                ? `${observer}: gap, seq ${frame.seq} after ${cursor}`
                : `${observer}: seq ${frame.seq} after ${cursor} (out of order)`,
            );
          }
          delivered.add(frame.seq);
          cursor = Math.max(cursor ?? frame.seq, frame.seq);
          const known = map.get(frame.seq);
          if (!known) {
            map.set(frame.seq, {
              ws: frame.ws ?? '',
              from: frame.from ?? null,
              to: frame.to ?? '',
              reason: frame.reason ?? '',
              at: frame.at,
              firstSeen: frame.t,
              observer,
            });
          } else if (!sameTransition(known, frame)) {
            violate(
              'streams-agree',
              `seq ${frame.seq}: ${known.observer} saw ${known.ws} ${known.from ?? '∅'}→${known.to} (${known.reason}), ${observer} saw ${frame.ws ?? ''} ${frame.from ?? '∅'}→${frame.to ?? ''} (${frame.reason ?? ''})`,
            );
          } else {
            known.firstSeen = Math.min(known.firstSeen, frame.t);
          }
          break;
        }
        case 'error':
          break;
      }
    }
  }
  const heads = new Set(ends.map((e) => e.seq));
  if (heads.size > 1) {
    violate(
      'streams-agree',
      `streams ended at different heads: ${ends.map((e) => `${e.observer}=${e.seq}`).join(', ')}`,
    );
  }

  // workspace-order, over the merged map.
  const seqs = [...map.keys()].sort((a, b) => a - b);
  const lastOf = new Map<string, { seq: number; to: string }>();
  for (const seq of seqs) {
    const t = map.get(seq);
    if (!t) continue;
    const last = lastOf.get(t.ws);
    if (last) {
      if (t.from !== last.to) {
        violate(
          'workspace-order',
          `${t.ws}: seq ${seq} is ${t.from ?? '∅'}→${t.to} but seq ${last.seq} left it ${last.to}`,
        );
      }
    } else if (t.from === null && t.reason !== 'CREATED') {
      violate('workspace-order', `${t.ws}: seq ${seq} starts from nothing but is ${t.reason}`);
    }
    lastOf.set(t.ws, { seq, to: t.to });
  }
  // A CREATED transition must be the workspace's first.
  const created = new Map<string, number>();
  for (const seq of seqs) {
    const t = map.get(seq);
    if (!t) continue;
    if (t.reason === 'CREATED') {
      if (created.has(t.ws)) {
        violate('workspace-order', `${t.ws} created twice (seq ${created.get(t.ws)} and ${seq})`);
      }
      created.set(t.ws, seq);
    }
  }

  // acknowledged-once: per expected (ws, to, reason), ok ≤ committed ≤ ok + info.
  const outcome = new Map<string, OpEvent>();
  for (const op of ops) if (op.type !== 'invoke') outcome.set(op.op, op);
  const expected = new Map<string, { ok: number; info: number; fail: number }>();
  const keyOf = (ws: string, to: string, reason: string) => `${ws}|${to}|${reason}`;
  for (const op of ops) {
    if (op.type !== 'invoke' || !op.expect) continue;
    const key = keyOf(op.expect.ws, op.expect.to, op.expect.reason);
    const tally = expected.get(key) ?? { ok: 0, info: 0, fail: 0 };
    const end = outcome.get(op.op)?.type ?? 'info';
    if (end === 'ok') tally.ok += 1;
    else if (end === 'fail') tally.fail += 1;
    else tally.info += 1;
    expected.set(key, tally);
  }
  if (expected.size > 0) {
    const committed = new Map<string, number>();
    for (const t of map.values()) {
      const key = keyOf(t.ws, t.to, t.reason);
      committed.set(key, (committed.get(key) ?? 0) + 1);
    }
    for (const [key, tally] of expected) {
      const n = committed.get(key) ?? 0;
      if (n < tally.ok) {
        violate('acknowledged-once', `${key}: acknowledged ${tally.ok}× but committed ${n}×`);
      } else if (n > tally.ok + tally.info) {
        violate(
          'acknowledged-once',
          `${key}: committed ${n}× for ${tally.ok} acknowledged + ${tally.info} indeterminate (${tally.fail} failed)`,
        );
      }
    }
  }

  // no-false-offline: acknowledged heartbeats per workspace, [sent, acknowledged].
  const invokedAt = new Map<string, number>();
  for (const op of ops) if (op.type === 'invoke') invokedAt.set(op.op, op.t);
  const acks = new Map<string, { sent: number; ok: number }[]>();
  let acknowledgedHeartbeats = 0;
  for (const op of ops) {
    if (op.type !== 'ok' || op.f !== 'heartbeat') continue;
    const sent = invokedAt.get(op.op);
    if (sent === undefined) continue;
    acknowledgedHeartbeats += 1;
    const list = acks.get(op.ws) ?? [];
    list.push({ sent, ok: op.t });
    acks.set(op.ws, list);
  }
  let offline = 0;
  let falseOffline = 0;
  const threshold = options.offlineAfterMs - margin;
  const clock = events.find((e) => e.kind === 'clock');
  for (const [seq, t] of map) {
    if (t.to !== 'OFFLINE') continue;
    offline += 1;
    const decidedAt =
      clock && t.at !== undefined ? Math.min(t.firstSeen, t.at - clock.wallMinusMono) : t.firstSeen;
    // A heartbeat acknowledged before the decision was seen by the server between its
    // sending and its acknowledgement: if it was sent less than offline_after − margin
    // before the decision, the workspace was certainly not silent that long.
    let latest: number | undefined;
    for (const a of acks.get(t.ws) ?? []) {
      if (a.ok <= decidedAt && (latest === undefined || a.sent > latest)) latest = a.sent;
    }
    if (latest !== undefined && decidedAt - latest < threshold) {
      falseOffline += 1;
      violate(
        'no-false-offline',
        `${t.ws}: OFFLINE at seq ${seq} decided ${Math.round(decidedAt - latest)} ms after an acknowledged heartbeat was sent (offline_after ${options.offlineAfterMs} ms)`,
      );
    }
  }

  // fenced-commits: each commit inside a lease lifetime of its replica.
  if (commits.length > 0) {
    const lifetimes = new Map<string, LeaseEvent[]>();
    for (const l of leases) {
      const list = lifetimes.get(l.replica) ?? [];
      list.push(l);
      lifetimes.set(l.replica, list);
    }
    for (const c of commits) {
      if (CONTROL_PLANE_REASONS.has(c.reason)) continue;
      const held = (lifetimes.get(c.by) ?? []).some(
        (l) => c.revision > l.from && (l.to === undefined || c.revision < l.to),
      );
      if (!held) {
        violate(
          'fenced-commits',
          `seq ${c.seq} (${c.reason}) committed by ${c.by} at revision ${c.revision}, outside every lease it held (${(lifetimes.get(c.by) ?? []).map((l) => `${l.from}..${l.to ?? '∞'}`).join(', ')})`,
        );
      }
    }
  }

  return {
    valid: violations.length === 0,
    violations,
    counts,
    stats: {
      transitions: map.size,
      observers: byObserver.size,
      offline,
      falseOffline,
      acknowledgedHeartbeats,
    },
  };
}

/** A short text of the violations, for assertion messages. */
export function describeViolations(result: CheckResult): string {
  return result.violations.map((v) => `[${v.property}] ${v.detail}`).join('\n');
}
