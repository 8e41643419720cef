import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
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

/**
 * Address classes, from ipaddr.js's tables of the IANA special-purpose
 * registries (IPv4 and IPv6). Each class is allowed under some policies:
 * `public` allows only globally reachable unicast, `private` adds networks
 * that are not globally reachable but are meant to carry traffic (RFC 1918,
 * CGNAT, unique-local, benchmarking, local-use NAT64), `local` adds loopback.
 * Everything else — unspecified, broadcast, multicast, link-local (cloud
 * metadata), documentation and other reserved ranges, site-local, discard,
 * ORCHID, segment routing — is refused under every policy.
 */
type AddressClass = 'global' | 'private' | 'loopback' | 'blocked';

const ALLOWED_CLASSES: Readonly<Record<UrlPolicyName, readonly AddressClass[]>> = {
  local: ['global', 'private', 'loopback'],
  private: ['global', 'private'],
  public: ['global'],
};

const IPV4_CLASSES: Readonly<Record<string, AddressClass>> = {
  unicast: 'global',
  as112: 'global',
  amt: 'global',
  private: 'private',
  carrierGradeNat: 'private',
  loopback: 'loopback',
};

const IPV6_CLASSES: Readonly<Record<string, AddressClass>> = {
  unicast: 'global',
  as112v6: 'global',
  amt: 'global',
  uniqueLocal: 'private',
  benchmarking: 'private',
  loopback: 'loopback',
  // Judged by the IPv4 address they carry (below), and as that address is.
  ipv4Mapped: 'global',
  rfc6145: 'global',
  '6to4': 'global',
  teredo: 'global',
};

/** Benchmarking (RFC 2544): ipaddr.js files it under "reserved", IANA as not globally reachable. */
const IPV4_BENCHMARKING = ipaddr.parseCIDR('198.18.0.0/15');
/** The local-use NAT64 prefix (RFC 8215): not globally reachable, unlike 64:ff9b::/96. */
const LOCAL_USE_NAT64 = ipaddr.parseCIDR('64:ff9b:1::/48');
/** Cloud metadata endpoints outside link-local (AWS's IPv6 one sits in unique-local space). */
const METADATA_ADDRESSES = new Set(['fd00:ec2::254']);

const REFUSAL_TEXT: Readonly<Record<Exclude<AddressClass, 'global'>, string>> = {
  blocked:
    'a link-local, metadata, unspecified, multicast, broadcast, documentation or otherwise reserved address',
  loopback: 'a loopback address',
  private: 'a private address',
};

function classOf(address: ipaddr.IPv4 | ipaddr.IPv6): AddressClass {
  if (address.kind() === 'ipv4') {
    if (address.match(IPV4_BENCHMARKING)) return 'private';
    return IPV4_CLASSES[address.range()] ?? 'blocked';
  }
  const v6 = address as ipaddr.IPv6;
  if (METADATA_ADDRESSES.has(v6.toString())) return 'blocked';
  const range = v6.range();
  if (range === 'rfc6052') return v6.match(LOCAL_USE_NAT64) ? 'private' : 'global';
  // ::a.b.c.d (IPv4-compatible, deprecated by RFC 4291): ipaddr.js calls it unicast.
  if (range === 'unicast' && v6.parts.slice(0, 6).every((part) => part === 0)) return 'blocked';
  return IPV6_CLASSES[range] ?? 'blocked';
}

/**
 * The IPv4 addresses an IPv6 address carries, which a translator or tunnel
 * may route to: IPv4-mapped and -translated (last 32 bits), NAT64 (RFC 6052:
 * last 32 bits for /96, and bits 48–87 around the "u" octet for a /48
 * local-use prefix), 6to4 (bits 16–47) and Teredo (the client, inverted).
 */
function embeddedIpv4(address: ipaddr.IPv6): ipaddr.IPv4[] {
  const p = address.parts as [number, number, number, number, number, number, number, number];
  const v4 = (hi: number, lo: number) => new ipaddr.IPv4([hi >> 8, hi & 255, lo >> 8, lo & 255]);
  switch (address.range()) {
    case 'ipv4Mapped':
    case 'rfc6145':
      return [v4(p[6], p[7])];
    case 'rfc6052': {
      if (!address.match(LOCAL_USE_NAT64)) return [v4(p[6], p[7])];
      // Which RFC 6052 layout the operator's prefix uses is not in the address: a /96 leaves
      // bits 48–95 zero, a /48 the last 40 bits; anything else is checked both ways.
      const as96 = v4(p[6], p[7]);
      const as48 = v4(p[3], ((p[4] & 0xff) << 8) | (p[5] >> 8));
      if (p[3] === 0 && p[4] === 0 && p[5] === 0) return [as96];
      if ((p[5] & 0xff) === 0 && p[6] === 0 && p[7] === 0) return [as48];
      return [as96, as48];
    }
    case '6to4':
      return [v4(p[1], p[2])];
    case 'teredo':
      return [v4(p[6] ^ 0xffff, p[7] ^ 0xffff)];
    default:
      return [];
  }
}

/** Why an address is refused under `policy`, or undefined when it is allowed. */
export function addressRefusal(address: string, policy: UrlPolicyName): string | undefined {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    // Addresses come from WHATWG hosts or resolvers: only the four-part dotted IPv4 form.
    parsed = ipaddr.parse(address);
  } catch {
    return 'not an IP address';
  }
  const allowed = ALLOWED_CLASSES[policy];
  const own = classOf(parsed);
  if (!allowed.includes(own)) return REFUSAL_TEXT[own as Exclude<AddressClass, 'global'>];
  if (parsed.kind() === 'ipv6') {
    for (const inner of embeddedIpv4(parsed as ipaddr.IPv6)) {
      const innerClass = classOf(inner);
      if (!allowed.includes(innerClass)) {
        const text = REFUSAL_TEXT[innerClass as Exclude<AddressClass, 'global'>];
        return `${text} (${inner.toString()}, embedded in ${address})`;
      }
    }
  }
  return undefined;
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
