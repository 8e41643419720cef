import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONTROL_TOKEN_PREFIX, generateToken } from '../domain/tokens.js';
import { createPrivateDirectory } from '../storage/database.js';

export const CONTROL_TOKEN_FILE = 'control-token';

/**
 * The control token generated on first start: DIR/control-token, mode 0600.
 * Returns the token and whether it was just created.
 */
export function loadOrCreateControlToken(dataDir: string): {
  token: string;
  file: string;
  created: boolean;
} {
  const file = join(dataDir, CONTROL_TOKEN_FILE);
  if (existsSync(file)) {
    const token = readFileSync(file, 'utf8').trim();
    if (token === '')
      throw new Error(`${file} is empty; delete it to generate a new control token`);
    return { token, file, created: false };
  }
  createPrivateDirectory(dataDir);
  const token = generateToken(CONTROL_TOKEN_PREFIX);
  // 'wx': never overwrite a token another process just wrote.
  writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  // The mode above is filtered by the umask; this is not.
  chmodSync(file, 0o600);
  return { token, file, created: true };
}
