import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { tempDir } from '../helpers/harness.js';
import { CLEAN_ENV, runVigil, startServe } from '../helpers/cli-run.js';
import { vigil, type Proc } from '../helpers/processes.js';
import { suiteEtcdSettings } from '../helpers/suite-store.js';

/** A runtime that writes its whole environment to OUT (atomically), then idles. */
const CHILD = `
const { writeFileSync, renameSync } = require('node:fs');
const out = process.argv[2];
writeFileSync(out + '.tmp', JSON.stringify({ pid: process.pid, env: process.env }));
renameSync(out + '.tmp', out);
setInterval(() => {}, 60_000);
process.on('SIGTERM', () => process.exit(0));
`;

interface Written {
  pid: number;
  env: Record<string, string>;
}

async function until<T>(probe: () => T | undefined, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('runtime projection with real processes (vigil serve + vigil sidecar --exec)', function () {
  this.timeout(120_000);
  let dir: string;
  const procs: Proc[] = [];
  const childPids: number[] = [];

  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(async () => {
    for (const p of procs.splice(0).reverse()) await p.kill('SIGKILL');
    for (const pid of childPids.splice(0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts the child only from a complete projection, restarts it on rotation, and gives every restart and recreate the identical environment', async () => {
    const dataDir = join(dir, 'data');
    // On etcd, two replicas (one keyring, one control token): the sidecar streams from the
    // first, every write goes through the second, so each change crosses replicas.
    // The prefix from the unique temporary directory: `data` alone is a name other suites use.
    const etcd = await suiteEtcdSettings(dir);
    const serveArgs = (replica: 'a' | 'b', id: string = replica) => [
      '--listen',
      '127.0.0.1:0',
      '--data-dir',
      replica === 'a' ? dataDir : `${dataDir}-b`,
      '--metrics-listen',
      'off',
      '--heartbeat-interval',
      '1s',
      '--offline-after',
      '30s',
      ...(etcd
        ? [
            '--store',
            'etcd',
            '--etcd-endpoints',
            etcd.endpoints.join(','),
            '--etcd-prefix',
            etcd.prefix,
            '--replica-id',
            `${etcd.replicaId}-${id}`,
            '--secrets-keyring',
            join(dir, 'secrets-keyring'),
          ]
        : []),
    ];
    let served = await startServe(serveArgs('a'));
    procs.push(served.proc);
    let writer = served;
    if (etcd) {
      mkdirSync(`${dataDir}-b`);
      copyFileSync(join(dataDir, 'control-token'), join(`${dataDir}-b`, 'control-token'));
      writer = await startServe(serveArgs('b'));
      procs.push(writer.proc);
    }
    const client = (server: string) => ({
      ...CLEAN_ENV,
      VIGIL_SERVER: server,
      VIGIL_DATA_DIR: dataDir,
    });
    let env = client(served.address);
    // Writes go through the second replica on etcd; in SQLite mode, to the one server.
    const writerEnv = () => (etcd ? client(writer.address) : env);
    const cli = async (args: string[], through = writerEnv()) => {
      const result = await runVigil(args, through);
      expect(result.code, `vigil ${args.join(' ')}: ${result.stderr.join('\n')}`).to.equal(0);
      return result.stdout.join('\n');
    };

    const created = JSON.parse(await cli(['workspace', 'create', 'ws-p', '--json'])) as {
      workspaceToken: string;
    };
    const tokenFile = join(dir, 'ws-p.token');
    writeFileSync(tokenFile, created.workspaceToken, { mode: 0o600 });
    writeFileSync(
      join(dir, 'card.json'),
      JSON.stringify({ name: 'p', url: 'http://127.0.0.1:8000' }),
    );
    writeFileSync(join(dir, 'child.js'), CHILD);
    await cli(['config', 'set', 'ws-p', '--adapter', 'claude-code', '--model', 'MiniMax-M2.7']);

    const out = join(dir, 'env.json');
    const sidecarArgs = (tokenPath: string) => [
      'sidecar',
      '--workspace',
      'ws-p',
      '--token-file',
      tokenPath,
      '--url',
      'http://127.0.0.1:8000',
      '--card',
      join(dir, 'card.json'),
      '--exec',
      '--',
      process.execPath,
      join(dir, 'child.js'),
      out,
    ];
    const startSidecar = (tokenPath = tokenFile) => {
      const proc = vigil(sidecarArgs(tokenPath), {
        ...env,
        LEAKED_FROM_SIDECAR: 'must-not-reach-child',
      });
      procs.push(proc);
      return proc;
    };
    const written = (): Written | undefined =>
      existsSync(out) ? (JSON.parse(readFileSync(out, 'utf8')) as Written) : undefined;

    // (e) The key is missing: the child is not started, the reason names the variable.
    let sidecar = startSidecar();
    await sidecar.waitForLine(
      (l) => l.includes('PROJECTION_INCOMPLETE') && l.includes('missing=MINIMAX_API_KEY'),
    );
    expect(existsSync(out), 'the child must not have started').to.equal(false);

    // The key arrives: the stream delivers it and the child starts with the worked example.
    const keyFile = join(dir, 'key');
    writeFileSync(keyFile, 'sk-minimax-process-0001\n', { mode: 0o600 });
    await cli(['secrets', 'set', 'ws-p', 'MINIMAX_API_KEY', '--from-file', keyFile]);
    const first = await until(written, 'the child to write its environment');
    childPids.push(first.pid);
    expect(first.env).to.include({
      ANTHROPIC_AUTH_TOKEN: 'sk-minimax-process-0001',
      ANTHROPIC_BASE_URL: 'https://api.minimax.io/anthropic',
      MINIMAX_API_KEY: 'sk-minimax-process-0001',
      MODEL: 'MiniMax-M2.7',
      VIGIL_PROVIDER: 'minimax',
      VIGIL_WORKSPACE_ID: 'ws-p',
    });
    expect(first.env).to.not.have.property('LEAKED_FROM_SIDECAR');
    expect(first.env).to.not.have.property('VIGIL_SERVER');

    // (d) Rotated while running: the child is restarted with the new key; applied converges.
    writeFileSync(keyFile, 'sk-minimax-process-0002\n', { mode: 0o600 });
    const rotatedAt = Date.now();
    await cli(['secrets', 'set', 'ws-p', 'MINIMAX_API_KEY', '--from-file', keyFile]);
    const rotated = await until(() => {
      const w = written();
      return w && w.env['MINIMAX_API_KEY'] === 'sk-minimax-process-0002' ? w : undefined;
    }, 'the restarted child');
    const reloadMs = Date.now() - rotatedAt;
    childPids.push(rotated.pid);
    expect(rotated.pid).to.not.equal(first.pid);
    expect(reloadMs, 'rotation reaches the restarted child (ms)').to.be.lessThan(10_000);
    const version = Number(rotated.env['VIGIL_CONFIG_VERSION']);
    const deadline = Date.now() + 15_000;
    for (;;) {
      const shown = JSON.parse(await cli(['workspace', 'get', 'ws-p', '--json'])) as {
        configVersion?: number;
        appliedConfigVersion?: number;
      };
      if (shown.appliedConfigVersion === version && shown.configVersion === version) break;
      if (Date.now() > deadline)
        throw new Error(`applied_config_version did not converge: ${JSON.stringify(shown)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }

    // (a) kill -9 the child and the sidecar; a restarted sidecar gives the identical environment.
    process.kill(rotated.pid, 'SIGKILL');
    await sidecar.kill('SIGKILL');
    rmSync(out);
    sidecar = startSidecar();
    const restarted = await until(written, 'the child of the restarted sidecar');
    childPids.push(restarted.pid);
    expect(restarted.env).to.deep.equal(rotated.env);

    // (b) kill -9 the server and restart it: the same version and digest.
    const before = JSON.parse(
      await cli(['projection', 'get', 'ws-p', '--token-file', tokenFile, '--json'], env),
    ) as {
      configVersion: number;
      digest: string;
    };
    await sidecar.kill('SIGKILL');
    process.kill(restarted.pid, 'SIGKILL');
    await served.proc.kill('SIGKILL');
    // A new replica id: the killed one's campaign lease lives on until its TTL.
    served = await startServe(serveArgs('a', 'a2'));
    procs.push(served.proc);
    env = client(served.address);
    const after = JSON.parse(
      await cli(['projection', 'get', 'ws-p', '--token-file', tokenFile, '--json'], env),
    ) as {
      configVersion: number;
      digest: string;
    };
    expect(after).to.deep.include({ configVersion: before.configVersion, digest: before.digest });

    // (c) Recreate: a fresh sidecar in a fresh directory holding only the token file.
    const fresh = join(dir, 'fresh');
    mkdirSync(fresh);
    copyFileSync(tokenFile, join(fresh, 'token'));
    rmSync(out);
    sidecar = startSidecar(join(fresh, 'token'));
    const recreated = await until(written, 'the child of the recreated sidecar');
    childPids.push(recreated.pid);
    expect(recreated.env).to.deep.equal(rotated.env);

    // The explanation names sources and never values.
    const explained = await cli(['projection', 'explain', 'ws-p']);
    expect(explained).to.include('ANTHROPIC_AUTH_TOKEN  derived:minimax');
    expect(explained).to.not.include('sk-minimax-process');
    const listed = await cli(['secrets', 'list', 'ws-p']);
    expect(listed).to.match(/MINIMAX_API_KEY {2}[0-9a-f]{16} {2}PROJECTED/);
    expect(listed).to.not.include('sk-minimax-process');
  });
});
