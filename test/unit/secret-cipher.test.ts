import { expect } from 'chai';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAesGcmCipher } from '../../src/crypto/aes-gcm-cipher.js';
import {
  KeyringError,
  addActiveKey,
  loadOrCreateKeyring,
  readKeyring,
  removeKey,
} from '../../src/crypto/keyring-file.js';

const SENTINEL = 'sentinel-7f3a9c-value';

function unreadable(f: () => unknown): Record<string, string> {
  try {
    f();
  } catch (error) {
    const e = error as {
      reason?: string;
      codeName?: string;
      metadata: Record<string, string>;
      message: string;
    };
    expect(e.reason).to.equal('SECRET_UNREADABLE');
    expect(e.codeName).to.equal('DATA_LOSS');
    expect(e.message).to.not.include(SENTINEL);
    return e.metadata;
  }
  throw new Error('expected SECRET_UNREADABLE');
}

describe('secret cipher (AES-256-GCM envelope)', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-keyring-'));
    file = join(dir, 'secrets-keyring');
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  describe('when a secret is sealed and opened', () => {
    it('round-trips, and the ciphertext is 0x01 ‖ nonce ‖ ct ‖ tag without the plaintext', () => {
      const cipher = createAesGcmCipher(loadOrCreateKeyring(file).keyring);
      const { key } = cipher.createWorkspaceKey('ws-a');
      const sealed = key.seal('MINIMAX_API_KEY', SENTINEL);
      expect(sealed[0]).to.equal(1);
      expect(sealed.length).to.equal(1 + 12 + Buffer.byteLength(SENTINEL) + 16);
      expect(Buffer.from(sealed).toString('latin1')).to.not.include(SENTINEL);
      expect(key.open('MINIMAX_API_KEY', sealed)).to.equal(SENTINEL);
      // Random nonces: sealing twice never gives the same bytes.
      expect(
        Buffer.from(key.seal('MINIMAX_API_KEY', SENTINEL)).equals(Buffer.from(sealed)),
      ).to.equal(false);
    });
  });

  describe('when a ciphertext is copied to another row', () => {
    it('fails as SECRET_UNREADABLE naming the secret: another name, another workspace, a flipped bit', () => {
      const cipher = createAesGcmCipher(loadOrCreateKeyring(file).keyring);
      const a = cipher.createWorkspaceKey('ws-a');
      const sealed = a.key.seal('MINIMAX_API_KEY', SENTINEL);
      expect(unreadable(() => a.key.open('OTHER_KEY', sealed))).to.include({ name: 'OTHER_KEY' });
      // Workspace B with A's data key copied over: the DEK's AAD binds the workspace.
      unreadable(() => cipher.openWorkspaceKey('ws-b', a.wrapped));
      const b = cipher.createWorkspaceKey('ws-b');
      expect(unreadable(() => b.key.open('MINIMAX_API_KEY', sealed))).to.include({
        name: 'MINIMAX_API_KEY',
      });
      const flipped = Buffer.from(sealed);
      flipped[20] = (flipped[20] ?? 0) ^ 1;
      unreadable(() => a.key.open('MINIMAX_API_KEY', flipped));
      unreadable(() => a.key.open('MINIMAX_API_KEY', Buffer.alloc(3)));
    });
  });

  describe('when the KEK is rotated', () => {
    it('re-wraps a data key under the new key; secrets, fingerprints and digests are unchanged', () => {
      const first = createAesGcmCipher(loadOrCreateKeyring(file).keyring);
      const { key, wrapped } = first.createWorkspaceKey('ws-a');
      const sealed = key.seal('K', SENTINEL);
      const fingerprint = key.fingerprint(SENTINEL);
      const digest = key.digest('[["A","1"]]');
      expect(addActiveKey(file)).to.equal('k2');
      const second = createAesGcmCipher(readKeyring(file));
      expect(second.activeKeyId).to.equal('k2');
      const rewrapped = second.rewrap('ws-a', wrapped);
      expect(rewrapped.kekId).to.equal('k2');
      removeKey(file, 'k1');
      const third = createAesGcmCipher(readKeyring(file));
      expect(third.hasKey('k1')).to.equal(false);
      const reopened = third.openWorkspaceKey('ws-a', rewrapped);
      expect(reopened.open('K', sealed)).to.equal(SENTINEL);
      expect(reopened.fingerprint(SENTINEL)).to.equal(fingerprint);
      expect(reopened.digest('[["A","1"]]')).to.equal(digest);
      // The old wrapping needs the removed key.
      expect(unreadable(() => third.openWorkspaceKey('ws-a', wrapped))).to.include({ kekId: 'k1' });
    });
  });

  describe('fingerprints', () => {
    it('are 16 hex, equal for equal values, and differ between workspaces', () => {
      const cipher = createAesGcmCipher(loadOrCreateKeyring(file).keyring);
      const a = cipher.createWorkspaceKey('ws-a').key;
      const b = cipher.createWorkspaceKey('ws-b').key;
      expect(a.fingerprint(SENTINEL)).to.match(/^[0-9a-f]{16}$/);
      expect(a.fingerprint(SENTINEL)).to.equal(a.fingerprint(SENTINEL));
      expect(a.fingerprint(SENTINEL)).to.not.equal(b.fingerprint(SENTINEL));
      expect(a.digest('x')).to.match(/^[0-9a-f]{32}$/);
    });
  });
});

describe('keyring file', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-keyring-'));
    file = join(dir, 'secrets-keyring');
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('is generated 0600 on first use with one 32-byte active key, then read back', () => {
    const { keyring, created } = loadOrCreateKeyring(file);
    expect(created).to.equal(true);
    expect(statSync(file).mode & 0o777).to.equal(0o600);
    expect(keyring.keys.get(keyring.active)).to.have.length(32);
    const again = loadOrCreateKeyring(file);
    expect(again.created).to.equal(false);
    expect(
      again.keyring.keys.get('k1')?.equals(keyring.keys.get('k1') ?? Buffer.alloc(0)),
    ).to.equal(true);
  });

  const refusals: [string, () => void, RegExp][] = [
    [
      'mode 0644',
      () => {
        loadOrCreateKeyring(file);
        chmodSync(file, 0o644);
      },
      /mode 0644/,
    ],
    [
      'mode 0640',
      () => {
        loadOrCreateKeyring(file);
        chmodSync(file, 0o640);
      },
      /mode 0640/,
    ],
    [
      'not JSON',
      () => {
        writeFileSync(file, 'nope', { mode: 0o600 });
      },
      /not JSON/,
    ],
    [
      'a short key',
      () => {
        writeFileSync(file, JSON.stringify({ active: 'k1', keys: { k1: 'AAAA' } }), {
          mode: 0o600,
        });
      },
      /32 bytes/,
    ],
    [
      'an active key that is missing',
      () => {
        writeFileSync(file, JSON.stringify({ active: 'k9', keys: {} }), { mode: 0o600 });
      },
      /active key "k9"/,
    ],
  ];
  for (const [name, arrange, message] of refusals) {
    it(`is refused with ${name}`, () => {
      arrange();
      expect(() => loadOrCreateKeyring(file)).to.throw(KeyringError, message);
    });
  }

  it('is refused when missing for readKeyring, and the active key cannot be removed', () => {
    expect(() => readKeyring(file)).to.throw(KeyringError, /does not exist/);
    loadOrCreateKeyring(file);
    expect(() => {
      removeKey(file, 'k1');
    }).to.throw(KeyringError, /active/);
    expect(readFileSync(file, 'utf8')).to.include('"active": "k1"');
  });
});
