import { BlockList, isIP } from 'node:net';
import { VigilError } from './errors.js';

/**
 * URL policy for Register: which advertised URLs the platform may call.
 * The platform will send requests to whatever URL Register accepts, so this is
 * the server-side-request-forgery boundary: the host must resolve, and every
 * address it resolves to must be allowed.
 */

/** How strict the policy is about internal addresses. */
export type UrlPolicyName = 'local' | 'private' | 'public';
export const URL_POLICIES: readonly UrlPolicyName[] = ['local', 'private', 'public'];

/** Resolves a host name to its addresses; rejects when it does not resolve. */
export type HostResolver = (host: string) => Promise<readonly string[]>;

export const MAX_URL_LENGTH = 2048;

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
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const ip = mapped?.[1] ?? address;
  const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
  if (alwaysBlocked.check(ip, family)) {
    return 'a link-local, metadata, unspecified, multicast, broadcast or documentation address';
  }
  if (policy !== 'local' && loopback.check(ip, family)) return 'a loopback address';
  if (policy === 'public' && privateRanges.check(ip, family)) return 'a private address';
  return undefined;
}

/**
 * Checks `url` against `policy`, resolving its host with `resolve`.
 * Throws URL_VALIDATE_FAILED (with `host` in metadata when there is one).
 */
export async function validateUrl(
  url: string,
  policy: UrlPolicyName,
  resolve: HostResolver,
): Promise<void> {
  if (url.length > MAX_URL_LENGTH) {
    throw new VigilError('URL_VALIDATE_FAILED', `the URL is longer than ${MAX_URL_LENGTH} characters`);
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
      addresses = await resolve(host);
    } catch {
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
}
