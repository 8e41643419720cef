import { createSocket } from 'node:dgram';
import { createServer, type Socket } from 'node:net';
import { status, type ServiceError } from '@grpc/grpc-js';
import { systemResolver } from '../../src/app.js';
import { WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { createWorkspace, getWorkspace, listTransitions, registerRequest } from './e2e-fixtures.js';
import { startHarness } from './harness.js';
import { call, errorInfoOf } from './rpc.js';

/**
 * Run by test/e2e/resolver-starvation.test.ts inside a private user, mount
 * and network namespace whose /etc/resolv.conf names a DNS server on
 * loopback that never answers (started here) and whose /etc/hosts lists
 * `runtime-b.internal`. Vigil runs with its real resolver; attacker
 * workspaces register names whose DNS never answers while a victim
 * workspace registers a name from the hosts file. Prints one JSON report.
 */

interface Outcome {
  readonly ok: boolean;
  readonly code?: number;
  readonly reason?: string;
  readonly ms: number;
}

async function outcome(started: number, promise: Promise<unknown>): Promise<Outcome> {
  try {
    await promise;
    return { ok: true, ms: Date.now() - started };
  } catch (error) {
    const failed = error as ServiceError;
    const reason = failed.code === status.OK ? '' : errorInfoOf(failed).reason;
    return { ok: false, code: failed.code, reason, ms: Date.now() - started };
  }
}

async function main(): Promise<void> {
  // A DNS server that reads every query and answers none, over UDP and TCP.
  const udp = createSocket('udp4');
  let queries = 0;
  udp.on('message', () => {
    queries += 1;
  });
  await new Promise<void>((resolve) => udp.bind(53, '127.0.0.1', resolve));
  const held: Socket[] = [];
  const tcp = createServer((socket) => {
    held.push(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => tcp.listen(53, '127.0.0.1', resolve));

  const h = await startHarness({ resolveHost: systemResolver });
  const { runtime } = h.clients;
  try {
    const victim = await createWorkspace(h, 'ws-b');
    await call(runtime, runtime.register, registerRequest('ws-b'), victim.token);
    const attackers = await Promise.all(
      ['ws-x0', 'ws-x1', 'ws-x2'].map(async (id) => {
        const created = await createWorkspace(h, id);
        await call(runtime, runtime.register, registerRequest(id), created.token);
        return { id, token: created.token };
      }),
    );
    const transitionsBefore = (await listTransitions(h)).length;

    const started = Date.now();
    // Six Registers of names whose DNS never answers: two per attacker, its bound.
    const attacks = Array.from({ length: 6 }, (_, i) => {
      const attacker = attackers[i % 3]!;
      return outcome(
        started,
        call(
          runtime,
          runtime.register,
          registerRequest(attacker.id, { url: `http://never-${i}.example.test:8000/` }),
          attacker.token,
        ),
      );
    });
    // Give the attacks time to reach the resolver before the seventh and the victim.
    while (queries < 6) await new Promise((resolve) => setTimeout(resolve, 20));
    const beyondBound = await outcome(
      Date.now(),
      call(
        runtime,
        runtime.register,
        registerRequest('ws-x0', { url: 'http://never-7.example.test:8000/' }),
        attackers[0]!.token,
      ),
    );
    const victimOutcome = await outcome(
      Date.now(),
      call(
        runtime,
        runtime.register,
        registerRequest('ws-b', { url: 'http://runtime-b.internal:8000/' }),
        victim.token,
      ),
    );
    const victimDoneAt = Date.now();
    const attackOutcomes = await Promise.all(attacks);
    // Ordering, not speed: the victim was answered while every attack still waited on DNS.
    const victimBeforeEveryAttack = attackOutcomes.every((a) => started + a.ms >= victimDoneAt);
    const workspaces = await Promise.all(
      ['ws-b', ...attackers.map((a) => a.id)].map(async (id) => {
        const w = await getWorkspace(h, id);
        return {
          id,
          online: w.status === WorkspaceStatus.WORKSPACE_STATUS_ONLINE,
          marker: w.lastRegisterFailureAt !== undefined,
          url: w.url,
        };
      }),
    );
    const transitionsAfter = await listTransitions(h);
    process.stdout.write(
      `${JSON.stringify({
        queries,
        attacks: attackOutcomes,
        beyondBound,
        victim: victimOutcome,
        victimBeforeEveryAttack,
        workspaces,
        newTransitions: transitionsAfter.slice(transitionsBefore).map((t) => t.workspaceId),
      })}\n`,
    );
  } finally {
    await h.dispose();
    for (const socket of held) socket.destroy();
    tcp.close();
    udp.close();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
