import type { IKeyValue } from 'etcd3';
import { workspaceNotFound } from '../../domain/errors.js';
import type { AdapterName, ReloadPolicy, RuntimeConfig } from '../../domain/projection.js';
import type {
  AuditEntry,
  AuditEvent,
  ProjectionListener,
  ProjectionRecord,
  ProjectionStore,
  ProjectionVersions,
  StoredSecret,
} from '../../domain/projection-store.js';
import type { WrappedKey } from '../../domain/secret-cipher.js';
import type { ReadView, WriteBuilder } from './etcd-committer.js';
import { decode, encode, prefixEnd, type EtcdKeys, type StateDoc } from './etcd-keys.js';
import type { EtcdStore } from './etcd-store.js';
import type { Listing, RevisionEvents } from './etcd-watch.js';

/** `pk/<id>`: a workspace's data key, wrapped (ciphertext) under the keyring key `kekId`. */
interface DataKeyDoc {
  readonly kekId: string;
  /** Base64 of the wrapped key. */
  readonly wrapped: string;
  readonly createdAt: number;
}

/** `sec/<id>/<NAME>`: one sealed secret. */
interface SecretDoc {
  /** Base64 of `0x01 ‖ nonce ‖ ciphertext ‖ tag`. */
  readonly sealed: string;
  readonly fingerprint: string;
  readonly updatedAt: number;
  readonly updatedBy: string;
}

/** `cfg/<id>`: the runtime config (no secret in it: its env is plain by contract). */
interface ConfigDoc {
  readonly adapter: string;
  readonly model: string;
  readonly provider: string;
  readonly baseUrl: string;
  readonly env: Record<string, string>;
  readonly reloadPolicy: ReloadPolicy;
  readonly updatedAt: number;
}

/** `proj/<id>`: the version and what the projection came to. */
interface ProjectionDoc {
  readonly configVersion: number;
  readonly state: string;
  readonly updatedAt: number;
}

/** `audit/<seq>` and `wsaudit/<id>/<seq>`. */
type AuditDoc = AuditEvent;

/** What the watch told this replica of one workspace's projection. */
interface Known {
  configVersion: number;
  applied: number;
  state: string;
}

/**
 * The crypto-shred: deletes a workspace's data key and sealed secrets. The
 * etcd RegistryStore adds it to the very transaction that moves the workspace
 * to REMOVED (its config, versions and audit stay, as SQLite keeps them).
 */
export function shredProjection(keys: EtcdKeys, workspaceId: string, write: WriteBuilder): void {
  write.del(keys.dataKey(workspaceId));
  const secrets = keys.secret(workspaceId);
  write.del(secrets, prefixEnd(secrets));
}

export interface EtcdProjectionStoreOptions {
  /** The replica's etcd store: its connection, committer and watch are shared, not duplicated. */
  readonly store: Pick<EtcdStore, 'keys' | 'submit' | 'observe' | 'connection'>;
  /** Told when a listener throws (the write itself stands). */
  readonly onListenerError?: (error: unknown) => void;
}

const PAGE = 1_000;

/**
 * The runtime projection on etcd, with the semantics of the SQLite one. Every
 * write is one job of the replica's committer: it reads the workspace's keys
 * (state, data key, config, projection, applied version, both counters and its
 * secrets), plans from what it read, and commits in one transaction guarded on
 * the mod revision of every key read — so a concurrent write anywhere in the
 * cluster fails the transaction and the plan runs again on a fresh read.
 * Every write puts `proj/<id>`, so writes of one workspace serialise on it
 * (its secrets are a prefix, which a compare cannot guard). The global
 * `config-version` and `audit-seq` counters are bumped in the same
 * transaction, so versions and audit seqs are gapless and in commit order, as
 * in SQLite. Only sealed values and wrapped keys are stored.
 *
 * Listeners are told from the replica's one watch (after the committer has
 * seen its commit delivered, before the write settles), so every replica
 * hears of every commit, in revision order, which is commit order.
 */
export function createEtcdProjectionStore(options: EtcdProjectionStoreOptions): ProjectionStore {
  const { keys, connection } = options.store;
  const listeners = new Set<ProjectionListener>();
  const onListenerError =
    options.onListenerError ??
    ((error: unknown) => {
      console.error('vigil: a projection listener failed', error);
    });
  const known = new Map<string, Known>();
  /** The keyring key wrapping each workspace's data key, from the watch. */
  const kekOf = new Map<string, string>();

  function tell(versions: ProjectionVersions, bumped: boolean): void {
    for (const listener of listeners) {
      try {
        listener(versions, bumped);
      } catch (error) {
        onListenerError(error);
      }
    }
  }

  /** Takes one projection key from the watch; returns what listeners are to hear. */
  function take(
    kv: IKeyValue,
    deleted: boolean,
  ): { versions: ProjectionVersions; bumped: boolean } | undefined {
    const key = kv.key.toString();
    const pk = keys.idAfter(key, 'pk/');
    if (pk !== undefined) {
      if (deleted) kekOf.delete(pk);
      else kekOf.set(pk, decode<DataKeyDoc>(kv.value).kekId);
      return undefined;
    }
    const proj = keys.idAfter(key, 'proj/');
    const applied = keys.idAfter(key, 'applied/');
    const id = proj ?? applied;
    if (id === undefined || deleted) return undefined;
    const before = known.get(id) ?? { configVersion: 0, applied: 0, state: '' };
    const after: Known = { ...before };
    if (proj !== undefined) {
      const doc = decode<ProjectionDoc>(kv.value);
      after.configVersion = doc.configVersion;
      after.state = doc.state;
    } else {
      after.applied = Number(kv.value.toString());
    }
    known.set(id, after);
    if (
      after.configVersion === before.configVersion &&
      after.state === before.state &&
      after.applied === before.applied
    ) {
      return undefined;
    }
    return {
      versions: {
        workspaceId: id,
        configVersion: after.configVersion,
        appliedConfigVersion: after.applied,
        state: after.state,
      },
      bumped: after.configVersion > before.configVersion,
    };
  }

  let listed = false;
  options.store.observe({
    listing(listing: Listing) {
      // At start: the caches. After a compaction skipped events: what changed meanwhile.
      const first = !listed;
      listed = true;
      kekOf.clear();
      const told: { versions: ProjectionVersions; bumped: boolean }[] = [];
      for (const kv of listing.kvs) {
        const change = take(kv, false);
        if (change && !first) told.push(change);
      }
      for (const { versions, bumped } of told) tell(versions, bumped);
    },
    revision({ events }: RevisionEvents) {
      for (const event of events) {
        const change = take(event.kv, event.type === 'Delete');
        if (change) tell(change.versions, change.bumped);
      }
    },
  });

  /** The keys one workspace's write reads (and so guards). */
  const recordKeys = (id: string) => [
    keys.st(id),
    keys.dataKey(id),
    keys.runtimeConfig(id),
    keys.projection(id),
    keys.applied(id),
    keys.configVersion,
    keys.auditSeq,
  ];

  function recordOf(
    id: string,
    get: (key: string) => Buffer | undefined,
    secretKvs: readonly IKeyValue[],
  ): ProjectionRecord | undefined {
    const st = get(keys.st(id));
    if (!st) return undefined;
    const key = get(keys.dataKey(id));
    const config = get(keys.runtimeConfig(id));
    const projection = get(keys.projection(id));
    const applied = get(keys.applied(id));
    const doc = projection ? decode<ProjectionDoc>(projection) : undefined;
    const head = keys.secret(id);
    return {
      workspaceId: id,
      removed: decode<StateDoc>(st).status === 'REMOVED',
      key: key ? toWrappedKey(decode<DataKeyDoc>(key)) : undefined,
      secrets: sortByName(
        secretKvs.map((kv) => toSecret(kv.key.toString().slice(head.length), kv.value)),
      ),
      config: config ? toConfig(decode<ConfigDoc>(config)) : undefined,
      configVersion: doc?.configVersion ?? 0,
      appliedConfigVersion: applied ? Number(applied.toString()) : 0,
      state: doc?.state ?? '',
    };
  }

  function counter(view: ReadView, key: string): number {
    const value = view.get(key).value;
    return value ? Number(value.toString()) : 0;
  }

  function putAudit(
    write: WriteBuilder,
    seq: number,
    entry: AuditEntry,
    configVersion: number,
    at: number,
  ): void {
    const doc: AuditDoc = {
      seq,
      at,
      actor: entry.actor,
      action: entry.action,
      workspaceId: entry.workspaceId,
      name: entry.name ?? '',
      configVersion,
      fingerprint: entry.fingerprint ?? '',
      detail: entry.detail ?? '',
    };
    const value = encode(doc);
    write.put(keys.audit(seq), value);
    write.put(keys.wsaudit(entry.workspaceId, seq), value);
    write.put(keys.auditSeq, Buffer.from(String(seq)));
  }

  /** Every key under `prefix`, page by page at one revision. */
  async function listAll(prefix: string, from = prefix): Promise<IKeyValue[]> {
    const kvs: IKeyValue[] = [];
    let start = Buffer.from(from);
    let at: string | undefined;
    for (;;) {
      const page = await connection.range({
        key: start,
        range_end: prefixEnd(prefix),
        limit: PAGE,
        ...(at ? { revision: at } : {}),
      });
      at ??= page.header.revision;
      kvs.push(...page.kvs);
      const last = page.kvs.at(-1);
      if (!page.more || !last) return kvs;
      start = Buffer.concat([last.key, Buffer.from([0])]);
    }
  }

  return {
    subscribe(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },

    async read(workspaceId) {
      const single = [
        keys.st(workspaceId),
        keys.dataKey(workspaceId),
        keys.runtimeConfig(workspaceId),
        keys.projection(workspaceId),
        keys.applied(workspaceId),
      ];
      const secrets = keys.secret(workspaceId);
      // One read transaction: every key as of one revision.
      const response = await connection.txn(
        [],
        [
          ...single.map((key) => ({ request_range: { key: Buffer.from(key) } })),
          { request_range: { key: Buffer.from(secrets), range_end: prefixEnd(secrets) } },
        ],
      );
      const found = new Map<string, Buffer>();
      single.forEach((key, index) => {
        const kv = response.responses[index]?.response_range.kvs[0];
        if (kv) found.set(key, kv.value);
      });
      const secretKvs = response.responses[single.length]?.response_range.kvs ?? [];
      return recordOf(workspaceId, (key) => found.get(key), secretKvs);
    },

    change: (workspaceId, now, plan) =>
      options.store.submit({
        keys: recordKeys(workspaceId),
        prefixes: [keys.secret(workspaceId)],
        build(view, write) {
          const before = recordOf(
            workspaceId,
            (key) => view.get(key).value,
            view.list(keys.secret(workspaceId)),
          );
          if (!before) throw workspaceNotFound(workspaceId);
          const change = plan(before);
          if (!change) return () => before;
          let key = before.key;
          if (change.key && !before.key) {
            key = change.key;
            const doc: DataKeyDoc = {
              kekId: change.key.kekId,
              wrapped: Buffer.from(change.key.wrapped).toString('base64'),
              createdAt: now,
            };
            write.put(keys.dataKey(workspaceId), encode(doc));
          }
          let secrets = before.secrets;
          if (change.putSecret) {
            const put = change.putSecret;
            const doc: SecretDoc = {
              sealed: Buffer.from(put.sealed).toString('base64'),
              fingerprint: put.fingerprint,
              updatedAt: put.updatedAt,
              updatedBy: put.updatedBy,
            };
            write.put(keys.secret(workspaceId, put.name), encode(doc));
            secrets = sortByName([...secrets.filter((s) => s.name !== put.name), put]);
          }
          if (change.deleteSecret !== undefined) {
            const name = change.deleteSecret;
            write.del(keys.secret(workspaceId, name));
            secrets = secrets.filter((s) => s.name !== name);
          }
          if (change.config) {
            const doc: ConfigDoc = {
              ...change.config,
              env: { ...change.config.env },
              updatedAt: now,
            };
            write.put(keys.runtimeConfig(workspaceId), encode(doc));
          }
          let version = before.configVersion;
          if (change.bump) {
            version = counter(view, keys.configVersion) + 1;
            write.put(keys.configVersion, Buffer.from(String(version)));
          }
          const projection: ProjectionDoc = {
            configVersion: version,
            state: change.state,
            updatedAt: now,
          };
          write.put(keys.projection(workspaceId), encode(projection));
          if (change.audit) {
            putAudit(write, counter(view, keys.auditSeq) + 1, change.audit, version, now);
          }
          const after: ProjectionRecord = {
            ...before,
            key,
            secrets,
            config: change.config ?? before.config,
            configVersion: version,
            state: change.state,
          };
          return () => after;
        },
      }),

    recordApplied: (workspaceId, version) =>
      options.store.submit({
        keys: [keys.projection(workspaceId), keys.applied(workspaceId)],
        build(view, write) {
          // As in SQLite: only a workspace that has a projection row records it, and only a change.
          if (!view.get(keys.projection(workspaceId)).value) return () => undefined;
          if (counter(view, keys.applied(workspaceId)) === version) return () => undefined;
          write.put(keys.applied(workspaceId), Buffer.from(String(version)));
          return () => undefined;
        },
      }),

    appendAudit: (entry, configVersion, now) =>
      options.store.submit({
        keys: [keys.auditSeq],
        build(view, write) {
          putAudit(write, counter(view, keys.auditSeq) + 1, entry, configVersion, now);
          return () => undefined;
        },
      }),

    async listAudit(query) {
      const prefix =
        query.workspaceId === '' ? `${keys.prefix}audit/` : keys.wsaudit(query.workspaceId);
      const from =
        query.workspaceId === ''
          ? keys.audit(query.afterSeq + 1)
          : keys.wsaudit(query.workspaceId, query.afterSeq + 1);
      const response = await connection.range({
        key: Buffer.from(from),
        range_end: prefixEnd(prefix),
        limit: query.limit,
      });
      return response.kvs.map((kv) => decode<AuditDoc>(kv.value));
    },

    async versions() {
      const applied = new Map(
        (await listAll(`${keys.prefix}applied/`)).map((kv) => [
          kv.key.toString().slice(`${keys.prefix}applied/`.length),
          Number(kv.value.toString()),
        ]),
      );
      const head = `${keys.prefix}proj/`;
      return (await listAll(head)).map((kv): ProjectionVersions => {
        const workspaceId = kv.key.toString().slice(head.length);
        const doc = decode<ProjectionDoc>(kv.value);
        return {
          workspaceId,
          configVersion: doc.configVersion,
          appliedConfigVersion: applied.get(workspaceId) ?? 0,
          state: doc.state,
        };
      });
    },

    keyUsage() {
      const usage = new Map<string, number>();
      for (const kekId of kekOf.values()) usage.set(kekId, (usage.get(kekId) ?? 0) + 1);
      return Promise.resolve(usage);
    },

    async keysNotUnder(activeKekId, limit) {
      const head = `${keys.prefix}pk/`;
      const found: { workspaceId: string; key: WrappedKey }[] = [];
      for (const kv of await listAll(head)) {
        if (found.length >= limit) break;
        const doc = decode<DataKeyDoc>(kv.value);
        if (doc.kekId === activeKekId) continue;
        found.push({ workspaceId: kv.key.toString().slice(head.length), key: toWrappedKey(doc) });
      }
      return found;
    },

    rewrapKey: (workspaceId, previous, next, now) =>
      options.store.submit({
        keys: [keys.dataKey(workspaceId), keys.projection(workspaceId), keys.auditSeq],
        build(view, write) {
          const value = view.get(keys.dataKey(workspaceId)).value;
          const current = value ? decode<DataKeyDoc>(value) : undefined;
          // A compare and set: only the wrapping that was read is replaced.
          if (
            current?.kekId !== previous.kekId ||
            !Buffer.from(current.wrapped, 'base64').equals(Buffer.from(previous.wrapped))
          ) {
            return () => false;
          }
          const doc: DataKeyDoc = {
            ...current,
            kekId: next.kekId,
            wrapped: Buffer.from(next.wrapped).toString('base64'),
          };
          write.put(keys.dataKey(workspaceId), encode(doc));
          const projection = view.get(keys.projection(workspaceId)).value;
          const version = projection ? decode<ProjectionDoc>(projection).configVersion : 0;
          putAudit(
            write,
            counter(view, keys.auditSeq) + 1,
            {
              actor: 'vigil',
              action: 'keyring.rewrap',
              workspaceId,
              detail: `${previous.kekId} -> ${next.kekId}`,
            },
            version,
            now,
          );
          return () => true;
        },
      }),

    checkKeyring(checks) {
      const ids = [...checks.keys()];
      return options.store.submit({
        keys: ids.map((id) => keys.keyringCheck(id)),
        build(view, write) {
          const differing: string[] = [];
          for (const id of ids) {
            const mine = checks.get(id) ?? '';
            const recorded = view.get(keys.keyringCheck(id)).value?.toString();
            if (recorded === undefined) write.put(keys.keyringCheck(id), Buffer.from(mine));
            else if (recorded !== mine) differing.push(id);
          }
          return () => differing;
        },
      });
    },

    // The connection belongs to the etcd store, which closes it.
    close: () => Promise.resolve(),
  };
}

function toWrappedKey(doc: DataKeyDoc): WrappedKey {
  return { kekId: doc.kekId, wrapped: Buffer.from(doc.wrapped, 'base64') };
}

function toSecret(name: string, value: Buffer): StoredSecret {
  const doc = decode<SecretDoc>(value);
  return {
    name,
    sealed: Buffer.from(doc.sealed, 'base64'),
    fingerprint: doc.fingerprint,
    updatedAt: doc.updatedAt,
    updatedBy: doc.updatedBy,
  };
}

function toConfig(doc: ConfigDoc): RuntimeConfig {
  return {
    adapter: doc.adapter as AdapterName,
    model: doc.model,
    provider: doc.provider,
    baseUrl: doc.baseUrl,
    env: doc.env,
    reloadPolicy: doc.reloadPolicy,
  };
}

/** By name in byte order, like SQLite's `ORDER BY name` (names are ASCII). */
function sortByName(secrets: readonly StoredSecret[]): StoredSecret[] {
  return [...secrets].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
