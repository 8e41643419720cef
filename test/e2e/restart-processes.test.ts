import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { expect } from 'chai';
import { tempDir } from '../helpers/harness.js';
import { freePort, vigil, type Proc } from '../helpers/processes.js';

interface WatchedTransition {
  seq: number;
  workspaceId: string;
  fromStatus?: string;
  toStatus: string;
  reason: string;
  at: string;
}

/** Transitions in a `vigil watch --json` output. */
function watched(proc: Proc): WatchedTransition[] {
  return proc.lines.flatMap((line) => {
    const event = JSON.parse(line) as { transition?: WatchedTransition };
    return event.transition ? [event.transition] : [];
  });
}

const isTransition = (workspaceId: string, to: string, reason: string) => (line: string) => {
  const t = (JSON.parse(line) as { transition?: WatchedTransition }).transition;
  return (
    t?.workspaceId === workspaceId &&
    t.toStatus === `WORKSPACE_STATUS_${to}` &&
    t.reason === `TRANSITION_REASON_${reason}`
  );
};

const HEARTBEAT_MS = 1_000;

describe('the restart story with real processes', function () {
  this.timeout(90_000);
  let dir: string;
  const procs: Proc[] = [];

  beforeEach(() => {
    dir = tempDir();
  });

  afterEach(async () => {
    for (const p of procs.splice(0).reverse()) await p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  function start(args: string[]): Proc {
    const proc = vigil(args);
    procs.push(proc);
    return proc;
  }

  it("recovers on the restarted sidecar's first heartbeat, and survives a server SIGKILL without false OFFLINE or a gap", async () => {
    const port = await freePort();
    const server = `127.0.0.1:${port}`;
    const dataDir = join(dir, 'data');
    const serveArgs = [
      'serve',
      '--listen',
      server,
      '--data-dir',
      dataDir,
      '--metrics-listen',
      'off',
      '--heartbeat-interval',
      `${HEARTBEAT_MS}ms`,
      '--offline-after',
      '4s',
    ];
    let serve = start(serveArgs);
    await serve.waitForLine((l) => l.includes('"listening"'));
    const client = ['--server', server, '--data-dir', dataDir];

    // Two workspaces, each with its token in a file, and one card.
    const tokens: Record<string, string> = {};
    for (const id of ['ws-a', 'ws-b']) {
      const create = start(['workspace', 'create', id, '--json', ...client]);
      const line = await create.waitForLine(() => true);
      tokens[id] = join(dir, `${id}.token`);
      writeFileSync(tokens[id], (JSON.parse(line) as { workspaceToken: string }).workspaceToken);
    }
    const card = join(dir, 'card.json');
    writeFileSync(card, JSON.stringify({ name: 'agent', url: 'http://127.0.0.1:8000' }));

    const watch = start(['watch', '--json', ...client]);
    await watch.waitForLine((l) => l.includes('progress'));
    const sidecar = (id: string, url: string) =>
      start([
        'sidecar',
        '--json',
        '--workspace',
        id,
        '--token-file',
        tokens[id]!,
        '--url',
        url,
        '--card',
        card,
        '--server',
        server,
      ]);

    let a = sidecar('ws-a', 'http://127.0.0.1:8000');
    sidecar('ws-b', 'http://127.0.0.1:8001');
    await watch.waitForLine(isTransition('ws-a', 'ONLINE', 'REGISTERED'));
    await watch.waitForLine(isTransition('ws-b', 'ONLINE', 'REGISTERED'));
    await a.waitForLine((l) => l.includes('"heartbeat"'));

    // The runtime dies hard and comes back advertising a name only its own network resolves.
    await a.kill('SIGKILL');
    a = sidecar('ws-a', 'http://212851b5693d:8000');
    const failed = await a.waitForLine((l) => l.includes('"register-failed"'));
    expect(JSON.parse(failed)).to.include({
      code: 'INVALID_ARGUMENT',
      reason: 'URL_VALIDATE_FAILED',
    });
    await watch.waitForLine(isTransition('ws-a', 'DEGRADED', 'REGISTER_FAILED'));
    const firstBeat = JSON.parse(await a.waitForLine((l) => l.includes('"heartbeat"'))) as {
      at: string;
      status: string;
    };
    expect(firstBeat.status).to.equal('ONLINE');
    const recovered =
      watched(watch).find((t) =>
        isTransition('ws-a', 'ONLINE', 'RECOVERED')(JSON.stringify({ transition: t })),
      ) ??
      (
        JSON.parse(await watch.waitForLine(isTransition('ws-a', 'ONLINE', 'RECOVERED'))) as {
          transition: WatchedTransition;
        }
      ).transition;
    // Recovery happened on that first heartbeat: well within one heartbeat interval of it.
    expect(Math.abs(Date.parse(firstBeat.at) - Date.parse(recovered.at))).to.be.below(HEARTBEAT_MS);

    // Steady heartbeats for longer than offline_after are answered from memory,
    // so the file's last-seen time of ws-b falls behind: what the crash loses.
    await new Promise((resolve) => setTimeout(resolve, 5_000));

    // The server dies hard while both sidecars heartbeat, and stays down longer than offline_after.
    const beforeCrash = watched(watch).length;
    const crashedAt = Date.now();
    await serve.kill('SIGKILL');
    const db = new Database(join(dataDir, 'vigil.db'));
    const stored = db
      .prepare(
        'SELECT max(coalesce(last_heartbeat_at, 0), last_registered_at) AS seen FROM workspaces WHERE id = ?',
      )
      .get('ws-b') as { seen: number };
    db.close();
    expect(crashedAt - stored.seen, 'ms of ws-b heartbeats the crash lost').to.be.above(4_000);
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    serve = start(serveArgs);
    await serve.waitForLine((l) => l.includes('"listening"'));
    // Give the sweeper more than offline_after to (wrongly) act, while sidecars heartbeat again.
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    const del = start(['workspace', 'delete', 'ws-b', ...client]);
    await del.waitForLine((l) => l.includes('deleted'));
    await watch.waitForLine(isTransition('ws-b', 'REMOVED', 'DELETED'));

    const all = watched(watch);
    expect(all.filter((t) => t.toStatus === 'WORKSPACE_STATUS_OFFLINE')).to.deep.equal([]);
    expect(all.length).to.be.above(beforeCrash);
    const seqs = all.map((t) => t.seq);
    // Unfiltered, so every seq from the first watched one on must appear exactly once, in order.
    expect(seqs).to.deep.equal(Array.from({ length: seqs.length }, (_, i) => (seqs[0] ?? 0) + i));
    expect(watch.stderr.some((l) => l.includes('reconnecting'))).to.equal(true);
  });
});
