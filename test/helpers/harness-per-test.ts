import { startHarness, type Harness, type HarnessOptions } from './harness.js';

/**
 * A fresh harness for every test of the enclosing `describe`: started (and
 * prepared by `setup`) before each test, disposed of after it. Returns a
 * getter for the running test's context: `setup`'s result plus `h`.
 */
export function harnessPerTest<T extends object>(
  setup: (h: Harness) => T | Promise<T>,
  options: HarnessOptions = {},
): () => T & { readonly h: Harness } {
  let harness: Harness | undefined;
  let current: (T & { readonly h: Harness }) | undefined;
  beforeEach(async () => {
    const h = await startHarness(options);
    harness = h;
    current = { ...(await setup(h)), h };
  });
  afterEach(async () => {
    current = undefined;
    await harness?.dispose();
    harness = undefined;
  });
  return () => {
    if (current === undefined) throw new Error('the harness runs only during a test');
    return current;
  };
}
