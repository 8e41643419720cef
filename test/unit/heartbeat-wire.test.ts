import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { expect } from 'chai';
import fc from 'fast-check';
import {
  HeartbeatRequest,
  HeartbeatStreamRequest,
  HeartbeatStreamResponse,
} from '../../gen/vigil/v1/runtime_service.js';
import { RuntimeState, WorkspaceStatus } from '../../gen/vigil/v1/workspace.js';
import { VigilError } from '../../src/domain/errors.js';
import {
  decodeHeartbeatRequest,
  decodeHeartbeatStreamRequest,
  encodeHeartbeatStreamResponse,
  heartbeatCard,
} from '../../src/transport/heartbeat-wire.js';

const CARD = { name: 'agent', url: 'http://127.0.0.1:8000', skills: [{ id: 's', tags: ['a'] }] };

function request(agentCard: Record<string, unknown> | undefined): HeartbeatRequest {
  return {
    workspaceId: 'ws-1',
    agentCard,
    errorRate: 0.25,
    sampleError: 'boom',
    activeTasks: 3,
    uptimeSeconds: 42,
    currentTask: 'task',
    runtimeState: RuntimeState.RUNTIME_STATE_WEDGED,
    nativeStatusManagement: true,
    appliedConfigVersion: 3,
  };
}

const encode = (message: HeartbeatRequest) => HeartbeatRequest.encode(message).finish();

describe('heartbeat decoding with the card set aside', () => {
  describe('when the request carries a card', () => {
    it('decodes every other field exactly as the generated decoder does, and the card on demand', () => {
      const bytes = encode(request(CARD));
      const lazy = decodeHeartbeatRequest(bytes);
      const eager = HeartbeatRequest.decode(bytes);
      // Own string keys only: the raw card bytes sit under a symbol.
      const fields = (m: HeartbeatRequest) => Object.fromEntries(Object.entries(m));
      expect({ ...fields(lazy), agentCard: undefined }).to.deep.equal({
        ...fields(eager),
        agentCard: undefined,
      });
      expect(lazy.agentCard, 'not decoded up front').to.equal(undefined);
      const card = heartbeatCard(lazy);
      expect(card?.decode()).to.deep.equal(CARD);
      expect(card?.decode()).to.deep.equal(eager.agentCard);
    });

    it('fingerprints equal card bytes equally and different ones differently', () => {
      const a = heartbeatCard(decodeHeartbeatRequest(encode(request(CARD))));
      const b = heartbeatCard(decodeHeartbeatRequest(encode({ ...request(CARD), activeTasks: 9 })));
      const c = heartbeatCard(decodeHeartbeatRequest(encode(request({ ...CARD, name: 'other' }))));
      expect(a?.fingerprint()).to.be.a('string');
      expect(a?.fingerprint()).to.equal(b?.fingerprint());
      expect(a?.fingerprint()).to.not.equal(c?.fingerprint());
    });

    it('decodes the heartbeat inside a stream request the same way', () => {
      const bytes = HeartbeatStreamRequest.encode({
        requestId: 77,
        heartbeat: request(CARD),
      }).finish();
      const lazy = decodeHeartbeatStreamRequest(bytes);
      expect(lazy.requestId).to.equal(77);
      expect(lazy.heartbeat?.activeTasks).to.equal(3);
      expect(lazy.heartbeat?.agentCard).to.equal(undefined);
      expect(heartbeatCard(lazy.heartbeat!)?.decode()).to.deep.equal(CARD);
    });

    it('answers card bytes that are not a Struct with MESSAGE_MALFORMED when they are decoded', () => {
      const writer = new BinaryWriter();
      writer.uint32(10).string('ws-1');
      writer.uint32(18).bytes(Uint8Array.of(0x0a, 0xff, 0xff));
      const card = heartbeatCard(decodeHeartbeatRequest(writer.finish()));
      expect(() => card?.decode())
        .to.throw(VigilError)
        .with.property('reason', 'MESSAGE_MALFORMED');
    });
  });

  describe('when the card field occurs twice', () => {
    it('falls back to the generated decoder and its reading of the repeated field', () => {
      const first = encode(request({ name: 'agent' }));
      const second = encode({ ...request({ url: 'http://127.0.0.1:9' }), workspaceId: '' });
      const bytes = new Uint8Array([...first, ...second]);
      const lazy = decodeHeartbeatRequest(bytes);
      expect(lazy).to.deep.equal(HeartbeatRequest.decode(bytes));
      expect(heartbeatCard(lazy)?.decode()).to.deep.equal(HeartbeatRequest.decode(bytes).agentCard);
      expect(heartbeatCard(lazy)?.fingerprint()).to.equal(undefined);
    });
  });

  describe('when there is no card', () => {
    it('decodes the request and reports no card', () => {
      const lazy = decodeHeartbeatRequest(encode(request(undefined)));
      expect(lazy).to.deep.equal(HeartbeatRequest.decode(encode(request(undefined))));
      expect(heartbeatCard(lazy)).to.equal(undefined);
    });
  });
});

describe('hand-written heartbeat wire paths, byte for byte against the generated code', () => {
  it('encodes an applied heartbeat answer exactly as HeartbeatStreamResponse.encode does', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 300 }), fc.maxSafeNat()),
        fc.constantFrom(
          ...Object.values(WorkspaceStatus).filter(
            (v): v is WorkspaceStatus => typeof v === 'number',
          ),
        ),
        fc.option(
          fc.record({
            seconds: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 1_000_000 })),
            nanos: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 999_999_999 })),
          }),
          { nil: undefined },
        ),
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 300 }), fc.maxSafeNat()),
        (requestId, status, heartbeatInterval, configVersion) => {
          const message: HeartbeatStreamResponse = {
            requestId,
            result: { $case: 'heartbeat', value: { status, heartbeatInterval, configVersion } },
          };
          expect(encodeHeartbeatStreamResponse(message)).to.deep.equal(
            Buffer.from(HeartbeatStreamResponse.encode(message).finish()),
          );
        },
      ),
    );
  });

  it('leaves error answers to the generated encoder', () => {
    const message: HeartbeatStreamResponse = {
      requestId: 3,
      result: {
        $case: 'error',
        value: {
          code: 8,
          message: 'slow down',
          reason: 'RATE_LIMITED',
          metadata: {},
          status: undefined,
        },
      },
    };
    expect(encodeHeartbeatStreamResponse(message)).to.deep.equal(
      Buffer.from(HeartbeatStreamResponse.encode(message).finish()),
    );
  });

  it('decodes stream requests as the generated decoder does, repeated and unknown fields included', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ requestId: fc.maxSafeNat(), heartbeat: fc.constant(undefined) }),
            fc.record({
              requestId: fc.constant(0),
              heartbeat: fc.record({
                workspaceId: fc.string(),
                agentCard: fc.constant(undefined),
                errorRate: fc.double({ noNaN: true }),
                sampleError: fc.string(),
                activeTasks: fc.nat(),
                uptimeSeconds: fc.maxSafeNat(),
                currentTask: fc.string(),
                runtimeState: fc.integer({ min: 0, max: 2 }),
                nativeStatusManagement: fc.boolean(),
                appliedConfigVersion: fc.maxSafeNat(),
              }),
            }),
          ),
          { minLength: 0, maxLength: 4 },
        ),
        fc.uint8Array({ maxLength: 8 }),
        (parts, junk) => {
          // Concatenated messages merge field by field; a trailing unknown field is skipped.
          const unknown = new BinaryWriter()
            .uint32((15 << 3) | 2)
            .bytes(junk)
            .finish();
          const bytes = Buffer.concat([
            ...parts.map((p) => HeartbeatStreamRequest.encode(p).finish()),
            unknown,
          ]);
          const lazy = decodeHeartbeatStreamRequest(bytes);
          const eager = HeartbeatStreamRequest.decode(bytes);
          expect(lazy.requestId).to.equal(eager.requestId);
          expect(
            lazy.heartbeat && Object.fromEntries(Object.entries(lazy.heartbeat)),
          ).to.deep.equal(eager.heartbeat);
        },
      ),
    );
  });
});

describe('non-canonical bytes, read as the generated decoders read them', () => {
  const streamCases: [string, Uint8Array][] = [
    ['a top-level end-group marker', Uint8Array.of(0x0c)],
    ['tag 0 followed by garbage', Uint8Array.of(0x08, 0x05, 0x00, 0xff, 0xff)],
  ];
  for (const [name, bytes] of streamCases) {
    it(`stops at ${name} like HeartbeatStreamRequest.decode`, () => {
      expect(decodeHeartbeatStreamRequest(bytes)).to.deep.equal(
        HeartbeatStreamRequest.decode(bytes),
      );
    });
  }

  it('ignores a card after tag 0 in a HeartbeatRequest, like HeartbeatRequest.decode', () => {
    const card = encode(request(CARD));
    const bytes = new Uint8Array([0x0a, 0x01, 0x41, 0x00, ...card]);
    const lazy = decodeHeartbeatRequest(bytes);
    expect(Object.fromEntries(Object.entries(lazy))).to.deep.equal(HeartbeatRequest.decode(bytes));
    expect(heartbeatCard(lazy)).to.equal(undefined);
  });

  it('refuses a message whose first heartbeat is bad even when a later one is good', () => {
    const good = HeartbeatStreamRequest.encode({
      requestId: 1,
      heartbeat: request(undefined),
    }).finish();
    // A heartbeat holding one tag of wire type 7, which no decoder can skip.
    const bad = Uint8Array.of(0x12, 0x01, 0x0f);
    const bytes = new Uint8Array([...bad, ...good]);
    expect(() => HeartbeatStreamRequest.decode(bytes)).to.throw();
    expect(() => decodeHeartbeatStreamRequest(bytes)).to.throw();
  });
});
