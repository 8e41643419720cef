import { connect as http2Connect, constants, type ClientHttp2Session } from 'node:http2';
import { connect as tcpConnect } from 'node:net';
import { expect } from 'chai';
import { startHarness, type Harness } from '../helpers/harness.js';

/**
 * Finite HTTP/2 limits on every connection, seen from raw clients (Node's
 * http2 and plain sockets), not grpc-js: the settings the server advertises,
 * a header list over the limit, and idle connections — with streams that
 * ended, and raw sockets that never sent the HTTP/2 preface — being closed.
 */
describe('HTTP/2 and connection limits', () => {
  let h: Harness;
  const sessions: ClientHttp2Session[] = [];
  beforeEach(async () => {
    h = await startHarness({
      settings: {
        connectionLimits: {
          maxConcurrentStreams: 8,
          maxHeaderListBytes: 4096,
          maxSessionMemoryMiB: 4,
          idleTimeoutMs: 300,
        },
      },
    });
  });
  afterEach(async () => {
    for (const session of sessions.splice(0)) session.destroy();
    await h.dispose();
  });

  function session(): Promise<ClientHttp2Session> {
    const client = http2Connect(`http://127.0.0.1:${h.vigil.port}`);
    sessions.push(client);
    client.on('error', () => undefined);
    return new Promise((resolve) =>
      client.once('remoteSettings', () => {
        resolve(client);
      }),
    );
  }

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
    const socket = tcpConnect(h.vigil.port, '127.0.0.1');
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
