import { VigilError } from './errors.js';

/**
 * Opaque AIP-158 page tokens. A token carries the position to continue after
 * and a fingerprint of the request's filter, so a token used with a different
 * filter is rejected rather than silently returning the wrong page.
 */

interface PageTokenBody {
  readonly after: string | number;
  readonly filter: string;
}

export function encodePageToken(after: string | number, filter: string): string {
  return Buffer.from(JSON.stringify({ after, filter } satisfies PageTokenBody)).toString(
    'base64url',
  );
}

/** The string position in a page token (undefined for the first page). */
export function decodeStringPageToken(token: string, filter: string): string | undefined {
  const after = decode(token, filter);
  if (after !== undefined && typeof after !== 'string') throw invalid();
  return after;
}

/** The numeric position in a page token (undefined for the first page). */
export function decodeNumberPageToken(token: string, filter: string): number | undefined {
  const after = decode(token, filter);
  if (after !== undefined && typeof after !== 'number') throw invalid();
  return after;
}

function decode(token: string, filter: string): unknown {
  if (token === '') return undefined;
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (typeof body !== 'object' || body === null) throw invalid();
  const { after, filter: tokenFilter } = body as Partial<PageTokenBody>;
  if (after === undefined || tokenFilter !== filter) throw invalid();
  return after;
}

function invalid(): VigilError {
  return new VigilError(
    'PAGE_TOKEN_INVALID',
    'page_token is not a token this request returned (or the filter changed)',
    { field: 'page_token' },
  );
}
