import type { Database, RunResult } from 'better-sqlite3';
import { VigilError, workspaceNotFound, workspaceRemoved } from '../domain/errors.js';
import { WORKSPACE_STATUSES } from '../domain/model.js';
import type {
  AgentCard,
  DeliveryMode,
  HeartbeatReport,
  RuntimeState,
  Transition,
  TransitionReason,
  Workspace,
  WorkspaceStatus,
} from '../domain/model.js';
import type {
  Applied,
  CreateWorkspaceInput,
  Decide,
  HeartbeatApplied,
  HeartbeatInput,
  ListWorkspacesQuery,
  LivenessRecord,
  RegisterFailureInput,
  RegisterInput,
  RegistryStore,
  SweepInput,
  TokenUse,
  TransitionsQuery,
  WorkspaceState,
} from '../domain/registry-store.js';
import type { Decision, MachineState } from '../domain/status-machine.js';
import { hashesEqual } from '../domain/tokens.js';
import { createCommitListeners } from './commit-listeners.js';
import { createGroupCommit, type Outcome } from './group-commit.js';

/** A `workspaces` row as SQLite returns it. */
interface WorkspaceRow {
  id: string;
  name: string;
  status: WorkspaceStatus;
  url: string;
  delivery_mode: DeliveryMode;
  agent_card: string | null;
  last_heartbeat_at: number | null;
  last_registered_at: number | null;
  last_register_failure_at: number | null;
  error_rate: number;
  sample_error: string;
  active_tasks: number;
  uptime_seconds: number;
  current_task: string;
  runtime_state: RuntimeState;
  native_status_management: number;
  token_last_used_at: number | null;
  created_at: number;
  updated_at: number;
  status_changed_at: number;
}

interface TransitionRow {
  seq: number;
  workspace_id: string;
  from_status: WorkspaceStatus | null;
  to_status: WorkspaceStatus;
  reason: TransitionReason;
  detail: string;
  at: number;
}

/** SQLite error codes that mean "the storage cannot take writes right now", not "a bug". */
const UNAVAILABLE_CODES = /^SQLITE_(BUSY|LOCKED|READONLY|FULL|IOERR|CANTOPEN|NOMEM)/;

/** Largest number of heartbeats one group commit applies. */
const MAX_HEARTBEAT_BATCH = 2_000;
/** Liveness records written per transaction by a lazy flush. */
const LIVENESS_CHUNK = 1_000;

export interface SqliteStoreOptions {
  /** Told when a commit listener throws (the write itself goes on). Default: console.error. */
  readonly onListenerError?: (error: unknown) => void;
  /**
   * Runs inside the transaction that moves a workspace to REMOVED (the
   * projection's crypto-shred of its data key and secrets); a throw rolls
   * the deletion back.
   */
  readonly inDeleteTransaction?: (workspaceId: string) => void;
}

/** The SQLite store, plus what only an in-process SQLite store can tell. */
export interface SqliteStore extends RegistryStore {
  /** SQL statements executed so far (BEGIN and COMMIT included), for metrics. */
  statementsExecuted(): number;
  /**
   * Commits one write that changes nothing (the schema version, rewritten as
   * it is): resolves when the database file and its WAL can be written now,
   * rejects UNAVAILABLE when not. For the readiness probe.
   */
  probeWritable(): Promise<void>;
}

/**
 * The SQLite RegistryStore. Every operation is one synchronous better-sqlite3
 * transaction (IMMEDIATE for read-modify-write) over statements prepared once;
 * its commit listeners are told synchronously after COMMIT, and the promise it
 * returns settles after that.
 */
export function createSqliteStore(db: Database, options: SqliteStoreOptions = {}): SqliteStore {
  let statements = 0;
  const stmt = prepareStatements(db, () => {
    statements += 1;
  });
  const listeners = createCommitListeners(
    options.onListenerError ??
      ((error: unknown) => {
        console.error('vigil: a commit listener failed', error);
      }),
  );
  // What the transaction running now has written, told to listeners once it commits.
  let written: { transitions: Transition[]; states: WorkspaceState[] } = {
    transitions: [],
    states: [],
  };

  /** Throws WORKSPACE_NOT_FOUND or WORKSPACE_REMOVED unless `row` is a live workspace. */
  function live<R extends { status: WorkspaceStatus }>(id: string, row: R | undefined): R {
    if (!row) {
      throw workspaceNotFound(id);
    }
    if (row.status === 'REMOVED') {
      throw workspaceRemoved(id);
    }
    return row;
  }

  const requireLive = (id: string): WorkspaceRow => live(id, stmt.selectWorkspace.get(id));

  /** Like requireLive, reading only the status. */
  const requireLiveStatus = (id: string) =>
    live(id, stmt.selectStatus.get(id) as { status: WorkspaceStatus } | undefined);

  /** Reads the row, asks the machine, applies a guarded status update and the transition row. */
  function decideAndApply(id: string, decide: Decide, now: number, detail: string): Applied {
    const row = stmt.selectWorkspace.get(id);
    if (!row) throw new Error(`workspace ${id} vanished inside its own transaction`);
    const decision = decide(machineState(row), id);
    if (!decision) {
      wrote(row, row.status);
      return { workspace: toWorkspace(row), transition: undefined };
    }
    return applyDecision(row, decision, now, detail);
  }

  function applyDecision(
    row: WorkspaceRow,
    decision: Decision,
    now: number,
    detail: string,
  ): Applied {
    const transition = changeStatus(row.id, row.status, decision, now, detail);
    wrote(row, decision.to);
    return {
      workspace: toWorkspace({
        ...row,
        status: decision.to,
        status_changed_at: now,
        updated_at: now,
      }),
      transition,
    };
  }

  /** Notes the state a workspace is left in by the running transaction. */
  function wrote(row: MachineStateRow & { id: string }, status: WorkspaceStatus): void {
    written.states.push({
      id: row.id,
      ...machineState(row),
      status,
      hasCard: cardStored(row),
    });
  }

  /** The guarded status update and its transition row. */
  function changeStatus(
    id: string,
    expected: WorkspaceStatus,
    decision: Decision,
    now: number,
    detail: string,
  ): Transition {
    const changed = stmt.updateStatus.run({ id, expected, status: decision.to, now }).changes;
    // The guard makes a lost update impossible to miss, should a second writer ever appear.
    if (changed !== 1) throw new Error(`status of ${id} changed concurrently`);
    return insertTransition(id, expected, decision, now, detail);
  }

  function insertTransition(
    workspaceId: string,
    from: WorkspaceStatus | null,
    decision: Decision,
    at: number,
    detail: string,
  ): Transition {
    const { seq } = stmt.insertTransition.get({
      workspaceId,
      from,
      to: decision.to,
      reason: decision.reason,
      detail,
      at,
    }) as { seq: number };
    const transition: Transition = {
      seq,
      workspaceId,
      fromStatus: from ?? undefined,
      toStatus: decision.to,
      reason: decision.reason,
      detail,
      at,
    };
    written.transitions.push(transition);
    return transition;
  }

  const createTx = db.transaction((input: CreateWorkspaceInput): Applied => {
    if (stmt.selectWorkspace.get(input.id)) {
      throw new VigilError('WORKSPACE_EXISTS', `workspace ${input.id} already exists`, {
        workspaceId: input.id,
      });
    }
    stmt.insertWorkspace.run({ id: input.id, name: input.name, now: input.now });
    stmt.insertToken.run({ hash: input.tokenHash, id: input.id, now: input.now });
    const transition = insertTransition(
      input.id,
      null,
      { to: 'PROVISIONING', reason: 'CREATED' },
      input.now,
      '',
    );
    const row = stmt.selectWorkspace.get(input.id);
    if (!row) throw new Error('inserted workspace not found');
    wrote(row, row.status);
    return { workspace: toWorkspace(row), transition };
  });

  const deleteTx = db.transaction((id: string, now: number, decide: Decide): Applied => {
    const row = stmt.selectWorkspace.get(id);
    if (!row) {
      throw workspaceNotFound(id);
    }
    const applied = decideAndApply(id, decide, now, '');
    if (applied.workspace.status === 'REMOVED') options.inDeleteTransaction?.(id);
    return applied;
  });

  const addTokenTx = db.transaction(
    (id: string, hash: Uint8Array, now: number, previousExpireAt: number) => {
      requireLive(id);
      stmt.expireTokens.run({ id, at: previousExpireAt });
      stmt.insertToken.run({ hash, id, now });
    },
  );

  const revokeTokensTx = db.transaction((id: string, now: number): number => {
    if (!stmt.selectWorkspace.get(id)) {
      throw workspaceNotFound(id);
    }
    return stmt.expireTokens.run({ id, at: now }).changes;
  });

  const touchTokensTx = db.transaction((uses: readonly TokenUse[]) => {
    for (const use of uses) {
      stmt.touchToken.run({ hash: use.tokenHash, at: use.at });
      stmt.touchWorkspaceToken.run({ id: use.workspaceId, at: use.at });
    }
  });

  const registerTx = db.transaction((input: RegisterInput, decide: Decide): Applied => {
    requireLive(input.id);
    stmt.updateRegistration.run({
      id: input.id,
      url: input.url,
      mode: input.deliveryMode,
      card: input.agentCard,
      now: input.now,
    });
    return decideAndApply(input.id, decide, input.now, '');
  });

  const registerFailureTx = db.transaction((input: RegisterFailureInput, decide: Decide) => {
    requireLive(input.id);
    stmt.stampMarker.run({ id: input.id, now: input.now });
    return decideAndApply(input.id, decide, input.now, input.detail);
  });

  /** One heartbeat's statements; its callers provide the transaction. */
  function heartbeatBody(input: HeartbeatInput, decide: Decide): HeartbeatApplied {
    const { id, report, now } = input;
    // (1) liveness, guarded: a missing or removed workspace changes nothing and says why.
    const live = stmt.updateLiveness.run({ id, now, ...reportParams(report) });
    if (live.changes === 0) requireLiveStatus(id);
    let cardBackfillChanges = 0;
    let markerClearChanges = 0;
    if (input.agentCard !== undefined) {
      // (2) backfill only where no card is stored yet …
      cardBackfillChanges = stmt.backfillCard.run({ id, card: input.agentCard }).changes;
      // (3) … and, separately, clear the marker: a stored card must not stop recovery.
      markerClearChanges = stmt.clearMarker.run({ id }).changes;
    }
    // (4) + (5) read the state as it now stands (narrowly: no card), evaluate, apply.
    const state = stmt.selectMachineState.get(id) as MachineStateRow & { id: string };
    const decision = decide(machineState(state), id);
    const transition = decision ? changeStatus(id, state.status, decision, now, '') : undefined;
    wrote(state, decision?.to ?? state.status);
    return {
      status: decision?.to ?? state.status,
      transition,
      cardBackfillChanges,
      markerClearChanges,
    };
  }

  const heartbeatTx = db.transaction(heartbeatBody);

  interface HeartbeatItem {
    readonly input: HeartbeatInput;
    readonly decide: Decide;
  }

  // A batch normally runs without savepoints: the only expected failure (a
  // missing or removed workspace) is detected before that heartbeat writes
  // anything. Any other failure rolls the whole batch back and it is replayed
  // with one savepoint per heartbeat, so a failing one still fails alone.
  const heartbeatBatchTx = db.transaction(
    (batch: readonly HeartbeatItem[]): Outcome<HeartbeatApplied>[] =>
      batch.map(({ input, decide }): Outcome<HeartbeatApplied> => {
        try {
          return { ok: true, value: heartbeatBody(input, decide) };
        } catch (error) {
          if (error instanceof VigilError) return { ok: false, error };
          throw error;
        }
      }),
  );

  const isolatedHeartbeatBatchTx = db.transaction(
    (batch: readonly HeartbeatItem[]): Outcome<HeartbeatApplied>[] =>
      batch.map(({ input, decide }): Outcome<HeartbeatApplied> => {
        const transitions = written.transitions.length;
        const states = written.states.length;
        try {
          // Nested: a savepoint, so a failing heartbeat rolls back alone.
          statements += 2;
          return { ok: true, value: heartbeatTx(input, decide) };
        } catch (error) {
          // Rolled back to its savepoint: what it noted was never written.
          written.transitions.length = transitions;
          written.states.length = states;
          return { ok: false, error: mapStorageError(error) };
        }
      }),
  );

  const heartbeats = createGroupCommit<HeartbeatItem, HeartbeatApplied>((batch) => {
    let outcomes: Outcome<HeartbeatApplied>[];
    try {
      outcomes = transaction(() => heartbeatBatchTx.immediate(batch));
    } catch {
      outcomes = transaction(() => isolatedHeartbeatBatchTx.immediate(batch));
    }
    return outcomes;
  }, MAX_HEARTBEAT_BATCH);

  const sweepTx = db.transaction((input: SweepInput, decide: Decide): Transition[] => {
    const candidates = [
      ...input.silent.flatMap((id) => {
        const row = stmt.selectWorkspace.get(id);
        return row && (row.status === 'ONLINE' || row.status === 'DEGRADED') ? [row] : [];
      }),
      ...stmt.selectProvisionExpired.all({ before: input.createdBefore, limit: input.limit }),
    ];
    const transitions: Transition[] = [];
    for (const row of candidates) {
      const decision = decide(machineState(row), row.id);
      if (decision) {
        const applied = applyDecision(row, decision, input.now, '');
        if (applied.transition) transitions.push(applied.transition);
      } else {
        // Left alone: tell listeners its state as stored, so a liveness mirror behind it catches up.
        wrote(row, row.status);
      }
    }
    return transitions;
  });

  const recordLivenessTx = db.transaction((records: readonly LivenessRecord[]) => {
    for (const { id, lastHeartbeatAt, report } of records) {
      stmt.recordLiveness.run({ id, at: lastHeartbeatAt, ...reportParams(report) });
    }
  });

  const compactTx = db.transaction((before: number, limit: number): number => {
    let through = 0;
    for (const row of stmt.oldestTransitions.all({ limit }) as { seq: number; at: number }[]) {
      if (row.at >= before) break;
      through = row.seq;
    }
    if (through === 0) return 0;
    const { changes } = stmt.deleteTransitionsThrough.run({ through });
    stmt.raiseMeta.run({ key: 'compacted_through', value: through });
    return changes;
  });

  function headSeqNow(): number {
    const row = stmt.headSeq.get() as { seq: number } | undefined;
    return row?.seq ?? 0;
  }

  /**
   * Runs one top-level transaction and, once it has committed, tells the
   * listeners what it wrote. Throws what the transaction threw (nothing is
   * told then: it rolled back).
   */
  function transaction<T>(body: () => T): T {
    written = { transitions: [], states: [] };
    let result: T;
    try {
      result = body();
    } finally {
      statements += 2;
    }
    const commit = written;
    written = { transitions: [], states: [] };
    listeners.publish(commit);
    return result;
  }

  /** Runs a synchronous store operation, turning storage faults into UNAVAILABLE. */
  function run<T>(operation: () => T): Promise<T> {
    try {
      return Promise.resolve(operation());
    } catch (error) {
      return Promise.reject(mapStorageError(error));
    }
  }

  /** Like `run`, for a read-modify-write transaction whose commit the listeners hear of. */
  const write = <T>(body: () => T): Promise<T> => run(() => transaction(body));

  return {
    subscribe: (listener) => listeners.subscribe(listener),
    statementsExecuted: () => statements,
    probeWritable: () =>
      run(() => {
        const version = db.pragma('user_version', { simple: true }) as number;
        db.pragma(`user_version = ${String(version)}`);
      }),
    createWorkspace: (input) => write(() => createTx.immediate(input)),
    getWorkspace: (id) =>
      run(() => {
        const row = stmt.selectWorkspace.get(id);
        return row ? toWorkspace(row) : undefined;
      }),
    listWorkspaces: (query: ListWorkspacesQuery) =>
      run(() => {
        const params = {
          statuses: JSON.stringify(query.statuses),
          after: query.afterId,
          limit: query.limit,
        };
        const statement = query.workspaceIds.length === 0 ? stmt.selectPage : stmt.selectPageOf;
        const bound =
          query.workspaceIds.length === 0
            ? params
            : { ...params, ids: JSON.stringify(query.workspaceIds) };
        if (query.maxBytes === undefined) return statement.all(bound).map(toWorkspace);
        // Row by row, so no more than the byte bound (plus one row) is ever read into memory.
        const page: Workspace[] = [];
        let bytes = 0;
        for (const row of statement.iterate(bound)) {
          page.push(toWorkspace(row));
          bytes += row.url.length + (row.agent_card?.length ?? 0) + row.name.length;
          if (bytes >= query.maxBytes) break;
        }
        return page;
      }),
    deleteWorkspace: (id, now, decide) => write(() => deleteTx.immediate(id, now, decide)),
    addToken: (id, hash, now, previousExpireAt) =>
      run(() => {
        statements += 2;
        addTokenTx.immediate(id, hash, now, previousExpireAt);
      }),
    revokeTokens: (id, now) =>
      run(() => {
        statements += 2;
        return revokeTokensTx.immediate(id, now);
      }),
    findToken: (hash, now) =>
      run(() => {
        const row = stmt.selectToken.get({ hash, now }) as
          { token_hash: Uint8Array; workspace_id: string; expires_at: number | null } | undefined;
        return row && hashesEqual(row.token_hash, hash)
          ? { workspaceId: row.workspace_id, expiresAt: row.expires_at ?? undefined }
          : undefined;
      }),
    touchTokens: (uses) =>
      run(() => {
        statements += 2;
        touchTokensTx.immediate(uses);
      }),
    pruneExpiredTokens: (before) => run(() => stmt.pruneTokens.run({ before }).changes),
    applyRegister: (input, decide) => write(() => registerTx.immediate(input, decide)),
    applyRegisterFailure: (input, decide) =>
      write(() => registerFailureTx.immediate(input, decide)),
    applyHeartbeat: (input, decide) =>
      heartbeats.submit({ input, decide }).catch((error: unknown) => {
        throw mapStorageError(error);
      }),
    sweep: (input, decide) => write(() => sweepTx.immediate(input, decide)),
    workspaceState: (id) =>
      run(() => {
        const row = stmt.selectMachineState.get(id) as
          (MachineStateRow & { id: string }) | undefined;
        return row ? { id: row.id, ...machineState(row), hasCard: cardStored(row) } : undefined;
      }),
    liveStates: () =>
      run(() =>
        (stmt.selectLiveStates.all() as (MachineStateRow & { id: string })[]).map((row) => ({
          id: row.id,
          ...machineState(row),
          hasCard: cardStored(row),
        })),
      ),
    recordLiveness: (records) =>
      run(() => {
        for (let i = 0; i < records.length; i += LIVENESS_CHUNK) {
          statements += 2;
          recordLivenessTx.immediate(records.slice(i, i + LIVENESS_CHUNK));
        }
      }),
    readTransitions: (query: TransitionsQuery) =>
      run(() =>
        (query.workspaceIds.length === 0
          ? stmt.selectTransitions.all({ after: query.afterSeq, limit: query.limit })
          : stmt.selectTransitionsFor.all({
              after: query.afterSeq,
              limit: query.limit,
              ids: JSON.stringify(query.workspaceIds),
            })
        ).map(toTransition),
      ),
    headSeq: () => run(headSeqNow),
    countByStatus: () =>
      run(() => {
        const counts = Object.fromEntries(WORKSPACE_STATUSES.map((s) => [s, 0])) as Record<
          WorkspaceStatus,
          number
        >;
        for (const { status, n } of stmt.countByStatus.all() as {
          status: WorkspaceStatus;
          n: number;
        }[]) {
          counts[status] = n;
        }
        return counts;
      }),
    compactTransitions: (before, limit) =>
      run(() => {
        statements += 2;
        return compactTx.immediate(before, limit);
      }),
    compactedThrough: () =>
      run(
        () =>
          (stmt.selectMeta.get('compacted_through') as { value: number } | undefined)?.value ?? 0,
      ),
    close: () =>
      run(() => {
        if (db.open) db.close();
      }),
  };
}

function mapStorageError(error: unknown): Error {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && UNAVAILABLE_CODES.test(code)) {
    return new VigilError(
      'STORE_UNAVAILABLE',
      'the database cannot take this request right now',
      {
        sqliteCode: code,
      },
      { cause: error },
    );
  }
  return error instanceof Error ? error : new Error(String(error));
}

/** A prepared statement that counts its executions. */
interface CountedStatement<R> {
  run(...params: unknown[]): RunResult;
  get(...params: unknown[]): R | undefined;
  all(...params: unknown[]): R[];
  iterate(...params: unknown[]): IterableIterator<R>;
}

function prepareStatements(db: Database, executed: () => void) {
  const s = <R = unknown>(sql: string): CountedStatement<R> => {
    const statement = db.prepare<unknown[], R>(sql);
    return {
      run(...params) {
        executed();
        return statement.run(...params);
      },
      get(...params) {
        executed();
        return statement.get(...params);
      },
      all(...params) {
        executed();
        return statement.all(...params);
      },
      iterate(...params) {
        executed();
        return statement.iterate(...params);
      },
    };
  };
  return {
    selectWorkspace: s<WorkspaceRow>('SELECT * FROM workspaces WHERE id = ?'),
    selectStatus: s('SELECT status FROM workspaces WHERE id = ?'),
    selectMachineState: s(
      `SELECT id, status, last_heartbeat_at, last_registered_at, last_register_failure_at,
         created_at, agent_card IS NOT NULL AS has_card
       FROM workspaces WHERE id = ?`,
    ),
    selectLiveStates: s(
      `SELECT id, status, last_heartbeat_at, last_registered_at, last_register_failure_at,
         created_at, agent_card IS NOT NULL AS has_card
       FROM workspaces WHERE status IN ('ONLINE', 'DEGRADED')`,
    ),
    recordLiveness: s(
      `UPDATE workspaces SET last_heartbeat_at = @at, last_seen_at = max(last_seen_at, @at),
         error_rate = @errorRate, sample_error = @sampleError, active_tasks = @activeTasks,
         uptime_seconds = @uptimeSeconds, current_task = @currentTask,
         runtime_state = @runtimeState, native_status_management = @native,
         updated_at = max(updated_at, @at)
       WHERE id = @id AND status <> 'REMOVED'
         AND (last_heartbeat_at IS NULL OR last_heartbeat_at <= @at)`,
    ),
    selectPageOf: s<WorkspaceRow>(
      `SELECT * FROM workspaces
       WHERE id IN (SELECT value FROM json_each(@ids))
         AND status IN (SELECT value FROM json_each(@statuses)) AND id > @after
       ORDER BY id LIMIT @limit`,
    ),
    selectPage: s<WorkspaceRow>(
      `SELECT * FROM workspaces
       WHERE status IN (SELECT value FROM json_each(@statuses)) AND id > @after
       ORDER BY id LIMIT @limit`,
    ),
    insertWorkspace: s(
      `INSERT INTO workspaces (id, name, status, last_seen_at, created_at, updated_at, status_changed_at)
       VALUES (@id, @name, 'PROVISIONING', @now, @now, @now, @now)`,
    ),
    updateStatus: s(
      `UPDATE workspaces SET status = @status, status_changed_at = @now, updated_at = @now
       WHERE id = @id AND status = @expected`,
    ),
    updateRegistration: s(
      `UPDATE workspaces SET url = @url, delivery_mode = @mode, agent_card = @card,
         last_register_failure_at = NULL, last_registered_at = @now,
         last_seen_at = max(last_seen_at, @now), updated_at = @now
       WHERE id = @id`,
    ),
    stampMarker: s(
      'UPDATE workspaces SET last_register_failure_at = @now, updated_at = @now WHERE id = @id',
    ),
    updateLiveness: s(
      `UPDATE workspaces SET last_heartbeat_at = @now, last_seen_at = max(last_seen_at, @now),
         error_rate = @errorRate, sample_error = @sampleError, active_tasks = @activeTasks,
         uptime_seconds = @uptimeSeconds, current_task = @currentTask,
         runtime_state = @runtimeState, native_status_management = @native, updated_at = @now
       WHERE id = @id AND status <> 'REMOVED'`,
    ),
    backfillCard: s(
      'UPDATE workspaces SET agent_card = @card WHERE id = @id AND agent_card IS NULL',
    ),
    clearMarker: s(
      `UPDATE workspaces SET last_register_failure_at = NULL
       WHERE id = @id AND last_register_failure_at IS NOT NULL`,
    ),
    selectProvisionExpired: s<WorkspaceRow>(
      `SELECT * FROM workspaces WHERE status = 'PROVISIONING' AND created_at < @before
       ORDER BY created_at LIMIT @limit`,
    ),
    insertToken: s(
      'INSERT INTO workspace_tokens (token_hash, workspace_id, created_at) VALUES (@hash, @id, @now)',
    ),
    expireTokens: s(
      `UPDATE workspace_tokens SET expires_at = @at
       WHERE workspace_id = @id AND (expires_at IS NULL OR expires_at > @at)`,
    ),
    selectToken: s(
      `SELECT token_hash, workspace_id, expires_at FROM workspace_tokens
       WHERE token_hash = @hash AND (expires_at IS NULL OR expires_at > @now)`,
    ),
    touchToken: s(
      `UPDATE workspace_tokens SET last_used_at = max(coalesce(last_used_at, 0), @at)
       WHERE token_hash = @hash`,
    ),
    touchWorkspaceToken: s(
      `UPDATE workspaces SET token_last_used_at = max(coalesce(token_last_used_at, 0), @at)
       WHERE id = @id`,
    ),
    pruneTokens: s(
      'DELETE FROM workspace_tokens WHERE expires_at IS NOT NULL AND expires_at < @before',
    ),
    insertTransition: s(
      `INSERT INTO transitions (workspace_id, from_status, to_status, reason, detail, at)
       VALUES (@workspaceId, @from, @to, @reason, @detail, @at) RETURNING seq`,
    ),
    selectTransitions: s<TransitionRow>(
      'SELECT * FROM transitions WHERE seq > @after ORDER BY seq LIMIT @limit',
    ),
    selectTransitionsFor: s<TransitionRow>(
      `SELECT * FROM transitions
       WHERE seq > @after AND workspace_id IN (SELECT value FROM json_each(@ids))
       ORDER BY seq LIMIT @limit`,
    ),
    headSeq: s("SELECT seq FROM sqlite_sequence WHERE name = 'transitions'"),
    selectMeta: s('SELECT value FROM meta WHERE key = ?'),
    raiseMeta: s(
      `INSERT INTO meta (key, value) VALUES (@key, @value)
       ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)`,
    ),
    oldestTransitions: s('SELECT seq, at FROM transitions ORDER BY seq LIMIT @limit'),
    deleteTransitionsThrough: s('DELETE FROM transitions WHERE seq <= @through'),
    countByStatus: s('SELECT status, count(*) AS n FROM workspaces GROUP BY status'),
  };
}

/** The columns the status machine reads, and whether a card is stored. */
type MachineStateRow = Pick<
  WorkspaceRow,
  'status' | 'last_heartbeat_at' | 'last_registered_at' | 'last_register_failure_at' | 'created_at'
> &
  ({ agent_card: string | null } | { has_card: number });

/** The statement parameters of a reported health (the liveness columns). */
function reportParams(report: HeartbeatReport) {
  return {
    errorRate: report.errorRate,
    sampleError: report.sampleError,
    activeTasks: report.activeTasks,
    uptimeSeconds: report.uptimeSeconds,
    currentTask: report.currentTask,
    runtimeState: report.runtimeState,
    native: report.nativeStatusManagement ? 1 : 0,
  };
}

function cardStored(row: MachineStateRow): boolean {
  return 'has_card' in row ? row.has_card !== 0 : row.agent_card !== null;
}

function machineState(row: MachineStateRow): MachineState {
  return {
    status: row.status,
    lastHeartbeatAt: row.last_heartbeat_at ?? undefined,
    lastRegisteredAt: row.last_registered_at ?? undefined,
    lastRegisterFailureAt: row.last_register_failure_at ?? undefined,
    createdAt: row.created_at,
  };
}

function toWorkspace(row: WorkspaceRow): Workspace {
  return {
    id: row.id,
    name: row.name,
    status: row.status,
    url: row.url,
    deliveryMode: row.delivery_mode,
    agentCard: row.agent_card === null ? undefined : (JSON.parse(row.agent_card) as AgentCard),
    lastHeartbeatAt: row.last_heartbeat_at ?? undefined,
    lastRegisteredAt: row.last_registered_at ?? undefined,
    lastRegisterFailureAt: row.last_register_failure_at ?? undefined,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    statusChangedAt: row.status_changed_at,
    errorRate: row.error_rate,
    sampleError: row.sample_error,
    activeTasks: row.active_tasks,
    uptimeSeconds: row.uptime_seconds,
    currentTask: row.current_task,
    runtimeState: row.runtime_state,
    nativeStatusManagement: row.native_status_management !== 0,
    tokenLastUsedAt: row.token_last_used_at ?? undefined,
  };
}

function toTransition(row: TransitionRow): Transition {
  return {
    seq: row.seq,
    workspaceId: row.workspace_id,
    fromStatus: row.from_status ?? undefined,
    toStatus: row.to_status,
    reason: row.reason,
    detail: row.detail,
    at: row.at,
  };
}
