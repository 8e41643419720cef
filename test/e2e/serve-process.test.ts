import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { expect } from 'chai';
import { WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { tempDir } from '../helpers/harness.js';
import { status } from '@grpc/grpc-js';
import { call, createClients, errorInfoOf, expectRpcError, openWatch } from '../helpers/rpc.js';

const MAIN = join(__dirname, '..', '..', 'src', 'main.js');

interface Served {
  child: ChildProcess;
  port: number;
  lines: string[];
}

/** Starts `vigil serve` as a real child process and waits for the "listening" log line. */
async function serve(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const child = spawn(
    process.execPath,
    [MAIN, 'serve', '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', ...args],
    {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => {
      reject(new Error(`vigil serve exited with ${String(code)}: ${lines.join('\n')}`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      const entry = JSON.parse(line) as { msg?: string; address?: string };
      if (entry.msg === 'listening' && entry.address)
        resolve(Number(entry.address.split(':').pop()));
    });
    createInterface({ input: child.stderr }).on('line', (line) => lines.push(line));
  });
  return { child, port, lines };
}

async function stop(served: Served): Promise<number | null> {
  if (served.child.exitCode !== null) return served.child.exitCode;
  const exited = once(served.child, 'exit');
  served.child.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  return code;
}

describe('vigil serve (a real process)', () => {
  let dir: string;
  let served: Served | undefined;

  beforeEach(() => {
    dir = tempDir();
  });

  afterEach(async () => {
    if (served) await stop(served);
    served = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  describe('when no control token is configured', () => {
    it('generates one into the data directory with mode 0600 and never logs it', async () => {
      served = await serve(['--data-dir', dir], { VIGIL_CONTROL_TOKEN: undefined });
      const file = join(dir, 'control-token');
      expect(statSync(file).mode & 0o777).to.equal(0o600);
      const token = readFileSync(file, 'utf8').trim();
      expect(token).to.match(/^vgc_[A-Za-z0-9_-]{43}$/);

      const clients = createClients(served.port);
      try {
        const created = await call(
          clients.control,
          clients.control.createWorkspace,
          { workspaceId: 'ws-1', name: '' },
          token,
        );
        expect(created.workspace?.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_PROVISIONING);
      } finally {
        clients.close();
      }
      expect(await stop(served)).to.equal(0);
      const log = served.lines.join('\n');
      expect(log).to.include(file);
      expect(log).not.to.include(token);
      expect(log).not.to.include(token.slice(4));
    });

    it('creates the data directory 0700 and the database, its WAL and the token 0600, whatever the umask', async () => {
      const dataDir = join(dir, 'data');
      const previous = process.umask(0o000);
      try {
        served = await serve(['--data-dir', dataDir], { VIGIL_CONTROL_TOKEN: undefined });
      } finally {
        process.umask(previous);
      }
      const token = readFileSync(join(dataDir, 'control-token'), 'utf8').trim();
      const clients = createClients(served.port);
      try {
        // A write, so the WAL and its index exist.
        await call(
          clients.control,
          clients.control.createWorkspace,
          { workspaceId: 'ws-perm', name: '' },
          token,
        );
      } finally {
        clients.close();
      }
      const mode = (path: string) => statSync(path).mode & 0o777;
      expect(mode(dataDir), 'data directory').to.equal(0o700);
      for (const name of ['control-token', 'vigil.db', 'vigil.db-wal', 'vigil.db-shm']) {
        expect(mode(join(dataDir, name)), name).to.equal(0o600);
      }
    });

    it('reuses the generated token on the next start', async () => {
      served = await serve(['--data-dir', dir], { VIGIL_CONTROL_TOKEN: undefined });
      const first = readFileSync(join(dir, 'control-token'), 'utf8');
      await stop(served);
      served = await serve(['--data-dir', dir], { VIGIL_CONTROL_TOKEN: undefined });
      expect(readFileSync(join(dir, 'control-token'), 'utf8')).to.equal(first);
    });
  });

  describe('when named control tokens come from --control-tokens', () => {
    it('accepts them with their scopes and generates no token file', async () => {
      const file = join(dir, 'tokens.json');
      writeFileSync(
        file,
        JSON.stringify({
          tokens: [
            { name: 'ops', scope: 'admin', token: 'vgc_ops-admin-token-1' },
            { name: 'dash', scope: 'read', token: 'vgc_dash-read-token-1' },
          ],
        }),
      );
      served = await serve(['--data-dir', dir, '--control-tokens', file], {
        VIGIL_CONTROL_TOKEN: undefined,
      });
      const clients = createClients(served.port);
      try {
        await call(
          clients.control,
          clients.control.createWorkspace,
          { workspaceId: 'ws-1', name: '' },
          'vgc_ops-admin-token-1',
        );
        await call(
          clients.control,
          clients.control.getWorkspace,
          { workspaceId: 'ws-1' },
          'vgc_dash-read-token-1',
        );
        await expectRpcError(
          call(
            clients.control,
            clients.control.deleteWorkspace,
            { workspaceId: 'ws-1' },
            'vgc_dash-read-token-1',
          ),
          status.PERMISSION_DENIED,
          'SCOPE_INSUFFICIENT',
        );
      } finally {
        clients.close();
      }
      expect(existsSync(join(dir, 'control-token'))).to.equal(false);
      expect(served.lines.join('\n')).not.to.include('vgc_ops-admin-token-1');
    });
  });

  describe('when it receives SIGTERM', () => {
    it('ends watch streams with UNAVAILABLE, closes the database and exits 0 within 5 s', async () => {
      served = await serve(['--data-dir', dir], { VIGIL_CONTROL_TOKEN: 'vgc_lifecycle' });
      const clients = createClients(served.port);
      try {
        const watch = openWatch(clients.control, {}, 'vgc_lifecycle');
        expect((await watch.next()).event?.$case).to.equal('progress');
        const started = Date.now();
        const code = await stop(served);
        const elapsed = Date.now() - started;
        const failure = await watch.ended();
        expect(failure?.code).to.equal(status.UNAVAILABLE);
        expect(errorInfoOf(failure!).reason).to.equal('SHUTTING_DOWN');
        expect(code).to.equal(0);
        expect(elapsed).to.be.below(5_000);
        // SQLite removes the WAL file when the last connection closes cleanly.
        expect(existsSync(join(dir, 'vigil.db-wal'))).to.equal(false);
        expect(served.lines.some((l) => l.includes('"stopped"'))).to.equal(true);
      } finally {
        clients.close();
      }
    });
  });

  describe('when a setting is invalid', () => {
    it('exits non-zero with one line per bad value and starts nothing', async () => {
      const child = spawn(
        process.execPath,
        [MAIN, 'serve', '--data-dir', dir, '--offline-after', 'soon', '--url-policy', 'open'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const [code] = (await once(child, 'exit')) as [number];
      expect(code).to.equal(2);
      const lines = stderr.trim().split('\n');
      expect(lines).to.have.length(2);
      expect(lines[0]).to.include('--offline-after');
      expect(lines[1]).to.include('--url-policy');
    });
  });
});
