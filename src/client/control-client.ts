import { status, type ClientReadableStream, type Metadata, type ServiceError } from '@grpc/grpc-js';
import {
  ControlServiceClient,
  ListTransitionsRequest,
  ListWorkspacesRequest,
  type CreateWorkspaceResponse,
  type DeleteWorkspaceSecretRequest,
  type DeleteWorkspaceSecretResponse,
  type ExplainProjectionResponse,
  type ListAuditEventsRequest,
  type ListAuditEventsResponse,
  type ListWorkspaceSecretsResponse,
  type SetWorkspaceRuntimeConfigRequest,
  type SetWorkspaceRuntimeConfigResponse,
  type SetWorkspaceSecretRequest,
  type SetWorkspaceSecretResponse,
  type ListTransitionsResponse,
  type ListWorkspacesResponse,
  type WatchStatusResponse,
} from '../../gen/vigil/v1/control_service.js';
import type { StatusTransition, Workspace, WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { backoffDelay, sleep, type BackoffOptions } from './backoff.js';
import { callOptions, type CallSettings } from './call-settings.js';
import { connection, type ConnectOptions } from './channel.js';
import { VigilClientError, fromServiceError } from './errors.js';
import { reasonName, statusName, type ReasonName, type StatusName } from './names.js';
import { invoke } from './unary.js';

/** A transition with its statuses and reason also by name (`'DEGRADED'`, `'ONLINE'`, `'RECOVERED'`). */
export interface NamedTransition extends StatusTransition {
  readonly fromStatusName: StatusName;
  readonly toStatusName: StatusName;
  readonly reasonName: ReasonName;
}

/** A snapshot row with its status also by name. */
export interface NamedWorkspace extends Workspace {
  readonly statusName: StatusName;
}

type WireWatchEvent = NonNullable<WatchStatusResponse['event']>;

/**
 * One event of a watch: `{ $case: 'transition' | 'snapshot' | 'snapshotEnd' | 'progress', value }`.
 * Transitions and snapshot rows carry names next to the numeric enums
 * (`toStatusName: 'ONLINE'` beside `toStatus: 2`).
 */
export type WatchEvent =
  | { $case: 'transition'; value: NamedTransition }
  | { $case: 'snapshot'; value: NamedWorkspace }
  | Exclude<WireWatchEvent, { $case: 'transition' | 'snapshot' }>;

export interface WatchOptions {
  /** Only these workspaces; empty or absent means all. */
  readonly workspaceIds?: readonly string[];
  /** Start after this seq; 0 or absent starts at the current head. */
  readonly afterSeq?: number;
  /** Begin with a snapshot of current states (only when starting at the head). */
  readonly includeSnapshot?: boolean;
  /** Stops the watch; the iterator then ends without an error. */
  readonly signal?: AbortSignal;
  /** Reconnect backoff (exponential, full jitter). */
  readonly backoff?: BackoffOptions;
  /** Told about every reconnect, e.g. for logging. */
  readonly onReconnect?: (error: VigilClientError, attempt: number, delayMs: number) => void;
}

/** vigil.v1.ControlService with promises. Calls fail with VigilClientError. */
export interface ControlClient {
  createWorkspace(
    workspaceId: string,
    name?: string,
    options?: CallSettings,
  ): Promise<CreateWorkspaceResponse>;
  getWorkspace(workspaceId: string, options?: CallSettings): Promise<Workspace>;
  listWorkspaces(
    request?: Partial<ListWorkspacesRequest>,
    options?: CallSettings,
  ): Promise<ListWorkspacesResponse>;
  /** Every workspace (in the given statuses), following page tokens. */
  allWorkspaces(statuses?: readonly WorkspaceStatus[]): AsyncGenerator<Workspace>;
  deleteWorkspace(workspaceId: string, options?: CallSettings): Promise<Workspace>;
  /** A new token; the previous ones keep working for the server's overlap unless `revokePrevious`. */
  rotateWorkspaceToken(
    workspaceId: string,
    options?: CallSettings & { readonly revokePrevious?: boolean },
  ): Promise<string>;
  /** Revokes every token of a workspace at once; returns how many were revoked. */
  revokeWorkspaceTokens(workspaceId: string, options?: CallSettings): Promise<number>;
  listTransitions(
    request?: Partial<ListTransitionsRequest>,
    options?: CallSettings,
  ): Promise<ListTransitionsResponse>;
  /**
   * Follows WatchStatus as an async iterator. On a retryable failure or a
   * server shutdown it reconnects with backoff and jitter, resuming after the
   * last seq it saw (from a transition, snapshot_end or progress), and never
   * yields a transition twice. Non-retryable errors (bad token, bad request)
   * are thrown.
   */
  watchStatus(options?: WatchOptions): AsyncGenerator<WatchEvent>;
  /** Stores a secret (admin); its value is never returned by any call. */
  setWorkspaceSecret(
    request: SetWorkspaceSecretRequest,
    options?: CallSettings,
  ): Promise<SetWorkspaceSecretResponse>;
  deleteWorkspaceSecret(
    request: DeleteWorkspaceSecretRequest,
    options?: CallSettings,
  ): Promise<DeleteWorkspaceSecretResponse>;
  /** Secret metadata and fingerprints, never values. */
  listWorkspaceSecrets(
    workspaceId: string,
    options?: CallSettings,
  ): Promise<ListWorkspaceSecretsResponse>;
  setWorkspaceRuntimeConfig(
    request: SetWorkspaceRuntimeConfigRequest,
    options?: CallSettings,
  ): Promise<SetWorkspaceRuntimeConfigResponse>;
  /** Which rule produced which variable; values redacted. */
  explainProjection(
    workspaceId: string,
    options?: CallSettings,
  ): Promise<ExplainProjectionResponse>;
  listAuditEvents(
    request: ListAuditEventsRequest,
    options?: CallSettings,
  ): Promise<ListAuditEventsResponse>;
  close(): void;
}

/** A ControlService client authenticated with a control token. */
export function createControlClient(options: ConnectOptions): ControlClient {
  const conn = connection(options);
  const client = new ControlServiceClient(conn.address, conn.credentials, conn.channelOptions);

  async function listWorkspaces(
    request: Partial<ListWorkspacesRequest> = {},
    settings?: CallSettings,
  ) {
    return invoke(
      client,
      client.listWorkspaces,
      ListWorkspacesRequest.fromPartial(request),
      conn.metadata(),
      callOptions(settings),
    );
  }

  return {
    createWorkspace: (workspaceId, name = '', settings) =>
      invoke(
        client,
        client.createWorkspace,
        { workspaceId, name },
        conn.metadata(),
        callOptions(settings),
      ),
    getWorkspace: async (workspaceId, settings) =>
      required(
        (
          await invoke(
            client,
            client.getWorkspace,
            { workspaceId },
            conn.metadata(),
            callOptions(settings),
          )
        ).workspace,
      ),
    listWorkspaces,
    async *allWorkspaces(statuses = []) {
      let pageToken = '';
      do {
        const page = await listWorkspaces({ statuses: [...statuses], pageToken, pageSize: 1000 });
        yield* page.workspaces;
        pageToken = page.nextPageToken;
      } while (pageToken !== '');
    },
    deleteWorkspace: async (workspaceId, settings) =>
      required(
        (
          await invoke(
            client,
            client.deleteWorkspace,
            { workspaceId },
            conn.metadata(),
            callOptions(settings),
          )
        ).workspace,
      ),
    rotateWorkspaceToken: async (workspaceId, settings) =>
      (
        await invoke(
          client,
          client.rotateWorkspaceToken,
          { workspaceId, revokePrevious: settings?.revokePrevious ?? false },
          conn.metadata(),
          callOptions(settings),
        )
      ).workspaceToken,
    revokeWorkspaceTokens: async (workspaceId, settings) =>
      (
        await invoke(
          client,
          client.revokeWorkspaceTokens,
          { workspaceId },
          conn.metadata(),
          callOptions(settings),
        )
      ).revokedCount,
    listTransitions: (request = {}, settings) =>
      invoke(
        client,
        client.listTransitions,
        ListTransitionsRequest.fromPartial(request),
        conn.metadata(),
        callOptions(settings),
      ),
    watchStatus: (watchOptions = {}) => watchStatus(client, conn.metadata, watchOptions),
    setWorkspaceSecret: (request, settings) =>
      invoke(client, client.setWorkspaceSecret, request, conn.metadata(), callOptions(settings)),
    deleteWorkspaceSecret: (request, settings) =>
      invoke(client, client.deleteWorkspaceSecret, request, conn.metadata(), callOptions(settings)),
    listWorkspaceSecrets: (workspaceId, settings) =>
      invoke(
        client,
        client.listWorkspaceSecrets,
        { workspaceId },
        conn.metadata(),
        callOptions(settings),
      ),
    setWorkspaceRuntimeConfig: (request, settings) =>
      invoke(
        client,
        client.setWorkspaceRuntimeConfig,
        request,
        conn.metadata(),
        callOptions(settings),
      ),
    explainProjection: (workspaceId, settings) =>
      invoke(
        client,
        client.explainProjection,
        { workspaceId },
        conn.metadata(),
        callOptions(settings),
      ),
    listAuditEvents: (request, settings) =>
      invoke(client, client.listAuditEvents, request, conn.metadata(), callOptions(settings)),
    close: () => {
      client.close();
    },
  };
}

function required(workspace: Workspace | undefined): Workspace {
  if (!workspace) throw new Error('the server answered without a workspace');
  return workspace;
}

async function* watchStatus(
  client: ControlServiceClient,
  metadata: () => Metadata,
  options: WatchOptions,
): AsyncGenerator<WatchEvent> {
  const { signal } = options;
  let cursor = options.afterSeq ?? 0;
  let positioned = cursor > 0;
  let attempt = 0;
  while (!signal?.aborted) {
    const call = client.watchStatus(
      {
        workspaceIds: [...(options.workspaceIds ?? [])],
        afterSeq: cursor,
        includeSnapshot: !positioned && (options.includeSnapshot ?? false),
        // A cursor the server handed out (0 from an empty log included) means exactly that.
        resume: positioned,
      },
      metadata(),
    );
    const onAbort = () => {
      call.cancel();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    let failure: VigilClientError;
    try {
      for await (const event of readStream(call)) {
        attempt = 0;
        switch (event.$case) {
          case 'transition':
            if (event.value.seq <= cursor && positioned) continue; // never a duplicate
            cursor = event.value.seq;
            positioned = true;
            break;
          case 'snapshotEnd':
          case 'progress':
            cursor = event.value.seq;
            positioned = true;
            break;
          case 'snapshot':
            break;
        }
        yield event;
      }
      failure = new VigilClientError(
        status.UNAVAILABLE,
        'STREAM_ENDED',
        'the watch stream ended',
        {},
      );
    } catch (error) {
      if (signal?.aborted) return;
      if (!(error instanceof VigilClientError)) throw error;
      if (!error.retryable) throw error;
      failure = error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      call.cancel();
    }
    const delay = backoffDelay(attempt, options.backoff);
    attempt += 1;
    options.onReconnect?.(failure, attempt, delay);
    await sleep(delay, signal);
  }
}

/** Reads a server stream as an async iterator of events, throwing VigilClientError on failure. */
async function* readStream(
  call: ClientReadableStream<WatchStatusResponse>,
): AsyncGenerator<WatchEvent> {
  try {
    for await (const message of call as AsyncIterable<WatchStatusResponse>) {
      if (message.event) yield named(message.event);
    }
  } catch (error) {
    if (isServiceError(error)) throw fromServiceError(error);
    throw error;
  }
}

function named(event: WireWatchEvent): WatchEvent {
  switch (event.$case) {
    case 'transition': {
      const t = event.value;
      return {
        $case: 'transition',
        value: {
          ...t,
          fromStatusName: statusName(t.fromStatus),
          toStatusName: statusName(t.toStatus),
          reasonName: reasonName(t.reason),
        },
      };
    }
    case 'snapshot':
      return {
        $case: 'snapshot',
        value: { ...event.value, statusName: statusName(event.value.status) },
      };
    default:
      return event;
  }
}

function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && 'code' in error && 'metadata' in error;
}
