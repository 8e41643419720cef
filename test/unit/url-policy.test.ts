import { expect } from 'chai';
import { VigilError } from '../../src/domain/errors.js';
import { URL_POLICIES, type UrlPolicyName } from '../../src/domain/url-policy.js';
import { addressRefusal, validateUrl, type HostResolver } from '../../src/egress/url-policy.js';

/** A public address outside every blocked range (example.com's). */
const PUBLIC_V4 = '93.184.215.14';
const PUBLIC_V6 = '2606:2800:21f:cb07:6820:80da:af6b:8b2c';

/** A resolver answering from a fixed table, recording every lookup; unknown hosts reject like ENOTFOUND. */
function fakeResolver(table: Readonly<Record<string, readonly string[]>>): {
  readonly resolve: HostResolver;
  readonly lookups: string[];
} {
  const lookups: string[] = [];
  const resolve: HostResolver = (host) => {
    lookups.push(host);
    const addresses = table[host];
    return addresses === undefined
      ? Promise.reject(new Error(`getaddrinfo ENOTFOUND ${host}`))
      : Promise.resolve(addresses);
  };
  return { resolve, lookups };
}

/** Resolves every host to a public address, so only the check under test can refuse. */
const resolvesPublic: HostResolver = () => Promise.resolve([PUBLIC_V4]);

/** Fails the test if called: IP literals must not be resolved. */
const mustNotResolve: HostResolver = (host) => {
  expect.fail(`the resolver was called for ${host}`);
};

async function rejection(promise: Promise<unknown>): Promise<VigilError> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(VigilError);
    return error as VigilError;
  }
  return expect.fail('expected validateUrl to reject');
}

function urlFor(address: string): string {
  return address.includes(':') ? `http://[${address}]:8080/` : `http://${address}:8080/`;
}

const ALWAYS_BLOCKED: readonly [string, string][] = [
  ['cloud metadata', '169.254.169.254'],
  ['IPv4 link-local', '169.254.1.1'],
  ['IPv6 link-local', 'fe80::1'],
  ['IPv4 unspecified', '0.0.0.0'],
  ['IPv6 unspecified', '::'],
  ['IPv4 multicast', '224.0.0.1'],
  ['IPv6 multicast', 'ff02::1'],
  ['broadcast', '255.255.255.255'],
  ['TEST-NET-1', '192.0.2.1'],
  ['TEST-NET-2', '198.51.100.7'],
  ['TEST-NET-3', '203.0.113.9'],
  ['IPv6 documentation', '2001:db8::1'],
  ['IPv4-mapped cloud metadata', '::ffff:169.254.169.254'],
];

describe('URL policy', () => {
  describe('validateUrl', () => {
    describe('when the URL is acceptable', () => {
      it('accepts an http URL whose host resolves to a public address, under every policy', async () => {
        for (const policy of URL_POLICIES) {
          const { resolve } = fakeResolver({ 'agent.example.com': [PUBLIC_V4] });
          await validateUrl('http://agent.example.com/a2a', policy, resolve);
        }
      });

      it('accepts an https URL whose host resolves to public IPv4 and IPv6 addresses', async () => {
        const { resolve } = fakeResolver({ 'agent.example.com': [PUBLIC_V4, PUBLIC_V6] });
        await validateUrl('https://agent.example.com:8443/a2a', 'public', resolve);
      });

      it('resolves the bare host name, without scheme, port or path', async () => {
        const { resolve, lookups } = fakeResolver({ 'agent.example.com': [PUBLIC_V4] });
        await validateUrl('https://agent.example.com:8443/a2a?x=1', 'public', resolve);
        expect(lookups).to.deep.equal(['agent.example.com']);
      });
    });

    describe('when WHATWG rewrites the URL', () => {
      const CANONICAL: readonly (readonly [string, string])[] = [
        ['http://agent.example.com', 'http://agent.example.com/'],
        ['HTTPS://Agent.Example.COM:443/a/./b/../c', 'https://agent.example.com/a/c'],
        ['http://0x7f.1:80/', 'http://127.0.0.1/'],
        ['http://[0:0:0:0:0:0:0:1]:8080', 'http://[::1]:8080/'],
        ['http://agent.example.com/é"x', 'http://agent.example.com/%C3%A9%22x'],
      ];
      for (const [url, canonical] of CANONICAL) {
        it(`returns the canonical form of ${url} that it checked`, async () => {
          const { resolve } = fakeResolver({ 'agent.example.com': [PUBLIC_V4] });
          expect(await validateUrl(url, 'local', resolve)).to.equal(canonical);
        });
      }
    });

    describe('when other parsers would read the URL differently', () => {
      for (const url of [
        'http://127.0.0.1\\@169.254.169.254/latest/meta-data/',
        'http://agent.example.com\\@169.254.169.254/',
        'http://agent.example.com/\\..\\admin',
        'http://agent.example.com/\r\nHost: x',
        'http://agent.\nexample.com/',
        'http://agent.example.com/\t',
        ' http://agent.example.com/',
        'http://agent.example.com/ ',
        'http://agent.example.com/\u0000',
        'http://agent.example.com/\u007f',
      ]) {
        it(`rejects ${JSON.stringify(url)} with URL_VALIDATE_FAILED without resolving it`, async () => {
          const error = await rejection(validateUrl(url, 'local', mustNotResolve));
          expect(error.reason).to.equal('URL_VALIDATE_FAILED');
          expect(error.metadata).to.have.property('character');
        });
      }
    });

    describe('when resolution gives no definitive answer', () => {
      it('rethrows URL_RESOLVE_UNAVAILABLE instead of calling the host unresolvable', async () => {
        const unavailable: HostResolver = () =>
          Promise.reject(new VigilError('URL_RESOLVE_UNAVAILABLE', 'timed out'));
        const error = await rejection(
          validateUrl('http://agent.example.com/', 'local', unavailable),
        );
        expect(error.reason).to.equal('URL_RESOLVE_UNAVAILABLE');
      });
    });

    describe('when the scheme is not http or https', () => {
      for (const url of [
        'ftp://agent.example.com/',
        'file:///etc/passwd',
        'gopher://agent.example.com/',
      ]) {
        it(`rejects ${url} with URL_VALIDATE_FAILED`, async () => {
          const error = await rejection(validateUrl(url, 'local', resolvesPublic));
          expect(error.reason).to.equal('URL_VALIDATE_FAILED');
        });
      }
    });

    describe('when the URL cannot be parsed', () => {
      for (const url of ['', 'not a url', 'http://', '//agent.example.com/', 'http://[::1/']) {
        it(`rejects ${JSON.stringify(url)} with URL_VALIDATE_FAILED`, async () => {
          const error = await rejection(validateUrl(url, 'local', resolvesPublic));
          expect(error.reason).to.equal('URL_VALIDATE_FAILED');
        });
      }
    });

    describe('when the URL carries credentials', () => {
      for (const url of [
        'http://user:secret@agent.example.com/',
        'http://user@agent.example.com/',
        'https://:secret@agent.example.com/',
      ]) {
        it(`rejects ${url} with URL_VALIDATE_FAILED`, async () => {
          const error = await rejection(validateUrl(url, 'local', resolvesPublic));
          expect(error.reason).to.equal('URL_VALIDATE_FAILED');
        });
      }
    });

    describe('when the host does not resolve', () => {
      it('rejects with URL_VALIDATE_FAILED and the host in metadata when the resolver rejects', async () => {
        const { resolve, lookups } = fakeResolver({});
        const error = await rejection(
          validateUrl('http://runtime-7f3a.internal:8080/', 'local', resolve),
        );
        expect(error.reason).to.equal('URL_VALIDATE_FAILED');
        expect(error.metadata).to.have.property('host', 'runtime-7f3a.internal');
        expect(lookups).to.deep.equal(['runtime-7f3a.internal']);
      });

      it('rejects with URL_VALIDATE_FAILED and the host in metadata when the resolver returns no addresses', async () => {
        const { resolve } = fakeResolver({ 'runtime-7f3a.internal': [] });
        const error = await rejection(
          validateUrl('https://runtime-7f3a.internal/', 'local', resolve),
        );
        expect(error.reason).to.equal('URL_VALIDATE_FAILED');
        expect(error.metadata).to.have.property('host', 'runtime-7f3a.internal');
      });
    });

    describe('when the host resolves to an always-blocked address', () => {
      for (const policy of URL_POLICIES) {
        for (const [label, address] of ALWAYS_BLOCKED) {
          it(`refuses ${label} (${address}) under the ${policy} policy`, async () => {
            const { resolve } = fakeResolver({ 'agent.example.com': [address] });
            const error = await rejection(
              validateUrl('http://agent.example.com/', policy, resolve),
            );
            expect(error.reason).to.equal('URL_VALIDATE_FAILED');
            expect(error.metadata).to.have.property('host', 'agent.example.com');
            expect(error.metadata).to.have.property('address', address);
          });
        }
      }
    });

    describe('when the host is an always-blocked IP literal', () => {
      for (const policy of URL_POLICIES) {
        for (const [label, address] of ALWAYS_BLOCKED) {
          it(`refuses ${urlFor(address)} (${label}) under the ${policy} policy`, async () => {
            const error = await rejection(validateUrl(urlFor(address), policy, mustNotResolve));
            expect(error.reason).to.equal('URL_VALIDATE_FAILED');
          });
        }
      }
    });

    describe('when the host resolves to loopback or private addresses', () => {
      const rows: readonly {
        readonly address: string;
        readonly policy: UrlPolicyName;
        readonly allowed: boolean;
      }[] = [
        { address: '127.0.0.1', policy: 'local', allowed: true },
        { address: '::1', policy: 'local', allowed: true },
        { address: '10.0.0.1', policy: 'local', allowed: true },
        { address: '192.168.1.10', policy: 'local', allowed: true },
        { address: '127.0.0.1', policy: 'private', allowed: false },
        { address: '127.1.2.3', policy: 'private', allowed: false },
        { address: '::1', policy: 'private', allowed: false },
        { address: '::ffff:127.0.0.1', policy: 'private', allowed: false },
        { address: '10.0.0.1', policy: 'private', allowed: true },
        { address: '172.16.0.1', policy: 'private', allowed: true },
        { address: '192.168.1.10', policy: 'private', allowed: true },
        { address: 'fd12:3456::1', policy: 'private', allowed: true },
        { address: '127.0.0.1', policy: 'public', allowed: false },
        { address: '::1', policy: 'public', allowed: false },
        { address: '10.0.0.1', policy: 'public', allowed: false },
        { address: '172.16.0.1', policy: 'public', allowed: false },
        { address: '192.168.1.10', policy: 'public', allowed: false },
        { address: 'fd12:3456::1', policy: 'public', allowed: false },
        { address: '::ffff:10.0.0.1', policy: 'public', allowed: false },
      ];
      for (const { address, policy, allowed } of rows) {
        it(`${allowed ? 'allows' : 'refuses'} ${address} under the ${policy} policy`, async () => {
          const { resolve } = fakeResolver({ 'svc.cluster.local': [address] });
          const result = validateUrl('http://svc.cluster.local:8080/', policy, resolve);
          if (allowed) {
            await result;
          } else {
            const error = await rejection(result);
            expect(error.reason).to.equal('URL_VALIDATE_FAILED');
            expect(error.metadata).to.have.property('host', 'svc.cluster.local');
            expect(error.metadata).to.have.property('address', address);
          }
        });
      }
    });

    describe('when the host resolves to several addresses', () => {
      it('refuses the URL if any one address is blocked (good one first)', async () => {
        const { resolve } = fakeResolver({ 'agent.example.com': [PUBLIC_V4, '169.254.169.254'] });
        const error = await rejection(validateUrl('http://agent.example.com/', 'local', resolve));
        expect(error.reason).to.equal('URL_VALIDATE_FAILED');
        expect(error.metadata).to.have.property('address', '169.254.169.254');
      });

      it('refuses the URL if any one address is blocked (bad one first)', async () => {
        const { resolve } = fakeResolver({ 'agent.example.com': ['fe80::1', PUBLIC_V4] });
        const error = await rejection(validateUrl('http://agent.example.com/', 'local', resolve));
        expect(error.reason).to.equal('URL_VALIDATE_FAILED');
        expect(error.metadata).to.have.property('address', 'fe80::1');
      });

      it('refuses a public + private mix under the public policy but allows it under local', async () => {
        const { resolve } = fakeResolver({ 'agent.example.com': [PUBLIC_V4, '10.0.0.1'] });
        const error = await rejection(validateUrl('http://agent.example.com/', 'public', resolve));
        expect(error.reason).to.equal('URL_VALIDATE_FAILED');
        expect(error.metadata).to.have.property('address', '10.0.0.1');
        await validateUrl('http://agent.example.com/', 'local', resolve);
      });
    });

    describe('when the host is an IP literal', () => {
      it('does not call the resolver for an IPv4 literal', async () => {
        await validateUrl('http://127.0.0.1:9000/', 'local', mustNotResolve);
        await validateUrl(`http://${PUBLIC_V4}/`, 'public', mustNotResolve);
      });

      it('does not call the resolver for a bracketed IPv6 literal', async () => {
        await validateUrl('http://[::1]:9000/', 'local', mustNotResolve);
        await validateUrl(`https://[${PUBLIC_V6}]/`, 'public', mustNotResolve);
      });

      it('checks the literal itself against the policy', async () => {
        const v6 = await rejection(validateUrl('http://[::1]:9000/', 'private', mustNotResolve));
        expect(v6.reason).to.equal('URL_VALIDATE_FAILED');
        expect(v6.metadata).to.have.property('address', '::1');
        const v4 = await rejection(validateUrl('http://10.0.0.1/', 'public', mustNotResolve));
        expect(v4.reason).to.equal('URL_VALIDATE_FAILED');
        expect(v4.metadata).to.have.property('address', '10.0.0.1');
      });

      it('sees through alternative IPv4 spellings of loopback', async () => {
        for (const url of ['http://2130706433/', 'http://0x7f.1/', 'http://[0:0:0:0:0:0:0:1]/']) {
          const error = await rejection(validateUrl(url, 'private', mustNotResolve));
          expect(error.reason, url).to.equal('URL_VALIDATE_FAILED');
        }
      });
    });
  });

  describe('addressRefusal', () => {
    describe('when the address is always blocked', () => {
      for (const policy of URL_POLICIES) {
        for (const [label, address] of ALWAYS_BLOCKED) {
          it(`refuses ${label} (${address}) under the ${policy} policy`, () => {
            expect(addressRefusal(address, policy)).to.be.a('string').and.not.equal('');
          });
        }
      }
    });

    describe('when an IPv6 address embeds a blocked IPv4 address', () => {
      const embedded: readonly (readonly [string, string])[] = [
        ['NAT64', '64:ff9b::a9fe:a9fe'],
        ['6to4', '2002:a9fe:a9fe::1'],
        ['IPv4-compatible', '::a9fe:a9fe'],
        ['IPv4-translated', '::ffff:0:a9fe:a9fe'],
      ];
      for (const policy of URL_POLICIES) {
        for (const [label, address] of embedded) {
          it(`refuses the metadata address in ${label} form (${address}) under ${policy}`, () => {
            expect(addressRefusal(address, policy)).to.be.a('string');
          });
        }
      }
      it('applies the policy to an embedded loopback address', () => {
        expect(addressRefusal('64:ff9b::7f00:1', 'local')).to.equal(undefined);
        expect(addressRefusal('64:ff9b::7f00:1', 'public')).to.be.a('string');
        expect(addressRefusal('64:ff9b::808:808', 'public')).to.equal(undefined);
      });
    });

    describe('when the address is in an IANA special-purpose range a hand-written list missed', () => {
      const ALWAYS: readonly (readonly [string, string])[] = [
        ['IPv6 site-local (fec0::/10, deprecated)', 'fec0::1'],
        ['IPv6 discard-only (100::/64)', '100::1'],
        ['IPv6 segment routing (5f00::/16)', '5f00::1'],
        ['IPv6 ORCHIDv2 (2001:20::/28)', '2001:20::1'],
        ['IPv4 IETF protocol assignments (192.0.0.0/24)', '192.0.0.9'],
        ['Teredo with a metadata client', '2001:0:4136:e378:8000:63bf:5601:5601'],
        ['local-use NAT64 (/96 layout) of metadata', '64:ff9b:1::a9fe:a9fe'],
        ['local-use NAT64 (/48 layout) of metadata', '64:ff9b:1:a9fe:a9:fe00::'],
      ];
      for (const [label, address] of ALWAYS) {
        it(`refuses ${label} (${address}) under every policy`, () => {
          for (const policy of URL_POLICIES) {
            expect(addressRefusal(address, policy), policy).to.be.a('string');
          }
        });
      }

      it('treats the local-use NAT64 prefix (64:ff9b:1::/48) as private, whatever it embeds', () => {
        expect(addressRefusal('64:ff9b:1::808:808', 'public')).to.be.a('string');
        expect(addressRefusal('64:ff9b:1::808:808', 'private')).to.equal(undefined);
        // The well-known prefix is as global as what it embeds.
        expect(addressRefusal('64:ff9b::808:808', 'public')).to.equal(undefined);
      });
    });

    describe('when the address is public', () => {
      for (const policy of URL_POLICIES) {
        it(`allows public IPv4 and IPv6 addresses under the ${policy} policy`, () => {
          expect(addressRefusal(PUBLIC_V4, policy)).to.equal(undefined);
          expect(addressRefusal(PUBLIC_V6, policy)).to.equal(undefined);
          expect(addressRefusal('8.8.8.8', policy)).to.equal(undefined);
        });
      }
    });

    describe('when the address is loopback', () => {
      it('allows it under local only', () => {
        expect(addressRefusal('127.0.0.1', 'local')).to.equal(undefined);
        expect(addressRefusal('::1', 'local')).to.equal(undefined);
        expect(addressRefusal('127.0.0.1', 'private')).to.be.a('string');
        expect(addressRefusal('::1', 'private')).to.be.a('string');
        expect(addressRefusal('127.0.0.1', 'public')).to.be.a('string');
      });
    });

    describe('when the address is private', () => {
      it('allows it under local and private, refuses it under public', () => {
        for (const address of ['10.0.0.1', '172.31.255.254', '192.168.0.1', 'fc00::1']) {
          expect(addressRefusal(address, 'local'), address).to.equal(undefined);
          expect(addressRefusal(address, 'private'), address).to.equal(undefined);
          expect(addressRefusal(address, 'public'), address).to.be.a('string');
        }
      });

      it('does not treat addresses next to private ranges as private', () => {
        for (const address of ['172.32.0.1', '11.0.0.1', '192.169.0.1']) {
          expect(addressRefusal(address, 'public'), address).to.equal(undefined);
        }
      });
    });
  });
});
