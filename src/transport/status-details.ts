import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

/**
 * google.rpc.Status carrying one google.rpc.ErrorInfo, encoded by hand for
 * the `grpc-status-details-bin` trailer. The two messages are small and
 * frozen (field numbers from google/rpc/status.proto and error_details.proto);
 * encoding them here avoids vendoring third-party proto files that the
 * registry-less buf setup could not resolve as a dependency.
 */

export const ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo';
export const RETRY_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.RetryInfo';
export const ERROR_DOMAIN = 'vigil';

export interface ErrorInfo {
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Readonly<Record<string, string>>;
}

export interface RpcStatus {
  readonly code: number;
  readonly message: string;
  readonly errorInfos: readonly ErrorInfo[];
  /** google.rpc.RetryInfo's retry_delay, in milliseconds, when the caller may retry. */
  readonly retryDelayMs?: number | undefined;
}

export function encodeStatus(status: RpcStatus): Uint8Array {
  const writer = new BinaryWriter();
  if (status.code !== 0) writer.tag(1, WireType.Varint).int32(status.code);
  if (status.message !== '') writer.tag(2, WireType.LengthDelimited).string(status.message);
  for (const info of status.errorInfos) {
    writer.tag(3, WireType.LengthDelimited).fork(); // google.protobuf.Any
    writer.tag(1, WireType.LengthDelimited).string(ERROR_INFO_TYPE_URL);
    writer.tag(2, WireType.LengthDelimited).bytes(encodeErrorInfo(info));
    writer.join();
  }
  if (status.retryDelayMs !== undefined) {
    const ms = Math.max(0, Math.round(status.retryDelayMs));
    writer.tag(3, WireType.LengthDelimited).fork();
    writer.tag(1, WireType.LengthDelimited).string(RETRY_INFO_TYPE_URL);
    // RetryInfo { google.protobuf.Duration retry_delay = 1 { int64 seconds = 1; int32 nanos = 2; } }
    const duration = new BinaryWriter();
    duration.tag(1, WireType.Varint).int64(Math.floor(ms / 1000));
    duration.tag(2, WireType.Varint).int32((ms % 1000) * 1_000_000);
    const retryInfo = new BinaryWriter();
    retryInfo.tag(1, WireType.LengthDelimited).bytes(duration.finish());
    writer.tag(2, WireType.LengthDelimited).bytes(retryInfo.finish());
    writer.join();
  }
  return writer.finish();
}

function encodeErrorInfo(info: ErrorInfo): Uint8Array {
  const writer = new BinaryWriter();
  writer.tag(1, WireType.LengthDelimited).string(info.reason);
  writer.tag(2, WireType.LengthDelimited).string(info.domain);
  for (const [key, value] of Object.entries(info.metadata)) {
    writer.tag(3, WireType.LengthDelimited).fork();
    writer.tag(1, WireType.LengthDelimited).string(key);
    writer.tag(2, WireType.LengthDelimited).string(value);
    writer.join();
  }
  return writer.finish();
}

/** Decodes a `grpc-status-details-bin` value; ErrorInfo details are decoded, other details skipped. */
export function decodeStatus(bytes: Uint8Array): RpcStatus {
  const reader = new BinaryReader(bytes);
  let code = 0;
  let message = '';
  const errorInfos: ErrorInfo[] = [];
  let retryDelayMs: number | undefined;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.Varint) code = reader.int32();
    else if (field === 2 && wireType === WireType.LengthDelimited) message = reader.string();
    else if (field === 3 && wireType === WireType.LengthDelimited) {
      const detail = decodeAny(reader.bytes());
      if (detail?.type === 'error') errorInfos.push(detail.info);
      else if (detail?.type === 'retry') retryDelayMs = detail.ms;
    } else reader.skip(wireType, field);
  }
  return { code, message, errorInfos, retryDelayMs };
}

function decodeAny(
  bytes: Uint8Array,
): { type: 'error'; info: ErrorInfo } | { type: 'retry'; ms: number } | undefined {
  const reader = new BinaryReader(bytes);
  let typeUrl = '';
  let value: Uint8Array = new Uint8Array();
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) typeUrl = reader.string();
    else if (field === 2 && wireType === WireType.LengthDelimited) value = reader.bytes();
    else reader.skip(wireType, field);
  }
  if (typeUrl === ERROR_INFO_TYPE_URL) return { type: 'error', info: decodeErrorInfo(value) };
  if (typeUrl === RETRY_INFO_TYPE_URL) return { type: 'retry', ms: decodeRetryDelay(value) };
  return undefined;
}

function decodeRetryDelay(bytes: Uint8Array): number {
  const reader = new BinaryReader(bytes);
  let ms = 0;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      const duration = new BinaryReader(reader.bytes());
      while (duration.pos < duration.len) {
        const [f, w] = duration.tag();
        if (f === 1 && w === WireType.Varint) ms += Number(duration.int64()) * 1000;
        else if (f === 2 && w === WireType.Varint) ms += duration.int32() / 1e6;
        else duration.skip(w, f);
      }
    } else reader.skip(wireType, field);
  }
  return ms;
}

function decodeErrorInfo(bytes: Uint8Array): ErrorInfo {
  const reader = new BinaryReader(bytes);
  let reason = '';
  let domain = '';
  const metadata: Record<string, string> = {};
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) reason = reader.string();
    else if (field === 2 && wireType === WireType.LengthDelimited) domain = reader.string();
    else if (field === 3 && wireType === WireType.LengthDelimited) {
      const entry = new BinaryReader(reader.bytes());
      let key = '';
      let value = '';
      while (entry.pos < entry.len) {
        const [f, w] = entry.tag();
        if (f === 1 && w === WireType.LengthDelimited) key = entry.string();
        else if (f === 2 && w === WireType.LengthDelimited) value = entry.string();
        else entry.skip(w, f);
      }
      metadata[key] = value;
    } else reader.skip(wireType, field);
  }
  return { reason, domain, metadata };
}
