import { expect } from 'chai';
import { DEFAULT_TIMINGS, type Timings } from '../../src/domain/config.js';
import {
  TRANSITION_REASONS,
  WORKSPACE_STATUSES,
  type RuntimeState,
  type TransitionReason,
  type WorkspaceStatus,
} from '../../src/domain/model.js';
import {
  INITIAL,
  markerActive,
  nextStatus,
  type Decision,
  type HeartbeatHealth,
  type MachineState,
  type StatusEvent,
} from '../../src/domain/status-machine.js';

const NOW = Date.UTC(2025, 0, 1, 12, 0, 0);
const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

const { offlineAfterMs, registerFailureWindowMs, provisionTimeoutMs } = DEFAULT_TIMINGS;

/** A server that has been up for a day: no restart grace in play. */
const LONG_RUNNING = NOW - DAY;

/** A workspace that heartbeat 5 s ago, registered a minute ago and has no register-failure marker. */
function state(status: WorkspaceStatus, overrides: Partial<MachineState> = {}): MachineState {
  return {
    status,
    lastHeartbeatAt: NOW - 5 * SECOND,
    lastRegisteredAt: NOW - MINUTE,
    lastRegisterFailureAt: undefined,
    createdAt: NOW - HOUR,
    ...overrides,
  };
}

/** A workspace whose register-failure marker was stamped `ageMs` before NOW. */
function withMarker(status: WorkspaceStatus, ageMs: number): MachineState {
  return state(status, { lastRegisterFailureAt: NOW - ageMs });
}

function heartbeat(overrides: Partial<HeartbeatHealth> = {}): StatusEvent {
  return {
    type: 'HEARTBEAT',
    health: {
      runtimeState: 'HEALTHY' satisfies RuntimeState,
      errorRate: 0,
      nativeStatusManagement: false,
      ...overrides,
    },
  };
}

const WEDGED = heartbeat({ runtimeState: 'WEDGED' });
const registerOk: StatusEvent = { type: 'REGISTER_OK' };
const registerUrlFailed: StatusEvent = { type: 'REGISTER_URL_FAILED' };
const deleteWorkspace: StatusEvent = { type: 'DELETE' };

function sweep(ownedSince = LONG_RUNNING, lastSeen?: number): StatusEvent {
  return { type: 'SWEEP', ownedSince, lastSeen };
}

function to(status: WorkspaceStatus, reason: TransitionReason): Decision {
  return { to: status, reason };
}

interface Row {
  readonly name: string;
  readonly state: MachineState;
  readonly event: StatusEvent;
  /** Defaults to NOW. */
  readonly now?: number;
  /** Defaults to DEFAULT_TIMINGS. */
  readonly timings?: Timings;
  /** `undefined`: the status holds and no transition is recorded. */
  readonly expected: Decision | undefined;
}

const ALL_BUT_REMOVED = WORKSPACE_STATUSES.filter((s) => s !== 'REMOVED');

/** Every row below, so the table's coverage of reasons can be checked. */
const everyRow: Row[] = [];

function describeRows(title: string, rows: readonly Row[]): void {
  everyRow.push(...rows);
  describe(title, () => {
    for (const row of rows) {
      const expectation =
        row.expected === undefined
          ? 'holds the status (no transition)'
          : `moves to ${row.expected.to} (${row.expected.reason})`;
      it(`${row.name}: ${expectation}`, () => {
        const decision = nextStatus(
          row.state,
          row.event,
          row.now ?? NOW,
          row.timings ?? DEFAULT_TIMINGS,
        );
        if (row.expected === undefined) {
          expect(decision).to.equal(undefined);
        } else {
          expect(decision).to.deep.equal(row.expected);
        }
      });
    }
  });
}

describe('status machine', () => {
  describe('when a workspace is created', () => {
    it('starts PROVISIONING with reason CREATED', () => {
      expect(INITIAL).to.deep.equal(to('PROVISIONING', 'CREATED'));
    });
  });

  describe('nextStatus', () => {
    describeRows('when Register succeeds', [
      ...ALL_BUT_REMOVED.filter((s) => s !== 'ONLINE').map((status): Row => ({
        name: `from ${status}`,
        state: state(status),
        event: registerOk,
        expected: to('ONLINE', 'REGISTERED'),
      })),
      {
        name: 'from DEGRADED with a fresh register-failure marker',
        state: withMarker('DEGRADED', 10 * SECOND),
        event: registerOk,
        expected: to('ONLINE', 'REGISTERED'),
      },
      {
        name: 'from ONLINE (already there)',
        state: state('ONLINE'),
        event: registerOk,
        expected: undefined,
      },
      {
        name: 'from REMOVED (tombstone)',
        state: state('REMOVED'),
        event: registerOk,
        expected: undefined,
      },
    ]);

    describeRows('when Register fails URL validation', [
      {
        name: 'from ONLINE',
        state: withMarker('ONLINE', 0),
        event: registerUrlFailed,
        expected: to('DEGRADED', 'REGISTER_FAILED'),
      },
      ...(['PROVISIONING', 'DEGRADED', 'OFFLINE', 'FAILED', 'REMOVED'] as const).map(
        (status): Row => ({
          name: `from ${status}`,
          state: withMarker(status, 0),
          event: registerUrlFailed,
          expected: undefined,
        }),
      ),
    ]);

    describeRows(
      'when a heartbeat arrives for a PROVISIONING, OFFLINE or FAILED workspace',
      (['PROVISIONING', 'OFFLINE', 'FAILED'] as const).flatMap((status): Row[] => [
        {
          name: `${status}, healthy`,
          state: state(status),
          event: heartbeat(),
          expected: to('ONLINE', 'HEARTBEAT_RESUMED'),
        },
        {
          name: `${status}, error rate 0.3 (inside the hysteresis band, no degrade rule)`,
          state: state(status),
          event: heartbeat({ errorRate: 0.3 }),
          expected: to('ONLINE', 'HEARTBEAT_RESUMED'),
        },
        {
          name: `${status}, error rate 0.9 under native status management`,
          state: state(status),
          event: heartbeat({ errorRate: 0.9, nativeStatusManagement: true }),
          expected: to('ONLINE', 'HEARTBEAT_RESUMED'),
        },
        {
          name: `${status}, register-failure marker older than the window`,
          state: withMarker(status, registerFailureWindowMs + SECOND),
          event: heartbeat(),
          expected: to('ONLINE', 'HEARTBEAT_RESUMED'),
        },
        {
          name: `${status}, runtime WEDGED`,
          state: state(status),
          event: WEDGED,
          expected: to('DEGRADED', 'HEARTBEAT_RESUMED'),
        },
        {
          name: `${status}, error rate 0.5`,
          state: state(status),
          event: heartbeat({ errorRate: 0.5 }),
          expected: to('DEGRADED', 'HEARTBEAT_RESUMED'),
        },
        {
          name: `${status}, register-failure marker inside the window`,
          state: withMarker(status, MINUTE),
          event: heartbeat(),
          expected: to('DEGRADED', 'HEARTBEAT_RESUMED'),
        },
      ]),
    );

    describeRows('when a heartbeat arrives for an ONLINE workspace', [
      {
        name: 'healthy, error rate 0',
        state: state('ONLINE'),
        event: heartbeat(),
        expected: undefined,
      },
      {
        name: 'runtime WEDGED',
        state: state('ONLINE'),
        event: WEDGED,
        expected: to('DEGRADED', 'RUNTIME_WEDGED'),
      },
      {
        name: 'runtime WEDGED under native status management',
        state: state('ONLINE'),
        event: heartbeat({ runtimeState: 'WEDGED', nativeStatusManagement: true }),
        expected: to('DEGRADED', 'RUNTIME_WEDGED'),
      },
      {
        name: 'error rate exactly 0.5',
        state: state('ONLINE'),
        event: heartbeat({ errorRate: 0.5 }),
        expected: to('DEGRADED', 'ERROR_RATE_HIGH'),
      },
      {
        name: 'error rate 1',
        state: state('ONLINE'),
        event: heartbeat({ errorRate: 1 }),
        expected: to('DEGRADED', 'ERROR_RATE_HIGH'),
      },
      {
        name: 'error rate 1 under native status management',
        state: state('ONLINE'),
        event: heartbeat({ errorRate: 1, nativeStatusManagement: true }),
        expected: undefined,
      },
      {
        name: 'error rate 0.5 under native status management',
        state: state('ONLINE'),
        event: heartbeat({ errorRate: 0.5, nativeStatusManagement: true }),
        expected: undefined,
      },
      ...[0.1, 0.3, 0.49, 0.4999].map((errorRate): Row => ({
        name: `error rate ${errorRate} (hysteresis band)`,
        state: state('ONLINE'),
        event: heartbeat({ errorRate }),
        expected: undefined,
      })),
      {
        name: 'register-failure marker stamped just now',
        state: withMarker('ONLINE', 0),
        event: heartbeat(),
        expected: to('DEGRADED', 'REGISTER_FAILED'),
      },
      {
        name: 'register-failure marker 1 ms younger than the window',
        state: withMarker('ONLINE', registerFailureWindowMs - 1),
        event: heartbeat(),
        expected: to('DEGRADED', 'REGISTER_FAILED'),
      },
      {
        name: 'register-failure marker exactly as old as the window',
        state: withMarker('ONLINE', registerFailureWindowMs),
        event: heartbeat(),
        expected: undefined,
      },
      {
        name: 'register-failure marker older than the window',
        state: withMarker('ONLINE', registerFailureWindowMs + MINUTE),
        event: heartbeat(),
        expected: undefined,
      },
    ]);

    describeRows('when a heartbeat arrives for a DEGRADED workspace', [
      {
        name: 'healthy, error rate 0, no marker',
        state: state('DEGRADED'),
        event: heartbeat(),
        expected: to('ONLINE', 'RECOVERED'),
      },
      {
        name: 'error rate 0.0999 (just below the recovery threshold)',
        state: state('DEGRADED'),
        event: heartbeat({ errorRate: 0.0999 }),
        expected: to('ONLINE', 'RECOVERED'),
      },
      ...[0.1, 0.3, 0.49].map((errorRate): Row => ({
        name: `error rate ${errorRate} (hysteresis band)`,
        state: state('DEGRADED'),
        event: heartbeat({ errorRate }),
        expected: undefined,
      })),
      {
        name: 'error rate 0.5',
        state: state('DEGRADED'),
        event: heartbeat({ errorRate: 0.5 }),
        expected: undefined,
      },
      {
        name: 'error rate 0.9 under native status management',
        state: state('DEGRADED'),
        event: heartbeat({ errorRate: 0.9, nativeStatusManagement: true }),
        expected: to('ONLINE', 'RECOVERED'),
      },
      {
        name: 'runtime WEDGED',
        state: state('DEGRADED'),
        event: WEDGED,
        expected: undefined,
      },
      {
        name: 'runtime WEDGED under native status management',
        state: state('DEGRADED'),
        event: heartbeat({ runtimeState: 'WEDGED', nativeStatusManagement: true }),
        expected: undefined,
      },
      {
        name: 'register-failure marker inside the window',
        state: withMarker('DEGRADED', MINUTE),
        event: heartbeat(),
        expected: undefined,
      },
      {
        name: 'register-failure marker 1 ms younger than the window',
        state: withMarker('DEGRADED', registerFailureWindowMs - 1),
        event: heartbeat(),
        expected: undefined,
      },
      {
        name: 'register-failure marker exactly as old as the window',
        state: withMarker('DEGRADED', registerFailureWindowMs),
        event: heartbeat(),
        expected: to('ONLINE', 'RECOVERED'),
      },
      {
        name: 'register-failure marker cleared (the restart story)',
        state: state('DEGRADED', { lastRegisterFailureAt: undefined }),
        event: heartbeat(),
        expected: to('ONLINE', 'RECOVERED'),
      },
    ]);

    describeRows('when the liveness sweep runs over ONLINE and DEGRADED workspaces', [
      ...(['ONLINE', 'DEGRADED'] as const).flatMap((status): Row[] => [
        {
          name: `${status}, last heartbeat 1 ms more than offline_after ago`,
          state: state(status, {
            lastHeartbeatAt: NOW - offlineAfterMs - 1,
            lastRegisteredAt: NOW - HOUR,
          }),
          event: sweep(),
          expected: to('OFFLINE', 'HEARTBEAT_TIMEOUT'),
        },
        {
          name: `${status}, last heartbeat exactly offline_after ago`,
          state: state(status, {
            lastHeartbeatAt: NOW - offlineAfterMs,
            lastRegisteredAt: NOW - HOUR,
          }),
          event: sweep(),
          expected: undefined,
        },
        {
          name: `${status}, last heartbeat well within offline_after`,
          state: state(status),
          event: sweep(),
          expected: undefined,
        },
        {
          name: `${status}, old heartbeat but registered within offline_after`,
          state: state(status, {
            lastHeartbeatAt: NOW - HOUR,
            lastRegisteredAt: NOW - 10 * SECOND,
          }),
          event: sweep(),
          expected: undefined,
        },
        {
          name: `${status}, never heartbeat, registered long ago`,
          state: state(status, { lastHeartbeatAt: undefined, lastRegisteredAt: NOW - HOUR }),
          event: sweep(),
          expected: to('OFFLINE', 'HEARTBEAT_TIMEOUT'),
        },
        {
          name: `${status}, heartbeat an hour ago but the server started 10 s ago (restart grace)`,
          state: state(status, { lastHeartbeatAt: NOW - HOUR, lastRegisteredAt: NOW - HOUR }),
          event: sweep(NOW - 10 * SECOND),
          expected: undefined,
        },
        {
          name: `${status}, heartbeat an hour ago, server started exactly offline_after ago`,
          state: state(status, { lastHeartbeatAt: NOW - HOUR, lastRegisteredAt: NOW - HOUR }),
          event: sweep(NOW - offlineAfterMs),
          expected: undefined,
        },
        {
          name: `${status}, heartbeat an hour ago, server started 1 ms more than offline_after ago`,
          state: state(status, { lastHeartbeatAt: NOW - HOUR, lastRegisteredAt: NOW - HOUR }),
          event: sweep(NOW - offlineAfterMs - 1),
          expected: to('OFFLINE', 'HEARTBEAT_TIMEOUT'),
        },
        {
          name: `${status}, stored heartbeat an hour ago but seen in memory 10 s ago (lazy flush)`,
          state: state(status, { lastHeartbeatAt: NOW - HOUR, lastRegisteredAt: NOW - HOUR }),
          event: sweep(LONG_RUNNING, NOW - 10 * SECOND),
          expected: undefined,
        },
        {
          name: `${status}, seen in memory 1 ms more than offline_after ago`,
          state: state(status, { lastHeartbeatAt: NOW - HOUR, lastRegisteredAt: NOW - HOUR }),
          event: sweep(LONG_RUNNING, NOW - offlineAfterMs - 1),
          expected: to('OFFLINE', 'HEARTBEAT_TIMEOUT'),
        },
        {
          name: `${status}, an older in-memory time never hides a newer stored heartbeat`,
          state: state(status, { lastHeartbeatAt: NOW - 10 * SECOND }),
          event: sweep(LONG_RUNNING, NOW - HOUR),
          expected: undefined,
        },
      ]),
      {
        name: 'ONLINE under a configured offline_after of 5 s, heartbeat 6 s ago',
        state: state('ONLINE', { lastHeartbeatAt: NOW - 6 * SECOND, lastRegisteredAt: NOW - HOUR }),
        event: sweep(),
        timings: { ...DEFAULT_TIMINGS, offlineAfterMs: 5 * SECOND },
        expected: to('OFFLINE', 'HEARTBEAT_TIMEOUT'),
      },
    ]);

    describeRows('when the liveness sweep runs over PROVISIONING workspaces', [
      {
        name: 'created 1 ms more than provision_timeout ago',
        state: state('PROVISIONING', {
          createdAt: NOW - provisionTimeoutMs - 1,
          lastHeartbeatAt: undefined,
          lastRegisteredAt: undefined,
        }),
        event: sweep(),
        expected: to('FAILED', 'PROVISION_TIMEOUT'),
      },
      {
        name: 'created exactly provision_timeout ago',
        state: state('PROVISIONING', {
          createdAt: NOW - provisionTimeoutMs,
          lastHeartbeatAt: undefined,
          lastRegisteredAt: undefined,
        }),
        event: sweep(),
        expected: undefined,
      },
      {
        name: 'created a minute ago',
        state: state('PROVISIONING', {
          createdAt: NOW - MINUTE,
          lastHeartbeatAt: undefined,
          lastRegisteredAt: undefined,
        }),
        event: sweep(),
        expected: undefined,
      },
      {
        name: 'created a day ago but the server started a minute ago (restart grace)',
        state: state('PROVISIONING', {
          createdAt: NOW - DAY,
          lastHeartbeatAt: undefined,
          lastRegisteredAt: undefined,
        }),
        event: sweep(NOW - MINUTE),
        expected: undefined,
      },
      {
        name: 'created a day ago, server started 1 ms more than provision_timeout ago',
        state: state('PROVISIONING', {
          createdAt: NOW - DAY,
          lastHeartbeatAt: undefined,
          lastRegisteredAt: undefined,
        }),
        event: sweep(NOW - provisionTimeoutMs - 1),
        expected: to('FAILED', 'PROVISION_TIMEOUT'),
      },
    ]);

    describeRows(
      'when the liveness sweep runs over OFFLINE and FAILED workspaces',
      (['OFFLINE', 'FAILED'] as const).map((status): Row => ({
        name: `${status}, silent and created a day ago`,
        state: state(status, {
          createdAt: NOW - DAY,
          lastHeartbeatAt: NOW - DAY,
          lastRegisteredAt: NOW - DAY,
        }),
        event: sweep(),
        expected: undefined,
      })),
    );

    describeRows(
      'when a workspace is deleted',
      ALL_BUT_REMOVED.map((status): Row => ({
        name: `from ${status}`,
        state: withMarker(status, MINUTE),
        event: deleteWorkspace,
        expected: to('REMOVED', 'DELETED'),
      })),
    );

    describeRows(
      'when the workspace is REMOVED (tombstone)',
      (
        [
          ['Register ok', registerOk],
          ['Register URL failure', registerUrlFailed],
          ['healthy heartbeat', heartbeat()],
          ['WEDGED heartbeat', WEDGED],
          ['high error-rate heartbeat', heartbeat({ errorRate: 1 })],
          ['sweep long after the last heartbeat', sweep()],
          ['DeleteWorkspace again', deleteWorkspace],
        ] as const
      ).map(([label, event]): Row => ({
        name: label,
        state: state('REMOVED', {
          createdAt: NOW - DAY,
          lastHeartbeatAt: NOW - DAY,
          lastRegisteredAt: NOW - DAY,
          lastRegisterFailureAt: NOW - SECOND,
        }),
        event,
        expected: undefined,
      })),
    );

    describeRows(
      'when several degrade rules hold at once (priority WEDGED > ERROR_RATE_HIGH > REGISTER_FAILED)',
      [
        {
          name: 'ONLINE, WEDGED + error rate 0.9 + fresh marker',
          state: withMarker('ONLINE', MINUTE),
          event: heartbeat({ runtimeState: 'WEDGED', errorRate: 0.9 }),
          expected: to('DEGRADED', 'RUNTIME_WEDGED'),
        },
        {
          name: 'ONLINE, WEDGED + error rate 0.9',
          state: state('ONLINE'),
          event: heartbeat({ runtimeState: 'WEDGED', errorRate: 0.9 }),
          expected: to('DEGRADED', 'RUNTIME_WEDGED'),
        },
        {
          name: 'ONLINE, WEDGED + fresh marker',
          state: withMarker('ONLINE', MINUTE),
          event: WEDGED,
          expected: to('DEGRADED', 'RUNTIME_WEDGED'),
        },
        {
          name: 'ONLINE, error rate 0.9 + fresh marker',
          state: withMarker('ONLINE', MINUTE),
          event: heartbeat({ errorRate: 0.9 }),
          expected: to('DEGRADED', 'ERROR_RATE_HIGH'),
        },
        {
          name: 'ONLINE, error rate 0.9 under native status management + fresh marker',
          state: withMarker('ONLINE', MINUTE),
          event: heartbeat({ errorRate: 0.9, nativeStatusManagement: true }),
          expected: to('DEGRADED', 'REGISTER_FAILED'),
        },
      ],
    );

    describeRows('when one event could justify two transitions (only the net one is decided)', [
      {
        name: 'OFFLINE, WEDGED heartbeat (resume, then wedge)',
        state: state('OFFLINE'),
        event: WEDGED,
        expected: to('DEGRADED', 'HEARTBEAT_RESUMED'),
      },
      {
        name: 'FAILED, heartbeat with every degrade rule holding',
        state: withMarker('FAILED', MINUTE),
        event: heartbeat({ runtimeState: 'WEDGED', errorRate: 1 }),
        expected: to('DEGRADED', 'HEARTBEAT_RESUMED'),
      },
      {
        name: 'PROVISIONING, healthy heartbeat (resume, nothing further)',
        state: state('PROVISIONING', { lastHeartbeatAt: undefined, lastRegisteredAt: undefined }),
        event: heartbeat(),
        expected: to('ONLINE', 'HEARTBEAT_RESUMED'),
      },
    ]);

    describe('when checking the table itself', () => {
      it('has a row producing every transition reason except CREATED', () => {
        const produced = new Set(
          everyRow.flatMap((row) => (row.expected ? [row.expected.reason] : [])),
        );
        expect([...produced].sort()).to.deep.equal(
          TRANSITION_REASONS.filter((reason) => reason !== 'CREATED').sort(),
        );
      });
    });

    describe('when an event yields a decision', () => {
      it('returns a single decision object, never a list', () => {
        const decision = nextStatus(state('OFFLINE'), WEDGED, NOW, DEFAULT_TIMINGS);
        expect(decision).to.be.an('object').and.not.an('array');
        expect(decision).to.have.all.keys('to', 'reason');
      });
    });
  });

  describe('markerActive', () => {
    describe('when there is no marker', () => {
      it('is false', () => {
        expect(markerActive(state('ONLINE'), NOW, DEFAULT_TIMINGS)).to.equal(false);
      });
    });

    describe('when the marker is younger than the window', () => {
      it('is true just after stamping', () => {
        expect(markerActive(withMarker('ONLINE', 0), NOW, DEFAULT_TIMINGS)).to.equal(true);
      });

      it('is true 1 ms before the window ends', () => {
        const s = withMarker('DEGRADED', registerFailureWindowMs - 1);
        expect(markerActive(s, NOW, DEFAULT_TIMINGS)).to.equal(true);
      });
    });

    describe('when the marker is as old as the window or older', () => {
      it('is false exactly at the window', () => {
        const s = withMarker('DEGRADED', registerFailureWindowMs);
        expect(markerActive(s, NOW, DEFAULT_TIMINGS)).to.equal(false);
      });

      it('is false long after the window', () => {
        const s = withMarker('DEGRADED', DAY);
        expect(markerActive(s, NOW, DEFAULT_TIMINGS)).to.equal(false);
      });
    });

    describe('when the window is configured', () => {
      it('uses the configured window, not the default', () => {
        const timings = { ...DEFAULT_TIMINGS, registerFailureWindowMs: 10 * SECOND };
        expect(markerActive(withMarker('ONLINE', 9 * SECOND), NOW, timings)).to.equal(true);
        expect(markerActive(withMarker('ONLINE', 11 * SECOND), NOW, timings)).to.equal(false);
      });
    });
  });
});
