import { Any } from '../../gen/google/protobuf/any.js';
import { ErrorInfo, RetryInfo } from '../../gen/google/rpc/error_details.js';
import { Status } from '../../gen/google/rpc/status.js';

/**
 * The one error shape of the Vigil wire: a google.rpc.Status with exactly one
 * google.rpc.ErrorInfo (domain `vigil`) and, when the caller should wait
 * before retrying, one google.rpc.RetryInfo. The server builds it with
 * `errorStatus`; it travels in the `grpc-status-details-bin` trailer of a
 * failed call and in HeartbeatError.status of a rejected streamed heartbeat;
 * the SDK and the tests read it back with `readErrorStatus`.
 */

/** The ErrorInfo domain of every error Vigil sends. */
export const ERROR_DOMAIN = 'vigil';

export const ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo';
export const RETRY_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.RetryInfo';

/** What the server says about one failure. */
export interface ErrorDescription {
  /** The gRPC status code (google.rpc.Code). */
  readonly code: number;
  readonly message: string;
  /** The ErrorInfo reason, UPPER_SNAKE_CASE. */
  readonly reason: string;
  /** The ErrorInfo metadata. */
  readonly metadata: Readonly<Record<string, string>>;
  /** When set, sent as RetryInfo.retry_delay (rounded to whole milliseconds, never negative). */
  readonly retryAfterMs?: number | undefined;
}

/** A google.rpc.Status as read back: the ErrorInfos and the RetryInfo unpacked, other details skipped. */
export interface ErrorStatus {
  readonly code: number;
  readonly message: string;
  readonly errorInfos: readonly ErrorInfo[];
  /** RetryInfo.retry_delay in milliseconds, when the status carries a RetryInfo. */
  readonly retryAfterMs: number | undefined;
}

/** The google.rpc.Status for one failure: the ErrorInfo first, then the RetryInfo if any. */
export function errorStatus(error: ErrorDescription): Status {
  const details: Any[] = [
    {
      typeUrl: ERROR_INFO_TYPE_URL,
      value: Buffer.from(
        ErrorInfo.encode({
          reason: error.reason,
          domain: ERROR_DOMAIN,
          metadata: { ...error.metadata },
        }).finish(),
      ),
    },
  ];
  if (error.retryAfterMs !== undefined) {
    const ms = Math.max(0, Math.round(error.retryAfterMs));
    details.push({
      typeUrl: RETRY_INFO_TYPE_URL,
      value: Buffer.from(
        RetryInfo.encode({
          retryDelay: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 },
        }).finish(),
      ),
    });
  }
  return { code: error.code, message: error.message, details };
}

/** Unpacks the ErrorInfo and RetryInfo details of a google.rpc.Status. */
export function readErrorStatus(status: Status): ErrorStatus {
  const errorInfos: ErrorInfo[] = [];
  let retryAfterMs: number | undefined;
  for (const detail of status.details) {
    if (detail.typeUrl === ERROR_INFO_TYPE_URL) errorInfos.push(ErrorInfo.decode(detail.value));
    else if (detail.typeUrl === RETRY_INFO_TYPE_URL) {
      const delay = RetryInfo.decode(detail.value).retryDelay;
      retryAfterMs = delay ? delay.seconds * 1000 + delay.nanos / 1e6 : 0;
    }
  }
  return { code: status.code, message: status.message, errorInfos, retryAfterMs };
}

/** Decodes a `grpc-status-details-bin` value. Throws when the bytes are not a google.rpc.Status. */
export function decodeErrorStatus(bytes: Uint8Array): ErrorStatus {
  return readErrorStatus(Status.decode(bytes));
}
