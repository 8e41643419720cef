import type { Clock } from '../domain/clock.js';
import { VigilError } from '../domain/errors.js';
import {
  LIVE_STATUSES,
  WORKSPACE_STATUSES,
  type Transition,
  type Workspace,
} from '../domain/model.js';
import type { ListWorkspacesQuery, RegistryStore } from '../domain/registry-store.js';
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
  /** `afterSeq` is a cursor the server handed out, 0 included (never "the head"). */
  readonly resume?: boolean;
}

export interface WatchDeps {
  readonly store: RegistryStore;
  readonly hub: TransitionHub;
  /** Time for progress frames (the hub's clock). */
  readonly clock: Clock;
  /** An idle stream gets a progress frame this often. */
  readonly progressIntervalMs: number;
  /** Transitions read per step. */
  readonly batchSize?: number;
  /** Adds what the owner of liveness knows in memory (last heartbeat, health) to snapshot rows. */
  readonly overlay?: (workspace: Workspace) => Workspace;
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
  /** Told when the cursor moves past transitions the filter left out (nothing is sent for those). */
  onSkip: (seq: number) => void = () => undefined,
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
  return Promise.resolve(stream(deps, request, signal, onSkip));
}

/** Workspaces per snapshot page. */
const SNAPSHOT_PAGE = 500;
/**
 * Bytes of stored workspaces per snapshot page: what a stream that stops
 * reading can pin, whatever the size of the cards (one workspace more at
 * most, up to the 64 KiB card limit).
 */
export const SNAPSHOT_PAGE_BYTES = 256 * 1024;

/**
 * The current state of the selected workspaces, page by page, then
 * `snapshotEnd` at the head: every transition after it follows on the stream.
 * Where the store has consistent snapshots (etcd), every page shows the state
 * at that head exactly. Otherwise the head is taken before the first page and
 * a page may already show a state that a following transition reports again;
 * applying transitions in order still ends at the right state. Returns the head.
 */
async function* snapshot(
  deps: WatchDeps,
  workspaceIds: readonly string[],
  reset: boolean,
): AsyncGenerator<WatchEvent, number, undefined> {
  // A consistent snapshot where the store has one; else the head first, then pages as they stand.
  const consistent = deps.store.snapshot ? await deps.store.snapshot() : undefined;
  const head = consistent?.head ?? deps.hub.head();
  const source = consistent
    ? (query: ListWorkspacesQuery) => consistent.list(query)
    : (query: ListWorkspacesQuery) => deps.store.listWorkspaces(query);
  // An unfiltered snapshot leaves out tombstones, like ListWorkspaces; named ids show them.
  const statuses = workspaceIds.length > 0 ? WORKSPACE_STATUSES : LIVE_STATUSES;
  let afterId = '';
  for (;;) {
    const page = await source({
      statuses,
      afterId,
      limit: SNAPSHOT_PAGE,
      maxBytes: SNAPSHOT_PAGE_BYTES,
      workspaceIds,
    });
    const overlay = deps.overlay;
    for (const workspace of page) {
      yield { type: 'snapshot', workspace: overlay ? overlay(workspace) : workspace };
    }
    // A page cut short by bytes is not the last one: page on until one comes back empty.
    const last = page.at(-1);
    if (!last) break;
    afterId = last.id;
  }
  yield { type: 'snapshotEnd', seq: head, reset };
  return head;
}

async function* stream(
  deps: WatchDeps,
  request: WatchRequest,
  signal: AbortSignal,
  onSkip: (seq: number) => void,
): AsyncGenerator<WatchEvent, void, undefined> {
  const ids = new Set(request.workspaceIds);
  const batchSize = deps.batchSize ?? 256;
  let cursor: number;
  if (request.resume === true) {
    cursor = request.afterSeq;
  } else if (request.includeSnapshot && request.afterSeq === 0) {
    cursor = yield* snapshot(deps, request.workspaceIds, false);
  } else if (request.afterSeq === 0) {
    cursor = deps.hub.head();
    // Tell the client where it starts, so it can resume from here at once.
    yield { type: 'progress', seq: cursor };
  } else {
    cursor = request.afterSeq;
  }

  const waiter = deps.hub.waiter(signal);
  let lastSentAt = deps.clock.now();
  while (!signal.aborted) {
    const read = await deps.hub.read(cursor, batchSize, ids);
    if (read.reset) {
      // The history after the cursor was compacted: a fresh snapshot, never a silent gap.
      cursor = yield* snapshot(deps, request.workspaceIds, true);
      lastSentAt = deps.clock.now();
      continue;
    }
    for (const transition of read.transitions) {
      yield { type: 'transition', transition };
    }
    const advanced = read.through > cursor;
    cursor = read.through;
    const last = read.transitions.at(-1);
    if (last) {
      lastSentAt = deps.clock.now();
      if (cursor > last.seq) onSkip(cursor);
      // More to read, or caught up: then wait rather than read again for nothing.
      if (cursor < deps.hub.head()) continue;
    } else if (advanced) {
      onSkip(cursor);
      // A filtered stream can advance for long without sending anything; keep
      // its client's resume cursor fresh all the same.
      if (deps.clock.now() - lastSentAt >= deps.progressIntervalMs) {
        yield { type: 'progress', seq: cursor };
        lastSentAt = deps.clock.now();
      }
      continue;
    }
    const outcome = await waiter.waitBeyond(cursor, deps.progressIntervalMs);
    if (outcome === 'aborted') return;
    if (outcome === 'idle') {
      yield { type: 'progress', seq: cursor };
      lastSentAt = deps.clock.now();
    }
  }
}
