import { readFileSync } from 'node:fs';
import {
  CONTROL_SCOPES,
  type ControlScope,
  type ControlTokenSpec,
} from '../domain/control-auth.js';
import { hashToken } from '../domain/tokens.js';

/**
 * Reads named control tokens from a JSON file:
 *
 *   { "tokens": [
 *       { "name": "ops", "scope": "admin", "sha256": "<hex SHA-256 of the token>" },
 *       { "name": "dashboard", "scope": "read", "token": "<the token>" } ] }
 *
 * `sha256` keeps the secret out of the file; `token` is accepted for
 * convenience. Returns the specs, or one message per problem.
 */
export function readControlTokensFile(file: string): {
  specs: ControlTokenSpec[];
  errors: string[];
} {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    return {
      specs: [],
      errors: [`${file}: ${error instanceof Error ? error.message : String(error)}`],
    };
  }
  const list = (parsed as { tokens?: unknown } | null)?.tokens;
  if (!Array.isArray(list) || list.length === 0) {
    return { specs: [], errors: [`${file}: expected {"tokens": [ … ]} with at least one token`] };
  }
  const specs: ControlTokenSpec[] = [];
  const errors: string[] = [];
  const names = new Set<string>();
  list.forEach((entry: unknown, i) => {
    const where = `${file}: tokens[${i}]`;
    const e = (entry ?? {}) as Record<string, unknown>;
    const name = e['name'];
    const scope = e['scope'];
    if (typeof name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
      errors.push(`${where}: "name" must be 1-64 letters, digits, ".", "_" or "-"`);
      return;
    }
    if (names.has(name)) errors.push(`${where}: the name "${name}" is used twice`);
    names.add(name);
    if (!CONTROL_SCOPES.includes(scope as ControlScope)) {
      errors.push(`${where}: "scope" must be one of ${CONTROL_SCOPES.join(', ')}`);
      return;
    }
    const sha = e['sha256'];
    const token = e['token'];
    if (typeof sha === 'string' && /^[0-9a-fA-F]{64}$/.test(sha) && token === undefined) {
      specs.push({ name, scope: scope as ControlScope, hash: Buffer.from(sha, 'hex') });
    } else if (typeof token === 'string' && token.length >= 16 && sha === undefined) {
      specs.push({ name, scope: scope as ControlScope, hash: hashToken(token) });
    } else {
      errors.push(
        `${where}: give exactly one of "sha256" (64 hex digits) or "token" (at least 16 characters)`,
      );
    }
  });
  return { specs, errors };
}
