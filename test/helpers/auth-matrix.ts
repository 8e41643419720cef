import { status } from '@grpc/grpc-js';
import type { ErrorReason } from '../../src/domain/errors.js';
import type { Rpc } from './refusals.js';

/**
 * Who may call what, as data: for every RPC and every kind of credential,
 * the gRPC code and ErrorInfo reason the call is refused with, or SUCCEEDS.
 * test/e2e/auth.test.ts turns every cell into a test; the reason coverage
 * check in test/e2e/validation.test.ts counts the reasons used here.
 */

export interface Refused {
  readonly code: status;
  readonly reason: ErrorReason;
  /** ErrorInfo metadata that must be present. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** HeartbeatStream: the refusal answers the message; the stream stays open. */
  readonly answers?: 'message';
}

export const SUCCEEDS = 'succeeds';
export type Expected = Refused | typeof SUCCEEDS;

const TOKEN_MISSING: Refused = { code: status.UNAUTHENTICATED, reason: 'TOKEN_MISSING' };
const TOKEN_INVALID: Refused = { code: status.UNAUTHENTICATED, reason: 'TOKEN_INVALID' };
const WRONG_WORKSPACE: Refused = { code: status.PERMISSION_DENIED, reason: 'WRONG_WORKSPACE' };
const SCOPE_INSUFFICIENT: Refused = {
  code: status.PERMISSION_DENIED,
  reason: 'SCOPE_INSUFFICIENT',
  metadata: { tokenName: 'dashboard', required: 'admin' },
};

export type RuntimeRpc = 'Register' | 'Heartbeat' | 'HeartbeatStream';

/** The credentials a RuntimeService call can carry, for a target workspace. */
export type RuntimeCredential =
  /** No authorization metadata. */
  | 'none'
  /** A token this server never issued. */
  | 'unknown'
  /** The token of another workspace. */
  | 'otherWorkspace'
  /** The admin control token. */
  | 'control'
  /** A read-scoped control token. */
  | 'readControl'
  /** The target's token, rotated out with revoke_previous. */
  | 'rotatedOut'
  /** The target's token, revoked. */
  | 'revoked'
  /** The target's own token. */
  | 'own';

const RUNTIME_ROW = {
  none: TOKEN_MISSING,
  unknown: TOKEN_INVALID,
  otherWorkspace: WRONG_WORKSPACE,
  control: TOKEN_INVALID,
  readControl: TOKEN_INVALID,
  rotatedOut: TOKEN_INVALID,
  revoked: TOKEN_INVALID,
  own: SUCCEEDS,
} as const satisfies Record<RuntimeCredential, Expected>;

export const RUNTIME_AUTH: Readonly<Record<RuntimeRpc, Record<RuntimeCredential, Expected>>> = {
  Register: RUNTIME_ROW,
  Heartbeat: RUNTIME_ROW,
  // The token is checked when the stream opens and ends it; the workspace of each message is checked per message.
  HeartbeatStream: { ...RUNTIME_ROW, otherWorkspace: { ...WRONG_WORKSPACE, answers: 'message' } },
};

export type ControlRpc = Exclude<Rpc, RuntimeRpc>;

/** The credentials a ControlService call can carry. */
export type ControlCredential =
  /** No authorization metadata. */
  | 'none'
  /** A control token this server does not know. */
  | 'unknown'
  /** A workspace token. */
  | 'workspace'
  /** A read-scoped control token. */
  | 'read'
  /** The admin control token. */
  | 'admin';

const ADMIN_ONLY = {
  none: TOKEN_MISSING,
  unknown: TOKEN_INVALID,
  workspace: TOKEN_INVALID,
  read: SCOPE_INSUFFICIENT,
  admin: SUCCEEDS,
} as const satisfies Record<ControlCredential, Expected>;

const READ_OR_ADMIN = {
  ...ADMIN_ONLY,
  read: SUCCEEDS,
} as const satisfies Record<ControlCredential, Expected>;

export const CONTROL_AUTH: Readonly<Record<ControlRpc, Record<ControlCredential, Expected>>> = {
  CreateWorkspace: ADMIN_ONLY,
  GetWorkspace: READ_OR_ADMIN,
  ListWorkspaces: READ_OR_ADMIN,
  DeleteWorkspace: ADMIN_ONLY,
  RotateWorkspaceToken: ADMIN_ONLY,
  RevokeWorkspaceTokens: ADMIN_ONLY,
  ListTransitions: READ_OR_ADMIN,
  WatchStatus: READ_OR_ADMIN,
};

/** Every reason some cell of the matrix is refused with. */
export function authMatrixReasons(): ErrorReason[] {
  return [...Object.values(RUNTIME_AUTH), ...Object.values(CONTROL_AUTH)].flatMap((row) =>
    Object.values(row).flatMap((cell) => (cell === SUCCEEDS ? [] : [cell.reason])),
  );
}
