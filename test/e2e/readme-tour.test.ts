import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { createRuntimeClient, VigilClientError } from '../../src/client/index.js';
import { tempDir } from '../helpers/harness.js';
import { freePort, vigil, type Proc } from '../helpers/processes.js';
import { onEtcd } from '../helpers/suite-store.js';

const ROOT = join(__dirname, '..', '..', '..');
const CONTROL_TOKEN = 'vgc_readme-tour-test-token';

/** The README tour's shell block: the one that defines the `vigil` alias. */
function tourBlock(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const block = [...readme.matchAll(/^```sh\n([\s\S]*?)^```$/gm)]
    .map((m) => m[1] ?? '')
    .find((b) => b.startsWith('alias vigil='));
  if (block === undefined) throw new Error('the README has no tour block starting with the alias');
  return block;
}

/** The README's lines from the one starting with `first` through the one containing `last`. */
function lines(block: string, first: string, last: string): string {
  const all = block.split('\n');
  const from = all.findIndex((l) => l.startsWith(first));
  const to = all.findIndex((l, i) => i >= from && l.includes(last));
  if (from < 0 || to < 0) throw new Error(`no lines from "${first}" to "${last}" in the tour`);
  return all.slice(from, to + 1).join('\n');
}

describe('the README tour (step 1 and its recovery, pasted into bash)', function () {
  this.timeout(120_000);
  let dir = '';
  let server: Proc | undefined;
  let address: string;
  let alias: string;
  let step1: string;
  let recovery: string;
  let card: string;

  /** Runs README lines in bash in `dir`, after the tour's alias (this repository's build for $PWD). */
  const paste = async (text: string): Promise<number> => {
    const script = `shopt -s expand_aliases\n${alias}\n${text}\n`;
    try {
      await promisify(execFile)('bash', ['-c', script], {
        cwd: dir,
        env: { ...process.env, VIGIL_SERVER: address, VIGIL_CONTROL_TOKEN: CONTROL_TOKEN },
        timeout: 60_000,
      });
      return 0;
    } catch (error) {
      return (error as { code?: number }).code ?? -1;
    }
  };

  const token = () => readFileSync(join(dir, 'ws-demo.token'), 'utf8').trim();

  /** Whether the server takes `workspaceToken` for ws-demo (a Register with it). */
  const accepted = async (workspaceToken: string): Promise<boolean | string> => {
    const runtime = createRuntimeClient({ server: address, token: workspaceToken });
    try {
      await runtime.register({
        workspaceId: 'ws-demo',
        url: 'http://127.0.0.1:8000',
        agentCard: JSON.parse(readFileSync(join(dir, 'card.json'), 'utf8')) as Record<
          string,
          unknown
        >,
      });
      return true;
    } catch (error) {
      if (error instanceof VigilClientError) return error.reason;
      throw error;
    } finally {
      runtime.close();
    }
  };

  before(async function () {
    // The tour's step 1 does not depend on the store; run it once.
    if (onEtcd) this.skip();
    dir = tempDir('vigil-readme-tour-');
    const block = tourBlock();
    alias = block.split('\n')[0]!.replace('$PWD', ROOT);
    step1 = lines(block, '(set -o pipefail; umask 077; vigil workspace create', 'mv ws-demo');
    recovery = lines(block, '#   (set -o pipefail', 'mv ws-demo')
      .split('\n')
      .map((l) => l.replace(/^#\s+/, ''))
      .join('\n');
    card = lines(block, 'echo ', '> card.json');
    address = `127.0.0.1:${String(await freePort())}`;
    server = vigil(
      ['serve', '--listen', address, '--metrics-listen', 'off', '--data-dir', join(dir, 'data')],
      { VIGIL_CONTROL_TOKEN: CONTROL_TOKEN },
    );
    await server.waitForLine((line) => line.includes('"msg":"listening"'), 60_000);
  });

  after(async () => {
    if (server) await server.kill('SIGTERM');
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the token in a 0600 file, never empties it on a re-run, and rotate-token recovers', async () => {
    expect(await paste(`${step1}\n${card}`)).to.equal(0);
    const first = token();
    expect(first).to.match(/^vgw_/);
    expect(statSync(join(dir, 'ws-demo.token')).mode & 0o777).to.equal(0o600);
    expect(await accepted(first)).to.equal(true);

    // Step 1 again: ALREADY_EXISTS fails the pipeline, and the token file is left alone.
    expect(await paste(step1)).to.not.equal(0);
    expect(token()).to.equal(first);

    // The documented recovery: a new token, the previous one revoked.
    expect(await paste(recovery)).to.equal(0);
    const second = token();
    expect(second).to.match(/^vgw_/).and.not.equal(first);
    expect(statSync(join(dir, 'ws-demo.token')).mode & 0o777).to.equal(0o600);
    expect(await accepted(second)).to.equal(true);
    expect(await accepted(first)).to.equal('TOKEN_INVALID');
  });

  it("leaves only files the repository's .gitignore covers", () => {
    const ignored = readFileSync(join(ROOT, '.gitignore'), 'utf8').split('\n');
    const created = readdirSync(dir).filter((f) => f !== 'data');
    expect(created).to.include.members(['ws-demo.token', 'card.json']);
    for (const file of created) expect(ignored, `${file} in .gitignore`).to.include(file);
    expect(ignored).to.include('ws-demo.token.new');
  });
});
