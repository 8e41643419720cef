import type { CallOptions, Metadata, ServiceError } from '@grpc/grpc-js';
import { fromServiceError } from './errors.js';

/** The last overload of a generated unary method (request, metadata, options, callback). */
export type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => unknown;

/** Calls a generated unary method bound to `client`; rejects with VigilClientError. */
export function invoke<Req, Res>(
  client: object,
  method: UnaryMethod<Req, Res>,
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions> = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, metadata, options, (error, response) => {
      if (error) reject(fromServiceError(error));
      else resolve(response);
    });
  });
}
