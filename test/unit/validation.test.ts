import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { VigilError } from '../../src/domain/errors.js';
import {
  decodeNumberPageToken,
  decodeStringPageToken,
  encodePageToken,
} from '../../src/domain/page-token.js';
import {
  DEFAULT_PAGE_SIZE,
  MAX_PAGE_SIZE,
  checkMaxBytes,
  checkPageSize,
  checkWorkspaceId,
} from '../../src/domain/validation.js';

function thrownBy(fn: () => unknown): VigilError {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'expected a VigilError to be thrown').to.be.instanceOf(VigilError);
  return thrown as VigilError;
}

describe('page tokens', () => {
  const FILTER = 'statuses=ONLINE,DEGRADED';

  describe('when a token is decoded with the filter it was made for', () => {
    it('round-trips a string position', () => {
      const token = encodePageToken('ws-42', FILTER);
      expect(decodeStringPageToken(token, FILTER)).to.equal('ws-42');
    });

    it('round-trips a numeric position', () => {
      const token = encodePageToken(1234, FILTER);
      expect(decodeNumberPageToken(token, FILTER)).to.equal(1234);
    });

    it('produces a non-empty, URL-safe token', () => {
      const token = encodePageToken('ws-42/../?&=', FILTER);
      expect(token).to.match(/^[A-Za-z0-9_-]+$/);
    });
  });

  describe('when the token is empty', () => {
    it('means the first page', () => {
      expect(decodeStringPageToken('', FILTER)).to.equal(undefined);
    });
  });

  describe('when the token was made for a different filter', () => {
    it('throws PAGE_TOKEN_INVALID', () => {
      const token = encodePageToken('ws-42', FILTER);
      const error = thrownBy(() => decodeStringPageToken(token, 'statuses=OFFLINE'));
      expect(error.reason).to.equal('PAGE_TOKEN_INVALID');
      expect(error.metadata).to.have.property('field', 'page_token');
    });
  });

  describe('when the token is garbage', () => {
    const garbage: readonly [string, string][] = [
      ['random characters', 'not-a-token!!!'],
      ['base64 of non-JSON', Buffer.from('hello').toString('base64url')],
      ['base64 of JSON null', Buffer.from('null').toString('base64url')],
      ['base64 of a JSON array', Buffer.from('[1,2]').toString('base64url')],
      [
        'base64 of an object without a position',
        Buffer.from('{"filter":""}').toString('base64url'),
      ],
    ];
    for (const [label, token] of garbage) {
      it(`throws PAGE_TOKEN_INVALID for ${label}`, () => {
        const error = thrownBy(() => decodeStringPageToken(token, ''));
        expect(error.reason).to.equal('PAGE_TOKEN_INVALID');
      });
    }

    it('throws PAGE_TOKEN_INVALID when the position has the wrong type', () => {
      const token = encodePageToken(7, FILTER);
      const error = thrownBy(() => decodeStringPageToken(token, FILTER));
      expect(error.reason).to.equal('PAGE_TOKEN_INVALID');
    });
  });
});

describe('checkWorkspaceId', () => {
  describe('when the id is well formed', () => {
    const ids: readonly [string, string][] = [
      ['a UUID', randomUUID()],
      ['"ws-1"', 'ws-1'],
      ['a single character', 'a'],
      ['63 characters', 'a'.repeat(63)],
      ['digits only', '123'],
    ];
    for (const [label, id] of ids) {
      it(`accepts ${label} and returns it`, () => {
        expect(checkWorkspaceId(id)).to.equal(id);
      });
    }
  });

  describe('when the id is malformed', () => {
    const ids: readonly [string, string][] = [
      ['an empty id', ''],
      ['upper case', 'UPPER'],
      ['a leading hyphen', '-a'],
      ['a trailing hyphen', 'a-'],
      ['64 characters', 'a'.repeat(64)],
      ['an underscore', 'ws_1'],
      ['a dot', 'ws.1'],
      ['a space', 'ws 1'],
    ];
    for (const [label, id] of ids) {
      it(`rejects ${label} with FIELD_INVALID naming workspace_id`, () => {
        const error = thrownBy(() => checkWorkspaceId(id));
        expect(error.reason).to.equal('FIELD_INVALID');
        expect(error.metadata).to.have.property('field', 'workspace_id');
      });
    }

    it('names the field the caller passed', () => {
      const error = thrownBy(() => checkWorkspaceId('UPPER', 'workspace_ids'));
      expect(error.reason).to.equal('FIELD_INVALID');
      expect(error.metadata).to.have.property('field', 'workspace_ids');
    });
  });
});

describe('checkPageSize', () => {
  describe('when the size is 0', () => {
    it('uses the default of 100', () => {
      expect(DEFAULT_PAGE_SIZE).to.equal(100);
      expect(checkPageSize(0)).to.equal(100);
    });
  });

  describe('when the size is within range', () => {
    it('keeps it', () => {
      expect(checkPageSize(1)).to.equal(1);
      expect(checkPageSize(250)).to.equal(250);
      expect(checkPageSize(1000)).to.equal(1000);
    });
  });

  describe('when the size is above the maximum', () => {
    it('caps it at 1000', () => {
      expect(MAX_PAGE_SIZE).to.equal(1000);
      expect(checkPageSize(1001)).to.equal(1000);
      expect(checkPageSize(5000)).to.equal(1000);
    });
  });

  describe('when the size is negative or not an integer', () => {
    for (const size of [-1, -1000, 1.5, Number.NaN]) {
      it(`rejects ${size} with FIELD_INVALID naming page_size`, () => {
        const error = thrownBy(() => checkPageSize(size));
        expect(error.reason).to.equal('FIELD_INVALID');
        expect(error.metadata).to.have.property('field', 'page_size');
      });
    }
  });
});

describe('checkMaxBytes', () => {
  describe('when the value fits', () => {
    it('returns it, including exactly at the limit', () => {
      expect(checkMaxBytes('abcd', 4, 'name')).to.equal('abcd');
    });
  });

  describe('when the value is too long', () => {
    it('rejects it with FIELD_INVALID naming the field', () => {
      const error = thrownBy(() => checkMaxBytes('abcde', 4, 'name'));
      expect(error.reason).to.equal('FIELD_INVALID');
      expect(error.metadata).to.have.property('field', 'name');
    });

    it('counts UTF-8 bytes, not characters', () => {
      // Three characters, six bytes.
      const error = thrownBy(() => checkMaxBytes('ééé', 4, 'current_task'));
      expect(error.metadata).to.have.property('field', 'current_task');
    });
  });
});
