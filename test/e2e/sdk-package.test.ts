import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { tempDir } from '../helpers/harness.js';
import { freePort, vigil, type Proc } from '../helpers/processes.js';
import { onEtcd } from '../helpers/suite-store.js';

const ROOT = join(__dirname, '..', '..', '..');
const SDK_DIR = join(ROOT, 'packages', 'sdk');
const CONTROL_TOKEN = 'vgc_sdk-package-test-token';

interface Ran {
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a command to completion; rejects with its output when it fails. npm's own
 * `npm_*` variables (set when this runs under `npm test`) are left out, so the
 * commands behave as they would in a user's shell.
 */
async function run(
  file: string,
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 120_000,
): Promise<Ran> {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')),
  );
  try {
    return await promisify(execFile)(file, [...args], {
      cwd,
      env: { ...clean, ...env },
      timeout: timeoutMs,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (error) {
    const e = error as Error & { stdout?: string; stderr?: string };
    throw new Error(
      `${file} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`,
    );
  }
}

/** Every ```ts (or ```typescript) block of a Markdown text, in order. */
function typescriptBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```(?:ts|typescript)\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? '');
}

/** What a block says it prints: its `// prints:` line and the `//` lines that follow it. */
function documentedOutput(block: string): string[] {
  const lines = block.split('\n');
  const at = lines.findIndex((line) => line.startsWith('// prints: '));
  if (at < 0) return [];
  const out = [lines[at]!.slice('// prints: '.length)];
  for (const line of lines.slice(at + 1)) {
    if (!line.startsWith('//  ')) break;
    out.push(line.slice(2).trim());
  }
  return out;
}

/** Numbers (seqs, timestamps in ids) differ from run to run; everything else must match. */
const shape = (line: string) => line.replace(/\d+/g, 'N');

function installedVersion(name: string): string {
  const manifest = JSON.parse(
    readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8'),
  ) as { version: string };
  return manifest.version;
}

describe('the SDK package (@vigil-runtime/sdk), packed and installed on its own', function () {
  this.timeout(240_000);
  let work = '';
  let project: string;
  let packedFiles: string[];
  let server: Proc | undefined;
  let address: string;

  before(async function () {
    // The package and the README do not depend on the store; run it once.
    if (onEtcd) this.skip();
    work = tempDir('vigil-sdk-package-');
    // npm pack runs the package's `prepare` (the build), exactly as a publish would.
    const packed = await run('npm', ['pack', '--json', '--pack-destination', work], SDK_DIR);
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    if (!info) throw new Error(`npm pack printed no package: ${packed.stdout}`);
    packedFiles = info.files.map((f) => f.path);

    // A fresh project outside this repository, so nothing resolves from its node_modules.
    project = join(work, 'consumer');
    mkdirSync(project);
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({ name: 'sdk-consumer', version: '1.0.0', private: true }),
    );
    await run(
      'npm',
      [
        'install',
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        join(work, info.filename),
        // The versions this repository builds with, so the npm cache has them.
        `typescript@${installedVersion('typescript')}`,
        `@types/node@${installedVersion('@types/node')}`,
      ],
      project,
    );

    const dataDir = join(work, 'data');
    address = `127.0.0.1:${String(await freePort())}`;
    server = vigil(
      ['serve', '--listen', address, '--metrics-listen', 'off', '--data-dir', dataDir],
      { VIGIL_CONTROL_TOKEN: CONTROL_TOKEN },
    );
    await server.waitForLine((line) => line.includes('"msg":"listening"'), 60_000);
  });

  after(async () => {
    if (server) await server.kill('SIGTERM');
    if (work !== '') rmSync(work, { recursive: true, force: true });
  });

  it('holds only the client (its build and types) and brings only the client dependencies', () => {
    expect(packedFiles).to.include.members([
      'package.json',
      'LICENSE',
      'README.md',
      'dist/src/client/index.js',
      'dist/src/client/index.d.ts',
      'dist/src/wire/error-status.js',
      'dist/gen/vigil/v1/control_service.js',
    ]);
    const outside = packedFiles.filter(
      (f) => !/^(package\.json|LICENSE|README\.md|dist\/(src\/(client|wire)|gen)\/.*)$/.test(f),
    );
    expect(outside, 'files outside the client').to.deep.equal([]);

    const modules = join(project, 'node_modules');
    expect(existsSync(join(modules, '@vigil-runtime', 'sdk', 'dist', 'src', 'client'))).to.equal(
      true,
    );
    expect(existsSync(join(modules, '@grpc', 'grpc-js'))).to.equal(true);
    expect(existsSync(join(modules, '@bufbuild', 'protobuf'))).to.equal(true);
    const installed = readdirSync(modules);
    for (const server_only of ['better-sqlite3', 'etcd3', 'pino', 'prom-client', 'fs-ext'])
      expect(installed, `${server_only} installed with the SDK`).not.to.include(server_only);
  });

  it('compiles every README TypeScript block strictly against it and runs each block of the main README, as pasted, against a real server', async () => {
    const blocks = typescriptBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'));
    expect(blocks.length, 'TypeScript blocks in the README').to.be.greaterThan(0);
    blocks.forEach((block, i) => {
      writeFileSync(join(project, `readme-${String(i + 1)}.mts`), block);
    });
    // The package's own README (what a registry shows) is compiled too; its loop runs forever.
    typescriptBlocks(readFileSync(join(SDK_DIR, 'README.md'), 'utf8')).forEach((block, i) => {
      writeFileSync(join(project, `package-readme-${String(i + 1)}.mts`), block);
    });
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noUncheckedIndexedAccess: true,
          exactOptionalPropertyTypes: true,
          noImplicitReturns: true,
          module: 'nodenext',
          target: 'es2022',
          types: ['node'],
          outDir: 'out',
        },
        include: ['readme-*.mts', 'package-readme-*.mts'],
      }),
    );
    await run(
      process.execPath,
      [join('node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'],
      project,
    );

    for (const [i, block] of blocks.entries()) {
      const name = `readme-${String(i + 1)}.mjs`;
      const ran = await run(
        process.execPath,
        [join('out', name)],
        project,
        { VIGIL_SERVER: address, VIGIL_CONTROL_TOKEN: CONTROL_TOKEN },
        60_000,
      );
      const printed = ran.stdout.trimEnd().split('\n');
      const documented = documentedOutput(block);
      expect(documented, `README block ${String(i + 1)} says what it prints`).not.to.deep.equal([]);
      expect(printed.map(shape), `README block ${String(i + 1)} printed`).to.deep.equal(
        documented.map(shape),
      );
    }
  });
});
