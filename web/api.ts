/**
 * The console's side of Vigil's console API: the control token (kept in this
 * tab's session storage only, sent as `authorization: Bearer` on every
 * request, never in a URL or a cookie), JSON reads, and the live event
 * stream read with fetch (EventSource cannot send an authorization header).
 */

export const STATUSES = [
  'PROVISIONING',
  'ONLINE',
  'DEGRADED',
  'OFFLINE',
  'FAILED',
  'REMOVED',
] as const;
export type Status = (typeof STATUSES)[number];

export interface Workspace {
  readonly id: string;
  readonly name: string;
  readonly status: Status;
  readonly url: string;
  readonly agentCard?: Record<string, unknown>;
  readonly lastHeartbeatAt?: number;
  readonly lastRegisteredAt?: number;
  readonly lastRegisterFailureAt?: number;
  readonly createdAt: number;
  readonly statusChangedAt: number;
  readonly errorRate: number;
  readonly sampleError: string;
  readonly activeTasks: number;
  readonly currentTask: string;
  readonly runtimeState: string;
}

export interface Transition {
  readonly seq: number;
  readonly workspaceId: string;
  readonly from: Status | null;
  readonly to: Status;
  readonly reason: string;
  readonly detail: string;
  readonly at: number;
}

export interface Overview {
  readonly principal: { readonly name: string; readonly scope: string };
  readonly headSeq: number;
  readonly counts: Record<Status, number>;
  readonly serverTime: number;
  readonly progressIntervalMs: number;
}

/** The runtime projection of one workspace: the version Vigil wants it on, and the one it runs. */
export interface ProjectionVersions {
  readonly configVersion: number;
  readonly appliedConfigVersion: number;
  /** Whether projecting configVersion currently succeeds (else the runtime cannot get it). */
  readonly ready: boolean;
}

export interface Marker {
  readonly setAt: number;
  readonly expiresAt: number;
  readonly active: boolean;
}

export interface WorkspacePage {
  readonly workspaces: Workspace[];
  readonly nextPageToken: string;
}

export interface TransitionPage {
  readonly transitions: Transition[];
  readonly nextPageToken: string;
}

/** A refused request: the HTTP status and Vigil's ErrorInfo reason. */
export class ApiError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
  get unauthenticated(): boolean {
    return this.httpStatus === 401 || this.httpStatus === 403;
  }
}

const TOKEN_KEY = 'vigil.console.token';

export const session = {
  token: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  setToken: (token: string): void => {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear: (): void => {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

async function failure(response: Response): Promise<ApiError> {
  let reason = `HTTP_${response.status}`;
  let message = response.statusText;
  try {
    const body = (await response.json()) as { error?: { reason?: string; message?: string } };
    reason = body.error?.reason ?? reason;
    message = body.error?.message ?? message;
  } catch {
    // Not a JSON error body: keep the HTTP status.
  }
  return new ApiError(response.status, reason, message);
}

function headers(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${token}`, ...extra };
}

/** GET a console API path (below /api/console/) as JSON. */
export async function getJson<T>(path: string, token = session.token() ?? ''): Promise<T> {
  const response = await fetch(`/api/console/${path}`, {
    headers: headers(token),
    cache: 'no-store',
  });
  if (!response.ok) throw await failure(response);
  return (await response.json()) as T;
}

export type StreamEvent =
  | { readonly type: 'transition'; readonly transition: Transition }
  | { readonly type: 'progress'; readonly seq: number }
  | { readonly type: 'reset'; readonly seq: number };

/**
 * Reads the event stream after `afterSeq` until it ends, `signal` aborts or
 * nothing (not even a progress frame) arrives for `silenceMs` — a connection
 * a sleeping laptop left behind. Resolves when the stream ends; rejects with
 * ApiError when it is refused.
 */
export async function readEvents(
  afterSeq: number,
  onEvent: (event: StreamEvent) => void,
  signal: AbortSignal,
  silenceMs: number,
  onOpen: () => void,
): Promise<void> {
  const local = new AbortController();
  const abort = () => {
    local.abort();
  };
  signal.addEventListener('abort', abort, { once: true });
  let watchdog = setTimeout(abort, silenceMs);
  try {
    const response = await fetch('/api/console/events', {
      headers: headers(session.token() ?? '', { 'last-event-id': String(afterSeq) }),
      cache: 'no-store',
      signal: local.signal,
    });
    if (!response.ok) throw await failure(response);
    if (!response.body) return;
    onOpen();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      clearTimeout(watchdog);
      watchdog = setTimeout(abort, silenceMs);
      buffered += value;
      const frames = buffered.split('\n\n');
      // The last piece is an incomplete frame (or '').
      buffered = frames.pop() ?? '';
      for (const frame of frames) {
        const event = parseFrame(frame);
        if (event) onEvent(event);
      }
    }
  } catch (error) {
    // Aborted by the caller or the watchdog: just over; the caller reconnects.
    if (local.signal.aborted) return;
    throw error;
  } finally {
    clearTimeout(watchdog);
    signal.removeEventListener('abort', abort);
  }
}

function parseFrame(frame: string): StreamEvent | undefined {
  let type = 'message';
  let data = '';
  for (const line of frame.split('\n')) {
    if (line.startsWith('event: ')) type = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
  }
  if (data === '') return undefined;
  if (type === 'transition') return { type, transition: JSON.parse(data) as Transition };
  if (type === 'progress' || type === 'reset') {
    return { type, seq: (JSON.parse(data) as { seq: number }).seq };
  }
  return undefined;
}
