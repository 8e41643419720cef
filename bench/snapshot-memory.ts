import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client, Metadata, ServiceError } from '@grpc/grpc-js';
import {
  CreateWorkspaceRequest,
  CreateWorkspaceResponse,
  WatchStatusRequest,
} from '../gen/vigil/v1/control_service.js';
import { RegisterRequest } from '../gen/vigil/v1/runtime_service.js';
import { DeliveryMode } from '../gen/vigil/v1/workspace.js';
import { killAll, memoryOf, sleep, startVigil } from './lib/children.js';
import { bearer, identity, newClient } from './lib/wire.js';

/**
 * What WatchStatus snapshot streams that never read cost the server: 500
 * workspaces with ~60 KB cards, then six snapshot streams over raw HTTP/2
 * that never read a byte (no flow-control credit beyond the initial window),
 * and the server's RSS before and after. Not part of `npm run bench`:
 *
 *   npm run -s build && node dist/bench/snapshot-memory.js
 */

const CONTROL = 'vgc_bench-snapshot-memory';

function unary(client: Client, path: string, bytes: Buffer, metadata: Metadata): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      identity,
      identity,
      bytes,
      metadata,
      (error: ServiceError | null, out?: Buffer) => {
        if (error) reject(error);
        else resolve(out ?? Buffer.alloc(0));
      },
    );
  });
}

function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(frame, 5);
  return frame;
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-snapmem-'));
  const server = await startVigil({
    dataDir,
    controlToken: CONTROL,
    flags: ['--register-rate-limit', 'off'],
  });
  try {
    const client = newClient(server.address);
    const padding = 'c'.repeat(60 * 1024);
    for (let i = 0; i < 500; i += 1) {
      const id = `ws-${String(i).padStart(3, '0')}`;
      const created = CreateWorkspaceResponse.decode(
        await unary(
          client,
          '/vigil.v1.ControlService/CreateWorkspace',
          Buffer.from(CreateWorkspaceRequest.encode({ workspaceId: id, name: '' }).finish()),
          bearer(CONTROL),
        ),
      );
      await unary(
        client,
        '/vigil.v1.RuntimeService/Register',
        Buffer.from(
          RegisterRequest.encode({
            workspaceId: id,
            url: 'http://127.0.0.1:8000/',
            agentCard: { name: id, url: 'http://127.0.0.1:8000/', padding },
            deliveryMode: DeliveryMode.DELIVERY_MODE_PUSH,
          }).finish(),
        ),
        bearer(created.workspaceToken),
      );
    }
    client.close();
    await sleep(2_000);
    const before = memoryOf(server.pid).rssMiB;
    const session = connect(`http://${server.address}`, {
      settings: { initialWindowSize: 65_535 },
    });
    session.on('error', () => undefined);
    const request = grpcFrame(
      WatchStatusRequest.encode({
        workspaceIds: [],
        afterSeq: 0,
        includeSnapshot: true,
        resume: false,
      }).finish(),
    );
    const streams = Array.from({ length: 6 }, () => {
      const stream = session.request({
        ':method': 'POST',
        ':path': '/vigil.v1.ControlService/WatchStatus',
        'content-type': 'application/grpc',
        te: 'trailers',
        authorization: `Bearer ${CONTROL}`,
      });
      stream.on('error', () => undefined);
      stream.pause(); // never read: no WINDOW_UPDATE beyond the initial window
      stream.end(request);
      return stream;
    });
    await sleep(5_000);
    const after = memoryOf(server.pid).rssMiB;
    console.log(
      `server RSS before ${before.toFixed(1)} MiB, with 6 stalled snapshot streams ${after.toFixed(1)} MiB: +${(after - before).toFixed(1)} MiB (${((after - before) / 6).toFixed(1)} MiB per stream)`,
    );
    for (const stream of streams) stream.close();
    session.destroy();
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch(async (error: unknown) => {
  console.error(error);
  await killAll();
  process.exit(1);
});
