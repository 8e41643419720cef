import { expect } from 'chai';
import { createMetrics } from '../../src/metrics/prometheus.js';

describe('metrics', () => {
  describe('vigil_watch_lag_max', () => {
    async function lag(metrics: ReturnType<typeof createMetrics>): Promise<number | undefined> {
      const gauge = await metrics.registry.getSingleMetric('vigil_watch_lag_max')?.get();
      return gauge?.values[0]?.value;
    }

    it('is head minus the least-advanced open stream, from where each stream started', async () => {
      let head = 10;
      const metrics = createMetrics({
        headSeq: () => head,
        countByStatus: () => Promise.reject(new Error('not scraped here')),
      });
      const resumed = metrics.observer.watchOpened(4);
      const atHead = metrics.observer.watchOpened(0);
      expect(await lag(metrics)).to.equal(6);
      resumed.delivered(9);
      expect(await lag(metrics)).to.equal(1);
      head = 12;
      atHead.delivered(12);
      expect(await lag(metrics)).to.equal(3);
      resumed.closed();
      expect(await lag(metrics)).to.equal(0);
    });
  });
});
