import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { CreateWorkspaceRequest, GetWorkspaceRequest } from '../gen/vigil/v1/control_service.js';
import { RegisterRequest } from '../gen/vigil/v1/runtime_service.js';
import { DeliveryMode } from '../gen/vigil/v1/workspace.js';
import { startVigil, killAll } from './lib/children.js';
import { summarize, round } from './lib/stats.js';
import { bearer, identity, newClient } from './lib/wire.js';

/**
 * Unauthenticated bytes are cheap: an admin's GetWorkspace latency, alone and
 * while three unauthenticated clients (each its own connection, 4 calls in
 * flight) send ~1 MiB Register requests without a token. Vigil refuses those
 * before reading their messages, so the admin p99 should move by ≤ 10 ms.
 * Not part of `npm run bench` (run it alone, on a quiet machine):
 *
 *   npm run -s build && node dist/bench/unauthenticated-load.js [--seconds N]
 */

const CONTROL = 'vgc_bench-unauth-load';
const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1] || 5);

function unary(client: Client, path: string, bytes: Buffer, metadata: Metadata): Promise<void> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      identity,
      identity,
      bytes,
      metadata,
      (error: ServiceError | null) => {
        if (error) reject(error);
        else resolve();
      },
    );
  });
}

async function adminLatencies(client: Client, ms: number): Promise<Float64Array> {
  const request = Buffer.from(GetWorkspaceRequest.encode({ workspaceId: 'ws-admin' }).finish());
  const samples: number[] = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const started = performance.now();
    await unary(client, '/vigil.v1.ControlService/GetWorkspace', request, bearer(CONTROL));
    samples.push(performance.now() - started);
  }
  return Float64Array.from(samples);
}

/** Loader mode (a child process, so its CPU is not the admin client's): 3 clients × 4 calls. */
async function runLoader(address: string, ms: number): Promise<void> {
  const fields: Record<string, string> = { name: 'x', url: 'http://127.0.0.1:1/' };
  for (let i = 0; i < 1_000; i += 1) fields[`f${i}`] = 'y'.repeat(1_000);
  const big = Buffer.from(
    RegisterRequest.encode({
      workspaceId: 'ws-admin',
      url: 'http://127.0.0.1:1/',
      agentCard: fields,
      deliveryMode: DeliveryMode.DELIVERY_MODE_PUSH,
    }).finish(),
  );
  const end = performance.now() + ms;
  let refused = 0;
  const loaders = Array.from({ length: 3 }, () => newClient(address));
  await Promise.all(
    loaders.flatMap((client) =>
      Array.from({ length: 4 }, async () => {
        while (performance.now() < end) {
          try {
            await unary(client, '/vigil.v1.RuntimeService/Register', big, new Metadata());
          } catch {
            refused += 1;
          }
        }
      }),
    ),
  );
  for (const client of loaders) client.close();
  console.log(JSON.stringify({ refused, bytes: big.length }));
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-unauth-'));
  const server = await startVigil({ dataDir, controlToken: CONTROL });
  try {
    const admin = newClient(server.address);
    await unary(
      admin,
      '/vigil.v1.ControlService/CreateWorkspace',
      Buffer.from(CreateWorkspaceRequest.encode({ workspaceId: 'ws-admin', name: '' }).finish()),
      bearer(CONTROL),
    );
    // Warm up, then the baseline.
    await adminLatencies(admin, 1_000);
    const alone = summarize(await adminLatencies(admin, seconds * 1_000));

    const loadMs = seconds * 1_000 + 1_500;
    const child = fork(__filename, ['--loader', server.address, String(loadMs)], {
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const childDone = new Promise<void>((resolve) => {
      child.once('exit', () => {
        resolve();
      });
    });
    // Let the loader connect and reach full speed.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const loaded = summarize(await adminLatencies(admin, seconds * 1_000));
    await childDone;
    admin.close();
    const { refused, bytes } = JSON.parse(out.trim() || '{"refused":0,"bytes":0}') as {
      refused: number;
      bytes: number;
    };
    const big = { length: bytes };
    const loadSeconds = loadMs / 1_000;
    const row = (label: string, s: ReturnType<typeof summarize>) =>
      `${label.padEnd(34)} n=${s.count} p50=${round(s.p50, 2)} ms p99=${round(s.p99, 2)} ms max=${round(s.max, 2)} ms`;
    console.log(`request size ${(big.length / 1024 / 1024).toFixed(2)} MiB`);
    console.log(row('GetWorkspace alone', alone));
    console.log(row('GetWorkspace under 3 unauth clients', loaded));
    console.log(
      `unauthenticated calls refused: ${refused} (${round(refused / loadSeconds, 0)}/s); p99 delta ${round(loaded.p99 - alone.p99, 2)} ms (target ≤ 10 ms)`,
    );
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const loaderAt = process.argv.indexOf('--loader');
(loaderAt > 0
  ? runLoader(process.argv[loaderAt + 1] ?? '', Number(process.argv[loaderAt + 2]))
  : main()
).catch(async (error: unknown) => {
  console.error(error);
  await killAll();
  process.exit(1);
});
