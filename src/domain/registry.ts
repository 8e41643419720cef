import { randomUUID } from 'node:crypto';
import { validateAgentCard, type CardInput } from './agent-card.js';
import { createLivenessTracker, type LivenessTracker } from './liveness-tracker.js';
import { createRateLimiter, type RateLimit } from './rate-limiter.js';
import type { Clock } from './clock.js';
import type { Timings } from './config.js';
import { VigilError, fieldInvalid } from './errors.js';
import {
  LIVE_STATUSES,
  type DeliveryMode,
  type HeartbeatReport,
  type Transition,
  type Workspace,
  type WorkspaceStatus,
} from './model.js';
import { decodeNumberPageToken, decodeStringPageToken, encodePageToken } from './page-token.js';
import type { HeartbeatApplied, RegistryStore, TokenRecord, TokenUse } from './registry-store.js';
import { nextStatus, type MachineState, type StatusEvent } from './status-machine.js';
import { WORKSPACE_TOKEN_PREFIX, generateToken, hashToken } from './tokens.js';
import { validateUrl, type HostResolver, type UrlPolicyName } from './url-policy.js';
import {
  MAX_CURRENT_TASK_BYTES,
  MAX_NAME_BYTES,
  MAX_SAMPLE_ERROR_BYTES,
  checkMaxBytes,
  checkPageSize,
  checkWorkspaceId,
} from './validation.js';

/**
 * The use-cases of Vigil: validation, authentication of workspace tokens, the
 * status machine applied through the store, and publication of committed
 * transitions. Transport calls these with plain domain values.
 */

export interface RegistryOptions {
  readonly store: RegistryStore;
  readonly clock: Clock;
  readonly timings: Timings;
  readonly urlPolicy: UrlPolicyName;
  readonly resolveHost: HostResolver;
  /** Time this server process started: downtime before it never counts against a workspace. */
  readonly serverStartedAt: number;
  /** Largest `sample_error` and `current_task` accepted, in bytes (defaults 4096 and 1024). */
  readonly fieldLimits?: { readonly sampleErrorBytes: number; readonly currentTaskBytes: number };
  /** Per-workspace heartbeat rate limit; none when unset. */
  readonly heartbeatRateLimit?: RateLimit | undefined;
  /** Source of randomness for the heartbeat hint jitter; Math.random by default. */
  readonly random?: () => number;
}

export interface RegisterCommand {
  readonly workspaceId: string;
  readonly url: string;
  readonly agentCard: unknown;
  readonly deliveryMode: DeliveryMode;
}

export interface HeartbeatCommand {
  readonly workspaceId: string;
  /** `undefined` when the heartbeat carries no card. */
  readonly agentCard: CardInput | undefined;
  readonly report: HeartbeatReport;
}

/**
 * A workspace token resolved once (say, when a HeartbeatStream opens): later
 * calls through it check that nothing was revoked or rotated since, without
 * hashing the token again. Opaque to callers.
 */
export interface WorkspaceSession {
  readonly workspaceId: string;
}

/** What a heartbeat returns. */
export interface HeartbeatResult extends HeartbeatApplied {
  readonly heartbeatIntervalMs: number;
  /** True when it was answered from memory (it changed no status, marker or card). */
  readonly fromMemory: boolean;
}

/** Counters of the heartbeat path, read by metrics. */
export interface HeartbeatStats {
  /** Heartbeats answered from memory, with nothing written before the reply. */
  readonly answeredFromMemory: number;
  /** Heartbeats that went through a store transaction. */
  readonly written: number;
  /** Agent cards decoded and validated (a card equal to the last accepted one is not). */
  readonly cardsValidated: number;
}

export interface Page<T> {
  readonly items: T[];
  readonly nextPageToken: string;
}

const SWEEP_BATCH = 500;
/** Entries in the valid-token cache before it starts over. */
const TOKEN_CACHE_SIZE = 100_000;
/** Each workspace's last-seen time and health reach the store about this often. */
export const LIVENESS_FLUSH_MS = 60_000;
/** Each token's last use reaches the store about this often. */
export const TOKEN_USE_FLUSH_MS = 5 * 60_000;
/** Rows written per flush call. */
const FLUSH_BATCH = 5_000;

export type Registry = ReturnType<typeof createRegistry>;

interface CachedToken extends TokenRecord {
  readonly epoch: number;
  readonly key: string;
  readonly hash: Buffer;
}

interface Session extends WorkspaceSession {
  token: CachedToken;
}

export function createRegistry(options: RegistryOptions) {
  const { store, clock, timings } = options;
  const random = options.random ?? Math.random;
  const fieldLimits = options.fieldLimits ?? {
    sampleErrorBytes: MAX_SAMPLE_ERROR_BYTES,
    currentTaskBytes: MAX_CURRENT_TASK_BYTES,
  };
  const liveness: LivenessTracker = createLivenessTracker(options.serverStartedAt);
  // The tracker mirrors every commit, told by the store itself, in commit order.
  store.subscribe((commit) => {
    liveness.observe(commit.states);
  });
  const stats = { answeredFromMemory: 0, written: 0, cardsValidated: 0 };
  // Token uses not yet written, in the order they were first seen since the last write.
  const tokenUses = new Map<
    string,
    { readonly tokenHash: Uint8Array; readonly workspaceId: string; at: number; since: number }
  >();
  // Valid tokens seen lately, so a heartbeat costs no token lookup. Any change to
  // tokens made here bumps the epoch, which makes every entry miss: revocation
  // and rotation take effect on the very next call.
  const tokenCache = new Map<string, CachedToken>();
  let tokenEpoch = 0;
  const limiter = options.heartbeatRateLimit
    ? createRateLimiter(options.heartbeatRateLimit, clock)
    : undefined;

  const decider = (event: StatusEvent, now: number) => (state: Parameters<typeof nextStatus>[0]) =>
    nextStatus(state, event, now, timings);

  /** The next-heartbeat hint: the interval jittered ±10% so a restarted fleet does not beat in lockstep. */
  function heartbeatHintMs(): number {
    return Math.round(timings.heartbeatIntervalMs * (0.9 + 0.2 * random()));
  }

  /** A token still valid at `now`, from the cache or the store. Throws TOKEN_INVALID / AUTH_UNAVAILABLE. */
  async function validToken(hash: Buffer, key: string, now: number): Promise<CachedToken> {
    const cached = tokenCache.get(key);
    if (cached && cached.epoch === tokenEpoch && (cached.expiresAt ?? Infinity) > now) {
      return cached;
    }
    const epoch = tokenEpoch;
    let found: TokenRecord | undefined;
    try {
      found = await store.findToken(hash, now);
    } catch (cause) {
      // Fail closed: a token store that cannot answer never lets a call through.
      throw new VigilError(
        'AUTH_UNAVAILABLE',
        'the token store is unavailable; try again',
        {},
        { cause },
      );
    }
    if (found === undefined) {
      tokenCache.delete(key);
      throw new VigilError('TOKEN_INVALID', 'the workspace token is not valid');
    }
    if (tokenCache.size >= TOKEN_CACHE_SIZE) tokenCache.clear();
    // Cached under the epoch the lookup started in: a rotation meanwhile makes it miss.
    const record: CachedToken = { ...found, epoch, key, hash };
    tokenCache.set(key, record);
    return record;
  }

  /** Kept in memory and written in bulk: a write per call would double the heartbeat cost. */
  function recordUse(token: CachedToken, now: number): void {
    const use = tokenUses.get(token.key);
    if (use) use.at = now;
    else {
      tokenUses.set(token.key, {
        tokenHash: token.hash,
        workspaceId: token.workspaceId,
        at: now,
        since: now,
      });
    }
  }

  /**
   * Resolves a workspace token once (hashing it) into a session whose later
   * checks cost no hashing. Throws TOKEN_MISSING / TOKEN_INVALID / AUTH_UNAVAILABLE.
   */
  async function openSession(token: string | undefined): Promise<WorkspaceSession> {
    if (token === undefined || token === '') {
      throw new VigilError(
        'TOKEN_MISSING',
        'a workspace token is required (authorization: Bearer <token>)',
      );
    }
    const hash = hashToken(token);
    const now = clock.now();
    const record = await validToken(hash, hash.toString('hex'), now);
    recordUse(record, now);
    const session: Session = { workspaceId: record.workspaceId, token: record };
    return session;
  }

  /**
   * Checks that a session's token is still valid — unchanged since it was
   * resolved, unless a revocation or rotation happened since or it expired,
   * in which case it is looked up again by its hash. Throws TOKEN_INVALID.
   */
  async function checkSession(workspaceSession: WorkspaceSession): Promise<void> {
    const session = workspaceSession as Session;
    const now = clock.now();
    const current = session.token;
    if (current.epoch !== tokenEpoch || (current.expiresAt ?? Infinity) <= now) {
      session.token = await validToken(current.hash, current.key, now);
    }
    recordUse(session.token, now);
  }

  /** The workspace a token belongs to. Throws TOKEN_MISSING / TOKEN_INVALID / AUTH_UNAVAILABLE. */
  async function resolveWorkspaceToken(token: string | undefined): Promise<string> {
    return (await openSession(token)).workspaceId;
  }

  /**
   * Writes token uses (last_used_at) older than the flush interval, or all of
   * them with `all` (at shutdown).
   */
  async function flushTokenUsage(all = true): Promise<void> {
    const cutoff = all ? Infinity : clock.now() - TOKEN_USE_FLUSH_MS;
    const uses: TokenUse[] = [];
    for (const [key, use] of tokenUses) {
      if (use.since > cutoff || uses.length >= FLUSH_BATCH) break;
      tokenUses.delete(key);
      uses.push({ tokenHash: use.tokenHash, workspaceId: use.workspaceId, at: use.at });
    }
    if (uses.length > 0) await store.touchTokens(uses);
  }

  /**
   * Writes last-seen times and reported health that have waited for the
   * flush interval (or all of them, with `all`), in batches. Losing them in a
   * crash is harmless: see the restart grace in the sweep.
   */
  async function flushLiveness(all = true): Promise<number> {
    const cutoff = all ? Infinity : clock.now() - LIVENESS_FLUSH_MS;
    let written = 0;
    for (;;) {
      const records = liveness.takeDirty(cutoff, FLUSH_BATCH);
      if (records.length === 0) return written;
      try {
        await store.recordLiveness(records);
      } catch (error) {
        liveness.restore(records);
        throw error;
      }
      written += records.length;
      if (records.length < FLUSH_BATCH) return written;
    }
  }

  /** Loads the liveness of every ONLINE/DEGRADED workspace: call once, before serving. */
  async function start(): Promise<void> {
    liveness.observe(await store.liveStates());
  }

  function checkOwner(owner: string, workspaceId: string): void {
    if (owner !== workspaceId) {
      throw new VigilError('WRONG_WORKSPACE', 'the workspace token belongs to another workspace', {
        workspaceId,
      });
    }
  }

  async function authenticateWorkspace(
    token: string | undefined,
    workspaceId: string,
  ): Promise<void> {
    checkOwner(await resolveWorkspaceToken(token), workspaceId);
  }

  /** Copies in the liveness this process knows and the store may not have yet. */
  function withLiveness(workspace: Workspace): Workspace {
    const entry = liveness.get(workspace.id);
    const at = entry?.lastHeartbeatAt;
    if (!entry?.health || at === undefined || at <= (workspace.lastHeartbeatAt ?? 0)) {
      return workspace;
    }
    return {
      ...workspace,
      ...entry.health,
      lastHeartbeatAt: at,
      updatedAt: Math.max(workspace.updatedAt, at),
    };
  }

  async function register(token: string | undefined, command: RegisterCommand) {
    await authenticateWorkspace(token, command.workspaceId);
    if (command.agentCard === undefined) {
      throw new VigilError('AGENT_CARD_INVALID', 'agent_card is required');
    }
    const agentCard = validateAgentCard(command.agentCard);
    if (command.deliveryMode === 'PUSH') {
      if (command.url === '') throw fieldInvalid('url', 'is required for PUSH delivery');
      try {
        await validateUrl(command.url, options.urlPolicy, options.resolveHost);
      } catch (error) {
        if (error instanceof VigilError && error.reason === 'URL_VALIDATE_FAILED') {
          const now = clock.now();
          await store.applyRegisterFailure(
            { id: command.workspaceId, detail: error.message, now },
            decider({ type: 'REGISTER_URL_FAILED' }, now),
          );
        }
        throw error;
      }
    } else {
      checkMaxBytes(command.url, 2048, 'url');
    }
    const now = clock.now();
    const applied = await store.applyRegister(
      {
        id: command.workspaceId,
        url: command.url,
        deliveryMode: command.deliveryMode,
        agentCard,
        now,
      },
      decider({ type: 'REGISTER_OK' }, now),
    );
    return { workspace: withLiveness(applied.workspace), heartbeatIntervalMs: heartbeatHintMs() };
  }

  /**
   * Applies one heartbeat, authenticated by a token or by a session opened
   * earlier. A heartbeat that changes no status, marker or card is answered
   * from memory with nothing written before the reply; anything else goes
   * through the store's heartbeat transaction and is durable before the reply.
   */
  async function heartbeat(
    caller: string | undefined | WorkspaceSession,
    command: HeartbeatCommand,
  ): Promise<HeartbeatResult> {
    if (typeof caller === 'object') {
      await checkSession(caller);
      checkOwner(caller.workspaceId, command.workspaceId);
    } else {
      await authenticateWorkspace(caller, command.workspaceId);
    }
    // After authentication, so nobody can spend another workspace's budget.
    const waitMs = limiter?.take(command.workspaceId) ?? 0;
    if (waitMs > 0) {
      throw new VigilError(
        'RATE_LIMITED',
        `too many heartbeats for workspace ${command.workspaceId}; retry in ${waitMs} ms`,
        { workspaceId: command.workspaceId, retryAfterMs: String(waitMs) },
        { retryAfterMs: waitMs },
      );
    }
    return applyHeartbeat(command);
  }

  async function applyHeartbeat(command: HeartbeatCommand): Promise<HeartbeatResult> {
    const { report, workspaceId: id } = command;
    if (!Number.isFinite(report.errorRate) || report.errorRate < 0 || report.errorRate > 1) {
      throw fieldInvalid('error_rate', 'must be a number from 0 to 1');
    }
    checkMaxBytes(report.sampleError, fieldLimits.sampleErrorBytes, 'sample_error');
    checkMaxBytes(report.currentTask, fieldLimits.currentTaskBytes, 'current_task');
    if (!Number.isSafeInteger(report.uptimeSeconds) || report.uptimeSeconds < 0) {
      throw fieldInvalid('uptime_seconds', 'is out of range');
    }
    const card = command.agentCard;
    const entry = liveness.get(id);
    // A card equal to the last one accepted from this workspace was valid then and is now.
    const fingerprint = card?.fingerprint();
    let serialized: string | undefined;
    const validate = (input: CardInput) => {
      stats.cardsValidated += 1;
      return validateAgentCard(input.decode());
    };
    if (card && (fingerprint === undefined || entry?.cardFingerprint !== fingerprint)) {
      serialized = validate(card);
    }
    const now = clock.now();
    const event: StatusEvent = { type: 'HEARTBEAT', health: report };
    if (
      entry &&
      (!card || (entry.hasCard && entry.lastRegisterFailureAt === undefined)) &&
      nextStatus(entry satisfies MachineState, event, now, timings) === undefined
    ) {
      // Nothing durable would change: answer from memory.
      liveness.beat(id, now, report);
      if (fingerprint !== undefined) entry.cardFingerprint = fingerprint;
      stats.answeredFromMemory += 1;
      return {
        status: entry.status,
        transition: undefined,
        cardBackfillChanges: 0,
        markerClearChanges: 0,
        heartbeatIntervalMs: heartbeatHintMs(),
        fromMemory: true,
      };
    }
    // Seen now, even while its write waits for the shared commit: the sweep must not time it out.
    liveness.beat(id, now, report);
    // The backfill statement needs the serialized card even when its bytes are unchanged.
    if (card && serialized === undefined) serialized = validate(card);
    stats.written += 1;
    const applied = await store.applyHeartbeat(
      { id, report, agentCard: serialized, now },
      decider(event, now),
    );
    const after = liveness.get(id);
    if (after) {
      if (fingerprint !== undefined) after.cardFingerprint = fingerprint;
      liveness.beat(id, now, report);
    }
    return { ...applied, heartbeatIntervalMs: heartbeatHintMs(), fromMemory: false };
  }

  async function createWorkspace(workspaceId: string, name: string) {
    const id = workspaceId === '' ? randomUUID() : checkWorkspaceId(workspaceId);
    checkMaxBytes(name, MAX_NAME_BYTES, 'name');
    const token = generateToken(WORKSPACE_TOKEN_PREFIX);
    const applied = await store.createWorkspace({
      id,
      name: name === '' ? id : name,
      tokenHash: hashToken(token),
      now: clock.now(),
    });
    return { workspace: applied.workspace, workspaceToken: token };
  }

  async function getWorkspace(workspaceId: string): Promise<Workspace> {
    const workspace = await store.getWorkspace(checkWorkspaceId(workspaceId));
    if (!workspace) throw notFound(workspaceId);
    return withLiveness(workspace);
  }

  async function listWorkspaces(
    pageSize: number,
    pageToken: string,
    statuses: readonly WorkspaceStatus[],
  ): Promise<Page<Workspace>> {
    const limit = checkPageSize(pageSize);
    const filter = [...new Set(statuses)].sort().join(',');
    const afterId = decodeStringPageToken(pageToken, filter) ?? '';
    const rows = await store.listWorkspaces({
      statuses: statuses.length > 0 ? statuses : LIVE_STATUSES,
      afterId,
      limit: limit + 1,
      workspaceIds: [],
    });
    const items = rows.slice(0, limit).map(withLiveness);
    const last = items.at(-1);
    return {
      items,
      nextPageToken: rows.length > limit && last ? encodePageToken(last.id, filter) : '',
    };
  }

  async function deleteWorkspace(workspaceId: string): Promise<Workspace> {
    const now = clock.now();
    const applied = await store.deleteWorkspace(
      checkWorkspaceId(workspaceId),
      now,
      decider({ type: 'DELETE' }, now),
    );
    return applied.workspace;
  }

  /**
   * Issues a new token. Earlier tokens keep working for the rotation overlap,
   * or stop at once with `revokePrevious`.
   */
  async function rotateWorkspaceToken(workspaceId: string, revokePrevious: boolean) {
    const token = generateToken(WORKSPACE_TOKEN_PREFIX);
    const now = clock.now();
    const previousExpireAt = revokePrevious ? now : now + timings.tokenRotationOverlapMs;
    await store.addToken(checkWorkspaceId(workspaceId), hashToken(token), now, previousExpireAt);
    tokenEpoch += 1;
    return { workspaceToken: token, previousExpireAt };
  }

  /** Ends every token of a workspace now. */
  async function revokeWorkspaceTokens(workspaceId: string): Promise<number> {
    const revoked = await store.revokeTokens(checkWorkspaceId(workspaceId), clock.now());
    tokenEpoch += 1;
    return revoked;
  }

  async function listTransitions(
    workspaceId: string,
    pageSize: number,
    pageToken: string,
  ): Promise<Page<Transition>> {
    const limit = checkPageSize(pageSize);
    if (workspaceId !== '') checkWorkspaceId(workspaceId);
    const afterSeq = decodeNumberPageToken(pageToken, workspaceId) ?? 0;
    const rows = await store.readTransitions({
      afterSeq,
      limit: limit + 1,
      workspaceIds: workspaceId === '' ? [] : [workspaceId],
    });
    const items = rows.slice(0, limit);
    const last = items.at(-1);
    return {
      items,
      nextPageToken: rows.length > limit && last ? encodePageToken(last.seq, workspaceId) : '',
    };
  }

  /**
   * One liveness sweep, decided from the in-memory tracker: ONLINE/DEGRADED
   * workspaces with `now − max(lastSeen, ownedSince) > offline_after` go
   * OFFLINE, PROVISIONING ones older than the provision timeout go FAILED.
   * Time before this process took charge (its start) never counts.
   */
  async function sweep(): Promise<Transition[]> {
    const all: Transition[] = [];
    const started = options.serverStartedAt;
    for (;;) {
      const now = clock.now();
      const silent = liveness.expired(now, timings.offlineAfterMs, SWEEP_BATCH);
      const provisionCutoff = now - timings.provisionTimeoutMs;
      // Decided inside the transaction from the tracker as it is then, so a
      // heartbeat that arrived meanwhile is counted.
      const batch = await store.sweep(
        {
          now,
          silent,
          createdBefore: started < provisionCutoff ? provisionCutoff : Number.MIN_SAFE_INTEGER,
          limit: SWEEP_BATCH,
        },
        (state, id) => {
          const entry = liveness.get(id);
          return nextStatus(
            state,
            { type: 'SWEEP', ownedSince: entry?.ownedSince ?? started, lastSeen: entry?.lastSeen },
            now,
            timings,
          );
        },
      );
      all.push(...batch);
      const provisioned = batch.filter((t) => t.reason === 'PROVISION_TIMEOUT').length;
      // Silent candidates the machine left alone were re-read into the tracker, so they do not come back.
      if (silent.length < SWEEP_BATCH && provisioned < SWEEP_BATCH) return all;
      if (batch.length === 0) return all;
    }
  }

  /**
   * Drops transitions older than the retention from the log. Watchers whose
   * cursor falls in the dropped part get a snapshot marked `reset`.
   */
  async function compactHistory(): Promise<number> {
    let total = 0;
    for (;;) {
      const deleted = await store.compactTransitions(clock.now() - timings.retentionMs, 10_000);
      total += deleted;
      if (deleted < 10_000) break;
    }
    // Expired tokens are invalid already; removing them only keeps the table small.
    await store.pruneExpiredTokens(clock.now());
    return total;
  }

  return {
    start,
    openSession,
    resolveWorkspaceToken,
    authenticateWorkspace,
    register,
    heartbeat,
    flushLiveness,
    withLiveness,
    /** Counters of the heartbeat path. */
    heartbeatStats: (): HeartbeatStats => ({ ...stats }),
    /** Workspaces whose liveness this process tracks. */
    trackedWorkspaces: () => liveness.size,
    createWorkspace,
    getWorkspace,
    listWorkspaces,
    deleteWorkspace,
    rotateWorkspaceToken,
    revokeWorkspaceTokens,
    flushTokenUsage,
    listTransitions,
    sweep,
    compactHistory,
  };
}

function notFound(workspaceId: string): VigilError {
  return new VigilError('WORKSPACE_NOT_FOUND', `workspace ${workspaceId} does not exist`, {
    workspaceId,
  });
}
