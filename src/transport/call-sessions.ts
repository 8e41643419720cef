import type { Metadata } from '@grpc/grpc-js';
import type { WorkspaceSession } from '../domain/workspace-tokens.js';

/**
 * Hands the workspace session the auth interceptor resolved for a call over to
 * that call's handler, so a unary runtime call hashes and looks up its token
 * once, not twice. Keyed by the call's Metadata object, which grpc-js passes
 * from the interceptor to the handler as it is; weakly, so a call that never
 * reaches its handler leaves nothing behind.
 */
export interface CallSessions {
  set(metadata: Metadata, session: WorkspaceSession): void;
  /** The session resolved for this call, once; undefined when there is none. */
  take(metadata: Metadata): WorkspaceSession | undefined;
}

export function createCallSessions(): CallSessions {
  const sessions = new WeakMap<Metadata, WorkspaceSession>();
  return {
    set(metadata, session) {
      sessions.set(metadata, session);
    },
    take(metadata) {
      const session = sessions.get(metadata);
      if (session !== undefined) sessions.delete(metadata);
      return session;
    },
  };
}
