import {
  Metadata,
  credentials,
  type CallOptions,
  type ServiceError,
  type status,
} from '@grpc/grpc-js';
import { expect } from 'chai';
import {
  ControlServiceClient,
  type WatchStatusRequest,
  type WatchStatusResponse,
} from '../../gen/vigil/v1/control_service.js';
import { RuntimeServiceClient } from '../../gen/vigil/v1/runtime_service.js';
import type { ErrorInfo } from '../../gen/google/rpc/error_details.js';
import { decodeErrorStatus } from '../../src/wire/error-status.js';

/** Generated clients over a real socket, with promise-returning calls. */

export function bearer(token: string | undefined): Metadata {
  const metadata = new Metadata();
  if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

/** The last overload of a generated unary method, which TypeScript infers from. */
type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => unknown;

/** Calls a generated unary method and returns a promise. */
export function call<Req, Res>(
  client: object,
  method: UnaryMethod<Req, Res>,
  request: Req,
  token?: string,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, bearer(token), {}, (error, response) => {
      if (error) reject(error);
      else resolve(response);
    });
  });
}

/**
 * Clients of one server, or of several replicas of one cluster at once: then
 * every call goes to the next replica in turn (round-robin over one channel),
 * as behind a load balancer.
 */
export function createClients(port: number | readonly number[]) {
  const ports = typeof port === 'number' ? [port] : port;
  const address =
    ports.length === 1
      ? `127.0.0.1:${ports[0]}`
      : `ipv4:${ports.map((p) => `127.0.0.1:${p}`).join(',')}`;
  const options =
    ports.length === 1
      ? {}
      : { 'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }) };
  const runtime = new RuntimeServiceClient(address, credentials.createInsecure(), options);
  const control = new ControlServiceClient(address, credentials.createInsecure(), options);
  return {
    runtime,
    control,
    close() {
      runtime.close();
      control.close();
    },
  };
}

/** The ErrorInfo of a failed call (exactly one is required). */
export function errorInfoOf(error: ServiceError): ErrorInfo {
  // Spelled out rather than taken from src/wire: the test pins the wire names.
  const [details] = error.metadata.get('grpc-status-details-bin');
  expect(details, 'grpc-status-details-bin').to.be.instanceOf(Buffer);
  const decoded = decodeErrorStatus(details as Buffer);
  expect(decoded.code).to.equal(error.code);
  expect(decoded.errorInfos).to.have.length(1);
  const [info] = decoded.errorInfos;
  expect(info?.domain).to.equal('vigil');
  return info!;
}

/** Asserts that `promise` fails with `code` and ErrorInfo `reason`; returns the ErrorInfo. */
export async function expectRpcError(
  promise: Promise<unknown>,
  code: status,
  reason: string,
): Promise<ErrorInfo> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected the call to fail with ${reason}`).to.be.instanceOf(Error);
  const error = caught as ServiceError;
  expect(error.code, `gRPC code (${error.details})`).to.equal(code);
  const info = errorInfoOf(error);
  expect(info.reason).to.equal(reason);
  return info;
}

/** A WatchStatus stream read one event at a time. */
export interface WatchReader {
  /** The next event; rejects when the stream ends with an error first. */
  next(timeoutMs?: number): Promise<WatchStatusResponse>;
  /** Reads until `predicate` holds; returns every event read. */
  until(
    predicate: (event: WatchStatusResponse) => boolean,
    timeoutMs?: number,
  ): Promise<WatchStatusResponse[]>;
  /** Resolves with the stream's final error (or undefined when it ended OK). */
  ended(): Promise<ServiceError | undefined>;
  cancel(): void;
}

export function openWatch(
  control: ControlServiceClient,
  request: Partial<WatchStatusRequest>,
  token: string,
): WatchReader {
  const stream = control.watchStatus(
    { workspaceIds: [], afterSeq: 0, includeSnapshot: false, resume: false, ...request },
    bearer(token),
  );
  const buffered: WatchStatusResponse[] = [];
  const waiters: (() => void)[] = [];
  let finished = false;
  let failure: ServiceError | undefined;
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  stream.on('data', (event: WatchStatusResponse) => {
    buffered.push(event);
    wake();
  });
  stream.on('error', (error: ServiceError) => {
    failure = error;
    finished = true;
    wake();
  });
  stream.on('end', () => {
    finished = true;
    wake();
  });
  const endedPromise = new Promise<ServiceError | undefined>((resolve) => {
    stream.on('close', () => {
      resolve(failure);
    });
    stream.on('error', () => {
      resolve(failure);
    });
  });

  async function next(timeoutMs = 5_000): Promise<WatchStatusResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const event = buffered.shift();
      if (event) return event;
      if (finished) throw failure ?? new Error('watch stream ended');
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error('timed out waiting for a watch event');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  return {
    next,
    async until(predicate, timeoutMs = 5_000) {
      const seen: WatchStatusResponse[] = [];
      for (;;) {
        const event = await next(timeoutMs);
        seen.push(event);
        if (predicate(event)) return seen;
      }
    },
    ended: () => endedPromise,
    cancel() {
      stream.cancel();
    },
  };
}
