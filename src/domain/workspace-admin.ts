import { randomUUID } from 'node:crypto';
import type { Clock } from './clock.js';
import type { Timings } from './config.js';
import { fieldInvalid, workspaceNotFound } from './errors.js';
import type { Liveness } from './liveness.js';
import { LIVE_STATUSES, type Transition, type Workspace, type WorkspaceStatus } from './model.js';
import { decodeNumberPageToken, decodeStringPageToken, encodePageToken } from './page-token.js';
import type { RegistryStore } from './registry-store.js';
import { nextStatus } from './status-machine.js';
import { MAX_NAME_BYTES, checkMaxBytes, checkPageSize, checkWorkspaceId } from './validation.js';
import type { WorkspaceTokens } from './workspace-tokens.js';

export interface Page<T> {
  readonly items: T[];
  readonly nextPageToken: string;
}

/**
 * Workspace administration, called by internal services with a control
 * token (checked by transport): create, read, list, delete, and the
 * transition history. Reads show liveness as this process knows it (newer
 * than the store between two flushes). Every write commits its transition
 * with it; the store publishes it.
 */
export interface WorkspaceAdmin {
  /**
   * Creates a PROVISIONING workspace (an empty id picks a UUID) and returns it
   * with its first token, shown only this once. Throws FIELD_INVALID,
   * WORKSPACE_EXISTS.
   */
  create(
    workspaceId: string,
    name: string,
  ): Promise<{ readonly workspace: Workspace; readonly workspaceToken: string }>;
  /** One workspace (tombstones included). Throws FIELD_INVALID, WORKSPACE_NOT_FOUND. */
  get(workspaceId: string): Promise<Workspace>;
  /**
   * A page of workspaces in id order (AIP-158): the given statuses, or every
   * status but REMOVED, and only ids starting with `idPrefix` when it is not
   * empty. A page costs a range read of the id order whatever the fleet's
   * size. Throws FIELD_INVALID, PAGE_TOKEN_INVALID.
   */
  list(
    pageSize: number,
    pageToken: string,
    statuses: readonly WorkspaceStatus[],
    idPrefix?: string,
  ): Promise<Page<Workspace>>;
  /** Moves a workspace to the REMOVED tombstone. Throws WORKSPACE_NOT_FOUND. */
  delete(workspaceId: string): Promise<Workspace>;
  /**
   * Committed transitions in seq order, of one workspace or (with '') of all.
   * Throws FIELD_INVALID, PAGE_TOKEN_INVALID.
   */
  listTransitions(
    workspaceId: string,
    pageSize: number,
    pageToken: string,
  ): Promise<Page<Transition>>;
}

/** What an id prefix may hold: the characters of a workspace id. */
const ID_PREFIX_PATTERN = /^[a-z0-9-]{1,63}$/;

/**
 * A position just before every id starting with `prefix` and after every
 * smaller id (ids hold only `[a-z0-9-]`, all below U+007F): the `afterId`
 * that starts a prefix range. '' for no prefix.
 */
function idsBefore(prefix: string): string {
  if (prefix === '') return '';
  const last = prefix.charCodeAt(prefix.length - 1);
  return `${prefix.slice(0, -1)}${String.fromCharCode(last - 1)}\u007f`;
}

export interface WorkspaceAdminOptions {
  readonly store: RegistryStore;
  readonly tokens: WorkspaceTokens;
  readonly liveness: Liveness;
  readonly clock: Clock;
  readonly timings: Timings;
}

export function createWorkspaceAdmin(options: WorkspaceAdminOptions): WorkspaceAdmin {
  const { store, tokens, liveness, clock, timings } = options;

  return {
    async create(workspaceId, name) {
      const id = workspaceId === '' ? randomUUID() : checkWorkspaceId(workspaceId);
      checkMaxBytes(name, MAX_NAME_BYTES, 'name');
      const { token, hash } = tokens.issue();
      const applied = await store.createWorkspace({
        id,
        name: name === '' ? id : name,
        tokenHash: hash,
        now: clock.now(),
      });
      return { workspace: applied.workspace, workspaceToken: token };
    },

    async get(workspaceId) {
      const workspace = await store.getWorkspace(checkWorkspaceId(workspaceId));
      if (!workspace) throw workspaceNotFound(workspaceId);
      return liveness.withLiveness(workspace);
    },

    async list(pageSize, pageToken, statuses, idPrefix = '') {
      const limit = checkPageSize(pageSize);
      if (idPrefix !== '' && !ID_PREFIX_PATTERN.test(idPrefix)) {
        throw fieldInvalid('id_prefix', 'must be 1-63 lowercase letters, digits or "-"');
      }
      const statusFilter = [...new Set(statuses)].sort().join(',');
      const filter = idPrefix === '' ? statusFilter : `${statusFilter};prefix=${idPrefix}`;
      const afterId = decodeStringPageToken(pageToken, filter) ?? idsBefore(idPrefix);
      const read = await store.listWorkspaces({
        statuses: statuses.length > 0 ? statuses : LIVE_STATUSES,
        afterId,
        limit: limit + 1,
        workspaceIds: [],
      });
      // Ids come in order, so the first one without the prefix ends the range.
      const outside = read.findIndex((w) => !w.id.startsWith(idPrefix));
      const rows = outside === -1 ? read : read.slice(0, outside);
      const items = rows.slice(0, limit).map((w) => liveness.withLiveness(w));
      const last = items.at(-1);
      return {
        items,
        nextPageToken: rows.length > limit && last ? encodePageToken(last.id, filter) : '',
      };
    },

    async delete(workspaceId) {
      const now = clock.now();
      const applied = await store.deleteWorkspace(checkWorkspaceId(workspaceId), now, (state) =>
        nextStatus(state, { type: 'DELETE' }, now, timings),
      );
      return applied.workspace;
    },

    async listTransitions(workspaceId, pageSize, pageToken) {
      const limit = checkPageSize(pageSize);
      if (workspaceId !== '') checkWorkspaceId(workspaceId);
      const afterSeq = decodeNumberPageToken(pageToken, workspaceId) ?? 0;
      const rows = await store.readTransitions({
        afterSeq,
        limit: limit + 1,
        workspaceIds: workspaceId === '' ? [] : [workspaceId],
      });
      const items = rows.slice(0, limit);
      const last = items.at(-1);
      return {
        items,
        nextPageToken: rows.length > limit && last ? encodePageToken(last.seq, workspaceId) : '',
      };
    },
  };
}
