import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Bearer tokens: 32 random bytes, base64url, with a prefix that says what kind
 * of token it is (so secret scanners and humans can tell). Only the SHA-256 of
 * a token is ever stored.
 */

export const WORKSPACE_TOKEN_PREFIX = 'vgw_';
export const CONTROL_TOKEN_PREFIX = 'vgc_';

export function generateToken(prefix: string): string {
  return prefix + randomBytes(32).toString('base64url');
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Constant-time comparison of two token hashes. */
export function hashesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
