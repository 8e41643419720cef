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

export function decodePageToken<T extends string | number>(
  token: string,
  filter: string,
  kind: 'string' | 'number',
): T | undefined {
  if (token === '') return undefined;
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (typeof body !== 'object' || body === null) throw invalid();
  const { after, filter: tokenFilter } = body as Partial<PageTokenBody>;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- parsed JSON is untrusted
  if (typeof after !== kind || tokenFilter !== filter) throw invalid();
  return after as T;
}

function invalid(): VigilError {
  return new VigilError(
    'PAGE_TOKEN_INVALID',
    'page_token is not a token this request returned (or the filter changed)',
    { field: 'page_token' },
  );
}
