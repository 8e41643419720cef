import type {
  DeliveryMode,
  HeartbeatReport,
  Transition,
  TransitionReason,
  WorkspaceStatus,
} from '../../domain/model.js';

/**
 * Vigil's keys in etcd, under one configurable prefix (default `vigil/`), and
 * the JSON documents they hold. One workspace is spread over keys by who
 * writes them and how often, so that no two writers contend on one key:
 *
 * | key | value | written |
 * |---|---|---|
 * | `ws/<id>` | name, url, delivery mode, card, times | create, register, card backfill |
 * | `st/<id>` | status, marker, card present, times | every status or marker change (guarded) |
 * | `hb/<id>` | last heartbeat and reported health | by the owner, lazily |
 * | `use/<id>` | when a token of the workspace was last used | token-use flush |
 * | `tok/<sha256 hex>` | workspace id, expiry | create, rotate, revoke |
 * | `wstok/<id>/<sha256 hex>` | (empty) | with each token: finds a workspace's tokens |
 * | `own/<id>` | owning replica, claimed at | claim (on the owner's bucket lease) |
 * | `replicas/<rid>` | internal address, start | replica start (its lease) |
 * | `seq` | the last committed seq (decimal) | with every transition |
 * | `log/<seq>`, `wslog/<id>/<seq>` | the transition | with every transition |
 * | `log-floor` | seq through which the log was compacted | retention |
 * | `txn/<rid>` | the write id of the replica's last transaction | every transaction |
 *
 * The runtime projection (etcd-projection-store.ts) keeps its own keys beside
 * them; secret values and data keys reach etcd only sealed (AES-256-GCM):
 *
 * | key | value | written |
 * |---|---|---|
 * | `pk/<id>` | the workspace's data key, wrapped under a keyring key (ciphertext), its key id | first secret or config; KEK rotation; deleted with the workspace |
 * | `sec/<id>/<NAME>` | one sealed secret (ciphertext), its keyed fingerprint, who and when | set / delete secret; deleted with the workspace |
 * | `cfg/<id>` | the runtime config (adapter, model, provider, base URL, plain env, reload policy) | set config |
 * | `proj/<id>` | config_version and the projection's state (digest or failure reason) | with every projection write (serialises them) |
 * | `applied/<id>` | the config_version the runtime reported applying | heartbeat report, when it changed |
 * | `config-version` | the global config_version counter (decimal) | every write that bumps a version |
 * | `audit-seq` | the last audit seq (decimal) | with every audit row |
 * | `audit/<seq>`, `wsaudit/<id>/<seq>` | one audit row (names, fingerprint, action; never a value) | with every projection write, delivery, denial, rewrap |
 * | `keyring/<kek id>` | a keyed check value of that keyring key (HMAC, 32 hex; not the key) | the first start of a replica holding the key |
 */
export interface EtcdKeys {
  readonly prefix: string;
  ws(id: string): string;
  st(id: string): string;
  hb(id: string): string;
  use(id: string): string;
  tok(hashHex: string): string;
  wstok(id: string, hashHex?: string): string;
  own(id: string): string;
  replica(rid: string): string;
  readonly seq: string;
  log(seq: number): string;
  wslog(id: string, seq?: number): string;
  readonly logFloor: string;
  txn(rid: string): string;
  readonly election: string;
  dataKey(id: string): string;
  secret(id: string, name?: string): string;
  runtimeConfig(id: string): string;
  projection(id: string): string;
  applied(id: string): string;
  readonly configVersion: string;
  readonly auditSeq: string;
  audit(seq: number): string;
  wsaudit(id: string, seq?: number): string;
  keyringCheck(kekId: string): string;
  /** Sub-prefixes whose keys a replica caches from its watch. */
  readonly cached: readonly string[];
  /** The id after a cached sub-prefix (`st/abc` → `abc`), or undefined. */
  idAfter(key: string, sub: string): string | undefined;
}

/** Seqs are zero-padded so that key order is seq order. */
export function seqKeyPart(seq: number): string {
  return seq.toString().padStart(16, '0');
}

export function createEtcdKeys(prefix: string): EtcdKeys {
  const p = prefix;
  return {
    prefix: p,
    ws: (id) => `${p}ws/${id}`,
    st: (id) => `${p}st/${id}`,
    hb: (id) => `${p}hb/${id}`,
    use: (id) => `${p}use/${id}`,
    tok: (hashHex) => `${p}tok/${hashHex}`,
    wstok: (id, hashHex) => `${p}wstok/${id}/${hashHex ?? ''}`,
    own: (id) => `${p}own/${id}`,
    replica: (rid) => `${p}replicas/${rid}`,
    seq: `${p}seq`,
    log: (seq) => `${p}log/${seqKeyPart(seq)}`,
    wslog: (id, seq) => `${p}wslog/${id}/${seq === undefined ? '' : seqKeyPart(seq)}`,
    logFloor: `${p}log-floor`,
    txn: (rid) => `${p}txn/${rid}`,
    election: `${p}leader/`,
    dataKey: (id) => `${p}pk/${id}`,
    secret: (id, name) => `${p}sec/${id}/${name ?? ''}`,
    runtimeConfig: (id) => `${p}cfg/${id}`,
    projection: (id) => `${p}proj/${id}`,
    applied: (id) => `${p}applied/${id}`,
    configVersion: `${p}config-version`,
    auditSeq: `${p}audit-seq`,
    audit: (seq) => `${p}audit/${seqKeyPart(seq)}`,
    wsaudit: (id, seq) => `${p}wsaudit/${id}/${seq === undefined ? '' : seqKeyPart(seq)}`,
    keyringCheck: (kekId) => `${p}keyring/${kekId}`,
    cached: ['st/', 'tok/', 'own/', 'replicas/', 'leader/', 'pk/', 'proj/', 'applied/'],
    idAfter(key, sub) {
      const head = p + sub;
      return key.startsWith(head) ? key.slice(head.length) : undefined;
    },
  };
}

/** The end of the etcd range of every key starting with `prefix`. */
export function prefixEnd(prefix: string): Buffer {
  const bytes = Buffer.from(prefix);
  for (let i = bytes.length - 1; i >= 0; i -= 1) {
    const byte = bytes.readUInt8(i);
    if (byte < 0xff) {
      bytes.writeUInt8(byte + 1, i);
      return bytes.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** `ws/<id>`: what a workspace is, apart from its status and liveness. */
export interface WorkspaceDoc {
  readonly name: string;
  readonly url: string;
  readonly deliveryMode: DeliveryMode;
  /** The serialized, validated card; null until one is stored. */
  readonly agentCard: string | null;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** `st/<id>`: what the status machine reads, guarded by its mod revision. */
export interface StateDoc {
  readonly status: WorkspaceStatus;
  readonly lastHeartbeatAt: number | null;
  readonly lastRegisteredAt: number | null;
  readonly lastRegisterFailureAt: number | null;
  readonly createdAt: number;
  readonly hasCard: boolean;
  readonly statusChangedAt: number;
  readonly updatedAt: number;
  /** The write id of the transaction that wrote it. */
  readonly txid: string;
}

/** `hb/<id>`: the last heartbeat the owner flushed. */
export interface HeartbeatDoc {
  readonly lastHeartbeatAt: number;
  readonly report: HeartbeatReport;
}

/** `tok/<hash>`. */
export interface TokenDoc {
  readonly workspaceId: string;
  readonly createdAt: number;
  readonly expiresAt: number | null;
}

/** `own/<id>`. */
export interface OwnerDoc {
  readonly replica: string;
  readonly claimedAt: number;
}

/** `replicas/<rid>`. */
export interface ReplicaDoc {
  readonly address: string;
  readonly startedAt: number;
  readonly version: string;
}

/** `log/<seq>` and `wslog/<id>/<seq>`. */
export interface LogDoc {
  readonly seq: number;
  readonly workspaceId: string;
  readonly from: WorkspaceStatus | null;
  readonly to: WorkspaceStatus;
  readonly reason: TransitionReason;
  readonly detail: string;
  readonly at: number;
  /** The replica that committed it. */
  readonly by: string;
  readonly txid: string;
}

export function encode(doc: unknown): Buffer {
  return Buffer.from(JSON.stringify(doc));
}

/** Parses a document this module's `encode` wrote (the caller names its type). */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the stored document's type
export function decode<T>(value: Buffer): T {
  return JSON.parse(value.toString('utf8')) as T;
}

export function toTransition(doc: LogDoc): Transition {
  return {
    seq: doc.seq,
    workspaceId: doc.workspaceId,
    fromStatus: doc.from ?? undefined,
    toStatus: doc.to,
    reason: doc.reason,
    detail: doc.detail,
    at: doc.at,
  };
}

/** An etcd revision (int64 as a string) as a number; revisions stay far below 2^53. */
export function revision(value: string | undefined): number {
  const n = Number(value ?? '0');
  if (!Number.isSafeInteger(n)) throw new Error(`etcd revision ${value ?? ''} is out of range`);
  return n;
}
