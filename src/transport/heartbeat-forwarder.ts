import {
  Client,
  Metadata,
  credentials,
  status,
  type ChannelCredentials,
  type ServiceError,
} from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { ERROR_REASONS, VigilError, type ErrorReason } from '../domain/errors.js';
import { HeartbeatRequest, HeartbeatResponse } from '../../gen/vigil/v1/runtime_service.js';
import { GetWorkspaceRequest, GetWorkspaceResponse } from '../../gen/vigil/v1/control_service.js';
import { decodeErrorStatus, ERROR_DOMAIN } from '../wire/error-status.js';
import {
  AUTHORIZATION_KEY,
  FORWARDED_KEY,
  STATUS_DETAILS_KEY,
  bearerAuthorization,
} from '../wire/metadata.js';
import { cardBytes } from './heartbeat-wire.js';

const HEARTBEAT_PATH = '/vigil.v1.RuntimeService/Heartbeat';
const GET_WORKSPACE_PATH = '/vigil.v1.ControlService/GetWorkspace';
const FORWARD_DEADLINE_MS = 2_000;
/** Codes that mean "the owner could not be reached", not "the owner answered". */
const UNREACHED = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.CANCELLED]);

/**
 * Cluster mode: a unary Heartbeat that lands on a replica that does not own
 * the workspace goes one hop to the owner, with the caller's own token (the
 * owner authenticates it like any call). The owner's answer — a reply or a
 * refusal — is relayed as it is; `undefined` means the owner could not be
 * reached, and the receiving replica then handles the heartbeat itself (and
 * so takes ownership).
 */
export interface HeartbeatForwarder {
  /** The owner's address, when another live replica owns the workspace. */
  ownerAddress(workspaceId: string): string | undefined;
  forward(
    address: string,
    request: HeartbeatRequest,
    token: string | undefined,
  ): Promise<HeartbeatResponse | undefined>;
  /**
   * GetWorkspace, asked of the owner: only it knows the last heartbeat and
   * health (kept in memory, written to etcd lazily). Same contract as `forward`.
   */
  forwardGetWorkspace(
    address: string,
    request: GetWorkspaceRequest,
    token: string | undefined,
  ): Promise<GetWorkspaceResponse | undefined>;
  close(): void;
}

export interface ForwarderOptions {
  readonly replicaId: string;
  readonly ownerAddress: (workspaceId: string) => string | undefined;
  /** How to reach other replicas: plaintext unless the server itself serves TLS. */
  readonly credentials?: ChannelCredentials;
}

/** The request as the owner will decode it: the card's raw bytes go back as field 2 unchanged. */
function encode(request: HeartbeatRequest): Buffer {
  const writer = new BinaryWriter();
  const bytes = cardBytes(request);
  HeartbeatRequest.encode(
    bytes === undefined ? request : { ...request, agentCard: undefined },
    writer,
  );
  if (bytes !== undefined) writer.uint32((2 << 3) | 2).bytes(bytes);
  return Buffer.from(writer.finish());
}

/** The owner's refusal as the error this replica answers with (same code, reason and metadata). */
function relayed(error: ServiceError): VigilError {
  const details = error.metadata.get(STATUS_DETAILS_KEY)[0];
  if (details instanceof Buffer) {
    const described = decodeErrorStatus(details);
    const info = described.errorInfos.find((i) => i.domain === ERROR_DOMAIN);
    if (info && info.reason in ERROR_REASONS) {
      return new VigilError(
        info.reason as ErrorReason,
        described.message,
        info.metadata,
        described.retryAfterMs === undefined ? undefined : { retryAfterMs: described.retryAfterMs },
      );
    }
  }
  return new VigilError('STORE_UNAVAILABLE', `the owning replica answered: ${error.details}`);
}

export function createHeartbeatForwarder(options: ForwarderOptions): HeartbeatForwarder {
  const clients = new Map<string, Client>();
  const channelCredentials = options.credentials ?? credentials.createInsecure();
  const client = (address: string): Client => {
    let found = clients.get(address);
    if (!found) {
      found = new Client(address, channelCredentials);
      clients.set(address, found);
    }
    return found;
  };
  /** One unary call to another replica; undefined when it could not be reached. */
  function unary<Res>(
    address: string,
    path: string,
    request: Buffer,
    decode: (bytes: Buffer) => Res,
    token: string | undefined,
  ): Promise<Res | undefined> {
    const metadata = new Metadata();
    if (token !== undefined) metadata.set(AUTHORIZATION_KEY, bearerAuthorization(token));
    metadata.set(FORWARDED_KEY, options.replicaId);
    return new Promise((resolve, reject) => {
      client(address).makeUnaryRequest(
        path,
        (value: Buffer) => value,
        decode,
        request,
        metadata,
        { deadline: Date.now() + FORWARD_DEADLINE_MS },
        (error, response) => {
          if (!error) resolve(response);
          else if (UNREACHED.has(error.code)) resolve(undefined);
          else reject(relayed(error));
        },
      );
    });
  }
  return {
    ownerAddress: options.ownerAddress,
    forward: (address, request, token) =>
      unary(address, HEARTBEAT_PATH, encode(request), (b) => HeartbeatResponse.decode(b), token),
    forwardGetWorkspace: (address, request, token) =>
      unary(
        address,
        GET_WORKSPACE_PATH,
        Buffer.from(GetWorkspaceRequest.encode(request).finish()),
        (b) => GetWorkspaceResponse.decode(b),
        token,
      ),
    close() {
      for (const c of clients.values()) c.close();
      clients.clear();
    },
  };
}
