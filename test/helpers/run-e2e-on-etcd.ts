import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

/**
 * `npm test`'s second pass: the same e2e suite, on etcd instead of SQLite
 * (VIGIL_TEST_STORE=etcd; see suite-store.ts). Without etcd installed it says
 * so in one line and passes; CI installs it.
 */
function main(): number {
  if (spawnSync('etcd', ['--version']).status !== 0) {
    console.log('skipped: the e2e suite on etcd needs etcd (Debian package etcd-server)');
    return 0;
  }
  const mocha = join(__dirname, '..', '..', '..', 'node_modules', 'mocha', 'bin', 'mocha.js');
  const result = spawnSync(
    process.execPath,
    [
      mocha,
      '--no-config',
      '--timeout',
      '20000',
      '--enable-source-maps',
      'dist/test/e2e/**/*.test.js',
    ],
    {
      stdio: 'inherit',
      env: { ...process.env, VIGIL_TEST_STORE: 'etcd' },
    },
  );
  return result.status ?? 1;
}

process.exitCode = main();
