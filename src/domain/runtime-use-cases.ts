import { agentCardUrls, validateAgentCard, type CardInput } from './agent-card.js';
import type { Clock } from './clock.js';
import type { Timings } from './config.js';
import { VigilError, fieldInvalid } from './errors.js';
import type { Liveness } from './liveness.js';
import type { LivenessEntry } from './liveness-tracker.js';
import type { DeliveryMode, HeartbeatReport, Workspace } from './model.js';
import { createRateLimiter, type RateLimit } from './rate-limiter.js';
import type { HeartbeatApplied, RegistryStore } from './registry-store.js';
import { nextStatus, type StatusEvent } from './status-machine.js';
import { MAX_URL_BYTES, type UrlChecker } from './url-policy.js';
import { MAX_CURRENT_TASK_BYTES, MAX_SAMPLE_ERROR_BYTES, checkMaxBytes } from './validation.js';
import type { WorkspaceSession, WorkspaceTokens } from './workspace-tokens.js';

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

/** A caller of a runtime use-case: its bearer token, or a session opened with it. */
export type RuntimeCaller = string | undefined | WorkspaceSession;

/**
 * The runtime use-cases, called by sidecars: Register and Heartbeat. Each
 * authenticates first (nothing else happens for a bad token), then validates
 * everything it received (nothing is written for bad input), then applies
 * the status machine through the store.
 */
export interface RuntimeUseCases {
  /**
   * Stores URL (a PUSH URL in the canonical form that was checked) and card,
   * clears the marker, moves the workspace ONLINE, and returns it with the
   * heartbeat hint. A URL that fails validation (after authentication) stamps
   * the marker (ONLINE → DEGRADED) and throws URL_VALIDATE_FAILED; `signal`
   * stops waiting on name resolution.
   */
  register(
    caller: RuntimeCaller,
    command: RegisterCommand,
    signal?: AbortSignal,
  ): Promise<{ readonly workspace: Workspace; readonly heartbeatIntervalMs: number }>;
  /**
   * Applies one heartbeat. One that changes no status, marker or card is
   * answered from memory and writes nothing before its reply; anything else
   * goes through the store's heartbeat transaction and is durable before the
   * reply. A card equal to the last one accepted from the workspace is not
   * decoded or validated again; an invalid card is refused with nothing
   * written. Throws RATE_LIMITED past the per-workspace rate.
   *
   * Answers at once (a value, not a promise) when it can: an open session,
   * a workspace this process already tracks, an unchanged card and nothing
   * durable to change — the steady heartbeat, with no promise made for it.
   * Errors may then be thrown at once too.
   */
  heartbeat(
    caller: RuntimeCaller,
    command: HeartbeatCommand,
  ): HeartbeatResult | Promise<HeartbeatResult>;
  /** Counters of the heartbeat path. */
  heartbeatStats(): HeartbeatStats;
}

export interface RuntimeOptions {
  readonly store: RegistryStore;
  readonly tokens: WorkspaceTokens;
  readonly liveness: Liveness;
  readonly clock: Clock;
  readonly timings: Timings;
  /** Checks a PUSH Register's URL and returns the canonical form to store. */
  readonly checkUrl: UrlChecker;
  /** Largest `sample_error` and `current_task` accepted, in bytes (defaults 4096 and 1024). */
  readonly fieldLimits?:
    { readonly sampleErrorBytes: number; readonly currentTaskBytes: number } | undefined;
  /** Per-workspace heartbeat rate limit; none when unset. */
  readonly heartbeatRateLimit?: RateLimit | undefined;
  /** Per-workspace Register rate limit; none when unset. */
  readonly registerRateLimit?: RateLimit | undefined;
  /** URL checks (name resolution) one workspace may have in flight at once; 2 by default. */
  readonly urlChecksPerWorkspace?: number | undefined;
  /** Source of randomness for the heartbeat hint jitter; Math.random by default. */
  readonly random?: (() => number) | undefined;
}

export function createRuntimeUseCases(options: RuntimeOptions): RuntimeUseCases {
  const { store, tokens, liveness, clock, timings } = options;
  const random = options.random ?? Math.random;
  const fieldLimits = options.fieldLimits ?? {
    sampleErrorBytes: MAX_SAMPLE_ERROR_BYTES,
    currentTaskBytes: MAX_CURRENT_TASK_BYTES,
  };
  const limiter = options.heartbeatRateLimit
    ? createRateLimiter(options.heartbeatRateLimit, clock)
    : undefined;
  const registerLimiter = options.registerRateLimit
    ? createRateLimiter(options.registerRateLimit, clock)
    : undefined;
  const urlChecksPerWorkspace = options.urlChecksPerWorkspace ?? 2;
  // URL checks in flight per workspace: one workspace's slow names cannot pile up without bound.
  const checking = new Map<string, number>();
  const stats = { answeredFromMemory: 0, written: 0, cardsValidated: 0 };

  function rateLimited(what: string, id: string, waitMs: number): VigilError {
    return new VigilError(
      'RATE_LIMITED',
      `too many ${what} for workspace ${id}; retry in ${waitMs} ms`,
      { workspaceId: id, retryAfterMs: String(waitMs) },
      { retryAfterMs: waitMs },
    );
  }

  /** Runs one URL check of workspace `id`, refusing it past the per-workspace bound. */
  async function checkUrlOf(id: string, url: string, signal?: AbortSignal): Promise<string> {
    const running = checking.get(id) ?? 0;
    if (running >= urlChecksPerWorkspace) throw rateLimited('URL checks in flight', id, 1_000);
    checking.set(id, running + 1);
    try {
      return await options.checkUrl(url, signal);
    } finally {
      const left = (checking.get(id) ?? 1) - 1;
      if (left === 0) checking.delete(id);
      else checking.set(id, left);
    }
  }

  const decider = (event: StatusEvent, now: number) => (state: Parameters<typeof nextStatus>[0]) =>
    nextStatus(state, event, now, timings);

  /** The next-heartbeat hint: the interval jittered ±10% so a restarted fleet does not beat in lockstep. */
  function heartbeatHintMs(): number {
    return Math.round(timings.heartbeatIntervalMs * (0.9 + 0.2 * random()));
  }

  function validateReport(report: HeartbeatReport): void {
    if (!Number.isFinite(report.errorRate) || report.errorRate < 0 || report.errorRate > 1) {
      throw fieldInvalid('error_rate', 'must be a number from 0 to 1');
    }
    checkMaxBytes(report.sampleError, fieldLimits.sampleErrorBytes, 'sample_error');
    checkMaxBytes(report.currentTask, fieldLimits.currentTaskBytes, 'current_task');
    if (!Number.isSafeInteger(report.uptimeSeconds) || report.uptimeSeconds < 0) {
      throw fieldInvalid('uptime_seconds', 'is out of range');
    }
  }

  function validateCard(card: CardInput): string {
    stats.cardsValidated += 1;
    return validateAgentCard(card.decode());
  }

  /**
   * Checks a card's endpoints against the URL policy (A2A clients call them):
   * a refused one is AGENT_CARD_INVALID (nothing written, no marker); a
   * resolution without a definitive answer is URL_RESOLVE_UNAVAILABLE.
   */
  async function checkCardUrls(id: string, card: unknown, signal?: AbortSignal): Promise<void> {
    for (const url of agentCardUrls(card)) {
      try {
        await checkUrlOf(id, url, signal);
      } catch (error) {
        if (error instanceof VigilError && error.reason === 'URL_VALIDATE_FAILED') {
          throw new VigilError('AGENT_CARD_INVALID', `agent card endpoint: ${error.message}`, {
            ...error.metadata,
            field: 'agent_card',
          });
        }
        throw error;
      }
    }
  }

  async function register(caller: RuntimeCaller, command: RegisterCommand, signal?: AbortSignal) {
    const session = await tokens.authenticate(caller, command.workspaceId);
    // After authentication, so nobody can spend another workspace's budget.
    const waitMs = registerLimiter?.take(command.workspaceId) ?? 0;
    if (waitMs > 0) throw rateLimited('Registers', command.workspaceId, waitMs);
    // A Register takes ownership of the workspace's liveness (cluster mode).
    if (!liveness.entry(command.workspaceId)) await liveness.take(command.workspaceId);
    if (command.agentCard === undefined) {
      throw new VigilError('AGENT_CARD_INVALID', 'agent_card is required');
    }
    const agentCard = validateAgentCard(command.agentCard);
    await checkCardUrls(command.workspaceId, command.agentCard, signal);
    let url = command.url;
    if (command.deliveryMode === 'PUSH') {
      if (command.url === '') throw fieldInvalid('url', 'is required for PUSH delivery');
      try {
        // Only the canonical form that was checked is stored and handed out.
        url = await checkUrlOf(command.workspaceId, command.url, signal);
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
      checkMaxBytes(command.url, MAX_URL_BYTES, 'url');
    }
    const now = clock.now();
    const applied = await store.applyRegister(
      {
        id: command.workspaceId,
        url,
        deliveryMode: command.deliveryMode,
        agentCard,
        now,
      },
      decider({ type: 'REGISTER_OK' }, now),
    );
    tokens.recordUse(session);
    return {
      workspace: liveness.withLiveness(applied.workspace),
      heartbeatIntervalMs: heartbeatHintMs(),
    };
  }

  function heartbeat(
    caller: RuntimeCaller,
    command: HeartbeatCommand,
  ): HeartbeatResult | Promise<HeartbeatResult> {
    // The session itself for an open session checked at once: no await on the hot path.
    const authenticated = tokens.authenticate(caller, command.workspaceId);
    return authenticated instanceof Promise
      ? authenticated.then((session) => heartbeatAs(session, command))
      : heartbeatAs(authenticated, command);
  }

  function heartbeatAs(
    session: WorkspaceSession,
    command: HeartbeatCommand,
  ): HeartbeatResult | Promise<HeartbeatResult> {
    const { report, workspaceId: id } = command;
    // After authentication, so nobody can spend another workspace's budget.
    const waitMs = limiter?.take(id) ?? 0;
    if (waitMs > 0) throw rateLimited('heartbeats', id, waitMs);
    validateReport(report);
    // A heartbeat that reaches this process makes it the workspace's owner (cluster mode: a
    // sidecar that moved here, or a forward that failed); nothing to claim when it already is.
    const entry = liveness.entry(id);
    return entry
      ? withEntry(session, command, entry)
      : liveness.take(id).then((taken) => withEntry(session, command, taken));
  }

  function withEntry(
    session: WorkspaceSession,
    command: HeartbeatCommand,
    entry: LivenessEntry | undefined,
  ): HeartbeatResult | Promise<HeartbeatResult> {
    const card = command.agentCard;
    // A card equal to the last one accepted from this workspace was valid then and is now.
    const fingerprint = card?.fingerprint();
    if (card && (fingerprint === undefined || entry?.cardFingerprint !== fingerprint)) {
      stats.cardsValidated += 1;
      const value = card.decode();
      const serialized = validateAgentCard(value);
      // Only a card that changed is resolved again: an equal one was checked when accepted.
      return checkCardUrls(command.workspaceId, value).then(() =>
        apply(session, command, entry, fingerprint, serialized),
      );
    }
    return apply(session, command, entry, fingerprint, undefined);
  }

  function apply(
    session: WorkspaceSession,
    command: HeartbeatCommand,
    entry: LivenessEntry | undefined,
    fingerprint: string | undefined,
    serialized: string | undefined,
  ): HeartbeatResult | Promise<HeartbeatResult> {
    const { report, workspaceId: id } = command;
    const card = command.agentCard;
    const now = clock.now();
    const event: StatusEvent = { type: 'HEARTBEAT', health: report };
    if (
      entry &&
      // A write of this workspace still waiting for its commit may change what the mirror says.
      entry.writesInFlight === 0 &&
      (!card || (entry.hasCard && entry.lastRegisterFailureAt === undefined)) &&
      nextStatus(entry, event, now, timings) === undefined
    ) {
      // Nothing durable would change: answer from memory.
      liveness.beat(id, now, report);
      // Kept as it is when equal: an equal new string would only be garbage to promote.
      if (fingerprint !== undefined && entry.cardFingerprint !== fingerprint) {
        entry.cardFingerprint = fingerprint;
      }
      stats.answeredFromMemory += 1;
      tokens.recordUse(session);
      return {
        status: entry.status,
        transition: undefined,
        cardBackfillChanges: 0,
        markerClearChanges: 0,
        heartbeatIntervalMs: heartbeatHintMs(),
        fromMemory: true,
      };
    }
    return write(session, command, entry, fingerprint, serialized, event, now);
  }

  async function write(
    session: WorkspaceSession,
    command: HeartbeatCommand,
    entry: LivenessEntry | undefined,
    fingerprint: string | undefined,
    validated: string | undefined,
    event: StatusEvent,
    now: number,
  ): Promise<HeartbeatResult> {
    const { report, workspaceId: id } = command;
    const card = command.agentCard;
    // Seen now, even while its write waits for the shared commit: the sweep must not time it out.
    liveness.beat(id, now, report);
    // The backfill statement needs the serialized card even when its bytes are unchanged.
    const serialized = card && validated === undefined ? validateCard(card) : validated;
    stats.written += 1;
    if (entry) entry.writesInFlight += 1;
    let applied: HeartbeatApplied;
    try {
      applied = await store.applyHeartbeat(
        { id, report, agentCard: serialized, now },
        decider(event, now),
      );
    } finally {
      if (entry) entry.writesInFlight -= 1;
    }
    // Accepted: its card is the one that skips validation from now on.
    const after = liveness.entry(id);
    if (after && fingerprint !== undefined) after.cardFingerprint = fingerprint;
    tokens.recordUse(session);
    return { ...applied, heartbeatIntervalMs: heartbeatHintMs(), fromMemory: false };
  }

  return { register, heartbeat, heartbeatStats: () => ({ ...stats }) };
}
