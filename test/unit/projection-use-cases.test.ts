import { expect } from 'chai';
import { VigilError } from '../../src/domain/errors.js';
import { BUILT_IN_PROVIDERS } from '../../src/domain/projection.js';
import { createProjectionUseCases } from '../../src/domain/projection-use-cases.js';
import { createManualClock } from '../helpers/manual-clock.js';

describe('projection use-cases', () => {
  describe('when composed without a projection store', () => {
    it("refuse every call with UNIMPLEMENTED STORE_UNSUPPORTED, never silently (the server's SQLite and etcd stores both implement it)", async () => {
      // Never reached: every call fails before it authenticates or records a use.
      const tokens = {
        openSession: () => Promise.reject(new Error('not reached')),
        checkSession: () => undefined,
        recordUse: () => undefined,
      };
      const projection = createProjectionUseCases({
        store: undefined,
        cipher: undefined,
        catalog: BUILT_IN_PROVIDERS,
        tokens,
        clock: createManualClock(),
        progressIntervalMs: 1_000,
      });
      for (const attempt of [
        () =>
          projection.setSecret('admin', {
            workspaceId: 'ws-a',
            name: 'MINIMAX_API_KEY',
            value: 'v',
            expectedConfigVersion: 0,
          }),
        () => projection.listSecrets('ws-a'),
        () => projection.listAudit('', 0, ''),
      ]) {
        let caught: unknown;
        await attempt().catch((error: unknown) => (caught = error));
        expect(caught).to.be.instanceOf(VigilError);
        expect((caught as VigilError).reason).to.equal('STORE_UNSUPPORTED');
      }
      expect(projection.status('ws-a').ready).to.equal(false);
    });
  });
});
