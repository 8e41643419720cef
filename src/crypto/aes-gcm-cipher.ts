import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { VigilError } from '../domain/errors.js';
import type { SecretCipher, WorkspaceKey, WrappedKey } from '../domain/secret-cipher.js';
import type { Keyring } from './keyring-file.js';

/**
 * Envelope encryption with node:crypto (OpenSSL), AES-256-GCM throughout.
 *
 * - One random 32-byte data key (DEK) per workspace, wrapped under
 *   HKDF-SHA256(KEK, "vigil dek-wrap v1") with AAD
 *   "vigil:dek:v1\0" + workspace id + "\0" + KEK id.
 * - A secret is 0x01 ‖ nonce(12) ‖ ciphertext ‖ tag(16) under the DEK with AAD
 *   "vigil:secret:v1\0" + workspace id + "\0" + name: a ciphertext copied to
 *   another row (workspace or name) fails authentication.
 * - Fingerprints and digests are HMAC-SHA256 under keys derived from the DEK
 *   (HKDF info "vigil fingerprint v1" / "vigil digest v1"), so they survive a
 *   KEK rotation unchanged, differ between workspaces (equal values in two
 *   workspaces cannot be linked), and are shredded with the DEK.
 *
 * Random 96-bit nonces are safe far below 2^32 messages per key (NIST SP
 * 800-38D); per-workspace DEKs keep every key well under that.
 */

const VERSION = 0x01;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

function hkdf(key: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), info, KEY_BYTES));
}

function seal(key: Uint8Array, plaintext: Uint8Array, aad: Buffer): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.of(VERSION), nonce, body, cipher.getAuthTag()]);
}

/** Decrypts; undefined when the version, length or authentication is wrong. */
function unseal(key: Uint8Array, sealed: Uint8Array, aad: Buffer): Buffer | undefined {
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (bytes.length < 1 + NONCE_BYTES + TAG_BYTES || bytes[0] !== VERSION) return undefined;
  const nonce = bytes.subarray(1, 1 + NONCE_BYTES);
  const tag = bytes.subarray(bytes.length - TAG_BYTES);
  const body = bytes.subarray(1 + NONCE_BYTES, bytes.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce);
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    return undefined;
  }
}

const dekAad = (workspaceId: string, kekId: string) =>
  Buffer.from(`vigil:dek:v1\0${workspaceId}\0${kekId}`, 'utf8');
const secretAad = (workspaceId: string, name: string) =>
  Buffer.from(`vigil:secret:v1\0${workspaceId}\0${name}`, 'utf8');

function unreadable(metadata: Record<string, string>, what: string): VigilError {
  return new VigilError(
    'SECRET_UNREADABLE',
    `${what} cannot be decrypted or does not belong here`,
    metadata,
  );
}

function workspaceKey(workspaceId: string, dek: Buffer): WorkspaceKey {
  const fingerprintKey = hkdf(dek, 'vigil fingerprint v1');
  const digestKey = hkdf(dek, 'vigil digest v1');
  return {
    seal: (name, value) => seal(dek, Buffer.from(value, 'utf8'), secretAad(workspaceId, name)),
    open(name, sealed) {
      const plain = unseal(dek, sealed, secretAad(workspaceId, name));
      if (!plain) throw unreadable({ name, workspaceId }, `secret ${name}`);
      return plain.toString('utf8');
    },
    fingerprint: (value) =>
      createHmac('sha256', fingerprintKey).update(value, 'utf8').digest('hex').slice(0, 16),
    digest: (canonical) =>
      createHmac('sha256', digestKey).update(canonical, 'utf8').digest('hex').slice(0, 32),
  };
}

/** The SecretCipher over a loaded keyring. */
export function createAesGcmCipher(keyring: Keyring): SecretCipher {
  const wrapKeys = new Map<string, Buffer>();
  for (const [id, kek] of keyring.keys) wrapKeys.set(id, hkdf(kek, 'vigil dek-wrap v1'));
  const wrapKey = (kekId: string): Buffer => {
    const key = wrapKeys.get(kekId);
    if (!key) {
      throw unreadable(
        { kekId },
        `a data key wrapped under key "${kekId}", which is not in the keyring,`,
      );
    }
    return key;
  };
  const unwrap = (workspaceId: string, wrapped: WrappedKey): Buffer => {
    const dek = unseal(wrapKey(wrapped.kekId), wrapped.wrapped, dekAad(workspaceId, wrapped.kekId));
    if (dek?.length !== KEY_BYTES) {
      throw unreadable(
        { workspaceId, kekId: wrapped.kekId },
        `the data key of workspace ${workspaceId}`,
      );
    }
    return dek;
  };
  const wrap = (workspaceId: string, dek: Buffer): WrappedKey => ({
    kekId: keyring.active,
    wrapped: seal(wrapKey(keyring.active), dek, dekAad(workspaceId, keyring.active)),
  });
  return {
    activeKeyId: keyring.active,
    hasKey: (kekId) => wrapKeys.has(kekId),
    createWorkspaceKey(workspaceId) {
      const dek = randomBytes(KEY_BYTES);
      return { key: workspaceKey(workspaceId, dek), wrapped: wrap(workspaceId, dek) };
    },
    openWorkspaceKey: (workspaceId, wrapped) =>
      workspaceKey(workspaceId, unwrap(workspaceId, wrapped)),
    rewrap: (workspaceId, wrapped) => wrap(workspaceId, unwrap(workspaceId, wrapped)),
    keyChecks: () =>
      new Map(
        [...keyring.keys].map(([id, kek]) => [
          id,
          createHmac('sha256', hkdf(kek, 'vigil keyring check v1'))
            .update(id, 'utf8')
            .digest('hex')
            .slice(0, 32),
        ]),
      ),
  };
}
