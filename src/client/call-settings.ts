import type { CallOptions } from '@grpc/grpc-js';
import type { HeartbeatRequest, RegisterRequest } from '../../gen/vigil/v1/runtime_service.js';

/** What the SDK's calls take besides the request: settings per call and the request shapes. */

export interface CallSettings {
  /** Per-call timeout in milliseconds; default 10 s. */
  readonly timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/** grpc-js options for one call: its deadline, counted from now. */
export function callOptions(settings?: CallSettings): Partial<CallOptions> {
  return { deadline: Date.now() + (settings?.timeoutMs ?? DEFAULT_TIMEOUT_MS) };
}

/** What the SDK's request builders accept: any subset of the fields, `workspaceId` required. */
export type RegisterInput = Partial<RegisterRequest> & { readonly workspaceId: string };
export type HeartbeatInput = Partial<HeartbeatRequest> & { readonly workspaceId: string };
