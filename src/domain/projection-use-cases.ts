import { createHash } from 'node:crypto';
import type { Clock } from './clock.js';
import { VigilError, workspaceNotFound, workspaceRemoved } from './errors.js';
import { decodeNumberPageToken, encodePageToken } from './page-token.js';
import {
  canonicalEnv,
  checkRuntimeConfig,
  checkVariableName,
  checkVariableValue,
  project,
  type EnvSource,
  type ProjectionOutcome,
  type ProviderCatalog,
  type ReloadPolicy,
  type RuntimeConfig,
  type SecretUse,
} from './projection.js';
import type {
  AuditEntry,
  AuditEvent,
  ProjectionRecord,
  ProjectionStore,
  StoredSecret,
} from './projection-store.js';
import type { SecretCipher, WorkspaceKey, WrappedKey } from './secret-cipher.js';
import { hashToken } from './tokens.js';
import { checkPageSize, checkWorkspaceId } from './validation.js';
import type { WorkspaceSession, WorkspaceTokens } from './workspace-tokens.js';
import type { Page } from './workspace-admin.js';

/** A projection as a runtime receives it. */
export interface ProjectionView {
  readonly workspaceId: string;
  readonly configVersion: number;
  readonly env: Readonly<Record<string, string>>;
  readonly resolvedProvider: string;
  readonly model: string;
  readonly reloadPolicy: ReloadPolicy;
  readonly digest: string;
}

/** One event of a projection stream. */
export type ProjectionEvent =
  | { readonly type: 'projection'; readonly projection: ProjectionView }
  | { readonly type: 'error'; readonly configVersion: number; readonly error: VigilError }
  | { readonly type: 'progress'; readonly configVersion: number };

/** A secret as control tokens see it: never its value. */
export interface SecretInfo {
  readonly name: string;
  readonly updatedAt: number;
  readonly fingerprint: string;
  readonly updatedBy: string;
  /** Undefined when the projection currently fails. */
  readonly use: SecretUse | undefined;
}

/** Desired and applied versions of one workspace, and whether its projection succeeds. */
export interface ProjectionStatus {
  readonly configVersion: number;
  readonly appliedConfigVersion: number;
  readonly ready: boolean;
}

export interface Explanation extends ProjectionStatus {
  readonly workspaceId: string;
  readonly digest: string;
  readonly resolvedProvider: string;
  readonly config: RuntimeConfig | undefined;
  readonly variables: readonly {
    readonly name: string;
    readonly source: EnvSource;
    readonly fingerprint: string;
  }[];
  readonly dropped: readonly {
    readonly name: string;
    readonly source: 'config' | 'secret';
    readonly use: 'SUPPRESSED' | 'SHADOWED';
    readonly fingerprint: string;
  }[];
  readonly error: VigilError | undefined;
}

export interface SetSecretCommand {
  readonly workspaceId: string;
  readonly name: string;
  readonly value: string;
  /** 0: unconditional. */
  readonly expectedConfigVersion: number;
}

export interface DeleteSecretCommand {
  readonly workspaceId: string;
  readonly name: string;
  readonly expectedConfigVersion: number;
}

export interface SetConfigCommand {
  readonly workspaceId: string;
  readonly config: RuntimeConfig;
  readonly expectedConfigVersion: number;
}

/**
 * The runtime projection's use-cases. Control callers (authorized by
 * transport: admin writes, read reads) write secrets and configs and read
 * metadata, Explain and audit, never a value; a workspace's own token reads
 * its projection (GetProjection, WatchProjection), any other token is
 * refused (WRONG_WORKSPACE, audited). The projection is computed on read by
 * the pure `project`; every write stores what it came to (digest or failure)
 * with a new version, and its audit row, in one transaction.
 */
export interface ProjectionUseCases {
  /**
   * Refuses to start (throws) when a data key is wrapped under a KEK the
   * keyring lacks; re-wraps data keys under the active KEK; recomputes
   * every stored projection and bumps the version only where what it comes
   * to changed (a providers-file or rule change); loads the versions the
   * heartbeat hint reads.
   */
  start(): Promise<void>;
  setSecret(
    actor: string,
    command: SetSecretCommand,
  ): Promise<{ secret: SecretInfo; configVersion: number }>;
  deleteSecret(actor: string, command: DeleteSecretCommand): Promise<{ configVersion: number }>;
  listSecrets(workspaceId: string): Promise<{ secrets: SecretInfo[]; configVersion: number }>;
  setConfig(actor: string, command: SetConfigCommand): Promise<{ configVersion: number }>;
  explain(workspaceId: string): Promise<Explanation>;
  listAudit(workspaceId: string, pageSize: number, pageToken: string): Promise<Page<AuditEvent>>;
  /** The projection, for the workspace's own token. Throws the projection's error when it fails. */
  get(token: string | undefined, workspaceId: string): Promise<ProjectionView>;
  /**
   * Authenticates, then returns the stream: the current state at once, then
   * each new version (at most one a second), progress when idle.
   */
  watch(
    token: string | undefined,
    workspaceId: string,
    signal: AbortSignal,
  ): Promise<AsyncIterable<ProjectionEvent>>;
  /** From memory (the heartbeat hint): the current version, 0 when none. */
  configVersion(workspaceId: string): number;
  /** From memory: versions and readiness. */
  status(workspaceId: string): ProjectionStatus;
  /** A heartbeat's applied_config_version: recorded when it changed (not awaited by the heartbeat). */
  reportApplied(workspaceId: string, version: number): void;
  /** The workspace was deleted: its streams end WORKSPACE_REMOVED. */
  workspaceRemoved(workspaceId: string): void;
  /** Its tokens were rotated or revoked: its streams check their token again now. */
  tokensChanged(workspaceId: string): void;
}

export interface ProjectionOptions {
  /** Undefined: this store does not implement the projection (STORE_UNSUPPORTED). */
  readonly store: ProjectionStore | undefined;
  /** Undefined: no keyring (SECRETS_DISABLED); never a plaintext fallback. */
  readonly cipher: SecretCipher | undefined;
  readonly catalog: ProviderCatalog;
  readonly tokens: Pick<WorkspaceTokens, 'openSession' | 'checkSession' | 'recordUse'>;
  readonly clock: Clock;
  /** Idle streams get a progress event this often. */
  readonly progressIntervalMs: number;
  /** A stream sends at most one new version per this many ms (default 1000). */
  readonly minStreamIntervalMs?: number;
  /** Told when background work (recording an applied version, an audit row) failed. */
  readonly onError?: (error: unknown) => void;
}

const CREDENTIAL_KEYS = [
  'ANTHROPIC_API_KEY',
  'ANTHROPIC_AUTH_TOKEN',
  'CLAUDE_CODE_OAUTH_TOKEN',
  'OPENAI_API_KEY',
];

interface Computed {
  readonly outcome: ProjectionOutcome;
  /** Plaintexts by name: only ever in memory, for the projection itself. */
  readonly plain: ReadonlyMap<string, string>;
  readonly key: WorkspaceKey | undefined;
}

interface Waiter {
  readonly pending: Set<'changed' | 'recheck' | 'removed'>;
  resolve: (() => void) | undefined;
}

export function createProjectionUseCases(options: ProjectionOptions): ProjectionUseCases {
  const { catalog, tokens, clock } = options;
  const minInterval = options.minStreamIntervalMs ?? 1_000;
  const onError =
    options.onError ??
    ((error: unknown) => {
      console.error('vigil: projection background work failed', error);
    });
  /** Versions and states by workspace, for the heartbeat hint and Workspace. */
  const versions = new Map<string, { configVersion: number; applied: number; state: string }>();
  const waiters = new Map<string, Set<Waiter>>();
  /** Deliveries already audited: workspace, version and token id. */
  const delivered = new Set<string>();

  function requireStore(): ProjectionStore {
    if (!options.store) {
      throw new VigilError(
        'STORE_UNSUPPORTED',
        'secrets and runtime configs are not implemented here: no projection store was given',
      );
    }
    return options.store;
  }
  function requireCipher(): SecretCipher {
    if (!options.cipher) {
      throw new VigilError(
        'SECRETS_DISABLED',
        'secrets are disabled: the server runs without a secrets keyring (--secrets-keyring off)',
      );
    }
    return options.cipher;
  }
  const ready = () => ({ store: requireStore(), cipher: requireCipher() });

  function wake(workspaceId: string, why: 'changed' | 'recheck' | 'removed'): void {
    for (const waiter of waiters.get(workspaceId) ?? []) {
      waiter.pending.add(why);
      const resolve = waiter.resolve;
      waiter.resolve = undefined;
      resolve?.();
    }
  }

  function remember(record: ProjectionRecord): void {
    if (record.configVersion === 0 && record.state === '') return;
    const known = versions.get(record.workspaceId);
    if (known && known.configVersion > record.configVersion) return;
    versions.set(record.workspaceId, {
      configVersion: record.configVersion,
      applied: record.appliedConfigVersion,
      state: record.state,
    });
  }

  // Every commit, this replica's or (on a cluster store) another's: the heartbeat hint and
  // Workspace follow it, and streams of a new version wake.
  options.store?.subscribe((update, bumped) => {
    const current = versions.get(update.workspaceId);
    if (!current || current.configVersion <= update.configVersion) {
      versions.set(update.workspaceId, {
        configVersion: update.configVersion,
        applied: update.appliedConfigVersion,
        state: current?.state === '!WORKSPACE_REMOVED' ? current.state : update.state,
      });
    }
    if (bumped) wake(update.workspaceId, 'changed');
  });

  /** Opens the data key (creating one when there is none yet). */
  function workspaceKey(
    cipher: SecretCipher,
    record: ProjectionRecord,
  ): { key: WorkspaceKey; created: WrappedKey | undefined } {
    if (record.key)
      return { key: cipher.openWorkspaceKey(record.workspaceId, record.key), created: undefined };
    const fresh = cipher.createWorkspaceKey(record.workspaceId);
    return { key: fresh.key, created: fresh.wrapped };
  }

  /** Decrypts and projects. Unreadable data is a projection failure (SECRET_UNREADABLE), never a partial env. */
  function compute(cipher: SecretCipher, record: ProjectionRecord, known?: WorkspaceKey): Computed {
    let key = known;
    const plain = new Map<string, string>();
    try {
      if (!key && record.key) key = cipher.openWorkspaceKey(record.workspaceId, record.key);
      for (const secret of record.secrets) {
        if (!key) {
          throw new VigilError('SECRET_UNREADABLE', `secret ${secret.name} has no data key`, {
            name: secret.name,
          });
        }
        plain.set(secret.name, key.open(secret.name, secret.sealed));
      }
    } catch (error) {
      if (error instanceof VigilError)
        return { outcome: { ok: false, error }, plain: new Map(), key };
      throw error;
    }
    const outcome = project(
      {
        workspaceId: record.workspaceId,
        configVersion: record.configVersion,
        config: record.config,
      },
      plain,
      catalog,
    );
    return { outcome, plain, key };
  }

  function digestOf(computed: Computed, env: Readonly<Record<string, string>>): string {
    const canonical = canonicalEnv(env);
    // Without a data key there is no secret in the environment: a plain hash tells nothing.
    return computed.key
      ? computed.key.digest(canonical)
      : createHash('sha256').update(canonical).digest('hex').slice(0, 32);
  }

  function stateOf(computed: Computed): string {
    const { outcome } = computed;
    if (outcome.ok) return digestOf(computed, outcome.value.env);
    return `!${outcome.error.reason}:${JSON.stringify(outcome.error.metadata)}`;
  }

  function checkWritable(record: ProjectionRecord, expected: number): void {
    if (record.removed) throw workspaceRemoved(record.workspaceId);
    if (expected !== 0 && record.configVersion !== expected) {
      throw new VigilError(
        'CONFIG_VERSION_MISMATCH',
        `the workspace is at config_version ${record.configVersion}, not ${expected}`,
        { configVersion: String(record.configVersion), expected: String(expected) },
      );
    }
  }

  function info(secret: StoredSecret, computed: Computed | undefined): SecretInfo {
    const uses = computed?.outcome.ok ? computed.outcome.value.secretUses : undefined;
    return {
      name: secret.name,
      updatedAt: secret.updatedAt,
      fingerprint: secret.fingerprint,
      updatedBy: secret.updatedBy,
      use: uses?.[secret.name],
    };
  }

  async function readLive(store: ProjectionStore, workspaceId: string): Promise<ProjectionRecord> {
    const record = await store.read(workspaceId);
    if (!record) throw workspaceNotFound(workspaceId);
    return record;
  }

  function view(record: ProjectionRecord, computed: Computed): ProjectionView {
    const { outcome } = computed;
    if (!outcome.ok) throw outcome.error;
    return {
      workspaceId: record.workspaceId,
      configVersion: record.configVersion,
      env: outcome.value.env,
      resolvedProvider: outcome.value.resolvedProvider,
      model: outcome.value.model,
      reloadPolicy: outcome.value.reloadPolicy,
      digest: digestOf(computed, outcome.value.env),
    };
  }

  /** Authenticates a workspace token for `workspaceId`; another workspace's token is audited and refused. */
  async function authorizeRuntime(
    token: string | undefined,
    workspaceId: string,
  ): Promise<{ session: WorkspaceSession; tokenId: string }> {
    const session = await tokens.openSession(token);
    const tokenId = hashToken(token ?? '')
      .toString('hex')
      .slice(0, 12);
    if (session.workspaceId !== workspaceId) {
      const store = options.store;
      if (store && /^[a-z0-9-]{1,63}$/.test(workspaceId)) {
        store
          .appendAudit(
            {
              actor: `workspace:${session.workspaceId}`,
              action: 'projection.denied',
              workspaceId,
              detail: `token ${tokenId} belongs to another workspace`,
            },
            0,
            clock.now(),
          )
          .catch(onError);
      }
      throw new VigilError('WRONG_WORKSPACE', 'the workspace token belongs to another workspace', {
        workspaceId,
      });
    }
    return { session, tokenId };
  }

  function auditDelivery(
    store: ProjectionStore,
    workspaceId: string,
    version: number,
    tokenId: string,
  ): void {
    const key = `${workspaceId}\0${version}\0${tokenId}`;
    if (delivered.has(key)) return;
    if (delivered.size > 100_000) delivered.clear();
    delivered.add(key);
    const entry: AuditEntry = {
      actor: `workspace:${workspaceId}`,
      action: 'projection.delivered',
      workspaceId,
      detail: `token ${tokenId}`,
    };
    store.appendAudit(entry, version, clock.now()).catch(onError);
  }

  function sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Resolves true when woken, false when `ms` passed; rejects when `signal` aborts. */
  function waitFor(waiter: Waiter, ms: number, signal: AbortSignal): Promise<boolean> {
    if (waiter.pending.size > 0) return Promise.resolve(true);
    return new Promise((resolve, reject) => {
      const done = (woken: boolean) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        waiter.resolve = undefined;
        resolve(woken);
      };
      const onAbort = () => {
        clearTimeout(timer);
        waiter.resolve = undefined;
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const timer = setTimeout(() => {
        done(false);
      }, ms);
      waiter.resolve = () => {
        done(true);
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async function* stream(
    session: WorkspaceSession,
    tokenId: string,
    workspaceId: string,
    signal: AbortSignal,
  ): AsyncGenerator<ProjectionEvent, void, undefined> {
    const { store, cipher } = ready();
    const waiter: Waiter = { pending: new Set(), resolve: undefined };
    let set = waiters.get(workspaceId);
    if (!set) {
      set = new Set();
      waiters.set(workspaceId, set);
    }
    set.add(waiter);
    try {
      let sentVersion = -1;
      let sentAt = -Infinity;
      for (;;) {
        if (waiter.pending.has('removed')) throw workspaceRemoved(workspaceId);
        // A revoked or expired token ends the stream (UNAUTHENTICATED) at the next check.
        const recheck = tokens.checkSession(session);
        if (recheck) await recheck;
        waiter.pending.clear();
        const record = await readLive(store, workspaceId);
        if (record.removed) throw workspaceRemoved(workspaceId);
        if (record.configVersion !== sentVersion) {
          // Real elapsed time, not the injected clock: this paces a network stream.
          const wait = sentAt + minInterval - performance.now();
          if (wait > 0) {
            // Coalesces a burst of writes into one message with the latest state.
            await sleep(wait, signal);
            continue;
          }
          const computed = compute(cipher, record);
          sentVersion = record.configVersion;
          sentAt = performance.now();
          if (computed.outcome.ok) {
            auditDelivery(store, workspaceId, record.configVersion, tokenId);
            tokens.recordUse(session);
            yield { type: 'projection', projection: view(record, computed) };
          } else {
            yield {
              type: 'error',
              configVersion: record.configVersion,
              error: computed.outcome.error,
            };
          }
          continue;
        }
        if (!(await waitFor(waiter, options.progressIntervalMs, signal))) {
          yield { type: 'progress', configVersion: sentVersion };
        }
      }
    } finally {
      set.delete(waiter);
      if (set.size === 0) waiters.delete(workspaceId);
    }
  }

  /** Recomputes one workspace's stored state; bumps its version only when that changed. */
  async function refresh(
    store: ProjectionStore,
    cipher: SecretCipher,
    workspaceId: string,
  ): Promise<void> {
    const record = await store.change(workspaceId, clock.now(), (current) => {
      // A tombstone keeps its last version: its keys are shredded, there is nothing to project.
      if (current.removed) return undefined;
      const state = stateOf(compute(cipher, current));
      return state === current.state ? undefined : { state, bump: true, audit: undefined };
    });
    remember(record);
  }

  return {
    async start() {
      const store = options.store;
      const cipher = options.cipher;
      if (!store) return;
      const usage = await store.keyUsage();
      if (!cipher) return;
      const missing = [...usage.keys()].filter((id) => !cipher.hasKey(id));
      if (missing.length > 0) {
        throw new Error(
          `the secrets keyring lacks key ${missing.map((id) => `"${id}"`).join(', ')}, which wraps stored data keys; restore it to the keyring`,
        );
      }
      const rows = await store.versions();
      // A key of the right id but other bytes (a replica that generated its own keyring, a
      // wrong restore) refuses to start here, rather than turning every workspace it refreshes
      // into SECRET_UNREADABLE — one stored data key per keyring key is opened to prove it.
      const unproven = new Set(usage.keys());
      for (const row of rows) {
        if (unproven.size === 0) break;
        const key = (await store.read(row.workspaceId))?.key;
        if (!key || !unproven.has(key.kekId)) continue;
        try {
          cipher.openWorkspaceKey(row.workspaceId, key);
        } catch (error) {
          if (!(error instanceof VigilError)) throw error;
          throw new Error(
            `the secrets keyring's key "${key.kekId}" does not open the data keys stored under it (workspace ${row.workspaceId}): this is not the keyring that wrapped them; restore it (every replica of a cluster needs the same keyring file)`,
          );
        }
        unproven.delete(key.kekId);
      }
      // On a store shared by replicas, every keyring key must be the one the others recorded:
      // caught at start even before any data key was wrapped under it.
      const differing = (await store.checkKeyring?.(cipher.keyChecks())) ?? [];
      if (differing.length > 0) {
        throw new Error(
          `the secrets keyring's key ${differing.map((id) => `"${id}"`).join(', ')} is not the key of that id the other replicas of this cell hold (the cell recorded another check value): every replica needs the same keyring file`,
        );
      }
      for (;;) {
        const batch = await store.keysNotUnder(cipher.activeKeyId, 100);
        if (batch.length === 0) break;
        for (const { workspaceId, key } of batch) {
          await store.rewrapKey(workspaceId, key, cipher.rewrap(workspaceId, key), clock.now());
        }
      }
      for (const row of rows) {
        versions.set(row.workspaceId, {
          configVersion: row.configVersion,
          applied: row.appliedConfigVersion,
          state: row.state,
        });
        await refresh(store, cipher, row.workspaceId);
      }
    },

    async setSecret(actor, command) {
      const workspaceId = checkWorkspaceId(command.workspaceId);
      const name = checkVariableName(command.name);
      const value = checkVariableValue(command.value, 'value');
      const { store, cipher } = ready();
      let stored: StoredSecret | undefined;
      let computed: Computed | undefined;
      const record = await store.change(workspaceId, clock.now(), (current) => {
        checkWritable(current, command.expectedConfigVersion);
        const { key, created } = workspaceKey(cipher, current);
        const secret: StoredSecret = {
          name,
          sealed: key.seal(name, value),
          fingerprint: key.fingerprint(value),
          updatedAt: clock.now(),
          updatedBy: actor,
        };
        const next: ProjectionRecord = {
          ...current,
          key: current.key ?? created,
          secrets: [...current.secrets.filter((s) => s.name !== name), secret],
        };
        computed = compute(cipher, next, key);
        stored = secret;
        return {
          ...(created ? { key: created } : {}),
          putSecret: secret,
          state: stateOf(computed),
          bump: true,
          audit: {
            actor,
            action: 'secret.set',
            workspaceId,
            name,
            fingerprint: secret.fingerprint,
          },
        };
      });
      remember(record);
      if (!stored) throw new Error('the secret write planned nothing');
      return { secret: info(stored, computed), configVersion: record.configVersion };
    },

    async deleteSecret(actor, command) {
      const workspaceId = checkWorkspaceId(command.workspaceId);
      const name = checkVariableName(command.name);
      const { store, cipher } = ready();
      const record = await store.change(workspaceId, clock.now(), (current) => {
        checkWritable(current, command.expectedConfigVersion);
        const secret = current.secrets.find((s) => s.name === name);
        if (!secret) {
          throw new VigilError(
            'SECRET_NOT_FOUND',
            `workspace ${workspaceId} has no secret ${name}`,
            {
              workspaceId,
              name,
            },
          );
        }
        const next = { ...current, secrets: current.secrets.filter((s) => s.name !== name) };
        return {
          deleteSecret: name,
          state: stateOf(compute(cipher, next)),
          bump: true,
          audit: {
            actor,
            action: 'secret.delete',
            workspaceId,
            name,
            fingerprint: secret.fingerprint,
          },
        };
      });
      remember(record);
      return { configVersion: record.configVersion };
    },

    async listSecrets(workspaceId) {
      checkWorkspaceId(workspaceId);
      const { store, cipher } = ready();
      const record = await readLive(store, workspaceId);
      const computed = compute(cipher, record);
      return {
        secrets: record.secrets.map((s) => info(s, computed)),
        configVersion: record.configVersion,
      };
    },

    async setConfig(actor, command) {
      const workspaceId = checkWorkspaceId(command.workspaceId);
      const config = checkRuntimeConfig(command.config, catalog);
      const { store, cipher } = ready();
      const record = await store.change(workspaceId, clock.now(), (current) => {
        checkWritable(current, command.expectedConfigVersion);
        // Every projected workspace has a data key: its digest is keyed by it.
        const { key, created } = workspaceKey(cipher, current);
        const next = { ...current, key: current.key ?? created, config };
        return {
          ...(created ? { key: created } : {}),
          config,
          state: stateOf(compute(cipher, next, key)),
          bump: true,
          audit: {
            actor,
            action: 'config.set',
            workspaceId,
            detail: `adapter=${config.adapter} model=${config.model} provider=${config.provider}`,
          },
        };
      });
      remember(record);
      return { configVersion: record.configVersion };
    },

    async explain(workspaceId) {
      checkWorkspaceId(workspaceId);
      const { store, cipher } = ready();
      const record = await readLive(store, workspaceId);
      const computed = compute(cipher, record);
      const fingerprints = new Map(record.secrets.map((s) => [s.name, s.fingerprint]));
      const base = {
        workspaceId,
        configVersion: record.configVersion,
        appliedConfigVersion: record.appliedConfigVersion,
        config: record.config,
      };
      const { outcome } = computed;
      if (!outcome.ok) {
        return {
          ...base,
          ready: false,
          digest: '',
          resolvedProvider: '',
          variables: [],
          dropped: [],
          error: outcome.error,
        };
      }
      const p = outcome.value;
      const credential = catalog.providers.find((x) => x.name === p.resolvedProvider)?.credential;
      const variables = Object.entries(p.sources).map(([name, source]) => {
        let fingerprint = '';
        if (source === 'secret') fingerprint = fingerprints.get(name) ?? '';
        else if (source.startsWith('derived:') && credential && CREDENTIAL_KEYS.includes(name)) {
          fingerprint = fingerprints.get(credential) ?? '';
        }
        return { name, source, fingerprint };
      });
      return {
        ...base,
        ready: true,
        digest: digestOf(computed, p.env),
        resolvedProvider: p.resolvedProvider,
        variables,
        dropped: p.dropped.map((d) => ({
          ...d,
          fingerprint: d.source === 'secret' ? (fingerprints.get(d.name) ?? '') : '',
        })),
        error: undefined,
      };
    },

    async listAudit(workspaceId, pageSize, pageToken) {
      const limit = checkPageSize(pageSize);
      if (workspaceId !== '') checkWorkspaceId(workspaceId);
      const store = requireStore();
      const afterSeq = decodeNumberPageToken(pageToken, workspaceId) ?? 0;
      const rows = await store.listAudit({ workspaceId, afterSeq, limit: limit + 1 });
      const items = rows.slice(0, limit);
      const last = items.at(-1);
      return {
        items,
        nextPageToken: rows.length > limit && last ? encodePageToken(last.seq, workspaceId) : '',
      };
    },

    async get(token, workspaceId) {
      const { session, tokenId } = await authorizeRuntime(token, workspaceId);
      const { store, cipher } = ready();
      const record = await readLive(store, workspaceId);
      if (record.removed) throw workspaceRemoved(workspaceId);
      const projection = view(record, compute(cipher, record));
      auditDelivery(store, workspaceId, record.configVersion, tokenId);
      tokens.recordUse(session);
      return projection;
    },

    async watch(token, workspaceId, signal) {
      const { session, tokenId } = await authorizeRuntime(token, workspaceId);
      ready();
      return stream(session, tokenId, workspaceId, signal);
    },

    configVersion: (workspaceId) => versions.get(workspaceId)?.configVersion ?? 0,

    status(workspaceId) {
      const known = versions.get(workspaceId);
      if (!options.store || !options.cipher) {
        return { configVersion: 0, appliedConfigVersion: 0, ready: false };
      }
      // Nothing ever written: the generic default, which needs nothing, projects.
      if (!known) return { configVersion: 0, appliedConfigVersion: 0, ready: true };
      return {
        configVersion: known.configVersion,
        appliedConfigVersion: known.applied,
        ready: !known.state.startsWith('!'),
      };
    },

    reportApplied(workspaceId, version) {
      const known = versions.get(workspaceId);
      // Only versions that exist are recorded: a runtime cannot claim one from the future.
      if (!known || version === 0 || version === known.applied || version > known.configVersion)
        return;
      known.applied = version;
      options.store?.recordApplied(workspaceId, version).catch(onError);
    },

    workspaceRemoved(workspaceId) {
      const known = versions.get(workspaceId);
      if (known) known.state = '!WORKSPACE_REMOVED';
      wake(workspaceId, 'removed');
    },

    tokensChanged(workspaceId) {
      wake(workspaceId, 'recheck');
    },
  };
}
