import { createSocket, type Socket } from 'node:dgram';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { VigilError } from '../../src/domain/errors.js';
import { createHostResolver } from '../../src/egress/host-resolver.js';
import { tempDir } from '../helpers/harness.js';

/** A DNS server on loopback: `nxdomain` answers every query "no such name", `silent` answers none. */
async function dnsServer(
  mode: 'nxdomain' | 'silent',
): Promise<{ address: string; socket: Socket }> {
  const socket = createSocket('udp4');
  socket.on('message', (query, peer) => {
    if (mode === 'silent' || query.length < 12) return;
    const answer = Buffer.from(query);
    answer[2] = 0x81; // QR, RD
    answer[3] = 0x83; // RA, RCODE 3 (NXDOMAIN)
    socket.send(answer, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { address: `127.0.0.1:${socket.address().port}`, socket };
}

async function reason(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return error instanceof VigilError ? error.reason : `not a VigilError: ${String(error)}`;
  }
  return 'resolved';
}

describe('host resolver (hosts file, then c-ares)', () => {
  let dir: string;
  let hostsFile: string;
  const sockets: Socket[] = [];
  beforeEach(() => {
    dir = tempDir('vigil-hosts-');
    hostsFile = join(dir, 'hosts');
    writeFileSync(
      hostsFile,
      '# comment\n10.1.2.3 Runtime.Internal alias.internal\n::1 v6.internal\n',
    );
  });
  afterEach(() => {
    for (const socket of sockets.splice(0)) socket.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('when the hosts file lists the name', () => {
    it('answers from it, case-insensitively and for every alias, without asking DNS', async () => {
      const silent = await dnsServer('silent');
      sockets.push(silent.socket);
      const resolve = createHostResolver({
        timeoutMs: 5_000,
        tries: 3,
        hostsFile,
        servers: [silent.address],
      });
      expect(await resolve('runtime.internal')).to.deep.equal(['10.1.2.3']);
      expect(await resolve('alias.internal.')).to.deep.equal(['10.1.2.3']);
      expect(await resolve('v6.internal')).to.deep.equal(['::1']);
    });
  });

  describe('when DNS says the name does not exist', () => {
    it('resolves no addresses (a definitive answer)', async () => {
      const nx = await dnsServer('nxdomain');
      sockets.push(nx.socket);
      const resolve = createHostResolver({
        timeoutMs: 2_000,
        tries: 2,
        hostsFile,
        servers: [nx.address],
      });
      expect(await resolve('nowhere.example.test')).to.deep.equal([]);
    });
  });

  describe('when DNS never answers', () => {
    it('rejects with URL_RESOLVE_UNAVAILABLE after its tries', async () => {
      const silent = await dnsServer('silent');
      sockets.push(silent.socket);
      const resolve = createHostResolver({
        timeoutMs: 100,
        tries: 2,
        hostsFile,
        servers: [silent.address],
      });
      expect(await reason(resolve('never.example.test'))).to.equal('URL_RESOLVE_UNAVAILABLE');
    });

    it('still answers hosts-file names while many such queries are pending', async () => {
      const silent = await dnsServer('silent');
      sockets.push(silent.socket);
      const resolve = createHostResolver({
        timeoutMs: 1_000,
        tries: 1,
        hostsFile,
        servers: [silent.address],
      });
      const pending = Array.from({ length: 20 }, (_, i) =>
        reason(resolve(`never-${i}.example.test`)),
      );
      const order: string[] = [];
      const hung = Promise.all(pending).then(() => order.push('hung'));
      await resolve('runtime.internal').then(() => order.push('hosts'));
      await hung;
      expect(order).to.deep.equal(['hosts', 'hung']);
    });

    it('stops waiting when the caller aborts', async () => {
      const silent = await dnsServer('silent');
      sockets.push(silent.socket);
      const resolve = createHostResolver({
        timeoutMs: 60_000,
        tries: 5,
        hostsFile,
        servers: [silent.address],
      });
      const controller = new AbortController();
      const waiting = resolve('never.example.test', controller.signal).then(
        () => 'resolved',
        () => 'rejected',
      );
      controller.abort();
      expect(await waiting).to.equal('rejected');
      // Aborted once the query is out, too.
      const later = new AbortController();
      const out = resolve('never-2.example.test', later.signal).then(
        () => 'resolved',
        () => 'rejected',
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      later.abort();
      expect(await out).to.equal('rejected');
    });
  });

  describe('when the name is localhost', () => {
    it('is loopback even when the hosts file does not list it (RFC 6761)', async () => {
      const resolve = createHostResolver({
        timeoutMs: 100,
        tries: 1,
        hostsFile: join(dir, 'missing'),
      });
      expect(await resolve('localhost')).to.deep.equal(['127.0.0.1', '::1']);
      expect(await resolve('agent.localhost')).to.deep.equal(['127.0.0.1', '::1']);
    });
  });
});
