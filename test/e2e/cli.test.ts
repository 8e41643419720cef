import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { SERVE_SETTINGS } from '../../src/cli/serve-config.js';
import {
  CLEAN_ENV,
  runVigil,
  startServe,
  type CliResult,
  type Served,
} from '../helpers/cli-run.js';
import { heartbeatRequest } from '../helpers/e2e-fixtures.js';
import { tempDir } from '../helpers/harness.js';
import { freePort, vigil, type Proc } from '../helpers/processes.js';
import { call, createClients, expectRpcError } from '../helpers/rpc.js';

/** `vigil` as operators and scripts use it: the built binary, as real child processes. */

const ONLINE = WorkspaceStatus.WORKSPACE_STATUS_ONLINE;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface WorkspaceJson {
  id: string;
  name: string;
  status: string;
  url?: string;
  agentCard?: Record<string, unknown>;
  lastHeartbeatAt?: string;
  createdAt: string;
}

interface TransitionJson {
  seq: number | string;
  workspaceId: string;
  fromStatus?: string;
  toStatus: string;
  reason: string;
  at: string;
}

interface WatchLine {
  transition?: TransitionJson;
  snapshot?: WorkspaceJson;
  snapshotEnd?: { seq?: number | string; reset?: boolean };
  progress?: { seq?: number | string };
}

/** Describes a result for assertion messages. */
function shown(result: CliResult): string {
  return `exit ${String(result.code)} (signal ${String(result.signal)})\nstdout:\n${result.stdout.join('\n')}\nstderr:\n${result.stderr.join('\n')}`;
}

/** Asserts a successful run with nothing on stderr. */
function expectOk(result: CliResult): void {
  expect(result.code, shown(result)).to.equal(0);
  expect(result.stderr, shown(result)).to.deep.equal([]);
}

/** Asserts a failed run: `code`, exactly one stderr line containing every one of `words`, nothing on stdout. */
function expectFailure(result: CliResult, code: number, ...words: string[]): void {
  expect(result.code, shown(result)).to.equal(code);
  expect(result.stderr, shown(result)).to.have.length(1);
  for (const word of words) expect(result.stderr[0], shown(result)).to.include(word);
  expect(result.stdout, shown(result)).to.deep.equal([]);
}

/** The only stdout line of a --json run, parsed. */
function jsonOf(result: CliResult): unknown {
  expectOk(result);
  expect(result.stdout, shown(result)).to.have.length(1);
  return JSON.parse(result.stdout[0]!);
}

describe('vigil (the command line)', function () {
  this.timeout(30_000);

  describe('when asked for help', () => {
    it('vigil --help exits 0 and names every command', async () => {
      const result = await runVigil(['--help']);
      expectOk(result);
      const text = result.stdout.join('\n');
      expect(text).to.match(/^Usage: vigil /);
      for (const command of ['serve', 'workspace', 'watch', 'sidecar']) {
        expect(text).to.match(new RegExp(`^\\s+${command}\\s`, 'm'));
      }
    });

    it('every subcommand --help exits 0 and prints its usage', async () => {
      const commands = ['serve', 'workspace', 'watch', 'sidecar'];
      const results = await Promise.all(commands.map((c) => runVigil([c, '--help'])));
      results.forEach((result, i) => {
        expectOk(result);
        expect(result.stdout[0], shown(result)).to.match(
          new RegExp(`^Usage: vigil ${commands[i]!}\\b`),
        );
      });
      const workspaceHelp = results[1]!.stdout.join('\n');
      for (const sub of ['create', 'get', 'list', 'delete', 'rotate-token']) {
        expect(workspaceHelp).to.match(new RegExp(`^\\s+${sub}\\b`, 'm'));
      }
      const watchHelp = results[2]!.stdout.join('\n');
      for (const flag of ['--workspace', '--after-seq', '--snapshot', '--json', '--server']) {
        expect(watchHelp).to.include(flag);
      }
      const sidecarHelp = results[3]!.stdout.join('\n');
      for (const flag of ['--workspace', '--token-file', '--url', '--card', '--server']) {
        expect(sidecarHelp).to.include(flag);
      }
    });

    it('vigil serve --help lists every setting flag with its env var and default', async () => {
      // The contract's server flags, with the defaults DESIGN.md gives.
      const designed: Record<string, [string, string]> = {
        listen: ['VIGIL_LISTEN', '127.0.0.1:50051'],
        'data-dir': ['VIGIL_DATA_DIR', './data'],
        'heartbeat-interval': ['VIGIL_HEARTBEAT_INTERVAL', '10s'],
        'offline-after': ['VIGIL_OFFLINE_AFTER', '40s'],
        'register-failure-window': ['VIGIL_REGISTER_FAILURE_WINDOW', '5m'],
        'provision-timeout': ['VIGIL_PROVISION_TIMEOUT', '10m'],
        'metrics-listen': ['VIGIL_METRICS_LISTEN', '127.0.0.1:9464'],
      };
      for (const [flag, [env, defaultText]] of Object.entries(designed)) {
        expect(
          SERVE_SETTINGS.find((s) => s.flag === flag),
          `SERVE_SETTINGS has --${flag}`,
        ).to.include({ env, defaultText });
      }

      const result = await runVigil(['serve', '--help']);
      expectOk(result);
      const lines = result.stdout;
      const flagLines = lines.filter((l) => /^\s+--[a-z]/.test(l));
      expect(flagLines, 'one flag line per setting (plus --help at most)').to.have.length.within(
        SERVE_SETTINGS.length,
        SERVE_SETTINGS.length + 1,
      );
      for (const setting of SERVE_SETTINGS) {
        const at = lines.findIndex((l) => new RegExp(`^\\s+--${setting.flag}\\s`).test(l));
        expect(at, `--${setting.flag} is listed`).to.be.at.least(0);
        const entry = `${lines[at]!}\n${lines[at + 1] ?? ''}`;
        expect(entry, `--${setting.flag}`).to.include(setting.description);
        expect(entry, `--${setting.flag}`).to.include(
          `[env ${setting.env}, default ${setting.defaultText}]`,
        );
      }
    });
  });

  describe('against a running server', () => {
    let dir: string;
    let dataDir: string;
    let served: Served;
    let server: string;
    let controlToken: string;
    let clients: ReturnType<typeof createClients>;
    const procs: Proc[] = [];

    before(async () => {
      dir = tempDir('vigil-cli-');
      dataDir = join(dir, 'data');
      server = `127.0.0.1:${await freePort()}`;
      // VIGIL_CONTROL_TOKEN is unset (CLEAN_ENV), so serve generates the token file.
      served = await startServe([
        '--listen',
        server,
        '--metrics-listen',
        'off',
        '--data-dir',
        dataDir,
      ]);
      controlToken = readFileSync(join(dataDir, 'control-token'), 'utf8').trim();
      clients = createClients(served.port);
    });

    after(async () => {
      clients.close();
      await served.proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });

    afterEach(async () => {
      for (const p of procs.splice(0)) await p.kill('SIGKILL');
    });

    /** A long-running command (watch, sidecar), killed after the test. */
    function start(args: string[], env: NodeJS.ProcessEnv = {}): Proc {
      const proc = vigil(args, { ...CLEAN_ENV, ...env });
      procs.push(proc);
      return proc;
    }

    const target = () => ['--server', server, '--data-dir', dataDir];
    const workspace = (...args: string[]) => runVigil(['workspace', ...args, ...target()]);

    /** CreateWorkspace over gRPC; returns the workspace token. */
    async function created(id: string): Promise<string> {
      const response = await call(
        clients.control,
        clients.control.createWorkspace,
        { workspaceId: id, name: '' },
        controlToken,
      );
      return response.workspaceToken;
    }

    /** A heartbeat over gRPC; resolves with the status it returns. */
    async function heartbeat(id: string, token: string) {
      return (await call(clients.runtime, clients.runtime.heartbeat, heartbeatRequest(id), token))
        .status;
    }

    function writeCard(): string {
      const file = join(dir, 'card.json');
      writeFileSync(file, JSON.stringify({ name: 'cli-agent', url: 'http://127.0.0.1:8000' }));
      return file;
    }

    describe('vigil workspace create', () => {
      it('creates the workspace with the given ID and --name and prints a token that works', async () => {
        const result = await workspace('create', 'cli-create', '--name', 'Alpha');
        expectOk(result);
        expect(result.stdout[0]).to.equal('workspace cli-create created (PROVISIONING)');
        const token = /^token: (\S+)$/.exec(result.stdout[1] ?? '')?.[1];
        expect(token, shown(result)).to.be.a('string');

        const got = jsonOf(await workspace('get', 'cli-create', '--json')) as WorkspaceJson;
        expect(got).to.include({
          id: 'cli-create',
          name: 'Alpha',
          status: 'WORKSPACE_STATUS_PROVISIONING',
        });
        // The printed token authenticates the runtime.
        expect(await heartbeat('cli-create', token!)).to.equal(ONLINE);
      });

      it('with --json prints the CreateWorkspaceResponse in the proto JSON mapping', async () => {
        const response = jsonOf(
          await workspace('create', 'cli-create-json', '--name', 'Beta', '--json'),
        ) as { workspace: WorkspaceJson; workspaceToken: string };
        expect(response.workspace).to.include({
          id: 'cli-create-json',
          name: 'Beta',
          status: 'WORKSPACE_STATUS_PROVISIONING',
        });
        expect(Number.isNaN(Date.parse(response.workspace.createdAt))).to.equal(false);
        expect(response.workspaceToken).to.be.a('string').and.not.equal('');
        expect(await heartbeat('cli-create-json', response.workspaceToken)).to.equal(ONLINE);
      });

      it('without an ID lets the server pick a UUID', async () => {
        const response = jsonOf(await workspace('create', '--json')) as {
          workspace: WorkspaceJson;
        };
        expect(response.workspace.id).to.match(UUID);
        const got = jsonOf(
          await workspace('get', response.workspace.id, '--json'),
        ) as WorkspaceJson;
        expect(got.id).to.equal(response.workspace.id);
      });

      it('exits 1 naming ALREADY_EXISTS WORKSPACE_EXISTS for an ID in use', async () => {
        await created('cli-create-twice');
        expectFailure(
          await workspace('create', 'cli-create-twice'),
          1,
          'ALREADY_EXISTS',
          'WORKSPACE_EXISTS',
        );
      });
    });

    describe('vigil workspace get', () => {
      it('prints the workspace for humans, and as a proto JSON Workspace with --json', async () => {
        await created('cli-get');
        const [human, json] = await Promise.all([
          workspace('get', 'cli-get'),
          workspace('get', 'cli-get', '--json'),
        ]);
        expectOk(human);
        const text = human.stdout.join('\n');
        expect(text).to.match(/^id\s+cli-get$/m);
        expect(text).to.match(/^status\s+PROVISIONING$/m);
        const got = jsonOf(json) as WorkspaceJson;
        expect(got).to.include({ id: 'cli-get', status: 'WORKSPACE_STATUS_PROVISIONING' });
        expect(got).to.have.property('createdAt');
      });

      it('exits 1 with one line naming NOT_FOUND WORKSPACE_NOT_FOUND for an unknown ID', async () => {
        expectFailure(await workspace('get', 'cli-no-such'), 1, 'NOT_FOUND', 'WORKSPACE_NOT_FOUND');
      });
    });

    describe('vigil workspace list', () => {
      before(async () => {
        await created('cli-list-prov');
        const token = await created('cli-list-online');
        await heartbeat('cli-list-online', token);
        await created('cli-list-gone');
        await call(
          clients.control,
          clients.control.deleteWorkspace,
          { workspaceId: 'cli-list-gone' },
          controlToken,
        );
      });

      const ids = (list: WorkspaceJson[]) => list.map((w) => w.id);

      it('prints a table of every workspace but REMOVED ones', async () => {
        const result = await workspace('list');
        expectOk(result);
        expect(result.stdout[0]).to.match(/^ID\s+STATUS\s+LAST HEARTBEAT\s+URL$/);
        const row = (pattern: RegExp) => result.stdout.filter((l) => pattern.test(l));
        expect(row(/^cli-list-prov\s+PROVISIONING\s+-\s+-$/), shown(result)).to.have.length(1);
        expect(
          row(/^cli-list-online\s+ONLINE\s+\d{4}-\d\d-\d\dT\S+Z\s+-$/),
          shown(result),
        ).to.have.length(1);
        expect(result.stdout.filter((l) => l.startsWith('cli-list-gone'))).to.deep.equal([]);
      });

      it('with --json prints an array of Workspaces, REMOVED excluded', async () => {
        const list = jsonOf(await workspace('list', '--json')) as WorkspaceJson[];
        expect(list).to.be.an('array');
        expect(ids(list)).to.include.members(['cli-list-prov', 'cli-list-online']);
        expect(ids(list)).not.to.include('cli-list-gone');
        for (const w of list) {
          expect(w.status).to.match(/^WORKSPACE_STATUS_[A-Z]+$/);
          expect(w.status).not.to.equal('WORKSPACE_STATUS_REMOVED');
        }
      });

      it('filters by --status, repeatable, and lists REMOVED ones when asked', async () => {
        const [online, removed, both] = await Promise.all([
          workspace('list', '--json', '--status', 'ONLINE'),
          workspace('list', '--json', '--status', 'REMOVED'),
          workspace('list', '--json', '--status', 'ONLINE', '--status', 'PROVISIONING'),
        ]);
        const onlineList = jsonOf(online) as WorkspaceJson[];
        expect(ids(onlineList)).to.include('cli-list-online');
        expect(ids(onlineList)).not.to.include.members(['cli-list-prov']);
        expect(new Set(onlineList.map((w) => w.status))).to.deep.equal(
          new Set(['WORKSPACE_STATUS_ONLINE']),
        );
        const removedList = jsonOf(removed) as WorkspaceJson[];
        expect(ids(removedList)).to.include('cli-list-gone');
        expect(new Set(removedList.map((w) => w.status))).to.deep.equal(
          new Set(['WORKSPACE_STATUS_REMOVED']),
        );
        const bothList = jsonOf(both) as WorkspaceJson[];
        expect(ids(bothList)).to.include.members(['cli-list-prov', 'cli-list-online']);
        expect(ids(bothList)).not.to.include('cli-list-gone');
      });
    });

    describe('vigil workspace delete', () => {
      it('leaves a REMOVED tombstone, printed for humans or as JSON', async () => {
        await Promise.all([created('cli-del'), created('cli-del-json')]);
        const [human, json] = await Promise.all([
          workspace('delete', 'cli-del'),
          workspace('delete', 'cli-del-json', '--json'),
        ]);
        expectOk(human);
        expect(human.stdout).to.deep.equal(['workspace cli-del deleted (REMOVED)']);
        expect(jsonOf(json)).to.include({
          id: 'cli-del-json',
          status: 'WORKSPACE_STATUS_REMOVED',
        });
        const got = jsonOf(await workspace('get', 'cli-del', '--json')) as WorkspaceJson;
        expect(got.status).to.equal('WORKSPACE_STATUS_REMOVED');
      });

      it('exits 1 naming NOT_FOUND WORKSPACE_NOT_FOUND for an unknown ID', async () => {
        expectFailure(
          await workspace('delete', 'cli-no-such'),
          1,
          'NOT_FOUND',
          'WORKSPACE_NOT_FOUND',
        );
      });
    });

    describe('vigil workspace rotate-token', () => {
      it('issues a new token and the old one stops working', async () => {
        const createdJson = jsonOf(await workspace('create', 'cli-rotate', '--json')) as {
          workspaceToken: string;
        };
        const oldToken = createdJson.workspaceToken;
        const rotated = jsonOf(
          await workspace('rotate-token', 'cli-rotate', '--revoke-previous', '--json'),
        ) as {
          workspaceId: string;
          workspaceToken: string;
        };
        expect(rotated.workspaceId).to.equal('cli-rotate');
        expect(rotated.workspaceToken).to.be.a('string').and.not.equal('');
        expect(rotated.workspaceToken).not.to.equal(oldToken);

        await expectRpcError(
          heartbeat('cli-rotate', oldToken),
          status.UNAUTHENTICATED,
          'TOKEN_INVALID',
        );
        expect(await heartbeat('cli-rotate', rotated.workspaceToken)).to.equal(ONLINE);

        // A sidecar holding the old token is turned away with one line.
        const tokenFile = join(dir, 'cli-rotate-old.token');
        writeFileSync(tokenFile, `${oldToken}\n`);
        const sidecar = await runVigil([
          'sidecar',
          '--workspace',
          'cli-rotate',
          '--token-file',
          tokenFile,
          '--url',
          'http://127.0.0.1:8000',
          '--card',
          writeCard(),
          '--server',
          server,
        ]);
        expect(sidecar.code, shown(sidecar)).to.equal(1);
        expect(sidecar.stderr, shown(sidecar)).to.have.length(1);
        expect(sidecar.stderr[0]).to.include('UNAUTHENTICATED').and.include('TOKEN_INVALID');
      });

      it('prints the new token for humans', async () => {
        await created('cli-rotate-human');
        const result = await workspace('rotate-token', 'cli-rotate-human');
        expectOk(result);
        const token = /^token: (\S+)$/.exec(result.stdout[0] ?? '')?.[1];
        expect(token, shown(result)).to.be.a('string');
        expect(await heartbeat('cli-rotate-human', token!)).to.equal(ONLINE);
      });
    });

    describe('control token and server resolution', () => {
      it('VIGIL_CONTROL_TOKEN overrides the data directory token file', async () => {
        const emptyDir = join(dir, 'no-token-here');
        const [wrongEnv, rightEnv] = await Promise.all([
          // The file in --data-dir holds the right token; the env var wins.
          runVigil(['workspace', 'list', '--json', ...target()], {
            VIGIL_CONTROL_TOKEN: 'vgc_not-the-control-token',
          }),
          runVigil(['workspace', 'list', '--json', '--server', server, '--data-dir', emptyDir], {
            VIGIL_CONTROL_TOKEN: controlToken,
          }),
        ]);
        expectFailure(wrongEnv, 1, 'UNAUTHENTICATED', 'TOKEN_INVALID');
        expect(jsonOf(rightEnv)).to.be.an('array');
      });

      it('reads the token file in VIGIL_DATA_DIR when --data-dir is absent', async () => {
        const result = await runVigil(['workspace', 'list', '--json', '--server', server], {
          VIGIL_DATA_DIR: dataDir,
        });
        expect(jsonOf(result)).to.be.an('array');
      });

      it('fails with one line when there is no control token at all', async () => {
        const result = await runVigil([
          'workspace',
          'list',
          '--server',
          server,
          '--data-dir',
          join(dir, 'no-token-here'),
        ]);
        expect(result.code, shown(result)).to.be.oneOf([1, 2]);
        expect(result.stderr, shown(result)).to.have.length(1);
        expect(result.stderr[0]).to.include('VIGIL_CONTROL_TOKEN');
      });

      it('uses VIGIL_SERVER when --server is absent, and --server over VIGIL_SERVER', async () => {
        const dead = `127.0.0.1:${await freePort()}`;
        const [fromEnv, flagWins, envDead] = await Promise.all([
          runVigil(['workspace', 'list', '--json', '--data-dir', dataDir], {
            VIGIL_SERVER: server,
          }),
          runVigil(['workspace', 'list', '--json', ...target()], { VIGIL_SERVER: dead }),
          runVigil(['workspace', 'list', '--json', '--data-dir', dataDir], {
            VIGIL_SERVER: dead,
          }),
        ]);
        expect(jsonOf(fromEnv)).to.be.an('array');
        expect(jsonOf(flagWins)).to.be.an('array');
        expectFailure(envDead, 1, 'UNAVAILABLE');
      });

      it('exits 1 with one line naming UNAVAILABLE when the server is unreachable', async () => {
        const dead = `127.0.0.1:${await freePort()}`;
        const started = Date.now();
        const result = await runVigil([
          'workspace',
          'get',
          'cli-anything',
          '--server',
          dead,
          '--data-dir',
          dataDir,
        ]);
        expectFailure(result, 1, 'UNAVAILABLE');
        expect(Date.now() - started, 'fails fast, not at the deadline').to.be.below(8_000);
      });

      it('exits 1 with one line naming UNAUTHENTICATED TOKEN_INVALID for a wrong control token', async () => {
        const result = await runVigil(['workspace', 'get', 'cli-anything', '--server', server], {
          VIGIL_CONTROL_TOKEN: 'vgc_wrong',
        });
        expectFailure(result, 1, 'UNAUTHENTICATED', 'TOKEN_INVALID');
      });
    });

    describe('when called wrongly', () => {
      it('exits 2 with one line for every usage error', async () => {
        const cases: [string[], string][] = [
          [['frob'], 'frob'],
          [['workspace', 'frob', ...target()], 'frob'],
          [['workspace', 'list', '--bogus', ...target()], '--bogus'],
          [['workspace', 'get', ...target()], 'ID'],
          [['workspace', 'get', 'a', 'b', ...target()], 'ID'],
          [['workspace', 'delete', ...target()], 'ID'],
          [['workspace', 'rotate-token', ...target()], 'ID'],
          [['workspace', 'list', '--status', 'SLEEPY', ...target()], '--status'],
          [['watch', '--after-seq', 'soon', ...target()], '--after-seq'],
          [['watch', '--bogus', ...target()], '--bogus'],
          [['serve', '--bogus'], '--bogus'],
        ];
        // A few at a time: a dozen Node.js starts at once can outlast the timeout on two busy cores.
        const results: Awaited<ReturnType<typeof runVigil>>[] = [];
        for (let i = 0; i < cases.length; i += 4) {
          results.push(
            ...(await Promise.all(cases.slice(i, i + 4).map(([args]) => runVigil(args)))),
          );
        }
        results.forEach((result, i) => {
          const [args, word] = cases[i]!;
          expect(result.code, `vigil ${args.join(' ')}: ${shown(result)}`).to.equal(2);
          expect(result.stderr, `vigil ${args.join(' ')}: ${shown(result)}`).to.have.length(1);
          expect(result.stderr[0], `vigil ${args.join(' ')}`).to.include(word);
          expect(result.stdout, `vigil ${args.join(' ')}`).to.deep.equal([]);
        });
      });
    });

    describe('vigil watch', () => {
      const parse = (line: string) => JSON.parse(line) as WatchLine;

      it('with --snapshot and --workspace prints the filtered snapshot, snapshotEnd, then transitions as JSON lines', async () => {
        const [tokenA, tokenB] = await Promise.all([
          created('cli-watch-a'),
          created('cli-watch-b'),
          created('cli-watch-c'),
        ]);
        const watch = start([
          'watch',
          '--json',
          '--snapshot',
          '--workspace',
          'cli-watch-a',
          '--workspace',
          'cli-watch-c',
          ...target(),
        ]);
        await watch.waitForLine((l) => parse(l).snapshotEnd !== undefined);
        const head = watch.lines.map(parse);
        const end = head.pop()!;
        expect(head.map((e) => [e.snapshot?.id, e.snapshot?.status]).sort()).to.deep.equal([
          ['cli-watch-a', 'WORKSPACE_STATUS_PROVISIONING'],
          ['cli-watch-c', 'WORKSPACE_STATUS_PROVISIONING'],
        ]);
        const endSeq = Number(end.snapshotEnd?.seq);
        expect(endSeq).to.be.above(0);

        // b's transition commits first; the filter must keep it off the stream.
        await heartbeat('cli-watch-b', tokenB);
        await heartbeat('cli-watch-a', tokenA);
        await watch.waitForLine((l) => parse(l).transition?.workspaceId === 'cli-watch-a');
        const transitions = watch.lines
          .map(parse)
          .flatMap((e) => (e.transition ? [e.transition] : []));
        expect(transitions).to.have.length(1);
        const [t] = transitions;
        expect(t).to.include({
          workspaceId: 'cli-watch-a',
          fromStatus: 'WORKSPACE_STATUS_PROVISIONING',
          toStatus: 'WORKSPACE_STATUS_ONLINE',
          reason: 'TRANSITION_REASON_HEARTBEAT_RESUMED',
        });
        expect(Number(t!.seq)).to.be.above(endSeq);
        expect(watch.lines.join('\n')).not.to.include('cli-watch-b');

        expect(await watch.kill('SIGTERM')).to.equal(0);
      });

      it('with --after-seq N prints exactly the transitions after N, as JSON or for humans', async () => {
        const token = await created('cli-resume');
        await heartbeat('cli-resume', token);
        await call(
          clients.control,
          clients.control.deleteWorkspace,
          { workspaceId: 'cli-resume' },
          controlToken,
        );
        const { transitions } = await call(
          clients.control,
          clients.control.listTransitions,
          { workspaceId: 'cli-resume', pageSize: 100, pageToken: '' },
          controlToken,
        );
        expect(transitions.map((t) => t.seq)).to.have.length(3);
        const [createdSeq, onlineSeq, removedSeq] = transitions.map((t) => t.seq) as [
          number,
          number,
          number,
        ];

        const after = ['--after-seq', String(createdSeq), '--workspace', 'cli-resume'];
        const json = start(['watch', '--json', ...after, ...target()]);
        const human = start(['watch', ...after, ...target()]);
        await json.waitForLine((l) => Number(parse(l).transition?.seq) === removedSeq);
        await human.waitForLine((l) => l.includes('REMOVED'));

        const seen = json.lines.map(parse).flatMap((e) => (e.transition ? [e.transition] : []));
        expect(seen.map((t) => [Number(t.seq), t.toStatus, t.reason])).to.deep.equal([
          [onlineSeq, 'WORKSPACE_STATUS_ONLINE', 'TRANSITION_REASON_HEARTBEAT_RESUMED'],
          [removedSeq, 'WORKSPACE_STATUS_REMOVED', 'TRANSITION_REASON_DELETED'],
        ]);
        expect(human.lines).to.have.length(2);
        expect(human.lines[0]).to.match(
          new RegExp(
            `^\\s*${onlineSeq}\\s+\\S+\\s+cli-resume\\s+PROVISIONING -> ONLINE\\s+HEARTBEAT_RESUMED`,
          ),
        );
        expect(human.lines[1]).to.match(
          new RegExp(`^\\s*${removedSeq}\\s+\\S+\\s+cli-resume\\s+ONLINE -> REMOVED\\s+DELETED`),
        );
        expect(await json.kill('SIGTERM')).to.equal(0);
        expect(await human.kill('SIGTERM')).to.equal(0);
      });

      it('exits 1 with one line for a cursor beyond the head (OUT_OF_RANGE CURSOR_AHEAD) or a wrong token', async () => {
        const [ahead, wrong] = await Promise.all([
          runVigil(['watch', '--json', '--after-seq', '1000000000', ...target()]),
          runVigil(['watch', '--json', ...target()], { VIGIL_CONTROL_TOKEN: 'vgc_wrong' }),
        ]);
        expectFailure(ahead, 1, 'OUT_OF_RANGE', 'CURSOR_AHEAD');
        expectFailure(wrong, 1, 'UNAUTHENTICATED', 'TOKEN_INVALID');
      });
    });

    describe('vigil sidecar', () => {
      it('with the token from create brings the workspace ONLINE and exits 0 on SIGTERM', async () => {
        const response = jsonOf(await workspace('create', 'cli-sidecar', '--json')) as {
          workspaceToken: string;
        };
        const tokenFile = join(dir, 'cli-sidecar.token');
        writeFileSync(tokenFile, `${response.workspaceToken}\n`);
        const sidecar = start([
          'sidecar',
          '--json',
          '--workspace',
          'cli-sidecar',
          '--token-file',
          tokenFile,
          '--url',
          'http://127.0.0.1:8000',
          '--card',
          writeCard(),
          '--server',
          server,
        ]);
        const registered = JSON.parse(
          await sidecar.waitForLine((l) => l.includes('"registered"')),
        ) as Record<string, unknown>;
        expect(registered).to.include({ event: 'registered', status: 'ONLINE' });
        await sidecar.waitForLine((l) => l.includes('"heartbeat"'));

        const got = jsonOf(await workspace('get', 'cli-sidecar', '--json')) as WorkspaceJson;
        expect(got.status).to.equal('WORKSPACE_STATUS_ONLINE');
        expect(got.url).to.equal('http://127.0.0.1:8000/');
        expect(got.agentCard?.['name']).to.equal('cli-agent');

        const started = Date.now();
        expect(await sidecar.kill('SIGTERM')).to.equal(0);
        expect(Date.now() - started).to.be.below(5_000);
        expect(sidecar.stderr).to.deep.equal([]);
      });

      it('exits 2 with one line for a bad --card file or a missing --token-file', async () => {
        const tokenFile = join(dir, 'sidecar-usage.token');
        writeFileSync(tokenFile, 'vgw_whatever\n');
        const notJson = join(dir, 'not-json.json');
        writeFileSync(notJson, 'name: agent\n');
        const array = join(dir, 'array.json');
        writeFileSync(array, JSON.stringify([{ name: 'agent', url: 'http://127.0.0.1:8000' }]));
        const base = [
          'sidecar',
          '--workspace',
          'cli-sidecar-usage',
          '--url',
          'http://127.0.0.1:8000',
        ];
        const cases: [string[], string][] = [
          [[...base, '--token-file', tokenFile, '--card', notJson], '--card'],
          [[...base, '--token-file', tokenFile, '--card', array], '--card'],
          [[...base, '--token-file', tokenFile, '--card', join(dir, 'absent.json')], '--card'],
          [[...base, '--card', writeCard()], '--token-file'],
          [
            [...base, '--token-file', join(dir, 'absent.token'), '--card', writeCard()],
            '--token-file',
          ],
        ];
        const results = await Promise.all(
          cases.map(([args]) => runVigil([...args, '--server', server])),
        );
        results.forEach((result, i) => {
          const [args, word] = cases[i]!;
          expect(result.code, `vigil ${args.join(' ')}: ${shown(result)}`).to.equal(2);
          expect(result.stderr, `vigil ${args.join(' ')}: ${shown(result)}`).to.have.length(1);
          expect(result.stderr[0]).to.include(word);
        });
      });
    });
  });
});
