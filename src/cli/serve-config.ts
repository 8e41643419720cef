import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { DEFAULT_SETTINGS, type EtcdSettings, type VigilSettings } from '../app.js';
import { parseRate } from '../domain/rate-limiter.js';
import { URL_POLICIES, type UrlPolicyName } from '../domain/url-policy.js';
import { DEFAULT_CONNECTION_LIMITS } from '../transport/server.js';
import { formatDuration, parseDuration } from './duration.js';

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
    description: 'a failed Register keeps the workspace DEGRADED this long',
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
    flag: 'max-watch-streams',
    env: 'VIGIL_MAX_WATCH_STREAMS',
    description: 'open WatchStatus streams allowed per control token (0: no limit)',
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
    description: 'HOST:PORT for Prometheus metrics at /metrics; "off" disables them',
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
    description: 'fatal | error | warn | info | debug | trace',
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
  const duration = (flag: string, fallback: number): number => {
    const text = value(flag);
    if (text === undefined) return fallback;
    const ms = parseDuration(text);
    if (ms === undefined || ms <= 0) {
      errors.push(`--${flag}: "${text}" is not a positive duration such as 10s, 5m or 1m30s`);
      return fallback;
    }
    return ms;
  };

  const listen = value('listen') ?? DEFAULT_SETTINGS.listen;
  if (!isHostPort(listen)) {
    errors.push(`--listen: "${listen}" is not HOST:PORT`);
  }
  const metricsText = value('metrics-listen') ?? DEFAULT_SETTINGS.metricsListen;
  const metricsListen = metricsText === 'off' ? '' : metricsText;
  if (metricsListen !== '' && !isHostPort(metricsListen)) {
    errors.push(`--metrics-listen: "${metricsText}" is not HOST:PORT or off`);
  }
  const dataDir = value('data-dir') ?? DEFAULT_SETTINGS.dataDir;
  if (dataDir === '') errors.push('--data-dir: must not be empty');
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
      '--offline-after: must be longer than --heartbeat-interval, or every workspace flaps OFFLINE',
    );
  }
  const progressIntervalMs = duration('progress-interval', DEFAULT_SETTINGS.progressIntervalMs);
  const urlPolicy = value('url-policy') ?? DEFAULT_SETTINGS.urlPolicy;
  if (!URL_POLICIES.includes(urlPolicy as UrlPolicyName)) {
    errors.push(`--url-policy: "${urlPolicy}" is not one of ${URL_POLICIES.join(', ')}`);
  }
  const sync = (value('sync') ?? DEFAULT_SETTINGS.synchronous).toUpperCase();
  if (sync !== 'FULL' && sync !== 'NORMAL')
    errors.push(`--sync: "${sync.toLowerCase()}" is not full or normal`);
  const logLevel = value('log-level') ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    errors.push(`--log-level: "${logLevel}" is not a log level`);
  }
  const readPem = (flag: string): Buffer | undefined => {
    const file = value(flag);
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch {
      errors.push(`--${flag}: cannot read ${file}`);
      return undefined;
    }
  };
  const cert = readPem('tls-cert');
  const key = readPem('tls-key');
  const clientCa = readPem('tls-client-ca');
  if ((value('tls-cert') === undefined) !== (value('tls-key') === undefined)) {
    errors.push('--tls-cert and --tls-key go together');
  }
  if (value('tls-client-ca') !== undefined && value('tls-cert') === undefined) {
    errors.push('--tls-client-ca needs --tls-cert and --tls-key (mTLS is TLS first)');
  }
  const tls = cert && key ? { cert, key, ...(clientCa ? { clientCa } : {}) } : undefined;
  const sizeText = value('max-message-size') ?? DEFAULT_TEXT.maxMessage;
  const maxMessageBytes = parseSize(sizeText);
  if (maxMessageBytes === undefined || maxMessageBytes < 65 * 1024) {
    errors.push(
      `--max-message-size: "${sizeText}" is not a size of at least 65KiB (a 64 KiB agent card must fit)`,
    );
  }
  const fieldLimit = (flag: string, fallback: number): number => {
    const text = value(flag);
    if (text === undefined) return fallback;
    const bytes = parseSize(text);
    if (bytes === undefined || bytes < 1 || bytes > 64 * 1024) {
      errors.push(`--${flag}: "${text}" is not a size from 1 byte to 64KiB`);
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
    if (rate === undefined) errors.push(`--${rateFlag}: "${rateText}" is not N/s, N/m or off`);
    const burstText = value(burstFlag) ?? burstDefault;
    if (!/^[1-9]\d*$/.test(burstText))
      errors.push(`--${burstFlag}: "${burstText}" is not a positive integer`);
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
      errors.push(`--${flag}: "${text}" is not a positive value`);
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
  };
  const watchText = value('max-watch-streams') ?? DEFAULT_TEXT.watchStreams;
  if (!/^\d+$/.test(watchText))
    errors.push(`--max-watch-streams: "${watchText}" is not a whole number`);
  const etcd = resolveEtcd(value, listen, errors);
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
  listen: string,
  errors: string[],
): EtcdSettings | undefined {
  const store = value('store') ?? 'sqlite';
  const etcdFlags = ['etcd-endpoints', 'etcd-ca', 'etcd-cert', 'etcd-key'];
  if (store === 'sqlite') {
    for (const flag of etcdFlags) {
      if (value(flag) !== undefined) errors.push(`--${flag}: only with --store etcd`);
    }
    return undefined;
  }
  if (store !== 'etcd') {
    errors.push(`--store: "${store}" is not sqlite or etcd`);
    return undefined;
  }
  const endpointsText = value('etcd-endpoints') ?? '';
  const endpoints = endpointsText
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  if (endpoints.length === 0) errors.push('--etcd-endpoints: --store etcd needs at least one');
  const tlsToEtcd = value('etcd-ca') !== undefined;
  const urls = endpoints.flatMap((endpoint) => {
    const bare = endpoint.replace(/^https?:\/\//, '');
    if (!isHostPort(bare)) {
      errors.push(`--etcd-endpoints: "${endpoint}" is not HOST:PORT or http[s]://HOST:PORT`);
      return [];
    }
    return [/^https?:\/\//.test(endpoint) ? endpoint : `${tlsToEtcd ? 'https' : 'http'}://${bare}`];
  });
  const prefix = value('etcd-prefix') ?? DEFAULT_ETCD_PREFIX;
  if (prefix === '' || /\s/.test(prefix))
    errors.push(`--etcd-prefix: "${prefix}" must be non-empty, without spaces`);
  const replicaId = value('replica-id') ?? `r-${randomBytes(4).toString('hex')}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(replicaId)) {
    errors.push(`--replica-id: "${replicaId}" is not 1–63 letters, digits, '.', '_' or '-'`);
  }
  const advertise = value('advertise') ?? listen;
  if (!isHostPort(advertise)) errors.push(`--advertise: "${advertise}" is not HOST:PORT`);
  for (const flag of ['etcd-ca', 'etcd-cert', 'etcd-key']) {
    const file = value(flag);
    if (file !== undefined && !existsSync(file)) errors.push(`--${flag}: cannot read ${file}`);
  }
  if ((value('etcd-cert') === undefined) !== (value('etcd-key') === undefined)) {
    errors.push('--etcd-cert and --etcd-key go together');
  }
  if (value('etcd-cert') !== undefined && !tlsToEtcd) {
    errors.push('--etcd-cert needs --etcd-ca (client certificates are TLS first)');
  }
  return {
    endpoints: urls,
    prefix,
    replicaId,
    advertise,
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

function isHostPort(text: string): boolean {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(text);
  return match !== null && Number(match[2]) <= 65535;
}

/** Parses `1048576`, `512KiB` or `4MiB` into bytes; undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+)(B|KiB|MiB)?$/.exec(text);
  if (!match) return undefined;
  const unit = match[2] === 'MiB' ? 1024 * 1024 : match[2] === 'KiB' ? 1024 : 1;
  return Number(match[1]) * unit;
}
