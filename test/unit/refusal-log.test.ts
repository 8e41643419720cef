import { expect } from 'chai';
import pino from 'pino';
import { Writable } from 'node:stream';
import { createRefusalLog } from '../../src/transport/refusal-log.js';

function capture(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('refusal log', () => {
  it('logs the first refusal of each reason in a window and counts the rest', async () => {
    const { logger, lines } = capture();
    const log = createRefusalLog(logger, 60_000);
    for (let i = 0; i < 1_000; i += 1) log.refused('TOKEN_INVALID', { method: 'Register', i });
    log.refused('TOKEN_MISSING', { method: 'Heartbeat' });
    await settle();
    expect(lines.map((l) => [l['msg'], l['method'], l['i']])).to.deep.equal([
      ['rpc failed', 'Register', 0],
      ['rpc failed', 'Heartbeat', undefined],
    ]);
    log.close();
    await settle();
    expect(lines.slice(2).map((l) => [l['reason'], l['suppressed']])).to.deep.equal([
      ['TOKEN_INVALID', 999],
    ]);
  });

  it('starts a new window once the last one ended', async () => {
    const { logger, lines } = capture();
    const log = createRefusalLog(logger, 20);
    log.refused('TOKEN_INVALID', { n: 1 });
    log.refused('TOKEN_INVALID', { n: 2 });
    await new Promise((resolve) => setTimeout(resolve, 60));
    log.refused('TOKEN_INVALID', { n: 3 });
    log.close();
    await settle();
    expect(lines.map((l) => [l['n'], l['suppressed']])).to.deep.equal([
      [1, undefined],
      [undefined, 1],
      [3, undefined],
    ]);
  });
});
