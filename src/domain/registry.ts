import { randomUUID } from 'node:crypto';
import { validateAgentCard } from './agent-card.js';
import { createHeartbeatBatcher } from './heartbeat-batcher.js';
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
import type { Applied, RegistryStore, TokenRecord, TokenUse } from './registry-store.js';
import { nextStatus, type StatusEvent } from './status-machine.js';
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
  /** Told about every committed transition, in `seq` order, after commit. */
  readonly onCommitted: (transitions: readonly Transition[]) => void;
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
  readonly agentCard: unknown;
  readonly report: HeartbeatReport;
}

export interface Page<T> {
  readonly items: T[];
  readonly nextPageToken: string;
}

const SWEEP_BATCH = 500;
/** Entries in the valid-token cache before it starts over. */
const TOKEN_CACHE_SIZE = 100_000;

export type Registry = ReturnType<typeof createRegistry>;

export function createRegistry(options: RegistryOptions) {
  const { store, clock, timings } = options;
  const random = options.random ?? Math.random;
  const heartbeats = createHeartbeatBatcher(store, options.onCommitted);
  const fieldLimits = options.fieldLimits ?? {
    sampleErrorBytes: MAX_SAMPLE_ERROR_BYTES,
    currentTaskBytes: MAX_CURRENT_TASK_BYTES,
  };
  const tokenUses = new Map<string, TokenUse>();
  // Valid tokens seen lately, so a heartbeat costs no token lookup. Any change to
  // tokens made here bumps the epoch, which makes every entry miss: revocation
  // and rotation take effect on the very next call.
  const tokenCache = new Map<string, TokenRecord & { epoch: number }>();
  let tokenEpoch = 0;
  const limiter = options.heartbeatRateLimit
    ? createRateLimiter(options.heartbeatRateLimit, clock)
    : undefined;

  const decider = (event: StatusEvent, now: number) => (state: Parameters<typeof nextStatus>[0]) =>
    nextStatus(state, event, now, timings);

  function published<T extends Applied>(applied: T): T {
    if (applied.transition) options.onCommitted([applied.transition]);
    return applied;
  }

  /** The next-heartbeat hint: the interval jittered ±10% so a restarted fleet does not beat in lockstep. */
  function heartbeatHintMs(): number {
    return Math.round(timings.heartbeatIntervalMs * (0.9 + 0.2 * random()));
  }

  /** The workspace a token belongs to. Throws TOKEN_MISSING / TOKEN_INVALID / AUTH_UNAVAILABLE. */
  async function resolveWorkspaceToken(token: string | undefined): Promise<string> {
    if (token === undefined || token === '') {
      throw new VigilError(
        'TOKEN_MISSING',
        'a workspace token is required (authorization: Bearer <token>)',
      );
    }
    const hash = hashToken(token);
    const key = hash.toString('hex');
    const now = clock.now();
    let record = tokenCache.get(key);
    if (!record || record.epoch !== tokenEpoch || (record.expiresAt ?? Infinity) <= now) {
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
      record = { ...found, epoch: tokenEpoch };
      tokenCache.set(key, record);
    }
    // Kept in memory and written in bulk: a write per call would double the heartbeat cost.
    tokenUses.set(key, { tokenHash: hash, workspaceId: record.workspaceId, at: now });
    return record.workspaceId;
  }

  /** Writes the remembered token uses (last_used_at). */
  async function flushTokenUsage(): Promise<void> {
    if (tokenUses.size === 0) return;
    const uses = [...tokenUses.values()];
    tokenUses.clear();
    await store.touchTokens(uses);
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
          published(
            await store.applyRegisterFailure(
              { id: command.workspaceId, detail: error.message, now },
              decider({ type: 'REGISTER_URL_FAILED' }, now),
            ),
          );
        }
        throw error;
      }
    } else {
      checkMaxBytes(command.url, 2048, 'url');
    }
    const now = clock.now();
    const applied = published(
      await store.applyRegister(
        {
          id: command.workspaceId,
          url: command.url,
          deliveryMode: command.deliveryMode,
          agentCard,
          now,
        },
        decider({ type: 'REGISTER_OK' }, now),
      ),
    );
    return { workspace: applied.workspace, heartbeatIntervalMs: heartbeatHintMs() };
  }

  async function heartbeat(token: string | undefined, command: HeartbeatCommand) {
    await authenticateWorkspace(token, command.workspaceId);
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

  async function applyHeartbeat(command: HeartbeatCommand) {
    const { report } = command;
    if (!Number.isFinite(report.errorRate) || report.errorRate < 0 || report.errorRate > 1) {
      throw fieldInvalid('error_rate', 'must be a number from 0 to 1');
    }
    checkMaxBytes(report.sampleError, fieldLimits.sampleErrorBytes, 'sample_error');
    checkMaxBytes(report.currentTask, fieldLimits.currentTaskBytes, 'current_task');
    if (!Number.isSafeInteger(report.uptimeSeconds) || report.uptimeSeconds < 0) {
      throw fieldInvalid('uptime_seconds', 'is out of range');
    }
    const agentCard =
      command.agentCard === undefined ? undefined : validateAgentCard(command.agentCard);
    const now = clock.now();
    // Published by the batcher, after the shared commit.
    const applied = await heartbeats.apply(
      { id: command.workspaceId, report, agentCard, now },
      decider({ type: 'HEARTBEAT', health: report }, now),
    );
    return { ...applied, heartbeatIntervalMs: heartbeatHintMs() };
  }

  async function createWorkspace(workspaceId: string, name: string) {
    const id = workspaceId === '' ? randomUUID() : checkWorkspaceId(workspaceId);
    checkMaxBytes(name, MAX_NAME_BYTES, 'name');
    const token = generateToken(WORKSPACE_TOKEN_PREFIX);
    const applied = published(
      await store.createWorkspace({
        id,
        name: name === '' ? id : name,
        tokenHash: hashToken(token),
        now: clock.now(),
      }),
    );
    return { workspace: applied.workspace, workspaceToken: token };
  }

  async function getWorkspace(workspaceId: string): Promise<Workspace> {
    const workspace = await store.getWorkspace(checkWorkspaceId(workspaceId));
    if (!workspace) throw notFound(workspaceId);
    return workspace;
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
    const items = rows.slice(0, limit);
    const last = items.at(-1);
    return {
      items,
      nextPageToken: rows.length > limit && last ? encodePageToken(last.id, filter) : '',
    };
  }

  async function deleteWorkspace(workspaceId: string): Promise<Workspace> {
    const now = clock.now();
    const applied = published(
      await store.deleteWorkspace(
        checkWorkspaceId(workspaceId),
        now,
        decider({ type: 'DELETE' }, now),
      ),
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
   * One liveness sweep: ONLINE/DEGRADED workspaces silent for longer than
   * `offline_after` go OFFLINE, PROVISIONING ones older than the provision
   * timeout go FAILED. Time before this server started never counts.
   */
  async function sweep(): Promise<Transition[]> {
    const all: Transition[] = [];
    for (;;) {
      const now = clock.now();
      // Candidates are exactly the workspaces the machine will move, so a
      // batch shorter than the limit means the sweep is done.
      const started = options.serverStartedAt;
      const offlineCutoff = now - timings.offlineAfterMs;
      const provisionCutoff = now - timings.provisionTimeoutMs;
      const batch = await store.sweep(
        {
          now,
          lastSeenBefore: started < offlineCutoff ? offlineCutoff : Number.MIN_SAFE_INTEGER,
          createdBefore: started < provisionCutoff ? provisionCutoff : Number.MIN_SAFE_INTEGER,
          limit: SWEEP_BATCH,
        },
        decider({ type: 'SWEEP', serverStartedAt: options.serverStartedAt }, now),
      );
      if (batch.length > 0) options.onCommitted(batch);
      all.push(...batch);
      if (batch.length < SWEEP_BATCH) return all;
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
    resolveWorkspaceToken,
    authenticateWorkspace,
    register,
    heartbeat,
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
