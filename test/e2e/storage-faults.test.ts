import { execFileSync } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  openSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import {
  VigilClientError,
  createControlClient,
  createRuntimeClient,
  type ControlClient,
} from '../../src/client/index.js';
import { CONTROL_TOKEN, card, tempDir } from '../helpers/harness.js';
import { freePort, vigil, type Proc } from '../helpers/processes.js';

/** Real storage faults: the data directory sits on a small tmpfs we fill up and remount read-only. */
describe('storage faults', function () {
  this.timeout(60_000);
  let mountPoint: string;
  let mounted = false;
  let server: Proc | undefined;
  let control: ControlClient | undefined;

  /** Starts `vigil serve` on `dataDir` and a control client for it (both closed after each test). */
  async function serveOn(dataDir: string) {
    const address = `127.0.0.1:${await freePort()}`;
    const proc = vigil(
      ['serve', '--listen', address, '--data-dir', dataDir, '--metrics-listen', 'off'],
      { VIGIL_CONTROL_TOKEN: CONTROL_TOKEN },
    );
    server = proc;
    await proc.waitForLine((l) => l.includes('"listening"'));
    const client = createControlClient({ server: address, token: CONTROL_TOKEN });
    control = client;
    return { address, server: proc, control: client };
  }

  function sh(command: string, args: string[]): void {
    execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  beforeEach(function () {
    mountPoint = tempDir('vigil-tmpfs-');
    try {
      sh('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountPoint]);
      mounted = true;
    } catch {
      // Mounting needs root (CI and the dev machines run as root); nowhere else can this fault be real.
      this.skip();
    }
  });

  afterEach(async () => {
    control?.close();
    control = undefined;
    await server?.kill('SIGKILL');
    server = undefined;
    if (mounted) sh('umount', ['-l', mountPoint]);
    mounted = false;
    rmSync(mountPoint, { recursive: true, force: true });
  });

  async function start(): Promise<{ address: string; token: string }> {
    const { address, control } = await serveOn(join(mountPoint, 'data'));
    const { workspaceToken } = await control.createWorkspace('ws-disk');
    const runtime = createRuntimeClient({ server: address, token: workspaceToken });
    await runtime.register({
      workspaceId: 'ws-disk',
      url: 'http://127.0.0.1:8000',
      agentCard: card(),
    });
    runtime.close();
    return { address, token: workspaceToken };
  }

  /** The failure of a write, or undefined when it succeeded. */
  async function writeOutcome(id: string): Promise<VigilClientError | undefined> {
    try {
      await control!.createWorkspace(id, 'x'.repeat(200), { timeoutMs: 10_000 });
      return undefined;
    } catch (error) {
      return error as VigilClientError;
    }
  }

  function fill(file: string): void {
    const fd = openSync(file, 'w');
    const chunk = Buffer.alloc(64 * 1024, 1);
    try {
      for (;;) writeSync(fd, chunk);
    } catch {
      // ENOSPC: the disk is full.
    } finally {
      closeSync(fd);
    }
  }

  describe('when the disk fills up', () => {
    it('answers writes UNAVAILABLE / STORE_UNAVAILABLE, stays up, and recovers when space returns', async () => {
      const { address, token } = await start();
      const filler = join(mountPoint, 'filler');
      fill(filler);
      let failure: VigilClientError | undefined;
      for (let i = 0; i < 200 && !failure; i += 1) failure = await writeOutcome(`ws-full-${i}`);
      expect(failure, 'a write failed once the disk was full').to.be.instanceOf(VigilClientError);
      expect(failure?.code).to.equal(status.UNAVAILABLE);
      expect(failure?.reason).to.equal('STORE_UNAVAILABLE');
      expect(failure?.metadata['sqliteCode']).to.match(/^SQLITE_(FULL|IOERR)/);
      // Still serving reads.
      expect((await control!.getWorkspace('ws-disk')).id).to.equal('ws-disk');

      unlinkSync(filler);
      expect(await writeOutcome('ws-after-full')).to.equal(undefined);
      const runtime = createRuntimeClient({ server: address, token });
      await runtime.heartbeat({ workspaceId: 'ws-disk' });
      runtime.close();
      expect(server?.child.exitCode).to.equal(null);
    });
  });

  describe('when the database files turn read-only', () => {
    // ext4 on a loop device, where `chattr +i` makes even already-open files refuse writes.
    let image: string;
    let loop: string | undefined;
    let extMount: string;

    beforeEach(function () {
      if (!mounted) this.skip();
      image = join(mountPoint, 'ext4.img');
      extMount = tempDir('vigil-ext4-');
      try {
        sh('truncate', ['-s', '6M', image]);
        sh('mkfs.ext4', ['-q', '-F', image]);
        loop = execFileSync('losetup', ['-f', '--show', image], { encoding: 'utf8' }).trim();
        sh('mount', [loop, extMount]);
      } catch {
        this.skip();
      }
    });

    afterEach(async () => {
      control?.close();
      control = undefined;
      await server?.kill('SIGKILL');
      server = undefined;
      for (const file of ['vigil.db', 'vigil.db-wal']) {
        try {
          sh('chattr', ['-i', join(extMount, 'data', file)]);
        } catch {
          // not there, or never made immutable
        }
      }
      if (loop) {
        sh('umount', ['-l', extMount]);
        sh('losetup', ['-d', loop]);
      }
      loop = undefined;
      rmSync(extMount, { recursive: true, force: true });
    });

    it('answers writes UNAVAILABLE / STORE_UNAVAILABLE, stays up, and recovers when they are writable again', async () => {
      const { server, control } = await serveOn(join(extMount, 'data'));
      await control.createWorkspace('ws-before');

      for (const file of ['vigil.db', 'vigil.db-wal'])
        sh('chattr', ['+i', join(extMount, 'data', file)]);
      const failure = await writeOutcome('ws-ro');
      expect(failure?.code).to.equal(status.UNAVAILABLE);
      expect(failure?.reason).to.equal('STORE_UNAVAILABLE');
      expect(failure?.metadata['sqliteCode']).to.match(/^SQLITE_(IOERR|READONLY)/);
      expect((await control.getWorkspace('ws-before')).id).to.equal('ws-before');
      expect(server.child.exitCode).to.equal(null);

      for (const file of ['vigil.db', 'vigil.db-wal'])
        sh('chattr', ['-i', join(extMount, 'data', file)]);
      expect(await writeOutcome('ws-after')).to.equal(undefined);
      expect((await control.getWorkspace('ws-after')).id).to.equal('ws-after');
    });
  });

  describe('when the database file is corrupt at start', () => {
    for (const [label, damage] of [
      [
        'not SQLite at all',
        (file: string) => {
          writeFileSync(file, Buffer.alloc(20_000, 7));
        },
      ],
      [
        'an SQLite file with damaged pages',
        (file: string) => {
          const fd = openSync(file, 'r+');
          writeSync(fd, Buffer.alloc(8_192, 0xff), 0, 8_192, 4_096);
          closeSync(fd);
        },
      ],
    ] as const) {
      it(`exits non-zero with one clear message (${label})`, async () => {
        const dataDir = tempDir();
        try {
          // A real database first, closed cleanly.
          const first = vigil(
            ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--metrics-listen', 'off'],
            {
              VIGIL_CONTROL_TOKEN: CONTROL_TOKEN,
            },
          );
          await first.waitForLine((l) => l.includes('"listening"'));
          await first.kill('SIGTERM');
          mkdirSync(dataDir, { recursive: true });
          damage(join(dataDir, 'vigil.db'));

          const second = vigil(
            ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--metrics-listen', 'off'],
            {
              VIGIL_CONTROL_TOKEN: CONTROL_TOKEN,
            },
          );
          const code = await second.exited();
          expect(code).to.not.equal(0);
          expect(second.stderr, second.stderr.join('\n')).to.have.length(1);
          expect(second.stderr[0]).to.include('vigil.db is damaged or not a Vigil database');
          expect(second.lines.some((l) => l.includes('"listening"'))).to.equal(false);
        } finally {
          rmSync(dataDir, { recursive: true, force: true });
        }
      });
    }
  });
});
