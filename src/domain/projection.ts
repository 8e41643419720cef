import { VigilError, fieldInvalid } from './errors.js';

/**
 * The runtime projection: the one pure function that turns a workspace's
 * runtime config, its secrets and the provider catalog into the environment
 * its runtime starts with. Every start path (first start, restart, recreate,
 * reload) asks for this very function, so no two paths can build the
 * environment from different inputs. It fails closed: an unresolvable,
 * ambiguous or incomplete configuration yields a named error and no
 * environment at all, never a partial one.
 */

/** How the runtime speaks to its model provider. */
export type AdapterName = 'claude-code' | 'openai-compatible' | 'generic';
export const ADAPTERS: readonly AdapterName[] = ['claude-code', 'openai-compatible', 'generic'];

/** The wire protocol a provider speaks, and so how its credential is presented. */
export type ProviderProtocol =
  'anthropic-api-key' | 'anthropic-oauth' | 'anthropic-compatible' | 'openai';
export const PROVIDER_PROTOCOLS: readonly ProviderProtocol[] = [
  'anthropic-api-key',
  'anthropic-oauth',
  'anthropic-compatible',
  'openai',
];

/** One provider of the catalog. */
export interface ProviderSpec {
  readonly name: string;
  /** The secret holding its credential. */
  readonly credential: string;
  readonly protocol: ProviderProtocol;
  /** The base URL used when the config sets none; undefined when the protocol needs none. */
  readonly defaultBaseUrl: string | undefined;
  /**
   * Models that derive to this provider when the config names none: regular
   * expressions matched case-insensitively at the start of the model name.
   * Providers sharing a pattern are told apart by which credential is stored.
   */
  readonly modelPatterns: readonly string[];
}

/** The provider catalog, as data; its order is the order of the derive-from-model rules. */
export interface ProviderCatalog {
  readonly providers: readonly ProviderSpec[];
}

const CLAUDE_MODELS = ['claude-', 'opus', 'sonnet', 'haiku'];

/** The built-in catalog (the table in PROJECTION.md); `--providers-file` replaces it. */
export const BUILT_IN_PROVIDERS: ProviderCatalog = {
  providers: [
    {
      name: 'anthropic-api',
      credential: 'ANTHROPIC_API_KEY',
      protocol: 'anthropic-api-key',
      defaultBaseUrl: 'https://api.anthropic.com',
      modelPatterns: CLAUDE_MODELS,
    },
    {
      name: 'anthropic-oauth',
      credential: 'CLAUDE_CODE_OAUTH_TOKEN',
      protocol: 'anthropic-oauth',
      defaultBaseUrl: undefined,
      modelPatterns: CLAUDE_MODELS,
    },
    {
      name: 'minimax',
      credential: 'MINIMAX_API_KEY',
      protocol: 'anthropic-compatible',
      defaultBaseUrl: 'https://api.minimax.io/anthropic',
      modelPatterns: ['minimax-'],
    },
    {
      name: 'kimi-coding',
      credential: 'KIMI_API_KEY',
      protocol: 'anthropic-compatible',
      defaultBaseUrl: 'https://api.kimi.com/coding',
      modelPatterns: ['kimi-'],
    },
    {
      name: 'openai',
      credential: 'OPENAI_API_KEY',
      protocol: 'openai',
      defaultBaseUrl: 'https://api.openai.com/v1',
      modelPatterns: ['gpt-', 'o[0-9]'],
    },
    {
      name: 'moonshot',
      credential: 'MOONSHOT_API_KEY',
      protocol: 'openai',
      defaultBaseUrl: 'https://api.moonshot.ai/v1',
      modelPatterns: ['moonshot-'],
    },
  ],
};

/** What the runtime does when a new version of its projection arrives. */
export type ReloadPolicy =
  | { readonly kind: 'RESTART' }
  | { readonly kind: 'SIGNAL'; readonly signal: string }
  | { readonly kind: 'NONE' };

/** Signals a SIGNAL reload policy may send. */
export const RELOAD_SIGNALS: readonly string[] = [
  'SIGHUP',
  'SIGUSR1',
  'SIGUSR2',
  'SIGINT',
  'SIGTERM',
];

/** A workspace's runtime config: everything but the secrets. */
export interface RuntimeConfig {
  readonly adapter: AdapterName;
  readonly model: string;
  /** Empty: derived from the model. */
  readonly provider: string;
  /** Empty: the provider's default. */
  readonly baseUrl: string;
  /** Plain, non-secret variables. */
  readonly env: Readonly<Record<string, string>>;
  readonly reloadPolicy: ReloadPolicy;
}

/** The config of a workspace nobody configured: the generic adapter, which needs nothing. */
export const DEFAULT_RUNTIME_CONFIG: RuntimeConfig = {
  adapter: 'generic',
  model: '',
  provider: '',
  baseUrl: '',
  env: {},
  reloadPolicy: { kind: 'RESTART' },
};

/** Where one projected variable came from. */
export type EnvSource = `derived:${string}` | 'config' | 'secret' | 'vigil';

/** How one stored secret is used by the projection. */
export type SecretUse = 'PROJECTED' | 'PASSED_THROUGH' | 'SUPPRESSED' | 'SHADOWED';

/** A variable that was dropped: suppressed as a competing credential, or shadowed by a higher layer. */
export interface DroppedVariable {
  readonly name: string;
  readonly source: 'config' | 'secret';
  readonly use: 'SUPPRESSED' | 'SHADOWED';
}

export interface Projected {
  readonly env: Readonly<Record<string, string>>;
  /** Empty when the adapter needs no provider and none resolved. */
  readonly resolvedProvider: string;
  readonly model: string;
  readonly reloadPolicy: ReloadPolicy;
  /** The source of every variable in `env`. */
  readonly sources: Readonly<Record<string, EnvSource>>;
  /** How each stored secret is used. */
  readonly secretUses: Readonly<Record<string, SecretUse>>;
  /** Variables of lower layers that did not make it into `env`. */
  readonly dropped: readonly DroppedVariable[];
}

export type ProjectionOutcome =
  | { readonly ok: true; readonly value: Projected }
  | { readonly ok: false; readonly error: VigilError };

/** What identifies the projection besides config and secrets. */
export interface ProjectionSubject {
  readonly workspaceId: string;
  readonly configVersion: number;
  /** Undefined when none was ever set: DEFAULT_RUNTIME_CONFIG. */
  readonly config: RuntimeConfig | undefined;
}

/** Credentials a claude-code runtime reads: any the mapping did not produce would compete. */
const CLAUDE_CODE_COMPETING = [
  'ANTHROPIC_API_KEY',
  'ANTHROPIC_AUTH_TOKEN',
  'CLAUDE_CODE_OAUTH_TOKEN',
  // Not a credential, but a stale one sends the chosen credential to the wrong party.
  'ANTHROPIC_BASE_URL',
];

const VIGIL_KEYS = [
  'MODEL',
  'VIGIL_MODEL',
  'VIGIL_PROVIDER',
  'VIGIL_WORKSPACE_ID',
  'VIGIL_CONFIG_VERSION',
];

/**
 * The projection of one workspace. Pure: the same inputs give the same
 * environment. Layering, highest first: Vigil's own keys (MODEL, VIGIL_*),
 * keys derived from the provider, RuntimeConfig.env, then every other
 * secret under its own name; for claude-code any competing credential the
 * mapping did not produce is removed.
 */
export function project(
  subject: ProjectionSubject,
  secrets: ReadonlyMap<string, string>,
  catalog: ProviderCatalog,
): ProjectionOutcome {
  try {
    return { ok: true, value: projectOrThrow(subject, secrets, catalog) };
  } catch (error) {
    if (error instanceof VigilError) return { ok: false, error };
    throw error;
  }
}

function projectOrThrow(
  subject: ProjectionSubject,
  secrets: ReadonlyMap<string, string>,
  catalog: ProviderCatalog,
): Projected {
  const config = subject.config ?? DEFAULT_RUNTIME_CONFIG;
  const provider = resolveForAdapter(config, secrets, catalog);
  const derived = provider ? deriveEnv(config, provider, secrets) : {};

  const env: Record<string, string> = {};
  const sources: Record<string, EnvSource> = {};
  const dropped: DroppedVariable[] = [];
  const put = (name: string, value: string, source: EnvSource) => {
    const previous = sources[name];
    if (previous === 'secret' || previous === 'config') {
      dropped.push({ name, source: previous, use: 'SHADOWED' });
    }
    env[name] = value;
    sources[name] = source;
  };
  for (const [name, value] of [...secrets].sort(byName)) put(name, value, 'secret');
  for (const [name, value] of Object.entries(config.env).sort(byName)) put(name, value, 'config');
  const derivedSource: EnvSource = `derived:${provider?.name ?? ''}`;
  for (const [name, value] of Object.entries(derived)) put(name, value, derivedSource);

  if (config.adapter === 'claude-code') {
    for (const name of CLAUDE_CODE_COMPETING) {
      const source = sources[name];
      if (source === 'secret' || source === 'config') {
        dropped.push({ name, source, use: 'SUPPRESSED' });
        Reflect.deleteProperty(env, name);
        Reflect.deleteProperty(sources, name);
      }
    }
  }
  const resolvedProvider = provider?.name ?? '';
  put('MODEL', config.model, 'vigil');
  put('VIGIL_MODEL', config.model, 'vigil');
  put('VIGIL_PROVIDER', resolvedProvider, 'vigil');
  put('VIGIL_WORKSPACE_ID', subject.workspaceId, 'vigil');
  put('VIGIL_CONFIG_VERSION', String(subject.configVersion), 'vigil');

  // The credential the mapping consumed is projected, not shadowed, though derived keys overwrote it.
  const kept = dropped.filter(
    (d) => !(provider && d.source === 'secret' && d.name === provider.credential),
  );
  const secretUses: Record<string, SecretUse> = {};
  for (const name of secrets.keys()) {
    const drop = kept.find((d) => d.name === name && d.source === 'secret');
    if (provider && name === provider.credential && config.adapter !== 'generic') {
      secretUses[name] = 'PROJECTED';
    } else secretUses[name] = drop ? drop.use : 'PASSED_THROUGH';
  }
  return {
    env: sortedRecord(env),
    resolvedProvider,
    model: config.model,
    reloadPolicy: config.reloadPolicy,
    sources: sortedRecord(sources),
    secretUses: sortedRecord(secretUses),
    dropped: kept,
  };
}

function byName([a]: readonly [string, string], [b]: readonly [string, string]): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortedRecord<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(
    Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
}

/** The provider the adapter needs, or undefined for the generic adapter when none resolves. */
function resolveForAdapter(
  config: RuntimeConfig,
  secrets: ReadonlyMap<string, string>,
  catalog: ProviderCatalog,
): ProviderSpec | undefined {
  if (config.adapter === 'generic') {
    // The generic adapter derives nothing: a provider only names itself in VIGIL_PROVIDER.
    if (config.provider !== '') return findProvider(catalog, config.provider, config.model);
    const outcome = tryResolve(config, secrets, catalog);
    return outcome instanceof VigilError ? undefined : outcome;
  }
  const outcome = tryResolve(config, secrets, catalog);
  if (outcome instanceof VigilError) throw outcome;
  return outcome;
}

function tryResolve(
  config: RuntimeConfig,
  secrets: ReadonlyMap<string, string>,
  catalog: ProviderCatalog,
): ProviderSpec | VigilError {
  try {
    return resolveProvider(config.provider, config.model, secrets, catalog);
  } catch (error) {
    if (error instanceof VigilError) return error;
    throw error;
  }
}

function findProvider(catalog: ProviderCatalog, name: string, model: string): ProviderSpec {
  const found = catalog.providers.find((p) => p.name === name);
  if (!found) {
    throw new VigilError('PROVIDER_UNRESOLVED', `provider "${name}" is not in the catalog`, {
      provider: name,
      model,
    });
  }
  return found;
}

/**
 * Provider resolution: an explicit provider wins (it must be known). Else
 * derived from the stored model, case-insensitively: `p/…` with `p` in the
 * catalog; then the catalog's model patterns, in order. Several providers
 * matching the same model are told apart by which of their credentials is
 * stored: exactly one wins, several are PROVIDER_AMBIGUOUS, none is
 * PROJECTION_INCOMPLETE. An empty or unmatched model is PROVIDER_UNRESOLVED:
 * there is no default arm (a silent default bills the wrong party).
 */
export function resolveProvider(
  provider: string,
  model: string,
  secrets: ReadonlyMap<string, string>,
  catalog: ProviderCatalog,
): ProviderSpec {
  if (provider !== '') return findProvider(catalog, provider, model);
  const slash = model.indexOf('/');
  if (slash > 0) {
    const prefix = model.slice(0, slash).toLowerCase();
    const named = catalog.providers.find((p) => p.name.toLowerCase() === prefix);
    if (named) return named;
  }
  const first = catalog.providers.find((p) => matchesModel(p, model));
  if (model === '' || !first) {
    throw new VigilError(
      'PROVIDER_UNRESOLVED',
      model === ''
        ? 'no provider is set and there is no model to derive one from'
        : `no provider is set and none derives from model "${model}"`,
      { model },
    );
  }
  const candidates = catalog.providers.filter((p) => samePatterns(p, first));
  if (candidates.length === 1) return first;
  const stored = candidates.filter((p) => secrets.has(p.credential));
  const [only] = stored;
  if (stored.length === 1 && only) return only;
  if (stored.length > 1) {
    throw new VigilError(
      'PROVIDER_AMBIGUOUS',
      `model "${model}" fits ${stored.map((p) => p.name).join(' and ')}, whose credentials are all stored; set provider`,
      { model, providers: stored.map((p) => p.name).join(',') },
    );
  }
  const missing = candidates.map((p) => p.credential).join('|');
  throw new VigilError(
    'PROJECTION_INCOMPLETE',
    `model "${model}" needs one of these secrets: ${missing}`,
    { missing, model },
  );
}

function matchesModel(provider: ProviderSpec, model: string): boolean {
  return provider.modelPatterns.some((pattern) => new RegExp(`^(?:${pattern})`, 'i').test(model));
}

function samePatterns(a: ProviderSpec, b: ProviderSpec): boolean {
  return (
    a.modelPatterns.length === b.modelPatterns.length &&
    a.modelPatterns.every((p, i) => p.toLowerCase() === b.modelPatterns[i]?.toLowerCase())
  );
}

/** Which protocols each adapter can drive. */
const ADAPTER_PROTOCOLS: Record<Exclude<AdapterName, 'generic'>, readonly ProviderProtocol[]> = {
  'claude-code': ['anthropic-api-key', 'anthropic-oauth', 'anthropic-compatible'],
  'openai-compatible': ['openai'],
};

/** The adapter mapping: the variables derived from the provider's credential and base URL. */
function deriveEnv(
  config: RuntimeConfig,
  provider: ProviderSpec,
  secrets: ReadonlyMap<string, string>,
): Record<string, string> {
  if (config.adapter === 'generic') return {};
  if (!ADAPTER_PROTOCOLS[config.adapter].includes(provider.protocol)) {
    throw new VigilError(
      'PROVIDER_UNSUPPORTED_BY_ADAPTER',
      `the ${config.adapter} adapter cannot drive provider ${provider.name} (${provider.protocol})`,
      { adapter: config.adapter, provider: provider.name },
    );
  }
  const key = secrets.get(provider.credential);
  if (key === undefined) {
    throw new VigilError(
      'PROJECTION_INCOMPLETE',
      `provider ${provider.name} needs the secret ${provider.credential}`,
      { missing: provider.credential, provider: provider.name },
    );
  }
  const base = (): string => {
    const chosen = config.baseUrl !== '' ? config.baseUrl : provider.defaultBaseUrl;
    if (chosen === undefined) {
      throw new VigilError(
        'PROJECTION_INCOMPLETE',
        `provider ${provider.name} has no default base URL; set base_url`,
        { missing: 'base_url', provider: provider.name },
      );
    }
    return provider.protocol === 'openai' ? chosen.replace(/\/$/, '') : anthropicBase(chosen);
  };
  switch (provider.protocol) {
    case 'anthropic-api-key':
      return config.baseUrl === ''
        ? { ANTHROPIC_API_KEY: key }
        : { ANTHROPIC_API_KEY: key, ANTHROPIC_BASE_URL: base() };
    case 'anthropic-oauth':
      return { CLAUDE_CODE_OAUTH_TOKEN: key };
    case 'anthropic-compatible':
      return { ANTHROPIC_AUTH_TOKEN: key, ANTHROPIC_BASE_URL: base() };
    case 'openai':
      return { OPENAI_API_KEY: key, OPENAI_BASE_URL: base() };
  }
}

/**
 * An Anthropic-protocol base URL as the SDK wants it: the SDK appends
 * `/v1/messages` itself, so one trailing `/` and then one trailing `/v1` are
 * removed (a kept `/v1` sent every request to `/v1/v1/messages`).
 */
export function anthropicBase(url: string): string {
  return url.replace(/\/$/, '').replace(/\/v1$/, '');
}

/** The environment as the digest covers it: sorted keys, without VIGIL_CONFIG_VERSION. */
export function canonicalEnv(env: Readonly<Record<string, string>>): string {
  return JSON.stringify(
    Object.entries(env)
      .filter(([name]) => name !== 'VIGIL_CONFIG_VERSION')
      .sort(byName),
  );
}

// ---- Validation of what callers store -------------------------------------------------------

/** Secret and env variable names. */
export const VARIABLE_NAME_PATTERN = /^[A-Z_][A-Z0-9_]{0,127}$/;
/** Largest secret or env value, in bytes. */
export const MAX_VALUE_BYTES = 32 * 1024;
/** Largest number of plain env variables in a RuntimeConfig. */
export const MAX_CONFIG_ENV = 256;

/** Throws SECRET_NAME_INVALID unless `name` is a variable name outside the reserved VIGIL_ prefix. */
export function checkVariableName(name: string, field = 'name'): string {
  if (!VARIABLE_NAME_PATTERN.test(name) || name.startsWith('VIGIL_') || VIGIL_KEYS.includes(name)) {
    throw new VigilError(
      'SECRET_NAME_INVALID',
      `${field}: must match ^[A-Z_][A-Z0-9_]{0,127}$, outside the reserved VIGIL_ prefix and MODEL`,
      { field },
    );
  }
  return name;
}

/** Half of a UTF-16 surrogate pair without its other half: not encodable as UTF-8. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Throws SECRET_VALUE_INVALID unless `value` is UTF-8 text without NUL of at most 32 KiB. */
export function checkVariableValue(value: string, field: string): string {
  if (
    value.includes('\0') ||
    Buffer.byteLength(value, 'utf8') > MAX_VALUE_BYTES ||
    LONE_SURROGATE.test(value)
  ) {
    // The message names the field only: never the value.
    throw new VigilError(
      'SECRET_VALUE_INVALID',
      `${field}: must be UTF-8 text without NUL, at most ${MAX_VALUE_BYTES} bytes`,
      { field },
    );
  }
  return value;
}

/** The base URL a config may set: http(s), no credentials, no query or fragment. */
export function checkBaseUrl(url: string): string {
  if (url === '') return url;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw fieldInvalid('base_url', 'must be an absolute http or https URL');
  }
  if (
    (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') ||
    parsed.username !== '' ||
    parsed.password !== '' ||
    parsed.search !== '' ||
    parsed.hash !== '' ||
    url.length > 2048
  ) {
    throw fieldInvalid(
      'base_url',
      'must be an http or https URL without credentials, query or fragment, at most 2048 bytes',
    );
  }
  return url;
}

/** Validates a whole RuntimeConfig as a caller sends it. Throws FIELD_INVALID / SECRET_*_INVALID. */
export function checkRuntimeConfig(config: RuntimeConfig, catalog: ProviderCatalog): RuntimeConfig {
  if (!ADAPTERS.includes(config.adapter)) {
    throw fieldInvalid('config.adapter', `must be one of ${ADAPTERS.join(', ')}`);
  }
  if (Buffer.byteLength(config.model, 'utf8') > 256 || /\p{Cc}/u.test(config.model)) {
    throw fieldInvalid('config.model', 'must be at most 256 bytes of printable text');
  }
  if (config.provider !== '' && !catalog.providers.some((p) => p.name === config.provider)) {
    throw fieldInvalid('config.provider', `"${config.provider}" is not in the provider catalog`);
  }
  checkBaseUrl(config.baseUrl);
  const names = Object.keys(config.env);
  if (names.length > MAX_CONFIG_ENV) {
    throw fieldInvalid('config.env', `at most ${MAX_CONFIG_ENV} variables`);
  }
  for (const name of names) {
    checkVariableName(name, 'config.env');
    checkVariableValue(config.env[name] ?? '', `config.env.${name}`);
  }
  if (
    config.reloadPolicy.kind === 'SIGNAL' &&
    !RELOAD_SIGNALS.includes(config.reloadPolicy.signal)
  ) {
    throw fieldInvalid(
      'config.reload_policy.signal',
      `must be one of ${RELOAD_SIGNALS.join(', ')}`,
    );
  }
  return config;
}

/** Validates a provider catalog read from a file (names unique, patterns compile). Throws Error. */
export function checkCatalog(catalog: ProviderCatalog): ProviderCatalog {
  const seen = new Set<string>();
  for (const p of catalog.providers) {
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(p.name))
      throw new Error(`provider name "${p.name}" is invalid`);
    if (seen.has(p.name)) throw new Error(`provider "${p.name}" is listed twice`);
    seen.add(p.name);
    if (!VARIABLE_NAME_PATTERN.test(p.credential) || p.credential.startsWith('VIGIL_')) {
      throw new Error(`provider ${p.name}: credential "${p.credential}" is not a variable name`);
    }
    if (!PROVIDER_PROTOCOLS.includes(p.protocol)) {
      throw new Error(
        `provider ${p.name}: protocol must be one of ${PROVIDER_PROTOCOLS.join(', ')}`,
      );
    }
    if (p.defaultBaseUrl !== undefined) {
      try {
        checkBaseUrl(p.defaultBaseUrl);
      } catch {
        throw new Error(`provider ${p.name}: defaultBaseUrl is not an http(s) URL`);
      }
    }
    for (const pattern of p.modelPatterns) {
      try {
        new RegExp(pattern, 'i');
      } catch {
        throw new Error(
          `provider ${p.name}: model pattern "${pattern}" is not a regular expression`,
        );
      }
    }
  }
  return catalog;
}
