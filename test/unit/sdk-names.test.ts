import { expect } from 'chai';
import {
  TransitionReason,
  WorkspaceStatus,
  reasonName,
  statusName,
} from '../../src/client/index.js';

describe('SDK status and reason names', () => {
  it('names every status without its prefix', () => {
    expect(statusName(WorkspaceStatus.WORKSPACE_STATUS_ONLINE)).to.equal('ONLINE');
    expect(statusName(WorkspaceStatus.WORKSPACE_STATUS_DEGRADED)).to.equal('DEGRADED');
    expect(statusName(WorkspaceStatus.WORKSPACE_STATUS_REMOVED)).to.equal('REMOVED');
    expect(statusName(undefined)).to.equal('UNSPECIFIED');
  });

  it('names every reason without its prefix', () => {
    expect(reasonName(TransitionReason.TRANSITION_REASON_RECOVERED)).to.equal('RECOVERED');
    expect(reasonName(TransitionReason.TRANSITION_REASON_REGISTER_FAILED)).to.equal(
      'REGISTER_FAILED',
    );
  });

  describe('when a newer server sends a value this SDK does not know', () => {
    it('says UNRECOGNIZED instead of failing', () => {
      // What the wire decodes for an enum value added after this SDK was built.
      // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment
      expect(statusName(99 as WorkspaceStatus)).to.equal('UNRECOGNIZED');
      expect(statusName(WorkspaceStatus.UNRECOGNIZED)).to.equal('UNRECOGNIZED');
      // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment
      expect(reasonName(42 as TransitionReason)).to.equal('UNRECOGNIZED');
    });
  });
});
