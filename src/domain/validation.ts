import { fieldInvalid } from './errors.js';

/** Workspace ids: DNS-label shaped, so they fit hostnames, metric labels and URLs unescaped. */
export const WORKSPACE_ID_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
export const MAX_NAME_BYTES = 256;
export const MAX_SAMPLE_ERROR_BYTES = 4096;
export const MAX_CURRENT_TASK_BYTES = 1024;
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export function checkWorkspaceId(id: string, field = 'workspace_id'): string {
  if (!WORKSPACE_ID_PATTERN.test(id)) {
    throw fieldInvalid(
      field,
      'must be 1-63 lowercase letters, digits or "-", starting and ending with a letter or digit',
    );
  }
  return id;
}

export function checkMaxBytes(value: string, max: number, field: string): string {
  if (Buffer.byteLength(value, 'utf8') > max) {
    throw fieldInvalid(field, `must be at most ${max} bytes`);
  }
  return value;
}

/** AIP-158 page size: 0 means the default; negative is invalid; larger than the maximum is capped. */
export function checkPageSize(size: number): number {
  if (!Number.isInteger(size) || size < 0) throw fieldInvalid('page_size', 'must not be negative');
  return size === 0 ? DEFAULT_PAGE_SIZE : Math.min(size, MAX_PAGE_SIZE);
}
