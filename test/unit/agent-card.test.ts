import { expect } from 'chai';
import { MAX_AGENT_CARD_BYTES, validateAgentCard } from '../../src/domain/agent-card.js';
import { VigilError } from '../../src/domain/errors.js';

const VALID = { name: 'Research agent', url: 'https://agent.example.com/a2a' };

function expectInvalid(card: unknown): VigilError {
  let thrown: unknown;
  try {
    validateAgentCard(card);
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'validateAgentCard should throw').to.be.instanceOf(VigilError);
  const error = thrown as VigilError;
  expect(error.reason).to.equal('AGENT_CARD_INVALID');
  return error;
}

/** A valid card padded so its JSON serialization is exactly `bytes` bytes long (ASCII padding). */
function cardOfSize(bytes: number): Record<string, unknown> {
  const base = JSON.stringify({ ...VALID, padding: '' }).length;
  return { ...VALID, padding: 'x'.repeat(bytes - base) };
}

describe('validateAgentCard', () => {
  describe('when the card is not a JSON object', () => {
    const cases: readonly [string, unknown][] = [
      ['null', null],
      ['undefined', undefined],
      ['an array', []],
      ['an array holding a valid card', [VALID]],
      ['a string', JSON.stringify(VALID)],
      ['a number', 42],
      ['a boolean', true],
    ];
    for (const [label, card] of cases) {
      it(`rejects ${label} with AGENT_CARD_INVALID`, () => {
        expectInvalid(card);
      });
    }
  });

  describe('when the name is missing or unusable', () => {
    const cases: readonly [string, unknown][] = [
      ['an empty object {}', {}],
      ['a card without name', { url: VALID.url }],
      ['an empty name', { name: '', url: VALID.url }],
      ['a numeric name', { name: 42, url: VALID.url }],
      ['a null name', { name: null, url: VALID.url }],
      ['an object name', { name: { text: 'agent' }, url: VALID.url }],
      ['an array name', { name: ['agent'], url: VALID.url }],
    ];
    for (const [label, card] of cases) {
      it(`rejects ${label} with AGENT_CARD_INVALID`, () => {
        expectInvalid(card);
      });
    }
  });

  describe('when the card has no endpoint', () => {
    const cases: readonly [string, unknown][] = [
      ['a name only', { name: VALID.name }],
      ['an empty url', { name: VALID.name, url: '' }],
      ['a non-string url', { name: VALID.name, url: 42 }],
      ['an empty supportedInterfaces', { name: VALID.name, supportedInterfaces: [] }],
      ['an empty supported_interfaces', { name: VALID.name, supported_interfaces: [] }],
      [
        'supportedInterfaces entries without url',
        { name: VALID.name, supportedInterfaces: [{ transport: 'JSONRPC' }] },
      ],
      [
        'supported_interfaces entries without url',
        { name: VALID.name, supported_interfaces: [{ transport: 'JSONRPC' }] },
      ],
      [
        'supportedInterfaces entries with an empty url',
        { name: VALID.name, supportedInterfaces: [{ url: '' }] },
      ],
      [
        'supportedInterfaces holding a bare string',
        { name: VALID.name, supportedInterfaces: ['https://agent.example.com'] },
      ],
      ['supportedInterfaces holding null', { name: VALID.name, supportedInterfaces: [null] }],
      [
        'supportedInterfaces that is an object, not a list',
        { name: VALID.name, supportedInterfaces: { url: VALID.url } },
      ],
      [
        'supportedInterfaces mixing an entry with a url and one without',
        { name: VALID.name, supportedInterfaces: [{ url: VALID.url }, { transport: 'GRPC' }] },
      ],
    ];
    for (const [label, card] of cases) {
      it(`rejects ${label} with AGENT_CARD_INVALID`, () => {
        expectInvalid(card);
      });
    }
  });

  describe('when the card is valid', () => {
    const cases: readonly [string, Record<string, unknown>][] = [
      ['a name and a url', VALID],
      [
        'a name and supportedInterfaces with urls',
        {
          name: VALID.name,
          supportedInterfaces: [
            { url: 'https://agent.example.com/a2a', transport: 'JSONRPC' },
            { url: 'https://agent.example.com/grpc', transport: 'GRPC' },
          ],
        },
      ],
      [
        'a name and supported_interfaces (snake_case) with a url',
        { name: VALID.name, supported_interfaces: [{ url: VALID.url }] },
      ],
      [
        'extra, unknown fields (cards evolve)',
        {
          ...VALID,
          version: '1.2.0',
          skills: [{ id: 'search' }],
          capabilities: { streaming: true },
        },
      ],
    ];
    for (const [label, card] of cases) {
      it(`accepts ${label} and returns its JSON serialization`, () => {
        const serialized = validateAgentCard(card);
        expect(serialized).to.be.a('string');
        expect(JSON.parse(serialized)).to.deep.equal(card);
      });
    }
  });

  describe('when the card is large', () => {
    it('accepts a card of exactly 64 KiB serialized', () => {
      const card = cardOfSize(MAX_AGENT_CARD_BYTES);
      expect(Buffer.byteLength(JSON.stringify(card))).to.equal(64 * 1024);
      expect(validateAgentCard(card)).to.have.lengthOf(64 * 1024);
    });

    it('rejects a card one byte over 64 KiB with AGENT_CARD_INVALID', () => {
      const card = cardOfSize(MAX_AGENT_CARD_BYTES + 1);
      expect(Buffer.byteLength(JSON.stringify(card))).to.equal(64 * 1024 + 1);
      expectInvalid(card);
    });

    it('rejects a card of 1 MiB with AGENT_CARD_INVALID', () => {
      expectInvalid(cardOfSize(1024 * 1024));
    });

    it('counts UTF-8 bytes, not characters', () => {
      // 40 000 two-byte characters: under 64 Ki characters, over 64 KiB.
      const card = { ...VALID, description: 'é'.repeat(40_000) };
      expect(JSON.stringify(card).length).to.be.lessThan(MAX_AGENT_CARD_BYTES);
      expectInvalid(card);
    });
  });
});
