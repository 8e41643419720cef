import type { Clock } from './clock.js';
import { VigilError } from './errors.js';
import type { RegistryStore, TokenRecord, TokenUse } from './registry-store.js';
import { WORKSPACE_TOKEN_PREFIX, generateToken, hashToken } from './tokens.js';
import { checkWorkspaceId } from './validation.js';

/**
 * A workspace token resolved once (say, when a HeartbeatStream opens): later
 * calls through it check that nothing was revoked or rotated since, without
 * hashing the token again. Opaque to callers.
 */
export interface WorkspaceSession {
  readonly workspaceId: string;
}

/**
 * Workspace tokens: authentication of runtime calls, and the token admin
 * actions (rotation, revocation) whose effect on authentication must be
 * immediate. Both live here, next to the cache they have to invalidate.
 *
 * Invariants: a token is only ever handled as its SHA-256 (hashed once per
 * resolution); a store that cannot answer fails closed (AUTH_UNAVAILABLE);
 * after `rotate` or `revoke` returns, no call authenticates with a token they
 * ended, whether it comes with a token or through an open session.
 */
export interface WorkspaceTokens {
  /**
   * Resolves a token (hashing it once) into a session. Throws TOKEN_MISSING,
   * TOKEN_INVALID or AUTH_UNAVAILABLE.
   */
  openSession(token: string | undefined): Promise<WorkspaceSession>;
  /**
   * Checks that a session is still valid: unchanged since it was resolved,
   * unless a rotation or revocation happened since or its token expired, in
   * which case the token is looked up again by its hash. Returns undefined when that is decided at once (the steady case: no
   * promise on the hot path), else a promise that rejects with TOKEN_INVALID
   * or AUTH_UNAVAILABLE.
   */
  checkSession(session: WorkspaceSession): Promise<void> | undefined;
  /**
   * Authenticates a call for `workspaceId`, by token or by an open session,
   * and gives the session it checked. Fails (rejecting the returned promise,
   * or throwing) as `openSession`/`checkSession`, and with WRONG_WORKSPACE
   * when the token belongs to another workspace. Gives the session itself,
   * not a promise, when it was checked at once.
   */
  authenticate(
    caller: string | undefined | WorkspaceSession,
    workspaceId: string,
  ): Promise<WorkspaceSession> | WorkspaceSession;
  /**
   * Records that a call through this session was served: its token's
   * last-used time. Authentication alone records nothing, so a call that is
   * refused afterwards (invalid input, rate limit, another workspace) leaves
   * the last-used time as it was.
   */
  recordUse(session: WorkspaceSession): void;
  /** A new token for a new workspace: the token (shown once) and the hash to store. */
  issue(): { readonly token: string; readonly hash: Buffer };
  /**
   * Issues a new token; the earlier ones keep working for the rotation
   * overlap, or stop at once with `revokePrevious`. Throws WORKSPACE_NOT_FOUND
   * / WORKSPACE_REMOVED.
   */
  rotate(
    workspaceId: string,
    revokePrevious: boolean,
  ): Promise<{ readonly workspaceToken: string; readonly previousExpireAt: number }>;
  /** Ends every token of a workspace now; returns how many were still valid. Throws WORKSPACE_NOT_FOUND. */
  revoke(workspaceId: string): Promise<number>;
  /**
   * Writes recorded token uses (last_used_at) that have waited for the flush
   * interval, or all of them with `all` (at shutdown).
   */
  flushUsage(all?: boolean): Promise<void>;
}

export interface WorkspaceTokensOptions {
  readonly store: RegistryStore;
  readonly clock: Clock;
  /** After a rotation, the previous tokens keep working this long. */
  readonly rotationOverlapMs: number;
}

/** Entries in the valid-token cache before it starts over. */
const TOKEN_CACHE_SIZE = 100_000;
/** Each token's last use reaches the store about this often. */
export const TOKEN_USE_FLUSH_MS = 5 * 60_000;
/** Token uses written per flush. */
const FLUSH_BATCH = 1_000;

interface CachedToken extends TokenRecord {
  readonly epoch: number;
  readonly key: string;
  readonly hash: Buffer;
  /** Its use waiting to be written, while it waits (so a heartbeat records it without a lookup). */
  use: PendingUse | undefined;
}

interface Session extends WorkspaceSession {
  token: CachedToken;
}

interface PendingUse {
  readonly tokenHash: Uint8Array;
  readonly workspaceId: string;
  at: number;
  /** When it was first seen since the last write. */
  readonly since: number;
  /** False once taken by a flush. */
  queued: boolean;
}

export function createWorkspaceTokens(options: WorkspaceTokensOptions): WorkspaceTokens {
  const { store, clock } = options;
  // Valid tokens seen lately, so a heartbeat costs no token lookup. Any
  // rotation or revocation bumps the epoch, which makes every entry (and every
  // open session) miss: they take effect on the very next call.
  const cache = new Map<string, CachedToken>();
  let epoch = 0;
  // Another replica's rotation or revocation counts the same as one of ours.
  store.onTokensChanged?.(() => {
    epoch += 1;
  });
  // Uses not yet written, in the order they were first seen since the last write.
  const uses = new Map<string, PendingUse>();

  async function validToken(hash: Buffer, key: string, now: number): Promise<CachedToken> {
    const cached = cache.get(key);
    if (cached && cached.epoch === epoch && (cached.expiresAt ?? Infinity) > now) return cached;
    const lookedUpIn = epoch;
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
      cache.delete(key);
      throw new VigilError('TOKEN_INVALID', 'the workspace token is not valid');
    }
    if (cache.size >= TOKEN_CACHE_SIZE) cache.clear();
    // Cached under the epoch the lookup started in: a rotation meanwhile makes it miss.
    const record: CachedToken = { ...found, epoch: lookedUpIn, key, hash, use: undefined };
    cache.set(key, record);
    return record;
  }

  /** Kept in memory and written in bulk: a write per call would double the heartbeat cost. */
  function recordUse(token: CachedToken, now: number): void {
    const known = token.use ?? uses.get(token.key);
    if (known?.queued) {
      known.at = now;
      token.use = known;
      return;
    }
    const use: PendingUse = {
      tokenHash: token.hash,
      workspaceId: token.workspaceId,
      at: now,
      since: now,
      queued: true,
    };
    uses.set(token.key, use);
    token.use = use;
  }

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
    const session: Session = { workspaceId: record.workspaceId, token: record };
    return session;
  }

  function checkSession(workspaceSession: WorkspaceSession): Promise<void> | undefined {
    const session = workspaceSession as Session;
    const now = clock.now();
    const current = session.token;
    if (current.epoch === epoch && (current.expiresAt ?? Infinity) > now) return undefined;
    return validToken(current.hash, current.key, now).then((token) => {
      session.token = token;
    });
  }

  function checkOwner(owner: string, workspaceId: string): void {
    if (owner !== workspaceId) {
      throw new VigilError('WRONG_WORKSPACE', 'the workspace token belongs to another workspace', {
        workspaceId,
      });
    }
  }

  function issue() {
    const token = generateToken(WORKSPACE_TOKEN_PREFIX);
    return { token, hash: hashToken(token) };
  }

  return {
    openSession,
    checkSession,
    authenticate(caller, workspaceId) {
      if (typeof caller !== 'object') {
        return openSession(caller).then((session) => {
          checkOwner(session.workspaceId, workspaceId);
          return session;
        });
      }
      const pending = checkSession(caller);
      if (pending === undefined) {
        checkOwner(caller.workspaceId, workspaceId);
        return caller;
      }
      return pending.then(() => {
        checkOwner(caller.workspaceId, workspaceId);
        return caller;
      });
    },
    recordUse(session) {
      recordUse((session as Session).token, clock.now());
    },
    issue,
    async rotate(workspaceId, revokePrevious) {
      const { token, hash } = issue();
      const now = clock.now();
      const previousExpireAt = revokePrevious ? now : now + options.rotationOverlapMs;
      await store.addToken(checkWorkspaceId(workspaceId), hash, now, previousExpireAt);
      epoch += 1;
      return { workspaceToken: token, previousExpireAt };
    },
    async revoke(workspaceId) {
      const revoked = await store.revokeTokens(checkWorkspaceId(workspaceId), clock.now());
      epoch += 1;
      return revoked;
    },
    async flushUsage(all = true) {
      const cutoff = all ? Infinity : clock.now() - TOKEN_USE_FLUSH_MS;
      const due: TokenUse[] = [];
      for (const [key, use] of uses) {
        if (use.since > cutoff || due.length >= FLUSH_BATCH) break;
        uses.delete(key);
        use.queued = false;
        due.push({ tokenHash: use.tokenHash, workspaceId: use.workspaceId, at: use.at });
      }
      if (due.length > 0) await store.touchTokens(due);
    },
  };
}
