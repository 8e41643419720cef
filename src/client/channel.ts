import { Metadata, credentials, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import { AUTHORIZATION_KEY, bearerAuthorization } from '../wire/metadata.js';

/** Where and how an SDK client connects. */
export interface ConnectOptions {
  /** HOST:PORT of the Vigil server; default 127.0.0.1:50051. */
  readonly server?: string;
  /** Bearer token sent with every call. */
  readonly token: string;
  /** Transport credentials; plaintext by default. */
  readonly credentials?: ChannelCredentials;
  /** Extra grpc-js channel options. */
  readonly channelOptions?: ChannelOptions;
}

export const DEFAULT_SERVER = '127.0.0.1:50051';

export function connection(options: ConnectOptions) {
  const metadata = new Metadata();
  metadata.set(AUTHORIZATION_KEY, bearerAuthorization(options.token));
  return {
    address: options.server ?? DEFAULT_SERVER,
    credentials: options.credentials ?? credentials.createInsecure(),
    channelOptions: {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      // grpc-js backs off reconnects up to 120 s by default: after a long server
      // restart a sidecar would stay away for longer than offline_after and its
      // workspace would go OFFLINE although the runtime is fine. Retry often.
      'grpc.initial_reconnect_backoff_ms': 250,
      'grpc.max_reconnect_backoff_ms': 2_000,
      ...options.channelOptions,
    },
    /** A fresh copy per call: grpc-js may mutate the metadata it is given. */
    metadata: () => metadata.clone(),
  };
}

/** PEM material for a TLS connection: `ca` to trust the server, `cert` + `key` to present for mTLS. */
export interface TlsOptions {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/** TLS channel credentials (system roots unless `ca` is given). */
export function tlsCredentials(options: TlsOptions = {}): ChannelCredentials {
  return credentials.createSsl(options.ca ?? null, options.key ?? null, options.cert ?? null);
}
