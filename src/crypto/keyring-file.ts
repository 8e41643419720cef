import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * The secrets keyring file: `{"active":"k2","keys":{"k1":"<base64 32 bytes>","k2":"…"}}`.
 * Generated 0600 on first start (like the control token); refused when a
 * group or other user may read or write it, when it does not parse, when a
 * key is not 32 bytes, or when the active key is missing. Written whole to a
 * temporary file and renamed over, so a crash never leaves half a keyring.
 */
export interface Keyring {
  readonly active: string;
  /** Key-encryption keys by id. */
  readonly keys: ReadonlyMap<string, Buffer>;
}

/** A keyring file that cannot be used; the server refuses to start on it. */
export class KeyringError extends Error {
  override readonly name = 'KeyringError';
}

const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;

function parse(file: string, text: string): Keyring {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new KeyringError(`the secrets keyring ${file} is not JSON`);
  }
  const shape = json as { active?: unknown; keys?: unknown } | null;
  if (typeof shape?.active !== 'string' || typeof shape.keys !== 'object' || shape.keys === null) {
    throw new KeyringError(
      `the secrets keyring ${file} needs "active" (a key id) and "keys" (id → base64)`,
    );
  }
  const keys = new Map<string, Buffer>();
  for (const [id, value] of Object.entries(shape.keys as Record<string, unknown>)) {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'base64') : undefined;
    if (!KEY_ID.test(id) || bytes?.length !== 32) {
      // The key itself is never named in the message.
      throw new KeyringError(`the secrets keyring ${file}: key "${id}" must be 32 bytes in base64`);
    }
    keys.set(id, bytes);
  }
  if (!keys.has(shape.active)) {
    throw new KeyringError(
      `the secrets keyring ${file}: the active key "${shape.active}" is not in "keys"`,
    );
  }
  return { active: shape.active, keys };
}

function serialize(keyring: Keyring): string {
  const keys = Object.fromEntries(
    [...keyring.keys].map(([id, key]) => [id, key.toString('base64')]),
  );
  return `${JSON.stringify({ active: keyring.active, keys }, null, 2)}\n`;
}

function write(file: string, keyring: Keyring, exclusive: boolean): void {
  if (exclusive) {
    // 'wx': never overwrite a keyring another process just wrote.
    writeFileSync(file, serialize(keyring), { mode: 0o600, flag: 'wx' });
    chmodSync(file, 0o600);
    return;
  }
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, serialize(keyring), { mode: 0o600, flag: 'wx' });
  chmodSync(temporary, 0o600);
  renameSync(temporary, file);
}

/** Reads a keyring file, refusing one others may read. Throws KeyringError. */
export function readKeyring(file: string): Keyring {
  if (!existsSync(file)) throw new KeyringError(`the secrets keyring ${file} does not exist`);
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new KeyringError(
      `the secrets keyring ${file} has mode 0${mode.toString(8)}: group and others must have no access (chmod 600)`,
    );
  }
  return parse(file, readFileSync(file, 'utf8'));
}

/** The keyring at `file`, generated (one random key, mode 0600) when the file does not exist. */
export function loadOrCreateKeyring(file: string): { keyring: Keyring; created: boolean } {
  if (existsSync(file)) return { keyring: readKeyring(file), created: false };
  if (!existsSync(dirname(file))) throw new KeyringError(`the directory of ${file} does not exist`);
  const keyring: Keyring = { active: 'k1', keys: new Map([['k1', randomBytes(32)]]) };
  write(file, keyring, true);
  return { keyring, created: true };
}

/** Adds a new random key and makes it the active one; returns its id. Older keys stay for unwrapping. */
export function addActiveKey(file: string): string {
  const keyring = readKeyring(file);
  // Past the highest kN ever kept (the newest is the active one, which is never removed): an
  // id is never reused for another key, so a check value recorded for it stays true.
  const numbers = [...keyring.keys.keys()].map((k) => /^k(\d+)$/.exec(k)?.[1]).map(Number);
  let n = Math.max(0, ...numbers.filter(Number.isSafeInteger)) + 1;
  while (keyring.keys.has(`k${n}`)) n += 1;
  const id = `k${n}`;
  const keys = new Map(keyring.keys);
  keys.set(id, randomBytes(32));
  write(file, { active: id, keys }, false);
  return id;
}

/** Removes a key that is not the active one (the caller checked that no data key uses it). */
export function removeKey(file: string, id: string): void {
  const keyring = readKeyring(file);
  if (id === keyring.active) throw new KeyringError(`key "${id}" is the active key; rotate first`);
  if (!keyring.keys.has(id)) throw new KeyringError(`key "${id}" is not in the keyring`);
  const keys = new Map(keyring.keys);
  keys.delete(id);
  write(file, { active: keyring.active, keys }, false);
}
