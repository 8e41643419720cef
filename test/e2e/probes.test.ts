import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'chai';
import { startHarness, type Harness } from '../helpers/harness.js';
import { onEtcd } from '../helpers/suite-store.js';

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.text() };
}

function chattr(flag: '+i' | '-i', files: readonly string[]): boolean {
  try {
    execFileSync('chattr', [flag, ...files], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('HTTP probes (/healthz, /readyz)', () => {
  let harness: Harness;
  let immutable: string[] = [];

  beforeEach(async () => {
    harness = await startHarness({ settings: { metricsListen: '127.0.0.1:0' } });
  });

  afterEach(async () => {
    if (immutable.length > 0) chattr('-i', immutable);
    immutable = [];
    await harness.dispose();
  });

  describe('when the server is up', () => {
    it('answers /healthz 200 and /readyz 200 on the metrics port', async () => {
      const port = harness.vigil.metricsPort!;
      expect(await get(port, '/healthz')).to.deep.equal({ status: 200, body: 'ok\n' });
      expect(await get(port, '/readyz')).to.deep.equal({ status: 200, body: 'ready\n' });
      expect((await get(port, '/nope')).body).to.include('/readyz');
    });
  });

  describe('when the database stops taking writes', () => {
    it('answers /readyz 503 naming the store, /healthz still 200, and ready again once writable', async function () {
      if (onEtcd) this.skip();
      const port = harness.vigil.metricsPort!;
      const files = ['vigil.db', 'vigil.db-wal'].map((f) => join(harness.dataDir, f));
      // An immutable file refuses writes even to root and to descriptors already open.
      if (!chattr('+i', files)) this.skip();
      immutable = files;
      const notReady = await get(port, '/readyz');
      expect(notReady.status).to.equal(503);
      expect(notReady.body).to.match(/^not ready: store: /);
      expect((await get(port, '/healthz')).status).to.equal(200);

      chattr('-i', files);
      immutable = [];
      expect(await get(port, '/readyz')).to.deep.equal({ status: 200, body: 'ready\n' });
    });
  });
});
