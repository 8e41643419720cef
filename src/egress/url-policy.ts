import { BlockList, isIP } from 'node:net';
import { VigilError } from '../domain/errors.js';
import { MAX_URL_BYTES, type UrlChecker, type UrlPolicyName } from '../domain/url-policy.js';

/**
 * URL policy: which advertised URLs the platform may call. The platform will
 * send requests to whatever URL Register accepts, so this is the
 * server-side-request-forgery boundary: the URL must read one way only, the
 * host must resolve, and every address it resolves to must be allowed.
 */

/**
 * Resolves a host name to its addresses. Resolves `[]` or rejects (with
 * anything but URL_RESOLVE_UNAVAILABLE) when the name definitively does not
 * exist; rejects with a VigilError URL_RESOLVE_UNAVAILABLE when there is no
 * definitive answer (timeout, unreachable or failing resolver); rejects
 * when `signal` aborts (the caller went away).
 */
export type HostResolver = (host: string, signal?: AbortSignal) => Promise<readonly string[]>;

/**
 * Characters other URL parsers read differently from WHATWG's (which Node
 * follows): C0 controls, space and DEL — WHATWG strips or drops them
 * silently (CR, LF and tab anywhere; C0 and space at either end) — and the
 * backslash, which WHATWG reads as "/" in http(s) URLs and curl or Python's
 * urllib read as an ordinary character (so "http://a\\@b/" is host a to one
 * and host b to the others). A URL carrying any of them is refused rather
 * than rewritten: what is checked must be what its caller meant.
 */
// eslint-disable-next-line no-control-regex
const AMBIGUOUS = /[\u0000-\u0020\u007f\\]/;

/** Never allowed, whatever the policy: link-local and metadata, unspecified, multicast, broadcast, documentation ranges. */
const alwaysBlocked = new BlockList();
alwaysBlocked.addSubnet('0.0.0.0', 8, 'ipv4');
alwaysBlocked.addSubnet('169.254.0.0', 16, 'ipv4');
alwaysBlocked.addSubnet('192.0.0.0', 24, 'ipv4');
alwaysBlocked.addSubnet('192.0.2.0', 24, 'ipv4');
alwaysBlocked.addSubnet('198.51.100.0', 24, 'ipv4');
alwaysBlocked.addSubnet('203.0.113.0', 24, 'ipv4');
alwaysBlocked.addSubnet('224.0.0.0', 4, 'ipv4');
alwaysBlocked.addSubnet('240.0.0.0', 4, 'ipv4');
alwaysBlocked.addAddress('::', 'ipv6');
alwaysBlocked.addSubnet('fe80::', 10, 'ipv6');
alwaysBlocked.addSubnet('ff00::', 8, 'ipv6');
alwaysBlocked.addSubnet('2001:db8::', 32, 'ipv6');
alwaysBlocked.addAddress('fd00:ec2::254', 'ipv6');

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

const privateRanges = new BlockList();
privateRanges.addSubnet('10.0.0.0', 8, 'ipv4');
privateRanges.addSubnet('100.64.0.0', 10, 'ipv4');
privateRanges.addSubnet('172.16.0.0', 12, 'ipv4');
privateRanges.addSubnet('192.168.0.0', 16, 'ipv4');
privateRanges.addSubnet('198.18.0.0', 15, 'ipv4');
privateRanges.addSubnet('fc00::', 7, 'ipv6');

/** Why an address is refused under `policy`, or undefined when it is allowed. */
export function addressRefusal(address: string, policy: UrlPolicyName): string | undefined {
  const embedded = embeddedIpv4(address);
  if (embedded !== undefined) {
    const refusal = addressRefusal(embedded, policy);
    if (refusal !== undefined) return `${refusal} (embedded in ${address})`;
  }
  const ip = address;
  const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
  if (alwaysBlocked.check(ip, family)) {
    return 'a link-local, metadata, unspecified, multicast, broadcast or documentation address';
  }
  if (policy !== 'local' && loopback.check(ip, family)) return 'a loopback address';
  if (policy === 'public' && privateRanges.check(ip, family)) return 'a private address';
  return undefined;
}

/**
 * The IPv4 address an IPv6 address carries and that a network may route to:
 * IPv4-mapped and -compatible (::ffff:a.b.c.d, ::a.b.c.d), NAT64
 * (64:ff9b::/96) and 6to4 (2002::/16).
 */
function embeddedIpv4(address: string): string | undefined {
  if (isIP(address) !== 6) return undefined;
  const words = expandIpv6(address);
  if (!words) return undefined;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const [w0, w1, w2, w3, w4, w5, w6, w7] = words as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (w0 === 0x2002) return v4(w1, w2);
  const zeroPrefix = w0 === 0 && w1 === 0 && w2 === 0 && w3 === 0;
  if (zeroPrefix && w4 === 0 && (w5 === 0xffff || w5 === 0) && (w6 !== 0 || w7 > 1))
    return v4(w6, w7);
  if (zeroPrefix && w4 === 0xffff && w5 === 0) return v4(w6, w7);
  if (w0 === 0x64 && w1 === 0xff9b && w2 === 0 && w3 === 0 && w4 === 0 && w5 === 0)
    return v4(w6, w7);
  return undefined;
}

/** The eight 16-bit words of an IPv6 address (dotted IPv4 tails included). */
function expandIpv6(address: string): number[] | undefined {
  let text = address.toLowerCase();
  const tail = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (tail) {
    const [a, b, c, d] = tail.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, tail.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = rest === undefined || rest === '' ? [] : rest.split(':');
  const fill = rest === undefined ? 0 : 8 - left.length - right.length;
  const words = [...left, ...Array<string>(fill).fill('0'), ...right].map((w) => parseInt(w, 16));
  return words.length === 8 && words.every((w) => Number.isInteger(w)) ? words : undefined;
}

/** The URL checker of `policy`, resolving names with `resolve`. */
export function createUrlChecker(policy: UrlPolicyName, resolve: HostResolver): UrlChecker {
  return (url, signal) => validateUrl(url, policy, resolve, signal);
}

/**
 * Checks `url` against `policy`, resolving its host with `resolve`, and
 * returns its canonical (WHATWG-serialized) form, the one that was checked.
 * Throws URL_VALIDATE_FAILED (with `host` in metadata when there is one),
 * or URL_RESOLVE_UNAVAILABLE when resolution gave no definitive answer.
 */
export async function validateUrl(
  url: string,
  policy: UrlPolicyName,
  resolve: HostResolver,
  signal?: AbortSignal,
): Promise<string> {
  if (Buffer.byteLength(url, 'utf8') > MAX_URL_BYTES) {
    throw new VigilError('URL_VALIDATE_FAILED', `the URL is longer than ${MAX_URL_BYTES} bytes`);
  }
  const ambiguous = AMBIGUOUS.exec(url);
  if (ambiguous) {
    const code = ambiguous[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
    throw new VigilError(
      'URL_VALIDATE_FAILED',
      `the URL contains U+${code} (a backslash, control character or space), which URL parsers read differently`,
      { character: `U+${code}` },
    );
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new VigilError('URL_VALIDATE_FAILED', 'the URL cannot be parsed');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new VigilError('URL_VALIDATE_FAILED', 'the URL scheme must be http or https', {
      scheme: parsed.protocol.replace(/:$/, ''),
    });
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw new VigilError('URL_VALIDATE_FAILED', 'the URL must not carry credentials');
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new VigilError('URL_VALIDATE_FAILED', 'the URL has no host');

  let addresses: readonly string[];
  if (isIP(host) !== 0) {
    addresses = [host];
  } else {
    try {
      addresses = await resolve(host, signal);
    } catch (error) {
      // A caller that went away gets no answer, and must not stamp the marker either.
      signal?.throwIfAborted();
      // No definitive answer says nothing about the URL: retryable, no marker.
      if (error instanceof VigilError && error.reason === 'URL_RESOLVE_UNAVAILABLE') throw error;
      addresses = [];
    }
    if (addresses.length === 0) {
      throw new VigilError('URL_VALIDATE_FAILED', `the host ${host} does not resolve`, { host });
    }
  }
  for (const address of addresses) {
    const refusal = addressRefusal(address, policy);
    if (refusal !== undefined) {
      throw new VigilError(
        'URL_VALIDATE_FAILED',
        `the host ${host} resolves to ${address}, ${refusal}, which the ${policy} URL policy does not allow`,
        { host, address },
      );
    }
  }
  if (Buffer.byteLength(parsed.href, 'utf8') > MAX_URL_BYTES) {
    throw new VigilError('URL_VALIDATE_FAILED', `the URL is longer than ${MAX_URL_BYTES} bytes`);
  }
  return parsed.href;
}
