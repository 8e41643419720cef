import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import {
  createWorkspace,
  getWorkspace,
  listTransitions,
  registerRequest,
} from '../helpers/e2e-fixtures.js';
import { startHarness, type Harness } from '../helpers/harness.js';
import { call, expectRpcError } from '../helpers/rpc.js';

/**
 * What is validated is what is stored: a Register URL is checked with
 * WHATWG's parser (Node's), but whoever calls it later may use another.
 * Two unrelated parsers read back what Vigil stored — Debian's Python
 * `urllib.parse` and curl, sending to a local listener with `--connect-to`
 * — and must find the very host that was checked; a URL they read
 * differently from WHATWG is refused, with nothing stored.
 */

const PYTHON = '/usr/bin/python3';
const CURL = '/usr/bin/curl';

function run(file: string, args: readonly string[], input = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { timeout: 15_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} failed: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
    child.stdin?.end(input);
  });
}

/** Host (without IPv6 brackets, lowercased) and port each URL has for Python's urllib.parse. */
async function pythonHosts(urls: readonly string[]): Promise<{ host: string; port: string }[]> {
  const script = [
    'import json, sys',
    'from urllib.parse import urlsplit',
    'out = []',
    'for u in json.load(sys.stdin):',
    '    s = urlsplit(u)',
    '    out.append({"host": s.hostname or "", "port": str(s.port or "")})',
    'print(json.dumps(out))',
  ].join('\n');
  return JSON.parse(await run(PYTHON, ['-c', script], JSON.stringify(urls))) as {
    host: string;
    port: string;
  }[];
}

/** WHATWG's host of `url`, in the form Python's `hostname` has. */
function whatwgHost(url: string): string {
  return new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
}

/** A loopback HTTP listener recording each request's target and Host header. */
async function recordingListener(): Promise<{
  readonly port: number;
  readonly requests: { target: string; host: string }[];
  close(): Promise<void>;
}> {
  const requests: { target: string; host: string }[] = [];
  const server: Server = createServer((socket) => {
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [requestLine = '', ...headers] = head.slice(0, end).split('\r\n');
      const host = headers.find((line) => /^host:/i.test(line))?.replace(/^host:\s*/i, '') ?? '';
      requests.push({ target: requestLine.split(' ')[1] ?? '', host });
      socket.end('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n');
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.close(() => {
          resolve();
        });
      }),
  };
}

/** URLs some parsers read with another host than WHATWG's (or with CR/LF WHATWG drops). */
const DIFFERENTIALS: readonly { readonly url: string; readonly policy: 'local' | 'public' }[] = [
  { url: 'http://127.0.0.1\\@169.254.169.254/latest/meta-data/', policy: 'local' },
  { url: 'http://93.184.215.14\\@169.254.169.254/latest/meta-data/', policy: 'public' },
  { url: 'http://127.0.0.1:8000\\@169.254.169.254:80/', policy: 'local' },
  { url: 'http://169.254.169.254\r\n@127.0.0.1/', policy: 'local' },
  { url: 'http://127.0.0.1/\r\nHost: 169.254.169.254', policy: 'local' },
  { url: 'http://127.0.0.1\t.example/', policy: 'local' },
];

/** Tricky but unambiguous URLs: WHATWG rewrites them, and only the rewritten form is stored. */
const ACCEPTED: readonly string[] = [
  'http://127.0.0.1:8000',
  'HTTP://LocalHost:8000/A2A/../a2a?x=1#frag',
  'http://0x7f.0.0.1:8080/',
  'http://2130706433/',
  'http://127.1/agent',
  'http://[::FFFF:127.0.0.1]:8080/p',
  'http://runtime.internal:80/a%2fb/c"d<e>',
  'http://runtime.internal/é?q=ü',
];

describe('Register URLs read by independent parsers (Python urllib.parse, curl)', function () {
  before(function () {
    // Debian's python3 (with its urllib) and curl are the independent parsers; both optional here.
    if (!existsSync(PYTHON)) this.skip();
  });

  for (const { url, policy } of DIFFERENTIALS) {
    describe(`when ${JSON.stringify(url)} is registered under the ${policy} policy`, () => {
      let h: Harness;
      beforeEach(async () => {
        h = await startHarness({ settings: { urlPolicy: policy } });
      });
      afterEach(async () => {
        await h.dispose();
      });

      it('is read differently by WHATWG and urllib, and is refused with nothing stored', async () => {
        let whatwg = '';
        try {
          whatwg = new URL(url).href;
        } catch {
          // Unparseable for WHATWG: a differential too.
        }
        const [python] = await pythonHosts([url]);
        // The test means something only if the parsers really disagree (or CR/LF would be stored).
        expect(
          whatwg === '' || whatwgHost(url) !== python?.host || whatwg !== url,
          'the parsers agree',
        ).to.equal(true);

        const created = await createWorkspace(h, 'ws-a');
        const before = await listTransitions(h, 'ws-a');
        const { runtime } = h.clients;
        await expectRpcError(
          call(
            runtime,
            runtime.register,
            // A card every policy allows, so only the URL can be refused.
            registerRequest('ws-a', {
              url,
              agentCard: { name: 'a', url: 'http://93.184.215.14/' },
            }),
            created.token,
          ),
          status.INVALID_ARGUMENT,
          'URL_VALIDATE_FAILED',
        );
        const stored = await getWorkspace(h, 'ws-a');
        expect(stored.url).to.equal('');
        expect(stored.agentCard).to.equal(undefined);
        // PROVISIONING stays PROVISIONING (the refusal stamps only the marker).
        expect(await listTransitions(h, 'ws-a')).to.deep.equal(before);
      });
    });
  }

  describe('when tricky but unambiguous URLs are registered', () => {
    let h: Harness;
    beforeEach(async () => {
      h = await startHarness();
    });
    afterEach(async () => {
      await h.dispose();
    });

    async function registerAll(): Promise<string[]> {
      const stored: string[] = [];
      for (const [i, url] of ACCEPTED.entries()) {
        const id = `ws-${i}`;
        const created = await createWorkspace(h, id);
        const { runtime } = h.clients;
        const response = await call(
          runtime,
          runtime.register,
          registerRequest(id, { url }),
          created.token,
        );
        expect(response.workspace?.url).to.equal((await getWorkspace(h, id)).url);
        stored.push(response.workspace?.url ?? '');
      }
      return stored;
    }

    it('stores only the canonical form, and urllib reads the host that was checked', async () => {
      const stored = await registerAll();
      for (const [i, url] of stored.entries()) expect(url, ACCEPTED[i]).to.equal(new URL(url).href);
      const python = await pythonHosts(stored);
      for (const [i, url] of stored.entries()) {
        expect(python[i]?.host, url).to.equal(whatwgHost(url));
        expect(python[i]?.port, url).to.equal(new URL(url).port);
      }
    });

    it('curl sends the stored URL with the Host and path that were checked', async function () {
      // curl is installed by .ci/run; on a machine without it this check cannot run.
      if (!existsSync(CURL)) this.skip();
      const stored = await registerAll();
      const listener = await recordingListener();
      try {
        for (const url of stored) {
          await run(CURL, [
            '-s',
            '-o',
            '/dev/null',
            '--max-time',
            '10',
            '--noproxy',
            '*',
            '--connect-to',
            `::127.0.0.1:${listener.port}`,
            '--',
            url,
          ]);
        }
      } finally {
        await listener.close();
      }
      expect(listener.requests).to.have.length(stored.length);
      for (const [i, url] of stored.entries()) {
        const parsed = new URL(url);
        expect(listener.requests[i]?.host, url).to.equal(parsed.host);
        expect(listener.requests[i]?.target, url).to.equal(`${parsed.pathname}${parsed.search}`);
      }
    });
  });
});
