import { VigilError } from './errors.js';
import { hashesEqual, hashToken } from './tokens.js';

/** Checks control tokens. Only hashes are kept in memory; comparison is constant-time. */
export type ControlAuth = (token: string | undefined) => void;

export function createControlAuth(tokens: readonly string[]): ControlAuth {
  const hashes = tokens.map(hashToken);
  return (token) => {
    if (token === undefined || token === '') {
      throw new VigilError(
        'TOKEN_MISSING',
        'a control token is required (authorization: Bearer <token>)',
      );
    }
    const presented = hashToken(token);
    // Compare against every hash so timing does not tell which one matched.
    let ok = false;
    for (const hash of hashes) ok = hashesEqual(presented, hash) || ok;
    if (!ok) throw new VigilError('TOKEN_INVALID', 'the control token is not valid');
  };
}
