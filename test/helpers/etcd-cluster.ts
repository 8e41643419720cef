import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './processes.js';

/** Whether Debian's etcd-server (the `etcd` binary) is installed. */
export const ETCD_INSTALLED = spawnSync('etcd', ['--version']).status === 0;
/** Whether etcdctl (Debian's etcd-client) is installed: it finds the leader. */
export const ETCDCTL_INSTALLED = spawnSync('etcdctl', ['version']).status === 0;
/** The one line a test that needs etcd skips with. */
export const ETCD_SKIP_REASON =
  'skipped: needs etcd 3.4+ and etcdctl (Debian packages etcd-server, etcd-client)';

/** Every PID this module started and has not seen exit: killed when the test process exits. */
const started = new Set<number>();
let exitHookInstalled = false;

/**
 * Registers a child PID so that it is SIGCONTed and SIGKILLed when the test
 * process exits, and unrefs the child so it never keeps mocha alive.
 */
export function adoptChild(child: ChildProcess): number {
  const pid = child.pid;
  if (pid === undefined) throw new Error('child process did not start');
  child.unref();
  started.add(pid);
  child.once('exit', () => started.delete(pid));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const p of started) {
        try {
          process.kill(p, 'SIGCONT');
          process.kill(p, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    });
  }
  return pid;
}

/** One etcd member: its addresses, data directory and current process. */
export interface EtcdMember {
  readonly name: string;
  /** HOST:PORT of the client listener. */
  readonly endpoint: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly logFile: string;
  /** PID of the running process, undefined while it is down. */
  pid(): number | undefined;
  alive(): boolean;
  paused(): boolean;
}

/** `etcdctl endpoint status` of one member; ids are decimal strings (they exceed 2^53). */
export interface MemberStatus {
  readonly endpoint: string;
  readonly memberId: string;
  readonly leaderId: string;
  readonly raftTerm: string;
  readonly revision: string;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** HOST:PORT of every member, comma-joined as `--etcd-endpoints` takes them. */
  readonly endpoints: string;
  /** The status of every member that answers within 2 s. */
  status(): Promise<MemberStatus[]>;
  /** The member the answering members agree leads (retried until `timeoutMs`). */
  leader(timeoutMs?: number): Promise<EtcdMember>;
  /** kill -9 by PID; resolves once the process is gone. */
  kill(member: EtcdMember): Promise<void>;
  /** SIGSTOP by PID. */
  pause(member: EtcdMember): void;
  /** SIGCONT by PID. */
  resume(member: EtcdMember): void;
  /** Starts a killed member again on its data directory; resolves once it reports healthy. */
  restart(member: EtcdMember): Promise<void>;
  /** Waits until every running member reports healthy. */
  healthy(timeoutMs?: number): Promise<void>;
  /** Kills every member by PID and removes the data directories. */
  stop(): Promise<void>;
}

const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms);
  });

function run(
  file: string,
  args: readonly string[],
  timeoutMs: number,
): Promise<{ stdout: string; ok: boolean }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs }, (error, stdout) => {
      resolve({ stdout, ok: !error });
    });
  });
}

async function memberHealthy(clientUrl: string): Promise<boolean> {
  try {
    const response = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1_000) });
    const body = await response.text();
    return response.ok && /"health"\s*:\s*"true"/.test(body);
  } catch {
    return false;
  }
}

/**
 * Parses `etcdctl endpoint status -w json`: the 64-bit ids are quoted before
 * JSON.parse so they never pass through a JavaScript number.
 */
export function parseEndpointStatus(json: string): MemberStatus[] {
  const quoted = json.replace(
    /"(cluster_id|member_id|leader|raft_term|revision|raftIndex|raft_index|raftAppliedIndex|raft_applied_index)":(\d+)/g,
    '"$1":"$2"',
  );
  const rows = JSON.parse(quoted) as {
    Endpoint: string;
    Status: { header: { member_id: string; raft_term: string; revision: string }; leader: string };
  }[];
  return rows.map((row) => ({
    endpoint: row.Endpoint,
    memberId: row.Status.header.member_id,
    leaderId: row.Status.leader,
    raftTerm: row.Status.header.raft_term,
    revision: row.Status.header.revision,
  }));
}

/**
 * Starts a 3-member (or `size`) etcd cluster on free loopback ports with
 * `--unsafe-no-fsync` and the zap logger at warn, and waits until every member
 * is healthy. Faults go by PID only. Every process is unref'd (it never keeps
 * mocha alive) and killed when the test process exits, whatever happens.
 */
export async function startEtcdCluster(
  options: { size?: number; extraFlags?: readonly string[] } = {},
): Promise<EtcdCluster> {
  const size = options.size ?? 3;
  const dir = mkdtempSync(join(tmpdir(), 'vigil-etcd-cluster-'));
  const specs: { name: string; client: number; peer: number }[] = [];
  for (let i = 1; i <= size; i += 1) {
    specs.push({ name: `m${i}`, client: await freePort(), peer: await freePort() });
  }
  const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peer}`).join(',');
  const token = `vigil-test-${process.pid}-${Date.now()}`;

  interface State {
    child: ChildProcess | undefined;
    exited: Promise<void>;
    paused: boolean;
  }

  const members: (EtcdMember & { state: State; spawnIt(): void })[] = specs.map((spec) => {
    const clientUrl = `http://127.0.0.1:${spec.client}`;
    const peerUrl = `http://127.0.0.1:${spec.peer}`;
    const dataDir = join(dir, spec.name);
    const logFile = join(dir, `${spec.name}.log`);
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const state: State = { child: undefined, exited: Promise.resolve(), paused: false };
    const args = [
      '--name',
      spec.name,
      '--data-dir',
      dataDir,
      '--listen-client-urls',
      clientUrl,
      '--advertise-client-urls',
      clientUrl,
      '--listen-peer-urls',
      peerUrl,
      '--initial-advertise-peer-urls',
      peerUrl,
      '--initial-cluster',
      initialCluster,
      '--initial-cluster-token',
      token,
      '--initial-cluster-state',
      'new',
      '--unsafe-no-fsync',
      '--logger',
      'zap',
      '--log-level',
      'warn',
      // Clients keep their connections alive every 5 s (CLUSTER.md): allow it.
      '--grpc-keepalive-min-time',
      '5s',
      ...(options.extraFlags ?? []),
    ];
    return {
      name: spec.name,
      endpoint: `127.0.0.1:${spec.client}`,
      clientUrl,
      peerUrl,
      logFile,
      state,
      pid: () => state.child?.pid,
      alive: () => state.child !== undefined,
      paused: () => state.paused,
      spawnIt() {
        const fd = openSync(logFile, 'a');
        const child = spawn('etcd', args, { stdio: ['ignore', fd, fd] });
        closeSync(fd);
        adoptChild(child);
        state.child = child;
        state.paused = false;
        state.exited = new Promise<void>((resolve) => {
          child.once('exit', () => {
            if (state.child === child) state.child = undefined;
            resolve();
          });
        });
      },
    };
  });

  for (const member of members) member.spawnIt();

  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.endpoint).join(','),
    async status() {
      const answers = await Promise.all(
        members
          .filter((m) => m.alive() && !m.paused())
          .map((m) =>
            run(
              'etcdctl',
              [
                '--endpoints',
                m.endpoint,
                '--command-timeout',
                '2s',
                '--dial-timeout',
                '1s',
                'endpoint',
                'status',
                '-w',
                'json',
              ],
              4_000,
            ),
          ),
      );
      return answers.filter((a) => a.ok).flatMap((a) => parseEndpointStatus(a.stdout));
    },
    async leader(timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const rows = await cluster.status();
        const leaderIds = new Set(rows.map((r) => r.leaderId).filter((id) => id !== '0'));
        if (leaderIds.size === 1) {
          const [leaderId] = leaderIds;
          const row = rows.find((r) => r.memberId === leaderId);
          const member = row && members.find((m) => row.endpoint.endsWith(m.endpoint));
          if (member) return member;
        }
        if (Date.now() > deadline) {
          throw new Error(
            `no etcd leader agreed on within ${timeoutMs} ms: ${JSON.stringify(rows)}`,
          );
        }
        await sleep(200);
      }
    },
    async kill(member) {
      const m = members.find((x) => x === member);
      const pid = m?.pid();
      if (!m || pid === undefined) return;
      process.kill(pid, 'SIGKILL');
      await m.state.exited;
      m.state.paused = false;
    },
    pause(member) {
      const m = members.find((x) => x === member);
      const pid = m?.pid();
      if (!m || pid === undefined) throw new Error(`${member.name} is not running`);
      process.kill(pid, 'SIGSTOP');
      m.state.paused = true;
    },
    resume(member) {
      const m = members.find((x) => x === member);
      const pid = m?.pid();
      if (!m || pid === undefined) throw new Error(`${member.name} is not running`);
      process.kill(pid, 'SIGCONT');
      m.state.paused = false;
    },
    async restart(member) {
      const m = members.find((x) => x === member);
      if (!m) throw new Error('not a member of this cluster');
      if (m.alive()) throw new Error(`${m.name} is still running`);
      m.spawnIt();
      await waitHealthy([m], 30_000);
    },
    async healthy(timeoutMs = 30_000) {
      await waitHealthy(
        members.filter((m) => m.alive() && !m.paused()),
        timeoutMs,
      );
    },
    async stop() {
      for (const m of members) {
        const pid = m.pid();
        if (pid === undefined) continue;
        try {
          process.kill(pid, 'SIGCONT');
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
        await m.state.exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };

  async function waitHealthy(which: readonly EtcdMember[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const answers = await Promise.all(which.map((m) => memberHealthy(m.clientUrl)));
      if (answers.every(Boolean)) return;
      if (Date.now() > deadline) {
        const logs = which.map((m) => `${m.name}: ${tail(m.logFile)}`).join('\n');
        throw new Error(`etcd members not healthy within ${timeoutMs} ms\n${logs}`);
      }
      await sleep(100);
    }
  }

  try {
    await waitHealthy(members, 30_000);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-5).join('\n');
  } catch {
    return '(no log)';
  }
}
