import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

/**
 * Headless Chromium from Debian's `chromium` package, driven by
 * playwright-core (which never downloads a browser of its own).
 */

export const CHROMIUM = '/usr/bin/chromium';

/** The one line a suite prints when it skips for want of the browser. */
export const NO_CHROMIUM = `skipped: the console browser tests need ${CHROMIUM} (Debian package chromium)`;

export const hasChromium = (): boolean => existsSync(CHROMIUM);

/** Where the console suites save screenshots (gitignored). */
export function artifactsDir(): string {
  const dir = join(__dirname, '..', '..', '..', 'test-artifacts', 'console');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Launches the system Chromium with a fresh profile and the flags this
 * machine's closed network needs (no background connections, no QUIC).
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
