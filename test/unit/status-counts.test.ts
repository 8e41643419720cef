import { expect } from 'chai';
import type { Transition, WorkspaceStatus } from '../../src/domain/model.js';
import { createStatusCounts } from '../../src/watch/status-counts.js';

const zero: Record<WorkspaceStatus, number> = {
  PROVISIONING: 0,
  ONLINE: 0,
  DEGRADED: 0,
  OFFLINE: 0,
  FAILED: 0,
  REMOVED: 0,
};

let seq = 0;
const t = (from: WorkspaceStatus | undefined, to: WorkspaceStatus): Transition => ({
  seq: (seq += 1),
  workspaceId: 'ws-1',
  fromStatus: from,
  toStatus: to,
  reason: 'CREATED',
  detail: '',
  at: 0,
});

describe('createStatusCounts', () => {
  describe('when transitions commit', () => {
    it('starts from the counts read at start and moves one from → to per transition', () => {
      const counts = createStatusCounts({ ...zero, ONLINE: 5, DEGRADED: 1 });
      counts.apply([t(undefined, 'PROVISIONING'), t('PROVISIONING', 'ONLINE')]);
      counts.apply([t('ONLINE', 'DEGRADED'), t('DEGRADED', 'ONLINE'), t('ONLINE', 'REMOVED')]);
      expect(counts.snapshot()).to.deep.equal({ ...zero, ONLINE: 5, DEGRADED: 1, REMOVED: 1 });
    });

    it('hands out copies', () => {
      const counts = createStatusCounts(zero);
      const before = counts.snapshot();
      counts.apply([t(undefined, 'PROVISIONING')]);
      expect(before.PROVISIONING).to.equal(0);
      expect(counts.snapshot().PROVISIONING).to.equal(1);
    });
  });
});
