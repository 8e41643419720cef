import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { expect } from 'chai';
import { tempDir } from '../helpers/harness.js';
import { onEtcd } from '../helpers/suite-store.js';

const REPO = join(__dirname, '..', '..', '..');

interface Started {
  readonly npm: ChildProcess;
  /** PID of the node server, as its own log line reports it. */
  readonly serverPid: number;
  readonly port: number;
  readonly lines: string[];
}

/**
 * `npm start` exactly as the README says, in its own process group (so the
 * test can find and clean up whatever it leaves behind), until "listening".
 */
async function npmStart(dataDir: string): Promise<Started> {
  const npm = spawn(
    'npm',
    ['start', '--', '--listen', '127.0.0.1:0', '--metrics-listen', 'off', '--data-dir', dataDir],
    {
      cwd: REPO,
      detached: true,
      env: { ...process.env, VIGIL_CONTROL_TOKEN: 'vgc_npm_start' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: string[] = [];
  createInterface({ input: npm.stderr }).on('line', (line) => lines.push(line));
  return new Promise<Started>((resolve, reject) => {
    npm.once('exit', (code) => {
      reject(new Error(`npm start exited with ${String(code)}: ${lines.join('\n')}`));
    });
    createInterface({ input: npm.stdout }).on('line', (line) => {
      lines.push(line);
      if (!line.startsWith('{')) return;
      const entry = JSON.parse(line) as { msg?: string; address?: string; pid?: number };
      if (entry.msg === 'listening' && entry.address && entry.pid !== undefined) {
        resolve({
          npm,
          serverPid: entry.pid,
          port: Number(entry.address.split(':').pop()),
          lines,
        });
      }
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function portFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => {
      resolve(false);
    });
    server.listen(port, '127.0.0.1', () => {
      server.close(() => {
        resolve(true);
      });
    });
  });
}

describe('npm start under a supervisor', function () {
  // Each start runs the build first (tsc), which takes a while on a busy machine.
  this.timeout(240_000);
  let dir: string;
  let started: Started | undefined;

  before(function () {
    // The same on either store; run it once.
    if (onEtcd) this.skip();
  });

  beforeEach(() => {
    dir = tempDir();
  });

  afterEach(() => {
    // Whatever the outcome, leave no process of the group behind.
    const pgid = started?.npm.pid;
    if (pgid !== undefined) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // The group is already empty.
      }
    }
    started = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  async function expectGracefulExit(signal: () => void): Promise<void> {
    const { npm, serverPid, port } = started!;
    expect(serverPid).to.not.equal(npm.pid);
    expect(alive(serverPid)).to.equal(true);
    const exit = once(npm, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    const signalledAt = Date.now();
    signal();
    const [code, killedBy] = await exit;
    const elapsed = Date.now() - signalledAt;
    expect({ code, killedBy }).to.deep.equal({ code: 0, killedBy: null });
    expect(elapsed).to.be.below(5_000);
    expect(started!.lines.some((l) => l.includes('"stopped"'))).to.equal(true);
    // No orphan: the server is gone, and so is every other process npm started.
    expect(alive(serverPid)).to.equal(false);
    expect(alive(-npm.pid!)).to.equal(false);
    expect(await portFree(port)).to.equal(true);
  }

  describe("when SIGTERM goes to npm's PID (what a container runtime does)", () => {
    it('stops the server gracefully, exits 0 within 5 s and leaves no process', async () => {
      const run = await npmStart(dir);
      started = run;
      await expectGracefulExit(() => process.kill(run.npm.pid!, 'SIGTERM'));
    });
  });

  describe('when SIGINT goes to the whole process group (Ctrl-C in a terminal)', () => {
    it('stops the server gracefully, exits 0 within 5 s and leaves no process', async () => {
      const run = await npmStart(dir);
      started = run;
      await expectGracefulExit(() => process.kill(-run.npm.pid!, 'SIGINT'));
      expect(run.lines.some((l) => l.includes('second signal'))).to.equal(false);
    });
  });
});
