import { rmSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import {
  VigilClientError,
  createControlClient,
  tlsCredentials,
  type ConnectOptions,
} from '../../src/client/index.js';
import { makeTestPki, type TestPki } from '../helpers/certs.js';
import { CONTROL_TOKEN, startHarness, tempDir, type Harness } from '../helpers/harness.js';
import { freePort, vigil } from '../helpers/processes.js';

describe('TLS and mTLS', function () {
  this.timeout(30_000);
  let pkiDir: string;
  let pki: TestPki;
  let h: Harness | undefined;

  before(() => {
    pkiDir = tempDir('vigil-pki-');
    pki = makeTestPki(pkiDir);
  });

  after(() => {
    rmSync(pkiDir, { recursive: true, force: true });
  });

  afterEach(async () => {
    await h?.dispose();
    h = undefined;
  });

  async function serve(mtls: boolean): Promise<string> {
    h = await startHarness({
      settings: {
        tls: {
          cert: pki.read(pki.serverCert),
          key: pki.read(pki.serverKey),
          ...(mtls ? { clientCa: pki.read(pki.caCert) } : {}),
        },
      },
    });
    return `127.0.0.1:${h.vigil.port}`;
  }

  /** Lists workspaces; resolves with the error code, or 'ok'. */
  async function attempt(options: Omit<ConnectOptions, 'token'>): Promise<'ok' | status> {
    const client = createControlClient({ ...options, token: CONTROL_TOKEN });
    try {
      await client.listWorkspaces({}, { timeoutMs: 5_000 });
      return 'ok';
    } catch (error) {
      expect(error).to.be.instanceOf(VigilClientError);
      return (error as VigilClientError).code;
    } finally {
      client.close();
    }
  }

  describe('when the server serves TLS', () => {
    it('accepts a client that trusts its CA', async () => {
      const server = await serve(false);
      expect(
        await attempt({ server, credentials: tlsCredentials({ ca: pki.read(pki.caCert) }) }),
      ).to.equal('ok');
    });

    it('refuses a plaintext client', async () => {
      const server = await serve(false);
      expect(await attempt({ server })).to.equal(status.UNAVAILABLE);
    });

    it('is refused by a client that trusts another CA', async () => {
      const server = await serve(false);
      expect(
        await attempt({ server, credentials: tlsCredentials({ ca: pki.read(pki.otherCaCert) }) }),
      ).to.equal(status.UNAVAILABLE);
    });
  });

  describe('when the server requires client certificates (mTLS)', () => {
    it('refuses a client without a certificate', async () => {
      const server = await serve(true);
      expect(
        await attempt({ server, credentials: tlsCredentials({ ca: pki.read(pki.caCert) }) }),
      ).to.equal(status.UNAVAILABLE);
    });

    it('accepts a client with a certificate from the client CA', async () => {
      const server = await serve(true);
      const credentials = tlsCredentials({
        ca: pki.read(pki.caCert),
        cert: pki.read(pki.clientCert),
        key: pki.read(pki.clientKey),
      });
      expect(await attempt({ server, credentials })).to.equal('ok');
    });
  });

  describe('with the real vigil command on both sides', () => {
    it('serves mTLS with --tls-cert/--tls-key/--tls-client-ca and the CLI connects with --tls-ca/--tls-cert/--tls-key', async () => {
      const dataDir = tempDir();
      const port = await freePort();
      const server = vigil(
        [
          'serve',
          '--listen',
          `127.0.0.1:${port}`,
          '--data-dir',
          dataDir,
          '--metrics-listen',
          'off',
          '--tls-cert',
          pki.serverCert,
          '--tls-key',
          pki.serverKey,
          '--tls-client-ca',
          pki.caCert,
        ],
        { VIGIL_CONTROL_TOKEN: CONTROL_TOKEN },
      );
      try {
        const listening = JSON.parse(
          await server.waitForLine((l) => l.includes('"listening"')),
        ) as { tls: string };
        expect(listening.tls).to.equal('mtls');
        const common = ['--server', `127.0.0.1:${port}`, '--tls-ca', pki.caCert];
        const ok = vigil(
          [
            'workspace',
            'create',
            'ws-tls',
            '--json',
            ...common,
            '--tls-cert',
            pki.clientCert,
            '--tls-key',
            pki.clientKey,
          ],
          { VIGIL_CONTROL_TOKEN: CONTROL_TOKEN },
        );
        expect(JSON.parse(await ok.waitForLine(() => true))).to.have.nested.property(
          'workspace.id',
          'ws-tls',
        );
        const noCert = vigil(['workspace', 'list', ...common], {
          VIGIL_CONTROL_TOKEN: CONTROL_TOKEN,
        });
        expect(await noCert.exited()).to.equal(1);
        expect(noCert.stderr.join('\n')).to.include('UNAVAILABLE');
      } finally {
        await server.kill('SIGKILL');
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });
});
