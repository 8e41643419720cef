import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { readControlTokensFile } from '../../src/cli/control-tokens-file.js';
import { hashToken } from '../../src/domain/tokens.js';
import { tempDir } from '../helpers/harness.js';

describe('readControlTokensFile', () => {
  let dir: string;
  const write = (content: unknown) => {
    const file = join(dir, 'tokens.json');
    writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
    return file;
  };

  beforeEach(() => {
    dir = tempDir();
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads named tokens by SHA-256 or by value, with their scopes', () => {
    const sha = hashToken('vgc_ops-token-value').toString('hex');
    const { specs, errors } = readControlTokensFile(
      write({
        tokens: [
          { name: 'ops', scope: 'admin', sha256: sha },
          { name: 'dashboard', scope: 'read', token: 'vgc_dashboard-token' },
        ],
      }),
    );
    expect(errors).to.deep.equal([]);
    expect(specs.map((s) => [s.name, s.scope, Buffer.from(s.hash).toString('hex')])).to.deep.equal([
      ['ops', 'admin', sha],
      ['dashboard', 'read', hashToken('vgc_dashboard-token').toString('hex')],
    ]);
  });

  it('reports one message per bad entry', () => {
    const { errors } = readControlTokensFile(
      write({
        tokens: [
          { name: 'bad name!', scope: 'admin', token: 'vgc_0123456789abcdef' },
          { name: 'x', scope: 'root', token: 'vgc_0123456789abcdef' },
          { name: 'y', scope: 'read', sha256: 'nothex', token: 'both' },
          { name: 'z', scope: 'read', token: 'short' },
        ],
      }),
    );
    expect(errors).to.have.length(4);
    expect(errors[0]).to.include('tokens[0]');
    expect(errors[1]).to.include('"scope"');
  });

  it('rejects a file that is not JSON or has no tokens', () => {
    expect(readControlTokensFile(write('{not json')).errors).to.have.length(1);
    expect(readControlTokensFile(write({ tokens: [] })).errors).to.have.length(1);
    expect(readControlTokensFile(join(dir, 'missing.json')).errors).to.have.length(1);
  });
});
