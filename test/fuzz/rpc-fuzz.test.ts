import { Client, Metadata, credentials, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import fc from 'fast-check';
import { join } from 'node:path';
import { HeartbeatRequest, RegisterRequest } from '../../gen/vigil/v1/runtime_service.js';
import {
  CreateWorkspaceRequest,
  ListWorkspacesRequest,
  WatchStatusRequest,
} from '../../gen/vigil/v1/control_service.js';
import { CONTROL_TOKEN, card, startHarness, type Harness } from '../helpers/harness.js';
import { expectConsistent, stateDigest } from '../helpers/db-state.js';
import { call } from '../helpers/rpc.js';

/**
 * Property-based fuzzing of every RPC over a real socket: random bytes as
 * protobuf, odd and hostile field values, wrong tokens. Bad input must never
 * crash the server or be answered INTERNAL/UNKNOWN, a rejected call must write
 * nothing, and the database must stay consistent.
 */

const RUNS = Number(process.env['VIGIL_FUZZ_RUNS'] ?? 150);
const UNARY = [
  '/vigil.v1.RuntimeService/Register',
  '/vigil.v1.RuntimeService/Heartbeat',
  '/vigil.v1.ControlService/CreateWorkspace',
  '/vigil.v1.ControlService/GetWorkspace',
  '/vigil.v1.ControlService/ListWorkspaces',
  '/vigil.v1.ControlService/DeleteWorkspace',
  '/vigil.v1.ControlService/RotateWorkspaceToken',
  '/vigil.v1.ControlService/RevokeWorkspaceTokens',
  '/vigil.v1.ControlService/ListTransitions',
];
const FORBIDDEN = new Set([status.INTERNAL, status.UNKNOWN]);

describe('fuzzing every RPC', function () {
  this.timeout(180_000);
  let h: Harness;
  let raw: Client;
  let token: string;
  let dbFile: string;

  before(async () => {
    h = await startHarness();
    dbFile = join(h.dataDir, 'vigil.db');
    raw = new Client(`127.0.0.1:${h.vigil.port}`, credentials.createInsecure());
    const { control, runtime } = h.clients;
    token = (
      await call(
        control,
        control.createWorkspace,
        { workspaceId: 'ws-fuzz', name: '' },
        CONTROL_TOKEN,
      )
    ).workspaceToken;
    await call(
      runtime,
      runtime.register,
      { workspaceId: 'ws-fuzz', url: 'http://127.0.0.1:8000', agentCard: card(), deliveryMode: 0 },
      token,
    );
  });

  after(async () => {
    raw.close();
    expectConsistent(dbFile);
    await h.dispose();
  });

  /** Sends raw bytes to a unary method; resolves with the status code. */
  function send(path: string, bytes: Uint8Array, bearer: string | undefined): Promise<status> {
    const metadata = new Metadata();
    if (bearer !== undefined) metadata.set('authorization', `Bearer ${bearer}`);
    return new Promise((resolve) => {
      raw.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from(bytes),
        metadata,
        { deadline: Date.now() + 10_000 },
        (error: ServiceError | null) => {
          resolve(error ? error.code : status.OK);
        },
      );
    });
  }

  const tokenFor = (path: string) => (path.includes('RuntimeService') ? token : CONTROL_TOKEN);

  /** The call is answered with an allowed code, and writes nothing when rejected. */
  async function checkCall(
    path: string,
    bytes: Uint8Array,
    bearer: string | undefined,
  ): Promise<void> {
    const before = stateDigest(dbFile);
    const code = await send(path, bytes, bearer);
    expect(FORBIDDEN.has(code), `${path} answered ${status[code]}`).to.equal(false);
    if (code !== status.OK)
      expect(stateDigest(dbFile), `${path} rejected but wrote`).to.equal(before);
  }

  it('answers random bytes with a proper error and writes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...UNARY),
        fc.uint8Array({ maxLength: 512 }),
        async (path, bytes) => {
          await checkCall(path, bytes, tokenFor(path));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('answers wrong, odd and missing tokens with UNAUTHENTICATED and writes nothing', async () => {
    const tokens = fc.oneof(
      fc.constant(undefined),
      fc.string(),
      fc.string({ unit: 'grapheme', maxLength: 200 }),
      fc.constantFrom('vgw_', 'vgc_', 'Bearer', ' ', 'vgw_' + 'A'.repeat(43)),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...UNARY), tokens, async (path, bearer) => {
        // Header values must be printable ASCII; anything else is the client's own error, not a call.
        if (bearer !== undefined && !/^[\x20-\x7e]*$/.test(bearer)) return;
        const before = stateDigest(dbFile);
        const code = await send(path, new Uint8Array(), bearer);
        expect(code, `${path} with token ${JSON.stringify(bearer)}`).to.equal(
          status.UNAUTHENTICATED,
        );
        expect(stateDigest(dbFile)).to.equal(before);
      }),
      { numRuns: RUNS },
    );
  });

  const oddNumber = fc.oneof(
    fc.double(),
    fc.constantFrom(
      Number.NaN,
      Infinity,
      -Infinity,
      -0,
      Number.MAX_VALUE,
      Number.MIN_VALUE,
      0.5,
      1,
      0,
    ),
  );
  const oddString = fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 64 }),
    fc.string({ unit: 'binary', maxLength: 64 }),
    fc.constantFrom('', 'ws-fuzz', 'WS-FUZZ', '-', 'a'.repeat(64), '\u0000', '🦀', 'ws fuzz'),
    fc.string({ maxLength: 10_000 }),
  );
  const deepCard: fc.Arbitrary<unknown> = fc.integer({ min: 1, max: 300 }).map((depth) => {
    let value: Record<string, unknown> = { name: 'deep', url: 'http://127.0.0.1:8000' };
    for (let i = 0; i < depth; i += 1)
      value = { name: 'deep', url: 'http://127.0.0.1:8000', nested: value };
    return value;
  });
  const oddCard = fc.oneof(
    fc.constant(undefined),
    fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 8 }),
    fc.record({ name: oddString, url: oddString }),
    fc.record({
      name: fc.string(),
      supportedInterfaces: fc.array(fc.record({ url: oddString }), { maxLength: 3 }),
    }),
    deepCard,
    fc
      .integer({ min: 60_000, max: 200_000 })
      .map((n) => ({ name: 'big', url: 'http://x', pad: 'x'.repeat(n) })),
  );

  it('survives hostile heartbeat and register fields', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          workspaceId: fc.oneof(fc.constant('ws-fuzz'), oddString),
          errorRate: oddNumber,
          sampleError: oddString,
          currentTask: oddString,
          activeTasks: fc.nat(),
          uptimeSeconds: fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)),
          runtimeState: fc.integer({ min: -2, max: 10 }),
          nativeStatusManagement: fc.boolean(),
          agentCard: oddCard,
          url: oddString,
          deliveryMode: fc.integer({ min: -1, max: 5 }),
        }),
        fc.boolean(),
        async (f, register) => {
          let bytes: Uint8Array;
          try {
            bytes = register
              ? RegisterRequest.encode(
                  RegisterRequest.fromPartial({
                    workspaceId: f.workspaceId,
                    url: f.url,
                    agentCard: f.agentCard as never,
                    // Out-of-range enum numbers are the point.
                    // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment
                    deliveryMode: f.deliveryMode,
                  }),
                ).finish()
              : HeartbeatRequest.encode(
                  // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment
                  HeartbeatRequest.fromPartial({ ...f, agentCard: f.agentCard as never }),
                ).finish();
          } catch {
            return; // not representable as protobuf at all (say, a non-JSON value in a Struct)
          }
          const path = register
            ? '/vigil.v1.RuntimeService/Register'
            : '/vigil.v1.RuntimeService/Heartbeat';
          const before = stateDigest(dbFile);
          const code = await send(path, bytes, token);
          expect(
            FORBIDDEN.has(code),
            `${path} answered ${status[code]} for ${JSON.stringify(f).slice(0, 300)}`,
          ).to.equal(false);
          // A rejected Register may stamp only the register-failure marker (the one deliberate write).
          if (code !== status.OK && !(register && code === status.INVALID_ARGUMENT)) {
            expect(stateDigest(dbFile), `${path} rejected but wrote`).to.equal(before);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('survives hostile control requests', async () => {
    const requests = fc.oneof(
      fc.record({ workspaceId: oddString, name: oddString }).map((r) => ({
        path: '/vigil.v1.ControlService/CreateWorkspace',
        bytes: CreateWorkspaceRequest.encode(CreateWorkspaceRequest.fromPartial(r)).finish(),
      })),
      fc
        .record({
          pageSize: fc.integer(),
          pageToken: fc.oneof(oddString, fc.base64String()),
          statuses: fc.array(fc.integer({ min: -1, max: 9 }), { maxLength: 5 }),
        })
        .map((r) => ({
          path: '/vigil.v1.ControlService/ListWorkspaces',
          bytes: ListWorkspacesRequest.encode(ListWorkspacesRequest.fromPartial(r)).finish(),
        })),
    );
    await fc.assert(
      fc.asyncProperty(requests, async ({ path, bytes }) => {
        const before = stateDigest(dbFile);
        const code = await send(path, bytes, CONTROL_TOKEN);
        expect(FORBIDDEN.has(code), `${path} answered ${status[code]}`).to.equal(false);
        if (code !== status.OK) expect(stateDigest(dbFile)).to.equal(before);
      }),
      { numRuns: RUNS },
    );
  });

  it('answers random WatchStatus requests and stream messages without INTERNAL', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 256 }),
          fc
            .record({
              workspaceIds: fc.array(oddString, { maxLength: 5 }),
              afterSeq: fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)),
              includeSnapshot: fc.boolean(),
            })
            .map((r) => WatchStatusRequest.encode(WatchStatusRequest.fromPartial(r)).finish()),
        ),
        async (bytes) => {
          const metadata = new Metadata();
          metadata.set('authorization', `Bearer ${CONTROL_TOKEN}`);
          const stream = raw.makeServerStreamRequest(
            '/vigil.v1.ControlService/WatchStatus',
            (b: Buffer) => b,
            (b: Buffer) => b,
            Buffer.from(bytes),
            metadata,
          );
          const outcome = await new Promise<status | 'streaming'>((resolve) => {
            stream.once('data', () => {
              resolve('streaming');
            });
            stream.once('error', (error: ServiceError) => {
              resolve(error.code);
            });
          });
          stream.on('error', () => undefined);
          stream.cancel();
          if (outcome !== 'streaming')
            expect(FORBIDDEN.has(outcome), `WatchStatus answered ${status[outcome]}`).to.equal(
              false,
            );
        },
      ),
      { numRuns: Math.ceil(RUNS / 2) },
    );

    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 256 }), { minLength: 1, maxLength: 8 }),
        async (messages) => {
          const metadata = new Metadata();
          metadata.set('authorization', `Bearer ${token}`);
          const stream = raw.makeBidiStreamRequest(
            '/vigil.v1.RuntimeService/HeartbeatStream',
            (b: Buffer) => b,
            (b: Buffer) => b,
            metadata,
          );
          let answered = 0;
          const done = new Promise<status | undefined>((resolve) => {
            stream.on('data', () => {
              answered += 1;
              if (answered === messages.length) resolve(undefined);
            });
            stream.on('error', (error: ServiceError) => {
              resolve(error.code);
            });
          });
          for (const m of messages) stream.write(Buffer.from(m));
          const failure = await done;
          stream.on('error', () => undefined);
          stream.cancel();
          expect(failure, 'the stream ended with an error').to.equal(undefined);
          expect(answered).to.equal(messages.length);
        },
      ),
      { numRuns: Math.ceil(RUNS / 2) },
    );
  });

  it('is still healthy and consistent afterwards', async () => {
    const { control } = h.clients;
    const workspace = await call(
      control,
      control.getWorkspace,
      { workspaceId: 'ws-fuzz' },
      CONTROL_TOKEN,
    );
    expect(workspace.workspace?.id).to.equal('ws-fuzz');
    expectConsistent(dbFile);
  });
});
