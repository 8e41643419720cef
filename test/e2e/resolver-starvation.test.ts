import { execFile, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { tempDir } from '../helpers/harness.js';

/**
 * One workspace cannot degrade another through name resolution. The scenario
 * (test/helpers/resolver-scenario.ts) runs in a private user, mount and
 * network namespace made here with `unshare`: its own /etc/hosts and
 * /etc/resolv.conf are bind-mounted over the real ones inside the namespace
 * only (the machine's files are never touched), and its only DNS server is
 * one on the namespace's loopback that never answers. resolv.conf asks for
 * 5 s × 2 attempts, as long as getaddrinfo would hold a pool thread.
 */

const SCENARIO = join(__dirname, '..', 'helpers', 'resolver-scenario.js');

interface Outcome {
  readonly ok: boolean;
  readonly code?: number;
  readonly reason?: string;
  readonly ms: number;
}

interface Report {
  readonly queries: number;
  readonly attacks: readonly Outcome[];
  readonly beyondBound: Outcome;
  readonly victim: Outcome;
  readonly victimBeforeEveryAttack: boolean;
  readonly workspaces: readonly { id: string; online: boolean; marker: boolean; url: string }[];
  readonly newTransitions: readonly string[];
}

function namespacesWork(): boolean {
  const probe = spawnSync('unshare', ['-rmn', 'sh', '-c', 'ip link set lo up'], {
    stdio: 'ignore',
  });
  return probe.status === 0;
}

describe('name resolution under a DNS server that never answers', function () {
  this.timeout(60_000);
  let report: Report;
  let dir: string;

  before(async function () {
    // Needs util-linux's unshare with unprivileged user namespaces, and iproute2's ip.
    if (!namespacesWork()) {
      console.log(
        '      skipped: needs unshare with user namespaces (util-linux) and ip (Debian package iproute2)',
      );
      this.skip();
    }
    dir = tempDir('vigil-dns-');
    const hosts = join(dir, 'hosts');
    const resolv = join(dir, 'resolv.conf');
    writeFileSync(hosts, '127.0.0.1 localhost\n::1 localhost\n10.9.8.7 runtime-b.internal\n');
    writeFileSync(resolv, 'nameserver 127.0.0.1\noptions timeout:5 attempts:2\n');
    const script =
      'ip link set lo up && mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && exec "$3" "$4"';
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        'unshare',
        ['-rmn', 'sh', '-c', script, 'sh', hosts, resolv, process.execPath, SCENARIO],
        { timeout: 55_000, env: process.env },
        (error, out, err) => {
          if (error) reject(new Error(`the scenario failed: ${error.message}\n${err}`));
          else resolve(out);
        },
      );
    });
    report = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Report;
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('sends the attackers’ queries to the never-answering server', () => {
    expect(report.queries).to.be.at.least(6);
  });

  it('answers another workspace’s hosts-file name while those queries hang', () => {
    expect(report.victim, JSON.stringify(report.victim)).to.include({ ok: true });
    expect(report.victimBeforeEveryAttack).to.equal(true);
    const victim = report.workspaces.find((w) => w.id === 'ws-b');
    expect(victim).to.deep.include({
      online: true,
      marker: false,
      url: 'http://runtime-b.internal:8000/',
    });
  });

  it('answers each timed-out Register UNAVAILABLE / URL_RESOLVE_UNAVAILABLE', () => {
    for (const attack of report.attacks) {
      expect(attack).to.include({
        ok: false,
        code: status.UNAVAILABLE,
        reason: 'URL_RESOLVE_UNAVAILABLE',
      });
    }
  });

  it('refuses a workspace’s third concurrent resolving Register as RATE_LIMITED', () => {
    expect(report.beyondBound).to.include({
      ok: false,
      code: status.RESOURCE_EXHAUSTED,
      reason: 'RATE_LIMITED',
    });
  });

  it('never stamps the marker or changes the status of a workspace whose name timed out', () => {
    for (const w of report.workspaces.filter((x) => x.id !== 'ws-b')) {
      expect(w, w.id).to.deep.include({
        online: true,
        marker: false,
        url: 'http://127.0.0.1:8000/',
      });
    }
    expect(report.newTransitions).to.deep.equal([]);
  });
});
