import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { VIGIL_VERSION } from '../../src/app.js';
import { VIGIL_MAIN } from '../helpers/processes.js';

describe('vigil --version', () => {
  const pkg = JSON.parse(
    readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8'),
  ) as { version: string };

  it("prints the package's version", () => {
    expect(VIGIL_VERSION).to.equal(pkg.version);
    const out = execFileSync(process.execPath, [VIGIL_MAIN, '--version'], { encoding: 'utf8' });
    expect(out).to.equal(`vigil ${pkg.version}\n`);
  });
});
