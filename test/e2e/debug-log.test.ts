import { expect } from 'chai';
import pino from 'pino';
import { Writable } from 'node:stream';
import { CONTROL_TOKEN, startHarness } from '../helpers/harness.js';
import { call } from '../helpers/rpc.js';

describe('--log-level debug', () => {
  it('logs one line per finished RPC with its method, code and duration', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n'))
          if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const harness = await startHarness({ logger: pino({ level: 'debug' }, sink) });
    try {
      const { control } = harness.clients;
      await call(control, control.getWorkspace, { workspaceId: 'ws-none' }, CONTROL_TOKEN).catch(
        () => undefined,
      );
      await call(
        control,
        control.createWorkspace,
        { workspaceId: 'ws-dbg', name: 'dbg' },
        CONTROL_TOKEN,
      );
    } finally {
      await harness.dispose();
    }
    const rpcs = lines.filter((l) => l['msg'] === 'rpc finished');
    expect(rpcs.map((l) => [l['method'], l['code']])).to.deep.equal([
      ['GetWorkspace', 'NOT_FOUND'],
      ['CreateWorkspace', 'OK'],
    ]);
    expect(rpcs[0]!['ms']).to.be.a('number');
  });
});
