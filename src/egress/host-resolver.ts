import { Resolver } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { VigilError } from '../domain/errors.js';
import type { HostResolver } from './url-policy.js';

/**
 * Name resolution for the URL policy that one caller cannot starve for
 * another: the hosts file first, then DNS through c-ares (Node's
 * `dns.promises.Resolver`), which runs on the event loop with its own
 * sockets, a per-try timeout and a number of tries, and is cancelled when the
 * caller goes away. `dns.lookup` is not used: it runs getaddrinfo on libuv's
 * four-thread pool, cannot be cancelled, and a few names whose DNS never
 * answers hold every thread for as long as the system resolver insists.
 *
 * Only definitive answers are answers: a name the hosts file lists, a name
 * DNS says does not exist (NXDOMAIN / no data for both families), or the
 * addresses DNS returned for both families. Anything else — a timeout, a
 * refused or failing server — rejects with URL_RESOLVE_UNAVAILABLE.
 */

export interface HostResolverOptions {
  /** Milliseconds c-ares waits for the first try of a query (later tries wait longer). */
  readonly timeoutMs: number;
  /** Tries per name server before c-ares gives up. */
  readonly tries: number;
  /** The hosts file read before DNS; `/etc/hosts` by default. */
  readonly hostsFile?: string;
  /** DNS servers (`ip` or `ip:port`); those of /etc/resolv.conf when unset. */
  readonly servers?: readonly string[];
}

/** c-ares codes that are definitive: the name (or that family) does not exist. */
const DEFINITIVELY_ABSENT = new Set(['ENOTFOUND', 'ENODATA']);

export function createHostResolver(options: HostResolverOptions): HostResolver {
  const hostsFile = options.hostsFile ?? '/etc/hosts';
  return async (host, signal) => {
    signal?.throwIfAborted();
    const name = host.toLowerCase().replace(/\.$/, '');
    const listed = await hostsFileAddresses(hostsFile, name);
    if (listed.length > 0) return listed;
    // RFC 6761: localhost names are loopback, whatever DNS says.
    if (name === 'localhost' || name.endsWith('.localhost')) return ['127.0.0.1', '::1'];
    signal?.throwIfAborted();
    // One resolver (one c-ares channel) per name: cancelling it cancels only this caller's queries.
    const resolver = new Resolver({ timeout: options.timeoutMs, tries: options.tries });
    if (options.servers) resolver.setServers([...options.servers]);
    const onAbort = () => {
      resolver.cancel();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const [v4, v6] = await Promise.all([
        family(resolver.resolve4(name)),
        family(resolver.resolve6(name)),
      ]);
      signal?.throwIfAborted();
      const failed = [v4, v6].find((result) => typeof result === 'string');
      if (failed !== undefined) {
        throw new VigilError(
          'URL_RESOLVE_UNAVAILABLE',
          `resolving ${host} gave no definitive answer (${failed}); retry later`,
          { host, code: failed },
          { retryAfterMs: 1_000 },
        );
      }
      return [...(v4 as string[]), ...(v6 as string[])];
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  };
}

/** The addresses of one family, `[]` when that is definitive, or the error code when it is not. */
async function family(query: Promise<string[]>): Promise<string[] | string> {
  try {
    return await query;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
    return DEFINITIVELY_ABSENT.has(code) ? [] : code;
  }
}

/**
 * The addresses the hosts file lists for `name` (none when it cannot be read).
 * Hand-written: the format is one address and its names per line, `#` to the
 * end of a line a comment, and the npm parsers are editors of the file that
 * do not survive a missing one.
 */
async function hostsFileAddresses(file: string, name: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return [];
  }
  const addresses: string[] = [];
  for (const line of text.split('\n')) {
    const [address = '', ...names] = line.replace(/#.*/, '').trim().split(/\s+/);
    if (isIP(address) !== 0 && names.some((n) => n.toLowerCase() === name)) addresses.push(address);
  }
  return addresses;
}
