import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import { tempDir } from '../helpers/harness.js';
import { VIGIL_MAIN, vigil, type Proc } from '../helpers/processes.js';
import { onEtcd, suiteEtcdSettings } from '../helpers/suite-store.js';

interface Outcome {
  readonly code: number | null;
  readonly stdout: string[];
  readonly stderr: string[];
}

/** Runs `vigil serve ARGS` to its end (a start that fails ends by itself). */
async function serveOnce(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  as?: { uid: number; gid: number },
): Promise<Outcome> {
  const child = spawn(process.execPath, [VIGIL_MAIN, 'serve', ...args], {
    env: { ...process.env, VIGIL_CONTROL_TOKEN: undefined, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(as ?? {}),
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  const lines = (text: string) => text.split('\n').filter((l) => l !== '');
  return { code, stdout: lines(out), stderr: lines(err) };
}

async function holdPort(): Promise<{ server: Server; address: string }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { server, address: `127.0.0.1:${port}` };
}

function startServer(dataDir: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Proc {
  return vigil(
    [
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--metrics-listen',
      'off',
      '--data-dir',
      dataDir,
      ...extra,
    ],
    { VIGIL_CONTROL_TOKEN: undefined, ...env },
  );
}

describe('vigil serve start failures', function () {
  this.timeout(60_000);
  let root: string;

  beforeEach(() => {
    root = tempDir();
  });

  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
  });

  describe('when a second server is started on a data directory in use', () => {
    let first: Proc | undefined;

    afterEach(async () => {
      await first?.kill('SIGKILL');
      first = undefined;
    });

    it('exits 1 with one line naming the holder, and the first keeps serving', async function () {
      if (onEtcd) this.skip();
      const dir = join(root, 'data');
      first = startServer(dir);
      const listening = await first.waitForLine((l) => l.includes('"listening"'), 30_000);
      const before = readdirSync(dir).sort();

      const second = await serveOnce([
        '--listen',
        '127.0.0.1:0',
        '--metrics-listen',
        'off',
        '--data-dir',
        dir,
      ]);
      expect(second.code).to.equal(1);
      expect(second.stderr).to.have.length(1);
      expect(second.stderr[0]).to.include(
        `data directory ${dir} is in use by pid ${first.child.pid}`,
      );
      expect(second.stderr[0]).to.include(join(dir, 'vigil.lock'));
      expect(second.stdout).to.deep.equal([]);
      expect(readdirSync(dir).sort()).to.deep.equal(before);
      expect(first.child.exitCode).to.equal(null);
      expect(listening).to.include('"listening"');
    });

    it('lets the next server in once the holder has crashed (the OS drops the lock)', async function () {
      if (onEtcd) this.skip();
      const dir = join(root, 'data');
      first = startServer(dir);
      await first.waitForLine((l) => l.includes('"listening"'), 30_000);
      await first.kill('SIGKILL');
      first = startServer(dir);
      await first.waitForLine((l) => l.includes('"listening"'), 30_000);
      expect(first.child.exitCode).to.equal(null);
    });

    it('locks the directory of the control token in cluster mode too', async function () {
      if (!onEtcd) this.skip();
      const dir = join(root, 'data');
      const etcd = await suiteEtcdSettings(dir);
      const flags = (replica: string) => [
        '--store',
        'etcd',
        '--etcd-endpoints',
        etcd!.endpoints.join(','),
        '--etcd-prefix',
        etcd!.prefix,
        '--replica-id',
        replica,
      ];
      first = startServer(dir, flags('r-one'));
      await first.waitForLine((l) => l.includes('"listening"'), 30_000);
      const second = await serveOnce([
        '--listen',
        '127.0.0.1:0',
        '--metrics-listen',
        'off',
        '--data-dir',
        dir,
        ...flags('r-two'),
      ]);
      expect(second.code).to.equal(1);
      expect(second.stderr).to.have.length(1);
      expect(second.stderr[0]).to.include(`is in use by pid ${first.child.pid}`);
    });
  });

  describe('when an address cannot be bound', () => {
    let held: Server | undefined;

    afterEach(() => {
      held?.close();
      held = undefined;
    });

    it('says which setting in one line, exits 1 and writes nothing', async function () {
      if (onEtcd) this.skip();
      const port = await holdPort();
      held = port.server;
      const dir = join(root, 'fresh', 'data');
      for (const [args, env, source] of [
        [['--listen', port.address, '--metrics-listen', 'off'], {}, '--listen'],
        [['--metrics-listen', '127.0.0.1:0'], { VIGIL_LISTEN: port.address }, 'VIGIL_LISTEN'],
        [
          ['--listen', '127.0.0.1:0'],
          { VIGIL_METRICS_LISTEN: port.address },
          'VIGIL_METRICS_LISTEN',
        ],
      ] as const) {
        const outcome = await serveOnce([...args, '--data-dir', dir], env);
        expect(outcome.code, source).to.equal(1);
        expect(outcome.stderr, source).to.have.length(1);
        expect(outcome.stderr[0]).to.match(new RegExp(`^vigil serve: ${source}: `));
        expect(outcome.stderr[0]).to.include(`${port.address}: the address is already in use`);
        expect(outcome.stdout, source).to.deep.equal([]);
        expect(existsSync(join(root, 'fresh')), source).to.equal(false);
      }
    });
  });

  describe('when the database file is read-only', () => {
    it('names the file in one line, exits 1 and leaves the directory as it was', async function () {
      if (onEtcd) this.skip();
      const dir = join(root, 'data');
      const made = startServer(dir);
      await made.waitForLine((l) => l.includes('"listening"'), 30_000);
      expect(await made.kill('SIGTERM')).to.equal(0);
      // Root writes through permission bits: run the server as nobody then.
      const asRoot = process.getuid?.() === 0;
      const user = asRoot ? { uid: 65534, gid: 65534 } : undefined;
      if (user) {
        chownSync(root, user.uid, user.gid);
        for (const name of ['', ...readdirSync(dir)])
          chownSync(join(dir, name), user.uid, user.gid);
      }
      chmodSync(join(dir, 'vigil.db'), 0o444);
      const before = readdirSync(dir).sort();

      const outcome = await serveOnce(
        ['--listen', '127.0.0.1:0', '--metrics-listen', 'off', '--data-dir', dir],
        {},
        user,
      );
      expect(outcome.code).to.equal(1);
      expect(outcome.stderr).to.have.length(1);
      expect(outcome.stderr[0]).to.include(
        `cannot open the database ${join(dir, 'vigil.db')} for writing`,
      );
      expect(outcome.stdout).to.deep.equal([]);
      expect(readdirSync(dir).sort()).to.deep.equal(before);
    });
  });

  describe('when a setting is wrong', () => {
    const cases: readonly {
      readonly what: string;
      readonly args: readonly string[];
      readonly env?: NodeJS.ProcessEnv;
      readonly line: RegExp;
    }[] = [
      {
        what: 'a duration from the environment',
        args: [],
        env: { VIGIL_OFFLINE_AFTER: 'soon' },
        line: /^vigil serve: VIGIL_OFFLINE_AFTER: "soon" is not a positive duration: .*10s, 5m/,
      },
      {
        what: 'the same from a flag',
        args: ['--offline-after', 'soon'],
        line: /^vigil serve: --offline-after: "soon" is not a positive duration/,
      },
      {
        what: 'an unknown flag',
        args: ['--bogus'],
        line: /^vigil: unknown flag --bogus; the flags are --listen, .*--log-level/,
      },
      {
        what: 'a flag without its value',
        args: ['--listen'],
        line: /^vigil: --listen needs a value/,
      },
      {
        what: 'a log level',
        args: [],
        env: { VIGIL_LOG_LEVEL: 'loud' },
        line: /^vigil serve: VIGIL_LOG_LEVEL: "loud" is not one of fatal, error, warn, info, debug, trace, silent$/,
      },
      {
        what: 'a port out of range',
        args: ['--listen', '127.0.0.1:99999'],
        line: /^vigil serve: --listen: port 99999 in "127.0.0.1:99999" is not from 0 to 65535$/,
      },
      {
        what: 'a URL policy from the environment',
        args: [],
        env: { VIGIL_URL_POLICY: 'open' },
        line: /^vigil serve: VIGIL_URL_POLICY: "open" is not one of local, private, public$/,
      },
      {
        what: 'a store',
        args: ['--store', 'redis'],
        line: /^vigil serve: --store: "redis" is not one of sqlite, etcd$/,
      },
    ];
    for (const c of cases) {
      it(`says so with its source and the valid values in one line, exits 2 and writes nothing (${c.what})`, async () => {
        const dir = join(root, 'fresh');
        const outcome = await serveOnce([...c.args, '--data-dir', dir], c.env ?? {});
        expect(outcome.code).to.equal(2);
        expect(outcome.stderr).to.have.length(1);
        expect(outcome.stderr[0]).to.match(c.line);
        expect(outcome.stdout).to.deep.equal([]);
        expect(existsSync(dir)).to.equal(false);
      });
    }
  });
});
