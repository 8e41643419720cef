import { expect } from 'chai';
import { createShutdown } from '../../src/transport/shutdown.js';

describe('shutdown hooks', () => {
  it('calls every registered hook once when shutdown begins, and none that was removed', () => {
    const shutdown = createShutdown();
    const calls: string[] = [];
    shutdown.onShutdown(() => calls.push('a'));
    const removeB = shutdown.onShutdown(() => calls.push('b'));
    shutdown.onShutdown(() => calls.push('c'));
    removeB();
    expect(shutdown.started).to.equal(false);
    shutdown.begin();
    shutdown.begin();
    expect(calls).to.deep.equal(['a', 'c']);
    expect(shutdown.started).to.equal(true);
  });

  it('calls a hook registered after shutdown began at once', () => {
    const shutdown = createShutdown();
    shutdown.begin();
    let called = 0;
    const remove = shutdown.onShutdown(() => (called += 1));
    remove();
    expect(called).to.equal(1);
  });

  it('holds many hooks and removes them one by one', () => {
    const shutdown = createShutdown();
    let called = 0;
    const removals = Array.from({ length: 50_000 }, () => shutdown.onShutdown(() => (called += 1)));
    for (const remove of removals.slice(0, 49_999)) remove();
    shutdown.begin();
    expect(called).to.equal(1);
  });
});
