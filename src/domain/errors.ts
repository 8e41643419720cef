/**
 * The one domain error type. Every failure the service reports on purpose is a
 * VigilError with a reason from this closed set; transport maps the reason to a
 * gRPC code and sends it as a google.rpc.ErrorInfo. Anything else that is
 * thrown is an unexpected fault and becomes INTERNAL.
 */

export const ERROR_REASONS = {
  TOKEN_MISSING: 'UNAUTHENTICATED',
  TOKEN_INVALID: 'UNAUTHENTICATED',
  WRONG_WORKSPACE: 'PERMISSION_DENIED',
  SCOPE_INSUFFICIENT: 'PERMISSION_DENIED',
  AUTH_UNAVAILABLE: 'UNAVAILABLE',
  URL_VALIDATE_FAILED: 'INVALID_ARGUMENT',
  URL_RESOLVE_UNAVAILABLE: 'UNAVAILABLE',
  AGENT_CARD_INVALID: 'INVALID_ARGUMENT',
  FIELD_INVALID: 'INVALID_ARGUMENT',
  MESSAGE_MALFORMED: 'INVALID_ARGUMENT',
  MESSAGE_TOO_LARGE: 'RESOURCE_EXHAUSTED',
  RATE_LIMITED: 'RESOURCE_EXHAUSTED',
  WATCH_LIMIT: 'RESOURCE_EXHAUSTED',
  PAGE_TOKEN_INVALID: 'INVALID_ARGUMENT',
  WORKSPACE_NOT_FOUND: 'NOT_FOUND',
  WORKSPACE_EXISTS: 'ALREADY_EXISTS',
  WORKSPACE_REMOVED: 'FAILED_PRECONDITION',
  CURSOR_AHEAD: 'OUT_OF_RANGE',
  STORE_UNAVAILABLE: 'UNAVAILABLE',
  SHUTTING_DOWN: 'UNAVAILABLE',
  NOT_SERVING: 'UNAVAILABLE',
  SECRET_NAME_INVALID: 'INVALID_ARGUMENT',
  SECRET_VALUE_INVALID: 'INVALID_ARGUMENT',
  PROJECTION_INCOMPLETE: 'FAILED_PRECONDITION',
  PROVIDER_UNRESOLVED: 'FAILED_PRECONDITION',
  PROVIDER_AMBIGUOUS: 'FAILED_PRECONDITION',
  PROVIDER_UNSUPPORTED_BY_ADAPTER: 'FAILED_PRECONDITION',
  SECRET_UNREADABLE: 'DATA_LOSS',
  SECRET_NOT_FOUND: 'NOT_FOUND',
  CONFIG_VERSION_MISMATCH: 'ABORTED',
  SECRETS_DISABLED: 'FAILED_PRECONDITION',
  STORE_UNSUPPORTED: 'UNIMPLEMENTED',
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorReason = keyof typeof ERROR_REASONS;
/** Names of the gRPC status codes the reasons map to (transport turns them into numbers). */
export type ErrorCodeName = (typeof ERROR_REASONS)[ErrorReason];

export class VigilError extends Error {
  override readonly name = 'VigilError';

  constructor(
    readonly reason: ErrorReason,
    message: string,
    /** ErrorInfo metadata: lowerCamel keys, string values. */
    readonly metadata: Readonly<Record<string, string>> = {},
    options?: ErrorOptions & { readonly retryAfterMs?: number },
  ) {
    super(message, options);
    this.retryAfterMs = options?.retryAfterMs;
  }

  /** When set, the caller may retry after this many milliseconds (sent as google.rpc.RetryInfo). */
  readonly retryAfterMs: number | undefined;

  get codeName(): ErrorCodeName {
    return ERROR_REASONS[this.reason];
  }
}

/** FIELD_INVALID for one request field, named in ErrorInfo metadata as `field`. */
export function fieldInvalid(field: string, message: string): VigilError {
  return new VigilError('FIELD_INVALID', `${field}: ${message}`, { field });
}

/** WORKSPACE_NOT_FOUND for one workspace, named in ErrorInfo metadata. */
export function workspaceNotFound(workspaceId: string): VigilError {
  return new VigilError('WORKSPACE_NOT_FOUND', `workspace ${workspaceId} does not exist`, {
    workspaceId,
  });
}

/** WORKSPACE_REMOVED for one workspace, named in ErrorInfo metadata. */
export function workspaceRemoved(workspaceId: string): VigilError {
  return new VigilError('WORKSPACE_REMOVED', `workspace ${workspaceId} was deleted`, {
    workspaceId,
  });
}
