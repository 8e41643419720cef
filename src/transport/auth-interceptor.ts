import {
  ServerInterceptingCall,
  status,
  type Metadata,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ControlAuth } from '../domain/control-auth.js';
import type { WorkspaceTokens } from '../domain/workspace-tokens.js';
import { bearerToken } from '../wire/metadata.js';
import { toCallError } from './errors.js';
import type { CallSessions } from './call-sessions.js';
import type { CallObserver } from './observer.js';
import type { RefusalLog } from './refusal-log.js';

/**
 * Authentication before decoding: a grpc-js server interceptor sees a call's
 * metadata before any of its messages is read, so a call to a Vigil service
 * without a valid token is refused (UNAUTHENTICATED, with its ErrorInfo)
 * without its request ever being read or decoded — unauthenticated bytes
 * cost the server next to nothing. A valid token goes on to the handler,
 * which still checks the scope or the workspace it may act for. Health and
 * reflection are not Vigil services and stay open.
 */
export interface AuthInterceptorDeps {
  readonly controlAuth: ControlAuth;
  readonly tokens: Pick<WorkspaceTokens, 'openSession'>;
  readonly logger: Logger;
  readonly observer: CallObserver;
  /** Where refusals without a valid token are logged (bounded: a flood is summarised). */
  readonly refusals: RefusalLog;
  /** Where a runtime call's resolved session is left for its handler. */
  readonly sessions: CallSessions;
}

const RUNTIME = '/vigil.v1.RuntimeService/';
const CONTROL = '/vigil.v1.ControlService/';

export function createAuthInterceptor(deps: AuthInterceptorDeps): ServerInterceptor {
  return (descriptor, call) => {
    const { path } = descriptor;
    const runtime = path.startsWith(RUNTIME);
    if (!runtime && !path.startsWith(CONTROL)) return new ServerInterceptingCall(call);
    const method = path.slice(path.lastIndexOf('/') + 1);
    const started = process.hrtime.bigint();
    const check = async (metadata: Metadata): Promise<void> => {
      const token = bearerToken(metadata);
      // Any valid token of the service's kind; the handler checks scope and workspace.
      if (runtime) deps.sessions.set(metadata, await deps.tokens.openSession(token));
      else deps.controlAuth(token, 'read');
    };
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, forward) {
            check(metadata).then(
              () => {
                forward(metadata);
              },
              (error: unknown) => {
                const refused = toCallError(error, deps.logger, method);
                const seconds = Number(process.hrtime.bigint() - started) / 1e9;
                // Counted and logged like a call the adapters refused.
                if (method === 'Heartbeat') deps.observer.heartbeatReceived();
                deps.observer.callFinished(method, refused.code, seconds);
                const entry = {
                  method,
                  code: status[refused.code],
                  reason: refused.reason,
                  peer: call.getPeer(),
                };
                if (refused.code === status.INTERNAL) deps.logger.error(entry, 'rpc failed');
                else if (refused.code === status.UNAVAILABLE) deps.logger.warn(entry, 'rpc failed');
                else deps.refusals.refused(refused.reason, entry);
                call.sendStatus({
                  code: refused.code,
                  details: refused.details,
                  metadata: refused.metadata,
                });
              },
            );
          },
        });
      },
    });
  };
}
