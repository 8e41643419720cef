import { Client, credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { HeartbeatRequest, HeartbeatStreamResponse } from '../../gen/vigil/v1/runtime_service.js';
import { createWorkspace, heartbeatRequest, register } from '../helpers/e2e-fixtures.js';
import { startHarness, type Harness } from '../helpers/harness.js';
import { bearer } from '../helpers/rpc.js';

/**
 * A HeartbeatStream message the server cannot apply as sent — undecodable,
 * or over the message limit — is still answered with the `request_id` its
 * bytes carry, so a client can tell which of its heartbeats was refused.
 * The messages are sent as raw bytes: no generated client would encode them.
 */
describe('HeartbeatStream answers to messages it cannot decode', () => {
  let h: Harness;
  let raw: Client;
  beforeEach(async () => {
    h = await startHarness();
    raw = new Client(`127.0.0.1:${h.vigil.port}`, credentials.createInsecure());
  });
  afterEach(async () => {
    raw.close();
    await h.dispose();
  });

  it('echoes the request_id of an undecodable and of an oversized message', async () => {
    const created = await createWorkspace(h, 'ws-a');
    await register(h, 'ws-a', created.token);
    const stream = raw.makeBidiStreamRequest(
      '/vigil.v1.RuntimeService/HeartbeatStream',
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => HeartbeatStreamResponse.decode(bytes),
      bearer(created.token),
    );
    const answers: HeartbeatStreamResponse[] = [];
    const three = new Promise<void>((resolve, reject) => {
      stream.on('data', (answer: HeartbeatStreamResponse) => {
        answers.push(answer);
        if (answers.length === 3) resolve();
      });
      stream.on('error', reject);
    });
    // request_id 7, then field 2 announcing 5 bytes and ending after one.
    stream.write(Buffer.from([0x08, 0x07, 0x12, 0x05, 0x0a]));
    // request_id 9 and a heartbeat over the 1 MiB limit (under grpc-js's own, twice that).
    const big = HeartbeatRequest.encode(
      heartbeatRequest('ws-a', { currentTask: 'x'.repeat(1536 * 1024) }),
    ).finish();
    const header = Buffer.from([0x08, 0x09, 0x12]);
    const length: number[] = [];
    for (let v = big.length; ; v >>>= 7) {
      if (v < 128) {
        length.push(v);
        break;
      }
      length.push((v & 127) | 128);
    }
    stream.write(Buffer.concat([header, Buffer.from(length), big]));
    // A good one after them: the stream stayed open.
    stream.write(
      Buffer.concat([
        Buffer.from([0x08, 0x0b, 0x12]),
        (() => {
          const ok = HeartbeatRequest.encode(heartbeatRequest('ws-a')).finish();
          return Buffer.concat([Buffer.from([ok.length]), ok]);
        })(),
      ]),
    );
    await three;
    stream.end();
    expect(answers.map((a) => a.requestId)).to.deep.equal([7, 9, 11]);
    expect(answers[0]?.result?.$case === 'error' && answers[0].result.value.reason).to.equal(
      'MESSAGE_MALFORMED',
    );
    expect(answers[1]?.result?.$case === 'error' && answers[1].result.value.reason).to.equal(
      'MESSAGE_TOO_LARGE',
    );
    expect(answers[2]?.result?.$case).to.equal('heartbeat');
  });
});
