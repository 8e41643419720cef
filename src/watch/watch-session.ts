import { VigilError } from '../domain/errors.js';
import type { Transition, Workspace } from '../domain/model.js';
import type { RegistryStore } from '../domain/registry-store.js';
import { checkWorkspaceId } from '../domain/validation.js';
import type { TransitionHub } from './transition-hub.js';

/** One event of a watch stream, in the order the stream sends them. */
export type WatchEvent =
  | { readonly type: 'snapshot'; readonly workspace: Workspace }
  | { readonly type: 'snapshotEnd'; readonly seq: number; readonly reset: boolean }
  | { readonly type: 'transition'; readonly transition: Transition }
  | { readonly type: 'progress'; readonly seq: number };

export interface WatchRequest {
  readonly workspaceIds: readonly string[];
  readonly afterSeq: number;
  readonly includeSnapshot: boolean;
}

export interface WatchDeps {
  readonly store: RegistryStore;
  readonly hub: TransitionHub;
  /** An idle stream gets a progress frame this often. */
  readonly progressIntervalMs: number;
  /** Transitions read per step. */
  readonly batchSize?: number;
}

/** Largest number of workspace ids one watch may filter on. */
export const MAX_WATCH_IDS = 1000;

/**
 * Validates a watch request and returns its event stream. Pull-based: the
 * consumer asks for the next event only when it can send it, so a slow
 * consumer holds nothing but its cursor. Guarantees: transitions in `seq`
 * order with no gap and no duplicate after the starting cursor; a cursor older
 * than retained history yields a snapshot marked `reset`. Ends when `signal`
 * aborts; throws SHUTTING_DOWN when the hub closes.
 */
export async function openWatch(
  deps: WatchDeps,
  request: WatchRequest,
  signal: AbortSignal,
): Promise<AsyncGenerator<WatchEvent, void, undefined>> {
  if (request.workspaceIds.length > MAX_WATCH_IDS) {
    throw new VigilError('FIELD_INVALID', `workspace_ids: at most ${MAX_WATCH_IDS} ids`, {
      field: 'workspace_ids',
    });
  }
  request.workspaceIds.forEach((id) => checkWorkspaceId(id, 'workspace_ids'));
  const head = deps.hub.head();
  if (request.afterSeq > head) {
    throw new VigilError(
      'CURSOR_AHEAD',
      `after_seq ${request.afterSeq} is beyond the newest transition (${head})`,
      { afterSeq: String(request.afterSeq), headSeq: String(head) },
    );
  }
  const compacted = request.afterSeq > 0 ? await deps.store.compactedThrough() : 0;
  return stream(deps, request, request.afterSeq > 0 && request.afterSeq < compacted, signal);
}

async function* stream(
  deps: WatchDeps,
  request: WatchRequest,
  reset: boolean,
  signal: AbortSignal,
): AsyncGenerator<WatchEvent, void, undefined> {
  const ids = new Set(request.workspaceIds);
  const batchSize = deps.batchSize ?? 256;
  let cursor: number;
  if (reset || (request.includeSnapshot && request.afterSeq === 0)) {
    const snapshot = await deps.store.snapshot(request.workspaceIds);
    for (const workspace of snapshot.workspaces) yield { type: 'snapshot', workspace };
    cursor = snapshot.headSeq;
    yield { type: 'snapshotEnd', seq: cursor, reset };
  } else if (request.afterSeq === 0) {
    cursor = deps.hub.head();
    // Tell the client where it starts, so it can resume from here at once.
    yield { type: 'progress', seq: cursor };
  } else {
    cursor = request.afterSeq;
  }

  let lastSentAt = Date.now();
  while (!signal.aborted) {
    const { transitions, through } = await deps.hub.read(cursor, batchSize, ids);
    for (const transition of transitions) {
      yield { type: 'transition', transition };
      lastSentAt = Date.now();
    }
    const advanced = through > cursor;
    cursor = through;
    if (advanced) {
      // A filtered stream can advance for long without sending anything; keep
      // its client's resume cursor fresh all the same.
      if (Date.now() - lastSentAt >= deps.progressIntervalMs) {
        yield { type: 'progress', seq: cursor };
        lastSentAt = Date.now();
      }
      continue;
    }
    const outcome = await deps.hub.waitBeyond(cursor, deps.progressIntervalMs, signal);
    if (outcome === 'aborted') return;
    if (outcome === 'idle') {
      yield { type: 'progress', seq: cursor };
      lastSentAt = Date.now();
    }
  }
}
