import { Metadata, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import pino from 'pino';
import { ErrorInfo, RetryInfo } from '../../gen/google/rpc/error_details.js';
import { Status } from '../../gen/google/rpc/status.js';
import { VigilError } from '../../src/domain/errors.js';
import { toCallError, toRpcStatus } from '../../src/transport/errors.js';
import { decodeErrorStatus, readErrorStatus } from '../../src/wire/error-status.js';
import { bearerToken } from '../../src/wire/metadata.js';

const silent = pino({ level: 'silent' });

/** The `grpc-status-details-bin` trailer the server sends for `error`. */
function trailerOf(error: unknown): Buffer {
  const [details] = toCallError(error, silent, 'Test').metadata.get('grpc-status-details-bin');
  expect(details).to.be.instanceOf(Buffer);
  return details as Buffer;
}

function rateLimited(retryAfterMs: number): VigilError {
  return new VigilError(
    'RATE_LIMITED',
    'too many heartbeats',
    { retryAfterMs: String(retryAfterMs) },
    { retryAfterMs },
  );
}

describe('wire error status', () => {
  describe('when the server answers a VigilError with a retry hint', () => {
    it('sends a google.rpc.Status that the generated decoders read as code, message, ErrorInfo and RetryInfo', () => {
      const decoded = Status.decode(trailerOf(rateLimited(1_250)));
      expect([decoded.code, decoded.message]).to.deep.equal([
        status.RESOURCE_EXHAUSTED,
        'too many heartbeats',
      ]);
      expect(decoded.details.map((d) => d.typeUrl)).to.deep.equal([
        'type.googleapis.com/google.rpc.ErrorInfo',
        'type.googleapis.com/google.rpc.RetryInfo',
      ]);
      expect(ErrorInfo.decode(decoded.details[0]!.value)).to.deep.equal({
        reason: 'RATE_LIMITED',
        domain: 'vigil',
        metadata: { retryAfterMs: '1250' },
      });
      expect(RetryInfo.decode(decoded.details[1]!.value).retryDelay).to.deep.equal({
        seconds: 1,
        nanos: 250_000_000,
      });
    });

    it('reads back through src/wire with retryAfterMs in milliseconds', () => {
      expect(decodeErrorStatus(trailerOf(rateLimited(450)))).to.deep.equal({
        code: status.RESOURCE_EXHAUSTED,
        message: 'too many heartbeats',
        errorInfos: [
          { reason: 'RATE_LIMITED', domain: 'vigil', metadata: { retryAfterMs: '450' } },
        ],
        retryAfterMs: 450,
      });
    });

    it('puts the same message in the unary trailer and in a streamed HeartbeatError.status', () => {
      const error = rateLimited(700);
      expect(Status.decode(trailerOf(error))).to.deep.equal(toRpcStatus(error));
    });

    it('rounds the delay to whole milliseconds and never sends a negative one', () => {
      expect(readErrorStatus(toRpcStatus(rateLimited(1.6))).retryAfterMs).to.equal(2);
      expect(readErrorStatus(toRpcStatus(rateLimited(-5))).retryAfterMs).to.equal(0);
    });
  });

  describe('when the error has no retry hint', () => {
    it('sends exactly one detail, the ErrorInfo, and reads back no retryAfterMs', () => {
      const bytes = trailerOf(new VigilError('FIELD_INVALID', 'url: bad', { field: 'url' }));
      expect(Status.decode(bytes).details).to.have.length(1);
      const read = decodeErrorStatus(bytes);
      expect(read.errorInfos).to.deep.equal([
        { reason: 'FIELD_INVALID', domain: 'vigil', metadata: { field: 'url' } },
      ]);
      expect(read.retryAfterMs).to.equal(undefined);
    });
  });

  describe('when something other than a VigilError is thrown', () => {
    it('sends INTERNAL / INTERNAL without the original message', () => {
      const read = decodeErrorStatus(trailerOf(new Error('secret path /etc/x')));
      expect(read.code).to.equal(status.INTERNAL);
      expect(read.errorInfos.map((i) => i.reason)).to.deep.equal(['INTERNAL']);
      expect(read.message).to.not.include('secret');
    });
  });

  describe('when a status carries details of other types', () => {
    it('skips them', () => {
      const status = toRpcStatus(rateLimited(100));
      const read = readErrorStatus({
        ...status,
        details: [
          { typeUrl: 'type.googleapis.com/google.rpc.DebugInfo', value: Buffer.from([10, 1, 120]) },
          ...status.details,
        ],
      });
      expect(read.errorInfos.map((i) => i.reason)).to.deep.equal(['RATE_LIMITED']);
      expect(read.retryAfterMs).to.equal(100);
    });
  });
});

describe('wire bearer token', () => {
  const withAuthorization = (...values: string[]) => {
    const metadata = new Metadata();
    for (const value of values) metadata.add('authorization', value);
    return metadata;
  };

  it('reads the token of `Bearer <token>`, case-insensitively and with spaces around', () => {
    expect(bearerToken(withAuthorization('Bearer vgw_abc'))).to.equal('vgw_abc');
    expect(bearerToken(withAuthorization('bearer   vgw_abc  '))).to.equal('vgw_abc');
  });

  it('has none without an authorization value, or with another scheme or a token with spaces', () => {
    expect(bearerToken(new Metadata())).to.equal(undefined);
    expect(bearerToken(withAuthorization('Basic dXNlcjpwdw=='))).to.equal(undefined);
    expect(bearerToken(withAuthorization('Bearer two words'))).to.equal(undefined);
    expect(bearerToken(withAuthorization('Bearer'))).to.equal(undefined);
  });
});
