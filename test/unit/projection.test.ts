import { expect } from 'chai';
import type { ErrorReason } from '../../src/domain/errors.js';
import {
  BUILT_IN_PROVIDERS,
  DEFAULT_RUNTIME_CONFIG,
  anthropicBase,
  canonicalEnv,
  checkCatalog,
  checkRuntimeConfig,
  checkVariableName,
  checkVariableValue,
  project,
  type Projected,
  type RuntimeConfig,
} from '../../src/domain/projection.js';

const K = 'sk-test-K';

function config(overrides: Partial<RuntimeConfig>): RuntimeConfig {
  return { ...DEFAULT_RUNTIME_CONFIG, adapter: 'claude-code', ...overrides };
}

function run(cfg: RuntimeConfig | undefined, secrets: Record<string, string>) {
  return project(
    { workspaceId: 'ws-a', configVersion: 7, config: cfg },
    new Map(Object.entries(secrets)),
    BUILT_IN_PROVIDERS,
  );
}

function ok(cfg: RuntimeConfig | undefined, secrets: Record<string, string>): Projected {
  const outcome = run(cfg, secrets);
  if (!outcome.ok) throw new Error(`expected a projection, got ${outcome.error.reason}`);
  return outcome.value;
}

function fails(
  cfg: RuntimeConfig,
  secrets: Record<string, string>,
  reason: ErrorReason,
  metadata: Record<string, string> = {},
): void {
  const outcome = run(cfg, secrets);
  expect(outcome.ok, 'projection should fail').to.equal(false);
  if (outcome.ok) return;
  expect(outcome.error.reason).to.equal(reason);
  expect(outcome.error.metadata).to.include(metadata);
  expect(outcome.error.codeName).to.equal(
    reason === 'SECRET_UNREADABLE' ? 'DATA_LOSS' : 'FAILED_PRECONDITION',
  );
  // No value ever reaches an error.
  for (const value of Object.values(secrets)) {
    expect(outcome.error.message).to.not.include(value);
    expect(JSON.stringify(outcome.error.metadata)).to.not.include(value);
  }
}

describe('project()', () => {
  describe('when given the worked example (claude-code, MiniMax-M2.7, no provider, MINIMAX_API_KEY)', () => {
    it('derives minimax and exactly the documented environment', () => {
      const p = ok(config({ model: 'MiniMax-M2.7' }), { MINIMAX_API_KEY: K });
      expect(p.resolvedProvider).to.equal('minimax');
      expect(p.env).to.deep.equal({
        ANTHROPIC_AUTH_TOKEN: K,
        ANTHROPIC_BASE_URL: 'https://api.minimax.io/anthropic',
        MINIMAX_API_KEY: K,
        MODEL: 'MiniMax-M2.7',
        VIGIL_CONFIG_VERSION: '7',
        VIGIL_MODEL: 'MiniMax-M2.7',
        VIGIL_PROVIDER: 'minimax',
        VIGIL_WORKSPACE_ID: 'ws-a',
      });
      expect(p.sources).to.include({
        ANTHROPIC_AUTH_TOKEN: 'derived:minimax',
        ANTHROPIC_BASE_URL: 'derived:minimax',
        MINIMAX_API_KEY: 'secret',
        MODEL: 'vigil',
      });
      expect(p.secretUses).to.deep.equal({ MINIMAX_API_KEY: 'PROJECTED' });
    });
  });

  describe('provider resolution', () => {
    const rows: {
      readonly name: string;
      readonly cfg: Partial<RuntimeConfig>;
      readonly secrets: Record<string, string>;
      readonly provider?: string;
      readonly reason?: ErrorReason;
      readonly metadata?: Record<string, string>;
    }[] = [
      {
        name: 'an explicit provider wins over the model',
        cfg: { provider: 'kimi-coding', model: 'MiniMax-M2.7' },
        secrets: { KIMI_API_KEY: K },
        provider: 'kimi-coding',
      },
      {
        name: 'an unknown explicit provider',
        cfg: { provider: 'acme', model: 'x' },
        secrets: {},
        reason: 'PROVIDER_UNRESOLVED',
        metadata: { provider: 'acme' },
      },
      {
        name: 'p/… with p in the catalog',
        cfg: { adapter: 'openai-compatible', model: 'moonshot/kimi-k2' },
        secrets: { MOONSHOT_API_KEY: K },
        provider: 'moonshot',
      },
      {
        name: 'p/… with p unknown falls to the patterns',
        cfg: { model: 'acme/MiniMax-M2' },
        secrets: { MINIMAX_API_KEY: K },
        reason: 'PROVIDER_UNRESOLVED',
      },
      {
        name: 'MiniMax-* (any case) → minimax',
        cfg: { model: 'minimax-m2' },
        secrets: { MINIMAX_API_KEY: K },
        provider: 'minimax',
      },
      {
        name: 'kimi-* → kimi-coding',
        cfg: { model: 'kimi-for-coding' },
        secrets: { KIMI_API_KEY: K },
        provider: 'kimi-coding',
      },
      {
        name: 'moonshot-* → moonshot',
        cfg: { adapter: 'openai-compatible', model: 'moonshot-v1-8k' },
        secrets: { MOONSHOT_API_KEY: K },
        provider: 'moonshot',
      },
      {
        name: 'gpt-* → openai',
        cfg: { adapter: 'openai-compatible', model: 'gpt-5' },
        secrets: { OPENAI_API_KEY: K },
        provider: 'openai',
      },
      {
        name: 'o<digit>* → openai',
        cfg: { adapter: 'openai-compatible', model: 'o3-mini' },
        secrets: { OPENAI_API_KEY: K },
        provider: 'openai',
      },
      {
        name: 'claude-* with only ANTHROPIC_API_KEY → anthropic-api',
        cfg: { model: 'claude-sonnet-4-5' },
        secrets: { ANTHROPIC_API_KEY: K },
        provider: 'anthropic-api',
      },
      {
        name: 'opus* with only CLAUDE_CODE_OAUTH_TOKEN → anthropic-oauth',
        cfg: { model: 'opus' },
        secrets: { CLAUDE_CODE_OAUTH_TOKEN: K },
        provider: 'anthropic-oauth',
      },
      {
        name: 'sonnet* → anthropic-api',
        cfg: { model: 'Sonnet-4' },
        secrets: { ANTHROPIC_API_KEY: K },
        provider: 'anthropic-api',
      },
      {
        name: 'haiku* → anthropic-oauth',
        cfg: { model: 'haiku' },
        secrets: { CLAUDE_CODE_OAUTH_TOKEN: K },
        provider: 'anthropic-oauth',
      },
      {
        name: 'claude-* with both anthropic keys',
        cfg: { model: 'claude-opus-4' },
        secrets: { ANTHROPIC_API_KEY: K, CLAUDE_CODE_OAUTH_TOKEN: 'oauth-value-1' },
        reason: 'PROVIDER_AMBIGUOUS',
      },
      {
        name: 'claude-* with both keys and an explicit provider',
        cfg: { model: 'claude-opus-4', provider: 'anthropic-oauth' },
        secrets: { ANTHROPIC_API_KEY: K, CLAUDE_CODE_OAUTH_TOKEN: 'oauth-value-1' },
        provider: 'anthropic-oauth',
      },
      {
        name: 'claude-* with neither key',
        cfg: { model: 'claude-opus-4' },
        secrets: {},
        reason: 'PROJECTION_INCOMPLETE',
        metadata: { missing: 'ANTHROPIC_API_KEY|CLAUDE_CODE_OAUTH_TOKEN' },
      },
      {
        name: 'an unmatched model (no default arm)',
        cfg: { model: 'llama-3' },
        secrets: { ANTHROPIC_API_KEY: K },
        reason: 'PROVIDER_UNRESOLVED',
        metadata: { model: 'llama-3' },
      },
      {
        name: 'an empty model and no provider',
        cfg: { model: '' },
        secrets: { ANTHROPIC_API_KEY: K },
        reason: 'PROVIDER_UNRESOLVED',
      },
    ];
    for (const row of rows) {
      it(row.name, () => {
        const cfg = config(row.cfg);
        if (row.reason) fails(cfg, row.secrets, row.reason, row.metadata);
        else expect(ok(cfg, row.secrets).resolvedProvider).to.equal(row.provider);
      });
    }
  });

  describe('adapter mapping', () => {
    it('claude-code × anthropic x-api-key: ANTHROPIC_API_KEY, no base URL unless base_url is set', () => {
      const p = ok(config({ model: 'claude-x' }), { ANTHROPIC_API_KEY: K });
      expect(p.env).to.include({ ANTHROPIC_API_KEY: K });
      expect(p.env).to.not.have.property('ANTHROPIC_BASE_URL');
      const withBase = ok(config({ model: 'claude-x', baseUrl: 'https://proxy.example/v1/' }), {
        ANTHROPIC_API_KEY: K,
      });
      expect(withBase.env).to.include({
        ANTHROPIC_API_KEY: K,
        ANTHROPIC_BASE_URL: 'https://proxy.example',
      });
    });

    it('claude-code × anthropic OAuth: CLAUDE_CODE_OAUTH_TOKEN only', () => {
      const p = ok(config({ model: 'claude-x' }), { CLAUDE_CODE_OAUTH_TOKEN: K });
      expect(p.env).to.include({ CLAUDE_CODE_OAUTH_TOKEN: K });
      expect(p.env).to.not.have.any.keys(
        'ANTHROPIC_API_KEY',
        'ANTHROPIC_AUTH_TOKEN',
        'ANTHROPIC_BASE_URL',
      );
    });

    it('claude-code × anthropic-compatible: ANTHROPIC_AUTH_TOKEN and ANTHROPIC_BASE_URL', () => {
      const p = ok(config({ model: 'kimi-k2' }), { KIMI_API_KEY: K });
      expect(p.env).to.include({
        ANTHROPIC_AUTH_TOKEN: K,
        ANTHROPIC_BASE_URL: 'https://api.kimi.com/coding',
        KIMI_API_KEY: K,
      });
    });

    it('openai-compatible × openai: OPENAI_API_KEY and OPENAI_BASE_URL', () => {
      const p = ok(config({ adapter: 'openai-compatible', model: 'gpt-5' }), { OPENAI_API_KEY: K });
      expect(p.env).to.include({ OPENAI_API_KEY: K, OPENAI_BASE_URL: 'https://api.openai.com/v1' });
    });

    it('claude-code × openai is PROVIDER_UNSUPPORTED_BY_ADAPTER', () => {
      fails(config({ model: 'gpt-5' }), { OPENAI_API_KEY: K }, 'PROVIDER_UNSUPPORTED_BY_ADAPTER', {
        adapter: 'claude-code',
        provider: 'openai',
      });
    });

    it('openai-compatible × anthropic* is PROVIDER_UNSUPPORTED_BY_ADAPTER', () => {
      for (const [model, secrets] of [
        ['MiniMax-M2', { MINIMAX_API_KEY: K }],
        ['claude-x', { ANTHROPIC_API_KEY: K }],
        ['claude-x', { CLAUDE_CODE_OAUTH_TOKEN: K }],
      ] as const) {
        fails(
          config({ adapter: 'openai-compatible', model }),
          secrets,
          'PROVIDER_UNSUPPORTED_BY_ADAPTER',
        );
      }
    });

    it('generic: no derived keys and no credential needed', () => {
      const p = ok(config({ adapter: 'generic', model: 'MiniMax-M2' }), { OTHER: 'x' });
      expect(p.env).to.deep.equal({
        MODEL: 'MiniMax-M2',
        OTHER: 'x',
        VIGIL_CONFIG_VERSION: '7',
        VIGIL_MODEL: 'MiniMax-M2',
        VIGIL_PROVIDER: 'minimax',
        VIGIL_WORKSPACE_ID: 'ws-a',
      });
    });

    it('no config at all: the generic adapter, secrets passed through', () => {
      const p = ok(undefined, { TOOL_TOKEN: 't' });
      expect(p.env).to.include({ TOOL_TOKEN: 't', VIGIL_PROVIDER: '', MODEL: '' });
      expect(p.secretUses).to.deep.equal({ TOOL_TOKEN: 'PASSED_THROUGH' });
    });

    it('a resolved provider without its credential is PROJECTION_INCOMPLETE naming it', () => {
      fails(
        config({ model: 'MiniMax-M2.7' }),
        { OTHER: 'other-value-1' },
        'PROJECTION_INCOMPLETE',
        {
          missing: 'MINIMAX_API_KEY',
        },
      );
    });

    it('a protocol needing a base URL with neither base_url nor default is PROJECTION_INCOMPLETE', () => {
      const catalog = {
        providers: [
          {
            name: 'nobase',
            credential: 'NB_KEY',
            protocol: 'anthropic-compatible' as const,
            defaultBaseUrl: undefined,
            modelPatterns: ['nb-'],
          },
        ],
      };
      const outcome = project(
        { workspaceId: 'ws-a', configVersion: 1, config: config({ model: 'nb-1' }) },
        new Map([['NB_KEY', K]]),
        catalog,
      );
      expect(outcome.ok).to.equal(false);
      if (!outcome.ok) expect(outcome.error.metadata).to.include({ missing: 'base_url' });
    });
  });

  describe('base URL normalisation (the SDK appends /v1/messages)', () => {
    const rows: readonly (readonly [string, string])[] = [
      ['https://api.minimax.io/anthropic/v1', 'https://api.minimax.io/anthropic'],
      ['https://api.minimax.io/anthropic/v1/', 'https://api.minimax.io/anthropic'],
      ['https://api.minimax.io/anthropic/', 'https://api.minimax.io/anthropic'],
      ['https://api.minimax.io/anthropic', 'https://api.minimax.io/anthropic'],
      ['https://api.kimi.com/coding/v1', 'https://api.kimi.com/coding'],
    ];
    for (const [input, expected] of rows) {
      it(`${input} → ${expected}, so requests go to exactly one /v1`, () => {
        expect(anthropicBase(input)).to.equal(expected);
        const p = ok(config({ model: 'MiniMax-M2', baseUrl: input }), { MINIMAX_API_KEY: K });
        expect(p.env.ANTHROPIC_BASE_URL).to.equal(expected);
        expect(`${p.env.ANTHROPIC_BASE_URL ?? ''}/v1/messages`.match(/\/v1\//g)).to.have.length(1);
      });
    }
    it('removes only one trailing /v1', () => {
      expect(anthropicBase('https://h/x/v1/v1')).to.equal('https://h/x/v1');
    });
  });

  describe('suppression of competing credentials', () => {
    it('oauth + MiniMax keys: only the MiniMax path; CLAUDE_CODE_OAUTH_TOKEN is SUPPRESSED', () => {
      const p = ok(config({ model: 'MiniMax-M2.7' }), {
        MINIMAX_API_KEY: K,
        CLAUDE_CODE_OAUTH_TOKEN: 'oauth-secret',
        ANTHROPIC_API_KEY: 'api-secret',
      });
      expect(p.env).to.not.have.any.keys('CLAUDE_CODE_OAUTH_TOKEN', 'ANTHROPIC_API_KEY');
      expect(Object.values(p.env)).to.not.include.members(['oauth-secret', 'api-secret']);
      expect(p.secretUses).to.deep.equal({
        ANTHROPIC_API_KEY: 'SUPPRESSED',
        CLAUDE_CODE_OAUTH_TOKEN: 'SUPPRESSED',
        MINIMAX_API_KEY: 'PROJECTED',
      });
      expect(p.dropped).to.deep.include({
        name: 'CLAUDE_CODE_OAUTH_TOKEN',
        source: 'secret',
        use: 'SUPPRESSED',
      });
    });

    it('a competing credential in config.env is suppressed too, and a stale ANTHROPIC_BASE_URL', () => {
      const p = ok(
        config({
          model: 'claude-x',
          env: { ANTHROPIC_AUTH_TOKEN: 'cfg', ANTHROPIC_BASE_URL: 'https://old' },
        }),
        { ANTHROPIC_API_KEY: K },
      );
      expect(p.env).to.not.have.any.keys('ANTHROPIC_AUTH_TOKEN', 'ANTHROPIC_BASE_URL');
      expect(p.dropped).to.deep.include({
        name: 'ANTHROPIC_AUTH_TOKEN',
        source: 'config',
        use: 'SUPPRESSED',
      });
    });

    it('the openai-compatible adapter suppresses nothing', () => {
      const p = ok(config({ adapter: 'openai-compatible', model: 'gpt-5' }), {
        OPENAI_API_KEY: K,
        ANTHROPIC_API_KEY: 'a',
      });
      expect(p.env).to.include({ ANTHROPIC_API_KEY: 'a' });
    });
  });

  describe('layering: derived > config.env > secrets; Vigil keys always set', () => {
    it('config.env shadows a secret; derived keys shadow both', () => {
      const p = ok(
        config({ model: 'MiniMax-M2', env: { LOG_LEVEL: 'debug', OPENAI_BASE_URL: 'cfg' } }),
        { MINIMAX_API_KEY: K, LOG_LEVEL: 'info', ANTHROPIC_AUTH_TOKEN: 'stale' },
      );
      expect(p.env).to.include({
        LOG_LEVEL: 'debug',
        ANTHROPIC_AUTH_TOKEN: K,
        OPENAI_BASE_URL: 'cfg',
      });
      expect(p.sources).to.include({
        LOG_LEVEL: 'config',
        ANTHROPIC_AUTH_TOKEN: 'derived:minimax',
      });
      expect(p.secretUses).to.include({ LOG_LEVEL: 'SHADOWED', ANTHROPIC_AUTH_TOKEN: 'SHADOWED' });
    });

    it('MODEL and VIGIL_* are always set and come from Vigil', () => {
      const p = ok(config({ model: 'MiniMax-M2' }), { MINIMAX_API_KEY: K });
      for (const key of [
        'MODEL',
        'VIGIL_MODEL',
        'VIGIL_PROVIDER',
        'VIGIL_WORKSPACE_ID',
        'VIGIL_CONFIG_VERSION',
      ]) {
        expect(p.sources[key]).to.equal('vigil');
      }
    });

    it('is pure: the same inputs give the same environment, in the same key order', () => {
      const a = ok(config({ model: 'MiniMax-M2' }), { MINIMAX_API_KEY: K, Z: '1', A: '2' });
      const b = ok(config({ model: 'MiniMax-M2' }), { A: '2', Z: '1', MINIMAX_API_KEY: K });
      expect(JSON.stringify(a.env)).to.equal(JSON.stringify(b.env));
    });
  });

  describe('canonicalEnv()', () => {
    it('leaves VIGIL_CONFIG_VERSION out, so a version bump alone does not change the digest', () => {
      expect(canonicalEnv({ B: '1', VIGIL_CONFIG_VERSION: '3', A: '2' })).to.equal(
        canonicalEnv({ A: '2', VIGIL_CONFIG_VERSION: '9', B: '1' }),
      );
    });
  });
});

describe('projection validation', () => {
  it('names: ^[A-Z_][A-Z0-9_]{0,127}$, VIGIL_ and MODEL reserved', () => {
    for (const good of ['A', '_X', 'MINIMAX_API_KEY', 'A'.repeat(128)]) {
      expect(checkVariableName(good)).to.equal(good);
    }
    for (const bad of ['', 'a', '1A', 'A-B', 'A'.repeat(129), 'VIGIL_X', 'MODEL']) {
      expect(() => checkVariableName(bad))
        .to.throw()
        .with.property('reason', 'SECRET_NAME_INVALID');
    }
  });

  it('values: no NUL, at most 32 KiB, well-formed; the error never carries the value', () => {
    expect(checkVariableValue('x'.repeat(32 * 1024), 'value')).to.have.length(32 * 1024);
    for (const bad of ['a\0b', 'x'.repeat(32 * 1024 + 1), 'lone\uD800']) {
      expect(() => checkVariableValue(bad, 'value'))
        .to.throw()
        .that.satisfies(
          (e: Error & { reason: string }) =>
            e.reason === 'SECRET_VALUE_INVALID' && !e.message.includes(bad),
        );
    }
  });

  it('a RuntimeConfig: adapter, provider in the catalog, base URL, env names, signal', () => {
    const good = config({
      model: 'm',
      provider: 'minimax',
      baseUrl: 'https://x/y',
      env: { A: '1' },
    });
    expect(checkRuntimeConfig(good, BUILT_IN_PROVIDERS)).to.equal(good);
    const bad: [Partial<RuntimeConfig>, string][] = [
      [{ adapter: 'nope' as 'generic' }, 'FIELD_INVALID'],
      [{ provider: 'acme' }, 'FIELD_INVALID'],
      [{ baseUrl: 'ftp://x' }, 'FIELD_INVALID'],
      [{ baseUrl: 'https://u:p@x' }, 'FIELD_INVALID'],
      [{ env: { VIGIL_X: '1' } }, 'SECRET_NAME_INVALID'],
      [{ env: { A: 'a\0' } }, 'SECRET_VALUE_INVALID'],
      [{ reloadPolicy: { kind: 'SIGNAL', signal: 'SIGKILL' } }, 'FIELD_INVALID'],
    ];
    for (const [overrides, reason] of bad) {
      expect(() => checkRuntimeConfig(config(overrides), BUILT_IN_PROVIDERS))
        .to.throw()
        .with.property('reason', reason);
    }
  });

  it('a catalog: the built-in one holds; duplicates and bad patterns are refused', () => {
    expect(checkCatalog(BUILT_IN_PROVIDERS)).to.equal(BUILT_IN_PROVIDERS);
    const [first] = BUILT_IN_PROVIDERS.providers;
    if (!first) throw new Error('empty catalog');
    expect(() => checkCatalog({ providers: [first, first] })).to.throw(/twice/);
    expect(() => checkCatalog({ providers: [{ ...first, modelPatterns: ['('] }] })).to.throw(
      /regular/,
    );
    expect(() => checkCatalog({ providers: [{ ...first, credential: 'VIGIL_K' }] })).to.throw(
      /credential/,
    );
  });
});
