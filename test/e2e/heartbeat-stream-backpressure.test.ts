import { connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { expect } from 'chai';
import { HeartbeatStreamRequest } from '../../gen/vigil/v1/runtime_service.js';
import { heartbeatRequest, onlineWorkspace } from '../helpers/e2e-fixtures.js';
import { CONTROL_TOKEN, startHarness, type Harness } from '../helpers/harness.js';
import { call } from '../helpers/rpc.js';

/** One gRPC length-prefixed frame. */
function frame(requestId: number, workspaceId: string): Buffer {
  const message = Buffer.from(
    HeartbeatStreamRequest.encode({ requestId, heartbeat: heartbeatRequest(workspaceId) }).finish(),
  );
  const framed = Buffer.alloc(5 + message.length);
  framed.writeUInt32BE(message.length, 1);
  message.copy(framed, 5);
  return framed;
}

describe('HeartbeatStream whose client stops reading (raw HTTP/2)', () => {
  let h: Harness;
  let session: ClientHttp2Session;
  let stream: ClientHttp2Stream;
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);

  beforeEach(async () => {
    process.on('unhandledRejection', onRejection);
    rejections.length = 0;
    h = await startHarness();
    const { token } = await onlineWorkspace(h, 'ws-bp');
    // A tiny receive window and no reading: the server's writes soon return false.
    session = connect(`http://127.0.0.1:${h.vigil.port}`, {
      settings: { initialWindowSize: 1024 },
    });
    session.on('error', () => undefined);
    stream = session.request({
      ':method': 'POST',
      ':path': '/vigil.v1.RuntimeService/HeartbeatStream',
      'content-type': 'application/grpc',
      te: 'trailers',
      authorization: `Bearer ${token}`,
    });
    stream.on('error', () => undefined);
    stream.pause();
    for (let i = 1; i <= 400; i += 1) stream.write(frame(i, 'ws-bp'));
    // Let the server answer until its writes are held back.
    await new Promise((resolve) => setTimeout(resolve, 500));
  });

  afterEach(async () => {
    session.destroy();
    await h.dispose();
    process.off('unhandledRejection', onRejection);
  });

  it('ends the stream on revocation without an unhandled rejection, and keeps serving', async () => {
    await call(
      h.clients.control,
      h.clients.control.revokeWorkspaceTokens,
      { workspaceId: 'ws-bp' },
      CONTROL_TOKEN,
    );
    stream.write(frame(5_000, 'ws-bp'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(rejections).to.deep.equal([]);
    const other = await onlineWorkspace(h, 'ws-other');
    expect(other.token).to.be.a('string');
  });

  it('shuts down without an unhandled rejection', async () => {
    await h.stop();
    await new Promise((resolve) => setImmediate(resolve));
    expect(rejections).to.deep.equal([]);
  });
});
