import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { CONTROL_TOKEN, startHarness } from '../helpers/harness.js';
import { call } from '../helpers/rpc.js';
import { onEtcd } from '../helpers/suite-store.js';

const RULES_DIR = join(__dirname, '..', '..', '..', 'deploy', 'prometheus');
const RULES = join(RULES_DIR, 'vigil-rules.yml');
const promtoolMissing = spawnSync('promtool', ['--version']).status !== 0;

describe('deploy/prometheus rules', function () {
  this.timeout(60_000);

  before(function () {
    if (onEtcd) this.skip();
  });

  describe('when promtool checks and unit-tests them', () => {
    it('they are valid and every alert fires (and stays quiet) as its test says', function () {
      if (promtoolMissing) {
        console.log(
          '      skipped: testing the alert rules needs promtool (Debian package prometheus)',
        );
        this.skip();
      }
      const check = spawnSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
      expect(check.status, check.stdout + check.stderr).to.equal(0);
      const test = spawnSync('promtool', ['test', 'rules', 'vigil-rules.test.yml'], {
        cwd: RULES_DIR,
        encoding: 'utf8',
      });
      expect(test.status, test.stdout + test.stderr).to.equal(0);
      expect(test.stdout).to.include('SUCCESS');
    });
  });

  describe('when compared with what a running server exports', () => {
    it('name only metrics and labels that /metrics really has', async () => {
      const harness = await startHarness({ settings: { metricsListen: '127.0.0.1:0' } });
      let text: string;
      try {
        const { control } = harness.clients;
        await call(
          control,
          control.createWorkspace,
          { workspaceId: 'ws-rules', name: 'rules' },
          CONTROL_TOKEN,
        );
        text = await (await fetch(`http://127.0.0.1:${harness.vigil.metricsPort!}/metrics`)).text();
      } finally {
        await harness.dispose();
      }
      const rules = readFileSync(RULES, 'utf8');
      const used = new Set(rules.match(/\bvigil_[a-z_]+/g) ?? []);
      expect(used.size).to.be.greaterThan(3);
      for (const name of used) {
        expect(text, name).to.match(new RegExp(`^# TYPE ${name} `, 'm'));
      }
      // The labels the rules select on.
      expect(text).to.match(/^vigil_rpc_requests_total\{method="CreateWorkspace",code="OK"\} /m);
      expect(text).to.match(/^vigil_transitions_total\{reason="CREATED",to="PROVISIONING"\} /m);
      expect(text).to.match(/^vigil_workspaces\{status="REMOVED"\} /m);
    });
  });
});
