import { VigilError } from './errors.js';
import { hashesEqual, hashToken } from './tokens.js';

/**
 * Control tokens: each has a name (for audit logs, never the token itself), a
 * scope, and is known only by its SHA-256. `read` may call GetWorkspace,
 * ListWorkspaces, ListTransitions and WatchStatus; `admin` may call anything.
 */
export type ControlScope = 'read' | 'admin';
export const CONTROL_SCOPES: readonly ControlScope[] = ['read', 'admin'];

export interface ControlTokenSpec {
  readonly name: string;
  readonly scope: ControlScope;
  /** SHA-256 of the token. */
  readonly hash: Uint8Array;
}

/** Who made a control call. */
export interface ControlPrincipal {
  readonly name: string;
  readonly scope: ControlScope;
}

/** Authorizes a control call needing `scope`; throws TOKEN_MISSING, TOKEN_INVALID or SCOPE_INSUFFICIENT. */
export type ControlAuth = (token: string | undefined, scope: ControlScope) => ControlPrincipal;

export function createControlAuth(tokens: readonly ControlTokenSpec[]): ControlAuth {
  return (token, scope) => {
    if (token === undefined || token === '') {
      throw new VigilError(
        'TOKEN_MISSING',
        'a control token is required (authorization: Bearer <token>)',
      );
    }
    const presented = hashToken(token);
    // Compare against every hash so timing does not tell which one matched.
    let match: ControlTokenSpec | undefined;
    for (const spec of tokens) {
      if (hashesEqual(presented, spec.hash) && !match) match = spec;
    }
    if (!match) throw new VigilError('TOKEN_INVALID', 'the control token is not valid');
    if (scope === 'admin' && match.scope !== 'admin') {
      throw new VigilError(
        'SCOPE_INSUFFICIENT',
        `the control token "${match.name}" has the ${match.scope} scope; this call needs ${scope}`,
        { tokenName: match.name, required: scope },
      );
    }
    return { name: match.name, scope: match.scope };
  };
}
