import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { expect } from 'chai';
import { WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { getWorkspace } from '../helpers/e2e-fixtures.js';
import { CONTROL_TOKEN, card, startHarness, type Harness } from '../helpers/harness.js';

/**
 * What an operator with grpcurl or `buf curl` and no proto files sees: the
 * server's reflection must describe every RPC with its dependencies, so
 * requests can be built and responses decoded from reflection alone.
 * Uses the real `buf` CLI from node_modules and, when Debian's python3-grpcio
 * is installed, Python's grpc (C core) as an unrelated second client.
 */

// Compiled to dist/test/e2e/: the repository root is three levels up.
const ROOT = join(__dirname, '..', '..', '..');
const BUF = join(ROOT, 'node_modules', '.bin', 'buf');
const PYTHON = '/usr/bin/python3';
const PROBE = join(ROOT, 'test', 'helpers', 'reflection-probe.py');

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program without a shell and collects its exit code and output. */
function run(file: string, args: readonly string[], timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          reject(new Error(`${file} failed to run: ${error.message}\n${stderr}`));
          return;
        }
        resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr });
      },
    );
  });
}

/** `buf curl` over plaintext HTTP/2 (gRPC), the grpcurl equivalent. */
function bufCurl(port: number, path: string, options: { token?: string; data?: unknown } = {}) {
  const args = ['curl', '--protocol', 'grpc', '--http2-prior-knowledge'];
  if (options.token !== undefined) args.push('-H', `authorization: Bearer ${options.token}`);
  if (options.data !== undefined) args.push('-d', JSON.stringify(options.data));
  args.push(`http://127.0.0.1:${port}${path}`);
  return run(BUF, args);
}

/** Parses `buf curl` JSON output, failing with the whole run when it is not JSON. */
function json(text: string, result: Run): Record<string, unknown> {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(
      `not JSON: exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`,
    );
  }
}

/** Succeeds with the parsed response, or fails with buf's output. */
function okResponse(result: Run): Record<string, unknown> {
  expect(result.code, `buf curl exit code; stderr: ${result.stderr}`).to.equal(0);
  return json(result.stdout, result);
}

interface BufError {
  readonly code: string;
  readonly reason: string;
}

/** The gRPC code and ErrorInfo reason of a failed `buf curl` call (it prints the error as JSON on stderr). */
function errorOf(result: Run): BufError {
  expect(result.code, `buf curl should fail; stdout: ${result.stdout}`).to.not.equal(0);
  const body = json(result.stderr, result) as {
    code?: string;
    details?: { type?: string; value?: string }[];
  };
  const infos = (body.details ?? []).filter((d) => d.type === 'google.rpc.ErrorInfo');
  expect(infos, `ErrorInfo details in ${result.stderr}`).to.have.length(1);
  return {
    code: body.code ?? '',
    reason: errorInfoReason(Buffer.from(infos[0]?.value ?? '', 'base64')),
  };
}

/** Field 1 (reason) of an encoded google.rpc.ErrorInfo. */
function errorInfoReason(bytes: Uint8Array): string {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) return reader.string();
    reader.skip(wireType, field);
  }
  return '';
}

const VIGIL_METHODS = [
  'vigil.v1.ControlService/CreateWorkspace',
  'vigil.v1.ControlService/DeleteWorkspace',
  'vigil.v1.ControlService/DeleteWorkspaceSecret',
  'vigil.v1.ControlService/ExplainProjection',
  'vigil.v1.ControlService/ListAuditEvents',
  'vigil.v1.ControlService/ListWorkspaceSecrets',
  'vigil.v1.ControlService/SetWorkspaceRuntimeConfig',
  'vigil.v1.ControlService/SetWorkspaceSecret',
  'vigil.v1.ControlService/GetWorkspace',
  'vigil.v1.ControlService/ListTransitions',
  'vigil.v1.ControlService/ListWorkspaces',
  'vigil.v1.ControlService/RevokeWorkspaceTokens',
  'vigil.v1.ControlService/RotateWorkspaceToken',
  'vigil.v1.ControlService/WatchStatus',
  'vigil.v1.RuntimeService/Heartbeat',
  'vigil.v1.RuntimeService/HeartbeatStream',
  'vigil.v1.RuntimeService/Register',
  'vigil.v1.RuntimeService/GetProjection',
  'vigil.v1.RuntimeService/WatchProjection',
];

describe('server reflection with buf curl', () => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness();
  });

  afterEach(async () => {
    await h.dispose();
  });

  describe('when listing methods', () => {
    it('lists the 19 RuntimeService and ControlService RPCs and Health/Check', async () => {
      const result = await run(BUF, [
        'curl',
        '--protocol',
        'grpc',
        '--http2-prior-knowledge',
        '--list-methods',
        `http://127.0.0.1:${h.vigil.port}`,
      ]);
      expect(result.code, result.stderr).to.equal(0);
      const methods = result.stdout
        .split('\n')
        .map((line) => line.trim())
        .filter(Boolean);
      expect(methods.filter((m) => m.startsWith('vigil.'))).to.have.members(VIGIL_METHODS);
      expect(methods).to.include('grpc.health.v1.Health/Check');
    });
  });

  describe('when calling RPCs with schemas from reflection alone', () => {
    it('creates a workspace and registers it ONLINE', async () => {
      const created = okResponse(
        await bufCurl(h.vigil.port, '/vigil.v1.ControlService/CreateWorkspace', {
          token: CONTROL_TOKEN,
          data: { workspaceId: 'ws-curl' },
        }),
      ) as { workspace?: { id?: string; status?: string }; workspaceToken?: string };
      expect(created.workspace?.id).to.equal('ws-curl');
      expect(created.workspace?.status).to.equal('WORKSPACE_STATUS_PROVISIONING');
      const token = created.workspaceToken ?? '';
      expect(token).to.not.equal('');

      const agentCard = card('curl-agent');
      const registered = okResponse(
        await bufCurl(h.vigil.port, '/vigil.v1.RuntimeService/Register', {
          token,
          data: {
            workspaceId: 'ws-curl',
            url: 'http://127.0.0.1:8000',
            agentCard,
            deliveryMode: 'DELIVERY_MODE_PUSH',
          },
        }),
      ) as { workspace?: { status?: string; agentCard?: unknown }; heartbeatInterval?: string };
      expect(registered.workspace?.status).to.equal('WORKSPACE_STATUS_ONLINE');
      expect(registered.workspace?.agentCard).to.deep.equal(agentCard);
      expect(registered.heartbeatInterval).to.match(/^\d+(\.\d+)?s$/);

      // The card built from the reflected google.protobuf.Struct arrived intact.
      const stored = await getWorkspace(h, 'ws-curl');
      expect(stored.status).to.equal(WorkspaceStatus.WORKSPACE_STATUS_ONLINE);
      expect(stored.agentCard).to.deep.equal(agentCard);
    });

    it('reports the health of the server as SERVING', async () => {
      const health = okResponse(await bufCurl(h.vigil.port, '/grpc.health.v1.Health/Check'));
      expect(health).to.deep.equal({ status: 'SERVING' });
      const service = okResponse(
        await bufCurl(h.vigil.port, '/grpc.health.v1.Health/Check', {
          data: { service: 'vigil.v1.RuntimeService' },
        }),
      );
      expect(service).to.deep.equal({ status: 'SERVING' });
    });
  });

  describe('when a call fails', () => {
    it('shows the gRPC code and the ErrorInfo reason of a refused Register', async () => {
      const created = okResponse(
        await bufCurl(h.vigil.port, '/vigil.v1.ControlService/CreateWorkspace', {
          token: CONTROL_TOKEN,
          data: { workspaceId: 'ws-curl' },
        }),
      ) as { workspaceToken?: string };
      const result = await bufCurl(h.vigil.port, '/vigil.v1.RuntimeService/Register', {
        token: created.workspaceToken ?? '',
        data: { workspaceId: 'ws-curl', url: 'ftp://x', agentCard: card() },
      });
      expect(errorOf(result)).to.deep.equal({
        code: 'invalid_argument',
        reason: 'URL_VALIDATE_FAILED',
      });
    });

    it('shows UNAUTHENTICATED / TOKEN_MISSING for a ControlService call without a token', async () => {
      const result = await bufCurl(h.vigil.port, '/vigil.v1.ControlService/GetWorkspace', {
        data: { workspaceId: 'ws-curl' },
      });
      expect(errorOf(result)).to.deep.equal({ code: 'unauthenticated', reason: 'TOKEN_MISSING' });
    });
  });
});

describe('server reflection with Python grpc (C core)', () => {
  let h: Harness;

  before(async function () {
    const probe = await run(PYTHON, ['-c', 'import grpc, google.protobuf']).catch(() => undefined);
    // Debian's python3-grpcio is optional on developer machines; without it this check cannot run.
    if (probe?.code !== 0) this.skip();
  });

  beforeEach(async () => {
    h = await startHarness();
  });

  afterEach(async () => {
    await h.dispose();
  });

  interface ProbeVersion {
    structByFilename: boolean;
    containingFile: string;
    dependencies: string[];
    files: string[];
    service?: string;
    methods?: Record<string, { input: string; output: string }>;
    fieldTypes?: Record<string, string>;
  }

  describe('when fetching the file descriptor for vigil.v1.RuntimeService', () => {
    it('resolves the service with its dependencies over reflection v1 and v1alpha', async () => {
      const result = await run(PYTHON, [
        PROBE,
        `127.0.0.1:${h.vigil.port}`,
        'vigil.v1.RuntimeService',
      ]);
      expect(result.code, result.stderr).to.equal(0);
      const output = json(result.stdout, result) as {
        v1: ProbeVersion;
        v1alpha: ProbeVersion;
        health: string;
      };
      for (const version of [output.v1, output.v1alpha]) {
        expect(version.containingFile).to.equal('vigil/v1/runtime_service.proto');
        expect(version.structByFilename, 'file_by_filename google/protobuf/struct.proto').to.equal(
          true,
        );
        expect(version.dependencies).to.include('google/protobuf/struct.proto');
        expect(version.files).to.include.members([
          'vigil/v1/runtime_service.proto',
          'vigil/v1/workspace.proto',
          'vigil/v1/projection.proto',
          'google/protobuf/struct.proto',
          'google/protobuf/duration.proto',
          'google/protobuf/timestamp.proto',
        ]);
        expect(version.service).to.equal('vigil.v1.RuntimeService');
        expect(version.methods).to.deep.equal({
          Register: { input: 'vigil.v1.RegisterRequest', output: 'vigil.v1.RegisterResponse' },
          Heartbeat: { input: 'vigil.v1.HeartbeatRequest', output: 'vigil.v1.HeartbeatResponse' },
          HeartbeatStream: {
            input: 'vigil.v1.HeartbeatStreamRequest',
            output: 'vigil.v1.HeartbeatStreamResponse',
          },
          GetProjection: {
            input: 'vigil.v1.GetProjectionRequest',
            output: 'vigil.v1.GetProjectionResponse',
          },
          WatchProjection: {
            input: 'vigil.v1.WatchProjectionRequest',
            output: 'vigil.v1.WatchProjectionResponse',
          },
        });
        expect(version.fieldTypes?.['vigil.v1.RegisterRequest.agent_card']).to.equal(
          'google.protobuf.Struct',
        );
      }
      expect(output.health).to.equal('SERVING');
    });
  });
});
