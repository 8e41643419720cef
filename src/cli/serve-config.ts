import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { DEFAULT_SETTINGS, type EtcdSettings, type VigilSettings } from '../app.js';
import { parseRate } from '../domain/rate-limiter.js';
import { URL_POLICIES, type UrlPolicyName } from '../domain/url-policy.js';
import { DEFAULT_CONNECTION_LIMITS } from '../transport/server.js';
import { formatDuration, parseDuration } from './duration.js';
import type { ProviderCatalog } from '../domain/projection.js';
import { readProvidersFile } from './providers-file.js';

/**
 * Settings of `vigil serve`: flags override environment (VIGIL_*), which
 * overrides defaults. Every bad value is reported, one line each.
 */

export interface Setting {
  readonly flag: string;
  readonly env: string;
  readonly description: string;
  readonly defaultText: string;
}

const DEFAULT_ETCD_PREFIX = 'vigil/';

const LOG_LEVELS: readonly string[] = [
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
  'silent',
];

/** Defaults written the way the flags read them, so --help, the README and parsing agree. */
const DEFAULT_TEXT = {
  maxMessage: `${DEFAULT_SETTINGS.maxMessageBytes / 1024 / 1024}MiB`,
  sampleError: String(DEFAULT_SETTINGS.fieldLimits.sampleErrorBytes),
  currentTask: String(DEFAULT_SETTINGS.fieldLimits.currentTaskBytes),
  rate: DEFAULT_SETTINGS.heartbeatRateLimit
    ? `${DEFAULT_SETTINGS.heartbeatRateLimit.ratePerSecond}/s`
    : 'off',
  burst: String(DEFAULT_SETTINGS.heartbeatRateLimit?.burst ?? 20),
  registerRate: DEFAULT_SETTINGS.registerRateLimit
    ? `${DEFAULT_SETTINGS.registerRateLimit.ratePerSecond}/s`
    : 'off',
  registerBurst: String(DEFAULT_SETTINGS.registerRateLimit?.burst ?? 10),
  watchStreams: String(DEFAULT_SETTINGS.maxWatchStreamsPerToken),
};

export const SERVE_SETTINGS: readonly Setting[] = [
  {
    flag: 'listen',
    env: 'VIGIL_LISTEN',
    description: 'HOST:PORT to serve gRPC on',
    defaultText: DEFAULT_SETTINGS.listen,
  },
  {
    flag: 'data-dir',
    env: 'VIGIL_DATA_DIR',
    description: 'directory of the database (DIR/vigil.db) and the generated control token',
    defaultText: DEFAULT_SETTINGS.dataDir,
  },
  {
    flag: 'heartbeat-interval',
    env: 'VIGIL_HEARTBEAT_INTERVAL',
    description: 'heartbeat interval hinted to runtimes (jittered ±10%)',
    defaultText: formatDuration(DEFAULT_SETTINGS.timings.heartbeatIntervalMs),
  },
  {
    flag: 'offline-after',
    env: 'VIGIL_OFFLINE_AFTER',
    description: 'ONLINE/DEGRADED go OFFLINE after this long without a heartbeat',
    defaultText: formatDuration(DEFAULT_SETTINGS.timings.offlineAfterMs),
  },
  {
    flag: 'register-failure-window',
    env: 'VIGIL_REGISTER_FAILURE_WINDOW',
    description:
      'a failed Register keeps the workspace DEGRADED this long, unless a heartbeat carrying a valid card clears it first',
    defaultText: formatDuration(DEFAULT_SETTINGS.timings.registerFailureWindowMs),
  },
  {
    flag: 'provision-timeout',
    env: 'VIGIL_PROVISION_TIMEOUT',
    description: 'PROVISIONING goes FAILED after this long',
    defaultText: formatDuration(DEFAULT_SETTINGS.timings.provisionTimeoutMs),
  },
  {
    flag: 'tls-cert',
    env: 'VIGIL_TLS_CERT',
    description: 'PEM certificate chain: serve TLS (needs --tls-key)',
    defaultText: 'none (plaintext)',
  },
  {
    flag: 'tls-key',
    env: 'VIGIL_TLS_KEY',
    description: 'PEM private key of --tls-cert',
    defaultText: 'none',
  },
  {
    flag: 'tls-client-ca',
    env: 'VIGIL_TLS_CLIENT_CA',
    description: 'PEM CA bundle: require client certificates it signed (mTLS)',
    defaultText: 'none',
  },
  {
    flag: 'max-message-size',
    env: 'VIGIL_MAX_MESSAGE_SIZE',
    description: 'largest request message accepted (bytes, or with KiB / MiB)',
    defaultText: DEFAULT_TEXT.maxMessage,
  },
  {
    flag: 'max-sample-error',
    env: 'VIGIL_MAX_SAMPLE_ERROR',
    description: 'largest Heartbeat.sample_error accepted (bytes, or with KiB)',
    defaultText: DEFAULT_TEXT.sampleError,
  },
  {
    flag: 'max-current-task',
    env: 'VIGIL_MAX_CURRENT_TASK',
    description: 'largest Heartbeat.current_task accepted (bytes, or with KiB)',
    defaultText: DEFAULT_TEXT.currentTask,
  },
  {
    flag: 'heartbeat-rate-limit',
    env: 'VIGIL_HEARTBEAT_RATE_LIMIT',
    description:
      'heartbeats allowed per workspace, sustained (N/s or N/m; off disables); more get RESOURCE_EXHAUSTED',
    defaultText: DEFAULT_TEXT.rate,
  },
  {
    flag: 'heartbeat-burst',
    env: 'VIGIL_HEARTBEAT_BURST',
    description: 'heartbeats a workspace may send at once above the sustained rate',
    defaultText: DEFAULT_TEXT.burst,
  },
  {
    flag: 'register-rate-limit',
    env: 'VIGIL_REGISTER_RATE_LIMIT',
    description:
      'Registers allowed per workspace, sustained (N/s or N/m; off disables); more get RESOURCE_EXHAUSTED',
    defaultText: DEFAULT_TEXT.registerRate,
  },
  {
    flag: 'register-burst',
    env: 'VIGIL_REGISTER_BURST',
    description: 'Registers a workspace may send at once above the sustained rate',
    defaultText: DEFAULT_TEXT.registerBurst,
  },
  {
    flag: 'max-concurrent-streams',
    env: 'VIGIL_MAX_CONCURRENT_STREAMS',
    description: 'HTTP/2 streams one connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS)',
    defaultText: String(DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams),
  },
  {
    flag: 'max-header-list-size',
    env: 'VIGIL_MAX_HEADER_LIST_SIZE',
    description: 'largest HTTP/2 header list of a request (bytes, or with KiB)',
    defaultText: `${DEFAULT_CONNECTION_LIMITS.maxHeaderListBytes / 1024}KiB`,
  },
  {
    flag: 'max-connection-memory',
    env: 'VIGIL_MAX_CONNECTION_MEMORY',
    description: 'memory one HTTP/2 connection may hold in buffered frames and streams (MiB)',
    defaultText: `${DEFAULT_CONNECTION_LIMITS.maxSessionMemoryMiB}MiB`,
  },
  {
    flag: 'connection-idle-timeout',
    env: 'VIGIL_CONNECTION_IDLE_TIMEOUT',
    description:
      'a connection without open streams (or that never sent the HTTP/2 preface) is closed after this',
    defaultText: formatDuration(DEFAULT_CONNECTION_LIMITS.idleTimeoutMs),
  },
  {
    flag: 'min-ping-interval',
    env: 'VIGIL_MIN_PING_INTERVAL',
    description:
      'HTTP/2 pings closer together than this are strikes; after 2 in a row the connection is closed (GOAWAY ENHANCE_YOUR_CALM); 0: no limit',
    defaultText: formatDuration(DEFAULT_CONNECTION_LIMITS.minPingIntervalMs),
  },
  {
    flag: 'max-watch-streams',
    env: 'VIGIL_MAX_WATCH_STREAMS',
    description:
      'open watch streams (WatchStatus and console) allowed per control token (0: no limit)',
    defaultText: DEFAULT_TEXT.watchStreams,
  },
  {
    flag: 'control-tokens',
    env: 'VIGIL_CONTROL_TOKENS_FILE',
    description: 'JSON file of named control tokens with scopes (read | admin); see SECURITY.md',
    defaultText: 'none',
  },
  {
    flag: 'token-rotation-overlap',
    env: 'VIGIL_TOKEN_ROTATION_OVERLAP',
    description: 'after RotateWorkspaceToken the previous tokens keep working this long',
    defaultText: formatDuration(DEFAULT_SETTINGS.timings.tokenRotationOverlapMs),
  },
  {
    flag: 'retention',
    env: 'VIGIL_RETENTION',
    description:
      'transitions older than this are compacted; older watch cursors get a reset snapshot',
    defaultText: formatDuration(DEFAULT_SETTINGS.timings.retentionMs),
  },
  {
    flag: 'metrics-listen',
    env: 'VIGIL_METRICS_LISTEN',
    description:
      'HOST:PORT for Prometheus metrics at /metrics and the web console at /; "off" disables both',
    defaultText: DEFAULT_SETTINGS.metricsListen,
  },
  {
    flag: 'progress-interval',
    env: 'VIGIL_PROGRESS_INTERVAL',
    description: 'idle WatchStatus streams get a progress frame this often',
    defaultText: formatDuration(DEFAULT_SETTINGS.progressIntervalMs),
  },
  {
    flag: 'url-policy',
    env: 'VIGIL_URL_POLICY',
    description: `which addresses Register URLs may resolve to: ${URL_POLICIES.join(' | ')}`,
    defaultText: DEFAULT_SETTINGS.urlPolicy,
  },
  {
    flag: 'secrets-keyring',
    env: 'VIGIL_SECRETS_KEYRING',
    description:
      'keyring file encrypting workspace secrets (generated 0600 when missing; refused if others may read it); "off" disables secrets',
    defaultText: 'DATA_DIR/secrets-keyring',
  },
  {
    flag: 'providers-file',
    env: 'VIGIL_PROVIDERS_FILE',
    description: 'JSON provider catalog replacing the built-in one (validated at start)',
    defaultText: 'none (built-in)',
  },
  {
    flag: 'sync',
    env: 'VIGIL_SYNC',
    description:
      'SQLite synchronous mode: full (durable across power loss) | normal (across crashes)',
    defaultText: DEFAULT_SETTINGS.synchronous.toLowerCase(),
  },
  {
    flag: 'store',
    env: 'VIGIL_STORE',
    description: 'where state lives: sqlite (the file in --data-dir) | etcd (cluster mode)',
    defaultText: 'sqlite',
  },
  {
    flag: 'etcd-endpoints',
    env: 'VIGIL_ETCD_ENDPOINTS',
    description:
      'cluster mode: HOST:PORT (or http[s]://HOST:PORT) of each etcd member, comma-separated',
    defaultText: 'none',
  },
  {
    flag: 'etcd-prefix',
    env: 'VIGIL_ETCD_PREFIX',
    description: 'cluster mode: key prefix of this Vigil cell in etcd',
    defaultText: DEFAULT_ETCD_PREFIX,
  },
  {
    flag: 'replica-id',
    env: 'VIGIL_REPLICA_ID',
    description: "cluster mode: this replica's id, unique in the cell",
    defaultText: 'generated',
  },
  {
    flag: 'advertise',
    env: 'VIGIL_ADVERTISE',
    description: 'cluster mode: HOST:PORT other replicas reach this one at',
    defaultText: 'the --listen address',
  },
  {
    flag: 'replica-lease',
    env: 'VIGIL_REPLICA_LEASE',
    description:
      "cluster mode: TTL of the replica's etcd lease (its ownership and leader campaign; ≥ 2s)",
    defaultText: '10s',
  },
  {
    flag: 'etcd-ca',
    env: 'VIGIL_ETCD_CA',
    description:
      "cluster mode: PEM CA bundle that signed the etcd members' certificates (TLS to etcd)",
    defaultText: 'none (plaintext)',
  },
  {
    flag: 'etcd-cert',
    env: 'VIGIL_ETCD_CERT',
    description: 'cluster mode: PEM client certificate for etcd (needs --etcd-key and --etcd-ca)',
    defaultText: 'none',
  },
  {
    flag: 'etcd-key',
    env: 'VIGIL_ETCD_KEY',
    description: 'cluster mode: PEM private key of --etcd-cert',
    defaultText: 'none',
  },
  {
    flag: 'log-level',
    env: 'VIGIL_LOG_LEVEL',
    description: 'fatal | error | warn | info | debug | trace | silent',
    defaultText: 'info',
  },
];

export interface ServeConfig {
  readonly settings: Omit<VigilSettings, 'controlTokens'>;
  /** VIGIL_CONTROL_TOKEN, when set. */
  readonly controlToken: string | undefined;
  /** The named control tokens file, when given. */
  readonly controlTokensFile: string | undefined;
  readonly logLevel: string;
}

/** Resolves flags > env > defaults; returns the config or every problem found. */
export function resolveServeConfig(
  flags: Readonly<Record<string, string | undefined>>,
  env: NodeJS.ProcessEnv,
): { config: ServeConfig; errors: [] } | { config: undefined; errors: string[] } {
  const errors: string[] = [];
  const value = (flag: string): string | undefined => {
    const setting = SERVE_SETTINGS.find((s) => s.flag === flag);
    return flags[flag] ?? (setting ? env[setting.env] : undefined);
  };
  const label = (flag: string): string => settingSource(flag, flags, env);
  const duration = (flag: string, fallback: number): number => {
    const text = value(flag);
    if (text === undefined) return fallback;
    const ms = parseDuration(text);
    if (ms === undefined || ms <= 0) {
      errors.push(
        `${label(flag)}: "${text}" is not a positive duration: whole numbers with ms, s, m, h or d, such as 250ms, 10s, 5m, 1m30s, 7d`,
      );
      return fallback;
    }
    return ms;
  };

  /** A duration, or 0 (`0` alone) to turn the limit off. */
  const durationOrZero = (flag: string, fallback: number): number => {
    const text = value(flag);
    if (text === '0') return 0;
    return duration(flag, fallback);
  };

  const listen = value('listen') ?? DEFAULT_SETTINGS.listen;
  const listenProblem = hostPortProblem(listen);
  if (listenProblem !== undefined) errors.push(`${label('listen')}: ${listenProblem}`);
  const metricsText = value('metrics-listen') ?? DEFAULT_SETTINGS.metricsListen;
  const metricsListen = metricsText === 'off' ? '' : metricsText;
  const metricsProblem = metricsListen === '' ? undefined : hostPortProblem(metricsListen);
  if (metricsProblem !== undefined)
    errors.push(`${label('metrics-listen')}: ${metricsProblem}, or off to disable metrics`);
  const dataDir = value('data-dir') ?? DEFAULT_SETTINGS.dataDir;
  if (dataDir === '') errors.push(`${label('data-dir')}: must not be empty`);
  const d = DEFAULT_SETTINGS.timings;
  const timings = {
    heartbeatIntervalMs: duration('heartbeat-interval', d.heartbeatIntervalMs),
    offlineAfterMs: duration('offline-after', d.offlineAfterMs),
    registerFailureWindowMs: duration('register-failure-window', d.registerFailureWindowMs),
    provisionTimeoutMs: duration('provision-timeout', d.provisionTimeoutMs),
    retentionMs: duration('retention', d.retentionMs),
    tokenRotationOverlapMs: duration('token-rotation-overlap', d.tokenRotationOverlapMs),
  };
  if (timings.offlineAfterMs <= timings.heartbeatIntervalMs) {
    errors.push(
      `${label('offline-after')}: must be longer than ${label('heartbeat-interval')} (${formatDuration(timings.heartbeatIntervalMs)}), or every workspace flaps OFFLINE`,
    );
  }
  const progressIntervalMs = duration('progress-interval', DEFAULT_SETTINGS.progressIntervalMs);
  const urlPolicy = value('url-policy') ?? DEFAULT_SETTINGS.urlPolicy;
  if (!URL_POLICIES.includes(urlPolicy as UrlPolicyName)) {
    errors.push(`${label('url-policy')}: "${urlPolicy}" is not one of ${URL_POLICIES.join(', ')}`);
  }
  const sync = (value('sync') ?? DEFAULT_SETTINGS.synchronous).toUpperCase();
  if (sync !== 'FULL' && sync !== 'NORMAL')
    errors.push(`${label('sync')}: "${sync.toLowerCase()}" is not one of full, normal`);
  const logLevel = value('log-level') ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    errors.push(`${label('log-level')}: "${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  }
  const readPem = (flag: string): Buffer | undefined => {
    const file = value(flag);
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch {
      errors.push(`${label(flag)}: cannot read ${file}`);
      return undefined;
    }
  };
  const cert = readPem('tls-cert');
  const key = readPem('tls-key');
  const clientCa = readPem('tls-client-ca');
  if ((value('tls-cert') === undefined) !== (value('tls-key') === undefined)) {
    errors.push(`${label('tls-cert')} and ${label('tls-key')} go together`);
  }
  if (value('tls-client-ca') !== undefined && value('tls-cert') === undefined) {
    errors.push(
      `${label('tls-client-ca')} needs ${label('tls-cert')} and ${label('tls-key')} (mTLS is TLS first)`,
    );
  }
  const tls = cert && key ? { cert, key, ...(clientCa ? { clientCa } : {}) } : undefined;
  const sizeText = value('max-message-size') ?? DEFAULT_TEXT.maxMessage;
  const maxMessageBytes = parseSize(sizeText);
  if (maxMessageBytes === undefined || maxMessageBytes < 65 * 1024) {
    errors.push(
      `${label('max-message-size')}: "${sizeText}" is not a size of at least 65KiB, in bytes or with KiB or MiB such as 1MiB (a 64 KiB agent card must fit)`,
    );
  }
  const fieldLimit = (flag: string, fallback: number): number => {
    const text = value(flag);
    if (text === undefined) return fallback;
    const bytes = parseSize(text);
    if (bytes === undefined || bytes < 1 || bytes > 64 * 1024) {
      errors.push(
        `${label(flag)}: "${text}" is not a size from 1 byte to 64KiB, in bytes or with KiB such as 4096 or 4KiB`,
      );
      return fallback;
    }
    return bytes;
  };
  const fieldLimits = {
    sampleErrorBytes: fieldLimit('max-sample-error', DEFAULT_SETTINGS.fieldLimits.sampleErrorBytes),
    currentTaskBytes: fieldLimit('max-current-task', DEFAULT_SETTINGS.fieldLimits.currentTaskBytes),
  };
  const rateLimit = (
    rateFlag: string,
    burstFlag: string,
    rateDefault: string,
    burstDefault: string,
  ) => {
    const rateText = value(rateFlag) ?? rateDefault;
    const rate = parseRate(rateText);
    if (rate === undefined)
      errors.push(
        `${label(rateFlag)}: "${rateText}" is not N/s, N/m or off (such as 5/s or 120/m)`,
      );
    const burstText = value(burstFlag) ?? burstDefault;
    if (!/^[1-9]\d*$/.test(burstText))
      errors.push(`${label(burstFlag)}: "${burstText}" is not a whole number of at least 1`);
    return rate === undefined || rate === 'off'
      ? undefined
      : { ratePerSecond: rate, burst: Number(burstText) };
  };
  const heartbeatRateLimit = rateLimit(
    'heartbeat-rate-limit',
    'heartbeat-burst',
    DEFAULT_TEXT.rate,
    DEFAULT_TEXT.burst,
  );
  const registerRateLimit = rateLimit(
    'register-rate-limit',
    'register-burst',
    DEFAULT_TEXT.registerRate,
    DEFAULT_TEXT.registerBurst,
  );
  const positive = (
    flag: string,
    fallback: number,
    parse: (text: string) => number | undefined,
  ) => {
    const text = value(flag);
    if (text === undefined) return fallback;
    const parsed = parse(text);
    if (parsed === undefined || !Number.isSafeInteger(parsed) || parsed < 1) {
      errors.push(`${label(flag)}: "${text}" is not a positive value`);
      return fallback;
    }
    return parsed;
  };
  const connectionLimits = {
    maxConcurrentStreams: positive(
      'max-concurrent-streams',
      DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams,
      (text) => (/^\d+$/.test(text) ? Number(text) : undefined),
    ),
    maxHeaderListBytes: positive(
      'max-header-list-size',
      DEFAULT_CONNECTION_LIMITS.maxHeaderListBytes,
      parseSize,
    ),
    maxSessionMemoryMiB: positive(
      'max-connection-memory',
      DEFAULT_CONNECTION_LIMITS.maxSessionMemoryMiB,
      (text) => {
        const match = /^(\d+)(MiB)?$/.exec(text);
        return match ? Number(match[1]) : undefined;
      },
    ),
    idleTimeoutMs: duration('connection-idle-timeout', DEFAULT_CONNECTION_LIMITS.idleTimeoutMs),
    minPingIntervalMs: durationOrZero(
      'min-ping-interval',
      DEFAULT_CONNECTION_LIMITS.minPingIntervalMs,
    ),
  };
  const watchText = value('max-watch-streams') ?? DEFAULT_TEXT.watchStreams;
  if (!/^\d+$/.test(watchText))
    errors.push(
      `${label('max-watch-streams')}: "${watchText}" is not a whole number (0 for no limit)`,
    );
  const etcd = resolveEtcd(value, label, listen, errors);
  const secretsKeyring = value('secrets-keyring');
  if (secretsKeyring === '')
    errors.push(`${label('secrets-keyring')}: must not be empty (use "off")`);
  const providersFile = value('providers-file');
  let providers: ProviderCatalog | undefined;
  if (providersFile !== undefined) {
    try {
      providers = readProvidersFile(providersFile);
    } catch (error) {
      errors.push(`${label('providers-file')}: ${(error as Error).message}`);
    }
  }
  const controlToken = env['VIGIL_CONTROL_TOKEN'];
  if (controlToken === '') errors.push('VIGIL_CONTROL_TOKEN: set but empty');

  if (errors.length > 0) return { config: undefined, errors };
  return {
    config: {
      settings: {
        listen,
        ...(tls ? { tls } : {}),
        maxMessageBytes: maxMessageBytes ?? 0,
        heartbeatRateLimit,
        registerRateLimit,
        connectionLimits,
        fieldLimits,
        maxWatchStreamsPerToken: Number(watchText),
        metricsListen,
        dataDir,
        timings,
        urlPolicy: urlPolicy as UrlPolicyName,
        progressIntervalMs,
        synchronous: sync as 'FULL' | 'NORMAL',
        ...(etcd ? { etcd } : {}),
        ...(secretsKeyring === undefined ? {} : { secretsKeyring }),
        ...(providers ? { providers } : {}),
      },
      controlToken,
      controlTokensFile: value('control-tokens'),
      logLevel,
    },
    errors: [],
  };
}

/** Cluster mode's settings, when `--store etcd`. */
function resolveEtcd(
  value: (flag: string) => string | undefined,
  label: (flag: string) => string,
  listen: string,
  errors: string[],
): EtcdSettings | undefined {
  const store = value('store') ?? 'sqlite';
  const etcdFlags = ['etcd-endpoints', 'etcd-ca', 'etcd-cert', 'etcd-key', 'replica-lease'];
  if (store === 'sqlite') {
    for (const flag of etcdFlags) {
      if (value(flag) !== undefined)
        errors.push(`${label(flag)}: only with ${label('store')} etcd (cluster mode)`);
    }
    return undefined;
  }
  if (store !== 'etcd') {
    errors.push(`${label('store')}: "${store}" is not one of sqlite, etcd`);
    return undefined;
  }
  const endpointsText = value('etcd-endpoints') ?? '';
  const endpoints = endpointsText
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  if (endpoints.length === 0)
    errors.push(
      `${label('etcd-endpoints')}: --store etcd needs at least one HOST:PORT or http[s]://HOST:PORT`,
    );
  const tlsToEtcd = value('etcd-ca') !== undefined;
  const urls = endpoints.flatMap((endpoint) => {
    const bare = endpoint.replace(/^https?:\/\//, '');
    if (hostPortProblem(bare) !== undefined) {
      errors.push(
        `${label('etcd-endpoints')}: "${endpoint}" is not HOST:PORT or http[s]://HOST:PORT`,
      );
      return [];
    }
    return [/^https?:\/\//.test(endpoint) ? endpoint : `${tlsToEtcd ? 'https' : 'http'}://${bare}`];
  });
  const prefix = value('etcd-prefix') ?? DEFAULT_ETCD_PREFIX;
  if (prefix === '' || /\s/.test(prefix))
    errors.push(`${label('etcd-prefix')}: "${prefix}" must be non-empty, without spaces`);
  const replicaId = value('replica-id') ?? `r-${randomBytes(4).toString('hex')}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(replicaId)) {
    errors.push(
      `${label('replica-id')}: "${replicaId}" is not 1–63 letters, digits, '.', '_' or '-'`,
    );
  }
  const advertise = value('advertise') ?? listen;
  const advertiseProblem = hostPortProblem(advertise);
  if (advertiseProblem !== undefined) errors.push(`${label('advertise')}: ${advertiseProblem}`);
  const leaseText = value('replica-lease') ?? '10s';
  const leaseMs = parseDuration(leaseText);
  let leaseTtlSeconds = 10;
  if (leaseMs === undefined || leaseMs < 2_000 || leaseMs % 1_000 !== 0) {
    errors.push(
      `${label('replica-lease')}: "${leaseText}" is not a whole number of seconds, at least 2s`,
    );
  } else {
    leaseTtlSeconds = leaseMs / 1_000;
  }
  for (const flag of ['etcd-ca', 'etcd-cert', 'etcd-key']) {
    const file = value(flag);
    if (file !== undefined && !existsSync(file)) errors.push(`${label(flag)}: cannot read ${file}`);
  }
  if ((value('etcd-cert') === undefined) !== (value('etcd-key') === undefined)) {
    errors.push(`${label('etcd-cert')} and ${label('etcd-key')} go together`);
  }
  if (value('etcd-cert') !== undefined && !tlsToEtcd) {
    errors.push(
      `${label('etcd-cert')} needs ${label('etcd-ca')} (client certificates are TLS first)`,
    );
  }
  return {
    endpoints: urls,
    prefix,
    replicaId,
    advertise,
    leaseTtlSeconds,
    ...(tlsToEtcd
      ? {
          tls: {
            caFile: value('etcd-ca'),
            certFile: value('etcd-cert'),
            keyFile: value('etcd-key'),
          },
        }
      : {}),
  };
}

/** Why `text` is not a HOST:PORT one can listen on or dial; undefined when it is. */
function hostPortProblem(text: string): string | undefined {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d+)$/.exec(text);
  if (!match) return `"${text}" is not HOST:PORT (such as 127.0.0.1:50051 or [::1]:50051)`;
  if (Number(match[2]) > 65535) return `port ${match[2]} in "${text}" is not from 0 to 65535`;
  return undefined;
}

/**
 * Where a setting's value came from, as an operator would fix it: `--flag`
 * when the flag was given, else its environment variable when that is set,
 * else the flag (the default was used).
 */
export function settingSource(
  flag: string,
  flags: Readonly<Record<string, string | undefined>>,
  env: NodeJS.ProcessEnv,
): string {
  if (flags[flag] !== undefined) return `--${flag}`;
  const setting = SERVE_SETTINGS.find((s) => s.flag === flag);
  if (setting && env[setting.env] !== undefined) return setting.env;
  return `--${flag}`;
}

/** Parses `1048576`, `512KiB` or `4MiB` into bytes; undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+)(B|KiB|MiB)?$/.exec(text);
  if (!match) return undefined;
  const unit = match[2] === 'MiB' ? 1024 * 1024 : match[2] === 'KiB' ? 1024 : 1;
  return Number(match[1]) * unit;
}

/**
 * The effective settings, for the start log: what each flag resolved to, in
 * the flags' own notation. Never secrets: TLS and etcd keys appear as whether
 * they are set, control tokens not at all.
 */
export function describeSettings(
  settings: ServeConfig['settings'],
  logLevel: string,
): Record<string, string | number | boolean> {
  const t = settings.timings;
  const etcd = settings.etcd;
  return {
    listen: settings.listen,
    dataDir: settings.dataDir,
    store: etcd ? 'etcd' : 'sqlite',
    ...(etcd
      ? {
          etcdEndpoints: etcd.endpoints.join(','),
          etcdPrefix: etcd.prefix,
          replicaId: etcd.replicaId,
          advertise: etcd.advertise,
          etcdTls: etcd.tls !== undefined,
        }
      : { sync: settings.synchronous.toLowerCase() }),
    tls: settings.tls ? (settings.tls.clientCa ? 'mtls' : 'tls') : 'off',
    heartbeatInterval: formatDuration(t.heartbeatIntervalMs),
    offlineAfter: formatDuration(t.offlineAfterMs),
    registerFailureWindow: formatDuration(t.registerFailureWindowMs),
    provisionTimeout: formatDuration(t.provisionTimeoutMs),
    retention: formatDuration(t.retentionMs),
    tokenRotationOverlap: formatDuration(t.tokenRotationOverlapMs),
    progressInterval: formatDuration(settings.progressIntervalMs),
    urlPolicy: settings.urlPolicy,
    maxMessageSize: settings.maxMessageBytes,
    maxSampleError: settings.fieldLimits.sampleErrorBytes,
    maxCurrentTask: settings.fieldLimits.currentTaskBytes,
    heartbeatRateLimit: settings.heartbeatRateLimit
      ? `${settings.heartbeatRateLimit.ratePerSecond}/s`
      : 'off',
    heartbeatBurst: settings.heartbeatRateLimit?.burst ?? 0,
    maxWatchStreams: settings.maxWatchStreamsPerToken,
    metricsListen: settings.metricsListen === '' ? 'off' : settings.metricsListen,
    logLevel,
  };
}
