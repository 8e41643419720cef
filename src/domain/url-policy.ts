/**
 * The URL policy as the domain sees it: its names, the URL size limit, and
 * the port that checks an advertised URL (implemented in src/egress, which
 * parses, classifies addresses and resolves names).
 */

/** How strict the policy is about internal addresses. */
export type UrlPolicyName = 'local' | 'private' | 'public';
export const URL_POLICIES: readonly UrlPolicyName[] = ['local', 'private', 'public'];

/** Longest URL accepted anywhere (Register, whatever the delivery mode), in UTF-8 bytes. */
export const MAX_URL_BYTES = 2048;

/**
 * Checks a URL the platform may call and returns its canonical form: the one
 * that was checked, and so the only one that may be stored or handed out.
 *
 * Rejects with URL_VALIDATE_FAILED for a definitive refusal (a URL that cannot
 * be read one way only, a scheme or address the policy refuses, a name that
 * does not exist), with URL_RESOLVE_UNAVAILABLE when name resolution gave no
 * definitive answer (timeout, resolver failure: retryable, says nothing about
 * the URL), and with the abort reason when `signal` aborts.
 */
export type UrlChecker = (url: string, signal?: AbortSignal) => Promise<string>;
