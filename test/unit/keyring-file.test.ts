import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  addActiveKey,
  loadOrCreateKeyring,
  readKeyring,
  removeKey,
} from '../../src/crypto/keyring-file.js';
import { createAesGcmCipher } from '../../src/crypto/aes-gcm-cipher.js';
import { tempDir } from '../helpers/harness.js';

describe('keyring file', () => {
  describe('when keys are rotated and the old ones removed', () => {
    it('never gives a new key the id of a removed one (a check value recorded for an id stays true)', () => {
      const dir = tempDir();
      try {
        const file = join(dir, 'secrets-keyring');
        loadOrCreateKeyring(file);
        expect(addActiveKey(file)).to.equal('k2');
        removeKey(file, 'k1');
        expect(addActiveKey(file)).to.equal('k3');
        removeKey(file, 'k2');
        // One key left ({k3}): counting keys would pick "k2" again, for other bytes.
        expect(addActiveKey(file)).to.equal('k4');
        expect([...readKeyring(file).keys.keys()]).to.deep.equal(['k3', 'k4']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('check values', () => {
    it('are equal for the same key, differ for another key of the same id, and do not contain the key', () => {
      const dir = tempDir();
      try {
        const one = loadOrCreateKeyring(join(dir, 'one')).keyring;
        const other = loadOrCreateKeyring(join(dir, 'other')).keyring;
        const check = (k: typeof one) => createAesGcmCipher(k).keyChecks().get('k1');
        expect(check(one)).to.match(/^[0-9a-f]{32}$/);
        expect(check(one)).to.equal(check(readKeyring(join(dir, 'one'))));
        expect(check(one)).to.not.equal(check(other));
        const key = one.keys.get('k1')!;
        expect(check(one)).to.not.include(key.toString('hex').slice(0, 8));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
