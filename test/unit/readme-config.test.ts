import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { SERVE_SETTINGS } from '../../src/cli/serve-config.js';

describe('README configuration table', () => {
  const readme = readFileSync(join(__dirname, '..', '..', '..', 'README.md'), 'utf8');
  const rows = readme.split('\n').filter((line) => line.startsWith('| `--'));

  for (const setting of SERVE_SETTINGS) {
    it(`documents --${setting.flag} with its environment variable and default`, () => {
      const row = rows.find((r) => r.startsWith(`| \`--${setting.flag}\``));
      expect(row, `README row for --${setting.flag}`).to.be.a('string');
      expect(row).to.include(`\`${setting.env}\``);
      expect(row).to.include(`\`${setting.defaultText}\``);
    });
  }
});
