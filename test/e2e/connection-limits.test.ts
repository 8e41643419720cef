import { connect as http2Connect, constants, type ClientHttp2Session } from 'node:http2';
import { connect as tcpConnect } from 'node:net';
import { expect } from 'chai';
import type { ConnectionLimits } from '../../src/transport/server.js';
import { startHarness, type Harness } from '../helpers/harness.js';

/**
 * Finite HTTP/2 limits on every connection, seen from raw clients (Node's
 * http2 and plain sockets), not grpc-js: the settings the server advertises,
 * a header list over the limit, and idle connections — with streams that
 * ended, and raw sockets that never sent the HTTP/2 preface — being closed.
 */
/**
 * For each test of the enclosing describe: a server with these connection
 * limits, and raw HTTP/2 sessions to it (each resolved once the server's
 * SETTINGS arrived), all closed after the test.
 */
function rawHttp2Server(connectionLimits: ConnectionLimits) {
  let harness: Harness | undefined;
  const sessions: ClientHttp2Session[] = [];
  const port = (): number => {
    if (!harness) throw new Error('no server: call from a test');
    return harness.vigil.port;
  };
  beforeEach(async () => {
    harness = await startHarness({ settings: { connectionLimits } });
  });
  afterEach(async () => {
    for (const session of sessions.splice(0)) session.destroy();
    await harness?.dispose();
  });
  return {
    port,
    async session(): Promise<ClientHttp2Session> {
      const client = http2Connect(`http://127.0.0.1:${port()}`);
      sessions.push(client);
      client.on('error', () => undefined);
      await new Promise((resolve) => client.once('remoteSettings', resolve));
      return client;
    },
  };
}

describe('HTTP/2 and connection limits', () => {
  const { port, session } = rawHttp2Server({
    maxConcurrentStreams: 8,
    maxHeaderListBytes: 4096,
    maxSessionMemoryMiB: 4,
    idleTimeoutMs: 300,
    minPingIntervalMs: 0,
  });

  it('advertises finite MAX_CONCURRENT_STREAMS and MAX_HEADER_LIST_SIZE', async () => {
    const client = await session();
    expect(client.remoteSettings.maxConcurrentStreams).to.equal(8);
    expect(client.remoteSettings.maxHeaderListSize).to.equal(4096);
  });

  it('does not answer a request whose header list is over the limit', async () => {
    const client = await session();
    const stream = client.request({
      ':method': 'POST',
      ':path': '/grpc.health.v1.Health/Check',
      'content-type': 'application/grpc',
      te: 'trailers',
      'x-padding': 'p'.repeat(8 * 1024),
    });
    const outcome = await new Promise<string>((resolve) => {
      stream.on('response', (headers) => {
        resolve(`answered ${String(headers[':status'])}`);
      });
      stream.on('error', () => {
        resolve('refused');
      });
      stream.on('close', () => {
        resolve(`closed ${stream.rstCode}`);
      });
      stream.end(Buffer.from([0, 0, 0, 0, 0]));
    });
    expect(outcome).to.not.match(/^answered/);
  });

  it('answers a request within the limits (the limits are not refusing everything)', async () => {
    const client = await session();
    const stream = client.request({
      ':method': 'POST',
      ':path': '/grpc.health.v1.Health/Check',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const status = await new Promise<unknown>((resolve, reject) => {
      stream.on('response', (headers) => {
        resolve(headers[':status']);
      });
      stream.on('error', reject);
      stream.end(Buffer.from([0, 0, 0, 0, 0]));
    });
    expect(status).to.equal(200);
    stream.resume();
  });

  it('closes a connection that stays idle (GOAWAY)', async () => {
    const client = await session();
    const code = await new Promise<number>((resolve) => client.once('goaway', resolve));
    expect(code).to.equal(constants.NGHTTP2_NO_ERROR);
  });

  it('closes a raw TCP connection that never sends the HTTP/2 preface', async () => {
    const socket = tcpConnect(port(), '127.0.0.1');
    socket.on('error', () => undefined);
    socket.resume();
    await new Promise<void>((resolve) =>
      socket.once('close', () => {
        resolve();
      }),
    );
    expect(socket.destroyed).to.equal(true);
  });
});

/** Keepalive enforcement, seen from raw HTTP/2 clients sending PING frames. */
describe('HTTP/2 ping limit', () => {
  const MIN_PING_MS = 1_000;
  const { session } = rawHttp2Server({
    maxConcurrentStreams: 8,
    maxHeaderListBytes: 4096,
    maxSessionMemoryMiB: 4,
    idleTimeoutMs: 60_000,
    minPingIntervalMs: MIN_PING_MS,
  });

  const ping = (client: ClientHttp2Session) =>
    new Promise<boolean>((resolve) => {
      const sent = client.ping((error) => {
        resolve(!error);
      });
      if (!sent) resolve(false);
    });

  it('closes a connection that keeps pinging sooner than the minimum (GOAWAY ENHANCE_YOUR_CALM)', async () => {
    const client = await session();
    const goaway = new Promise<{ code: number; data: string }>((resolve) =>
      client.once('goaway', (code: number, _last: number, data?: Buffer) => {
        resolve({ code, data: data?.toString() ?? '' });
      }),
    );
    // Back to back: the first is in time, the next two are strikes, the third strike closes it.
    for (let i = 0; i < 4; i += 1) await ping(client);
    const { code, data } = await goaway;
    expect(code).to.equal(constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(data).to.equal('too_many_pings');
    await new Promise((resolve) => client.once('close', resolve));
  });

  it('keeps a connection whose pings respect the minimum, and tolerates two early ones', async () => {
    const client = await session();
    let away = false;
    client.once('goaway', () => {
      away = true;
    });
    // Two strikes, then pings in time (which clear them), then two strikes again.
    expect(await ping(client)).to.equal(true);
    expect(await ping(client)).to.equal(true);
    expect(await ping(client)).to.equal(true);
    for (let i = 0; i < 2; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, MIN_PING_MS + 200));
      expect(await ping(client)).to.equal(true);
    }
    expect(await ping(client)).to.equal(true);
    expect(await ping(client)).to.equal(true);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(away, 'a GOAWAY came').to.equal(false);
    expect(client.closed).to.equal(false);
  });
});
