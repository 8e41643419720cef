import { expect } from 'chai';
import { checkHistory, PROPERTIES, type Property } from '../helpers/cluster-checker.js';
import type { HistoryEvent, OpEvent, WatchEvent } from '../helpers/history.js';

/**
 * A small valid history: two workspaces created and registered, ws-b goes
 * OFFLINE 6 s after its last acknowledged heartbeat (offline_after 4 s), two
 * replicas' streams agree, every commit inside r1's lease.
 */
interface Spec {
  transitions: { seq: number; ws: string; from: string | null; to: string; reason: string }[];
  /** Observers and the seqs each one is missing. */
  missing: Record<string, number[]>;
  extraOps: OpEvent[];
  lastHeartbeatB: number;
  leases: { replica: string; from: number; to?: number }[];
}

function baseSpec(): Spec {
  return {
    transitions: [
      { seq: 1, ws: 'ws-a', from: null, to: 'PROVISIONING', reason: 'CREATED' },
      { seq: 2, ws: 'ws-a', from: 'PROVISIONING', to: 'ONLINE', reason: 'REGISTERED' },
      { seq: 3, ws: 'ws-b', from: null, to: 'PROVISIONING', reason: 'CREATED' },
      { seq: 4, ws: 'ws-b', from: 'PROVISIONING', to: 'ONLINE', reason: 'REGISTERED' },
      { seq: 5, ws: 'ws-b', from: 'ONLINE', to: 'OFFLINE', reason: 'HEARTBEAT_TIMEOUT' },
    ],
    missing: { 'watch-r1': [], 'watch-r2': [] },
    extraOps: [],
    lastHeartbeatB: 2_000,
    leases: [{ replica: 'r1', from: 5 }],
  };
}

function op(
  type: OpEvent['type'],
  id: string,
  f: OpEvent['f'],
  ws: string,
  t: number,
  expect?: OpEvent['expect'],
): OpEvent {
  return { kind: 'op', type, op: id, f, ws, target: 'r1', t, ...(expect ? { expect } : {}) };
}

function build(spec: Spec): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  for (const ws of ['ws-a', 'ws-b']) {
    events.push(
      op('invoke', `c-${ws}`, 'create', ws, 0, { ws, to: 'PROVISIONING', reason: 'CREATED' }),
    );
    events.push(op('ok', `c-${ws}`, 'create', ws, 10));
    events.push(
      op('invoke', `r-${ws}`, 'register', ws, 20, { ws, to: 'ONLINE', reason: 'REGISTERED' }),
    );
    events.push(op('ok', `r-${ws}`, 'register', ws, 30));
  }
  for (let t = 100; t <= 10_000; t += 1_000) {
    events.push(
      op('invoke', `hb-a-${t}`, 'heartbeat', 'ws-a', t),
      op('ok', `hb-a-${t}`, 'heartbeat', 'ws-a', t + 5),
    );
    if (t <= spec.lastHeartbeatB) {
      events.push(
        op('invoke', `hb-b-${t}`, 'heartbeat', 'ws-b', t),
        op('ok', `hb-b-${t}`, 'heartbeat', 'ws-b', t + 5),
      );
    }
  }
  events.push(...spec.extraOps);
  for (const [observer, missing] of Object.entries(spec.missing)) {
    const replica = observer.slice('watch-'.length);
    events.push({ kind: 'watch', observer, replica, frame: 'open', seq: 0, t: 1 });
    events.push({ kind: 'watch', observer, replica, frame: 'progress', seq: 0, t: 2 });
    for (const tr of spec.transitions) {
      if (missing.includes(tr.seq)) continue;
      const t = tr.to === 'OFFLINE' ? 8_000 : tr.seq * 10 + 5;
      const frame: WatchEvent = {
        kind: 'watch',
        observer,
        replica,
        frame: 'transition',
        t,
        ...tr,
        at: tr.seq * 1000,
      };
      events.push(frame);
    }
    events.push({ kind: 'watch-end', observer, seq: 5, t: 11_000 });
  }
  for (const tr of spec.transitions) {
    events.push({ kind: 'commit', seq: tr.seq, by: 'r1', revision: 9 + tr.seq, reason: tr.reason });
  }
  for (const l of spec.leases) events.push({ kind: 'lease', ...l });
  return events;
}

const options = { offlineAfterMs: 4_000, marginMs: 1_000 };

function failing(events: HistoryEvent[]): Property[] {
  const result = checkHistory(events, options);
  return PROPERTIES.filter((p) => result.counts[p] > 0);
}

describe('cluster checker (test helper)', () => {
  describe('when the history is valid', () => {
    it('reports no violation and counts what it saw', () => {
      const result = checkHistory(build(baseSpec()), options);
      expect(result.violations).to.deep.equal([]);
      expect(result.valid).to.equal(true);
      expect(result.stats).to.include({
        transitions: 5,
        observers: 2,
        offline: 1,
        falseOffline: 0,
      });
    });
  });

  describe('when a replica without a lease committed a control-plane transition', () => {
    it('does not count it against fenced-commits (only owner and leader work is fenced)', () => {
      const spec = baseSpec();
      spec.leases = [{ replica: 'r1', from: 12 }];
      const history = build(spec).filter((e) => !(e.kind === 'commit' && e.seq >= 3));
      expect(failing(history)).to.deep.equal(['fenced-commits']);
      expect(failing(history.filter((e) => !(e.kind === 'commit' && e.seq === 2)))).to.deep.equal(
        [],
      );
    });
  });

  describe('when a history violates exactly one property', () => {
    it('names workspace-order for a transition whose from is not the previous to', () => {
      const spec = baseSpec();
      spec.transitions[3] = {
        seq: 4,
        ws: 'ws-b',
        from: 'OFFLINE',
        to: 'ONLINE',
        reason: 'REGISTERED',
      };
      expect(failing(build(spec))).to.deep.equal(['workspace-order']);
    });

    it('names acknowledged-once for an acknowledged transition that never committed', () => {
      const spec = baseSpec();
      const expectRemoved = { ws: 'ws-a', to: 'REMOVED', reason: 'DELETED' };
      spec.extraOps.push(
        op('invoke', 'd-a', 'delete', 'ws-a', 9_000, expectRemoved),
        op('ok', 'd-a', 'delete', 'ws-a', 9_010),
      );
      expect(failing(build(spec))).to.deep.equal(['acknowledged-once']);
    });

    it('names acknowledged-once for a failed call whose transition committed', () => {
      const spec = baseSpec();
      const history = build(spec).map((e) =>
        e.kind === 'op' && e.op === 'r-ws-a' && e.type === 'ok'
          ? { ...e, type: 'fail' as const }
          : e,
      );
      expect(failing(history)).to.deep.equal(['acknowledged-once']);
    });

    it('accepts an indeterminate call committed at most once', () => {
      const spec = baseSpec();
      const history = build(spec).filter(
        (e) => !(e.kind === 'op' && e.op === 'r-ws-a' && e.type === 'ok'),
      );
      expect(failing(history)).to.deep.equal([]);
    });

    it("names streams-agree for a gap in one replica's stream", () => {
      const spec = baseSpec();
      spec.missing['watch-r2'] = [3];
      expect(failing(build(spec))).to.deep.equal(['streams-agree']);
    });

    it('names streams-agree for a duplicate delivery after a reconnect', () => {
      const history = build(baseSpec());
      history.push(
        { kind: 'watch', observer: 'watch-r1', replica: 'r1', frame: 'open', seq: 5, t: 10_500 },
        {
          kind: 'watch',
          observer: 'watch-r1',
          replica: 'r1',
          frame: 'transition',
          seq: 5,
          ws: 'ws-b',
          from: 'ONLINE',
          to: 'OFFLINE',
          reason: 'HEARTBEAT_TIMEOUT',
          at: 5_000,
          t: 10_600,
        },
      );
      expect(failing(history)).to.deep.equal(['streams-agree']);
    });

    it('names streams-agree when two replicas disagree on one seq', () => {
      const history = build(baseSpec()).map((e) =>
        e.kind === 'watch' && e.observer === 'watch-r2' && e.seq === 2 && e.frame === 'transition'
          ? { ...e, at: 1 }
          : e,
      );
      expect(failing(history)).to.deep.equal(['streams-agree']);
    });

    it('names no-false-offline for an OFFLINE 500 ms after an acknowledged heartbeat', () => {
      const spec = baseSpec();
      spec.lastHeartbeatB = 7_500;
      const result = checkHistory(build(spec), options);
      expect(PROPERTIES.filter((p) => result.counts[p] > 0)).to.deep.equal(['no-false-offline']);
      expect(result.stats.falseOffline).to.equal(1);
    });

    it('judges an OFFLINE by when the replica decided it, not when a late stream showed it', () => {
      const spec = baseSpec();
      spec.lastHeartbeatB = 2_000;
      // Seen at 8,000 (watch frames above) right after a heartbeat sent at 7,990 was
      // acknowledged, but decided at 5,000 (its `at`, wall = mono + 1,000,000).
      const history = build(spec).map((e) =>
        e.kind === 'watch' && e.seq === 5 && e.frame === 'transition' ? { ...e, at: 1_005_000 } : e,
      );
      history.push(
        op('invoke', 'late-b', 'heartbeat', 'ws-b', 7_990),
        op('ok', 'late-b', 'heartbeat', 'ws-b', 7_995),
      );
      expect(failing(history)).to.deep.equal(['no-false-offline']);
      history.push({ kind: 'clock', wallMinusMono: 1_000_000 });
      expect(failing(history)).to.deep.equal([]);
    });

    it('does not count a heartbeat acknowledged only after the OFFLINE was decided', () => {
      const spec = baseSpec();
      const history = build(spec);
      history.push(
        op('invoke', 'slow-b', 'heartbeat', 'ws-b', 7_990),
        op('ok', 'slow-b', 'heartbeat', 'ws-b', 8_500),
      );
      expect(failing(history)).to.deep.equal([]);
    });

    it('names fenced-commits for a commit after the replica lost its lease', () => {
      const spec = baseSpec();
      spec.leases = [
        { replica: 'r1', from: 5, to: 13 },
        { replica: 'r1', from: 20 },
      ];
      expect(failing(build(spec))).to.deep.equal(['fenced-commits']);
    });
  });
});
