import type { Http2Server } from 'node:http2';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import type { ControlAuth } from '../domain/control-auth.js';
import type { UseCases } from '../domain/use-cases.js';
import type { WatchDeps } from '../watch/watch-session.js';
import type { StreamQuota } from '../watch/stream-quota.js';
import { createControlService } from './control-service.js';
import { addReflection } from './reflection.js';
import { createAuthInterceptor } from './auth-interceptor.js';
import {
  HEARTBEAT_REFINEMENTS,
  HEARTBEAT_STREAM_REFINEMENTS,
  WATCH_REFINEMENTS,
  requireValidUtf8,
  tolerant,
} from './malformed.js';
import { withCallLog, type CallObserver } from './observer.js';
import { runtimeServiceDefinition } from './heartbeat-wire.js';
import { createRuntimeService } from './runtime-service.js';
import type { HeartbeatForwarder } from './heartbeat-forwarder.js';
import { createCallSessions } from './call-sessions.js';
import { MAX_PING_STRIKES, enforcePingsOn } from './ping-policy.js';
import { createRefusalLog } from './refusal-log.js';
import { createShutdown } from './shutdown.js';
import { controlServiceDefinition } from './watch-encoding.js';

export interface GrpcServerOptions {
  readonly useCases: UseCases;
  readonly controlAuth: ControlAuth;
  readonly watch: WatchDeps;
  readonly logger: Logger;
  readonly observer: CallObserver;
  /** HOST:PORT to listen on; port 0 picks a free one. */
  readonly listen: string;
  /** Serve TLS with this key pair; with `clientCa`, require client certificates it signed (mTLS). */
  readonly tls?: ServerTls;
  /** Largest request message accepted, in bytes. */
  readonly maxMessageBytes: number;
  /** HTTP/2 limits per connection; DEFAULT_CONNECTION_LIMITS when unset. */
  readonly connectionLimits?: ConnectionLimits;
  /** Open WatchStatus streams allowed per control token; 0 means no limit. */
  readonly maxWatchStreamsPerToken: number;
  /** The per-token count of open watch streams, shared with the web console's streams. */
  readonly watchQuota?: StreamQuota | undefined;
  /** Cluster mode: where unary heartbeats for workspaces other replicas own go. */
  readonly forwarder?: HeartbeatForwarder | undefined;
}

/** HTTP/2 limits of every connection (finite, unlike the grpc-js and Node defaults). */
export interface ConnectionLimits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams one connection may have open. */
  readonly maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE advertised, and enforced on each request's headers, bytes. */
  readonly maxHeaderListBytes: number;
  /** Memory one connection may hold in buffered frames and streams (Node's maxSessionMemory), MiB. */
  readonly maxSessionMemoryMiB: number;
  /** A connection with no open stream for this long is closed (GOAWAY). */
  readonly idleTimeoutMs: number;
  /**
   * Pings closer together than this are strikes; past MAX_PING_STRIKES in a row the
   * connection is closed with GOAWAY ENHANCE_YOUR_CALM. 0: no enforcement.
   */
  readonly minPingIntervalMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConcurrentStreams: 1_000,
  maxHeaderListBytes: 16 * 1024,
  maxSessionMemoryMiB: 32,
  idleTimeoutMs: 5 * 60_000,
  minPingIntervalMs: 5_000,
};

export interface ServerTls {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly clientCa?: Buffer;
}

export interface GrpcServer {
  /** The port actually bound. */
  readonly port: number;
  /**
   * Graceful stop: health NOT_SERVING, watch streams end with UNAVAILABLE,
   * in-flight unary calls get until `graceMs` to finish, then the rest is cut.
   */
  shutdown(graceMs: number): Promise<void>;
  /**
   * Cluster mode: `false` when the replica cannot vouch for its etcd lease.
   * Health turns NOT_SERVING, open streams end with UNAVAILABLE (NOT_SERVING)
   * and new calls are refused the same way, so clients move to another
   * replica before this one is fenced; `true` serves again.
   */
  setServing(serving: boolean): void;
}

const SERVICES = ['', 'vigil.v1.RuntimeService', 'vigil.v1.ControlService'];

export async function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServer> {
  const shutdown = createShutdown();
  requireValidUtf8();
  const limits = options.connectionLimits ?? DEFAULT_CONNECTION_LIMITS;
  const refusals = createRefusalLog(options.logger);
  const sessions = createCallSessions();
  const server = new Server({
    // Every Vigil call authenticates before a byte of its request is read.
    interceptors: [
      createAuthInterceptor({
        controlAuth: options.controlAuth,
        tokens: options.useCases.tokens,
        logger: options.logger,
        observer: options.observer,
        refusals,
        sessions,
      }),
    ],
    // Find dead watchers behind silent networks.
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
    // grpc-js refuses past this without an ErrorInfo; between the limit and this,
    // Vigil answers itself (MESSAGE_TOO_LARGE) without decoding the message.
    'grpc.max_receive_message_length': 2 * options.maxMessageBytes,
    'grpc.max_concurrent_streams': limits.maxConcurrentStreams,
    'grpc-node.max_session_memory': limits.maxSessionMemoryMiB,
    'grpc.max_connection_idle_ms': limits.idleTimeoutMs,
  });
  const observer = withCallLog(options.observer, options.logger);
  limitHeaderList(server, limits.maxHeaderListBytes);
  const health = new HealthImplementation(Object.fromEntries(SERVICES.map((s) => [s, 'SERVING'])));
  health.addToServer(server);
  addReflection(server);
  server.addService(
    tolerant(runtimeServiceDefinition, options.maxMessageBytes, {
      heartbeat: HEARTBEAT_REFINEMENTS,
      heartbeatStream: HEARTBEAT_STREAM_REFINEMENTS,
    }),
    createRuntimeService({
      runtime: options.useCases.runtime,
      projection: options.useCases.projection,
      tokens: options.useCases.tokens,
      logger: options.logger,
      observer,
      shutdown,
      sessions,
      forwarder: options.forwarder,
    }),
  );
  server.addService(
    tolerant(controlServiceDefinition, options.maxMessageBytes, {
      watchStatus: WATCH_REFINEMENTS,
    }),
    createControlService({
      admin: options.useCases.admin,
      projection: options.useCases.projection,
      tokens: options.useCases.tokens,
      controlAuth: options.controlAuth,
      watch: options.watch,
      maxWatchStreamsPerToken: options.maxWatchStreamsPerToken,
      forwarder: options.forwarder,
      watchQuota: options.watchQuota,
      shutdown,
      logger: options.logger,
      observer,
    }),
  );

  const port = await new Promise<number>((resolve, reject) => {
    const { tls } = options;
    const credentials = tls
      ? ServerCredentials.createSsl(
          tls.clientCa ?? null,
          [{ private_key: tls.key, cert_chain: tls.cert }],
          tls.clientCa !== undefined,
        )
      : ServerCredentials.createInsecure();
    server.bindAsync(options.listen, credentials, (error, bound) => {
      if (error) reject(error);
      else resolve(bound);
    });
  });
  if (limits.minPingIntervalMs > 0) {
    enforcePingsOn(http2ServersOf(server), {
      minIntervalMs: limits.minPingIntervalMs,
      maxStrikes: MAX_PING_STRIKES,
      onAbuse: (session) => {
        options.logger.warn(
          { peer: session.socket.remoteAddress, minPingIntervalMs: limits.minPingIntervalMs },
          'closed a connection that pings too often (GOAWAY ENHANCE_YOUR_CALM)',
        );
      },
    });
  }

  let stopping = false;
  return {
    port,
    setServing(serving) {
      if (stopping) return;
      for (const service of SERVICES)
        health.setStatus(service, serving ? 'SERVING' : 'NOT_SERVING');
      shutdown.setServing(serving);
    },
    async shutdown(graceMs) {
      stopping = true;
      for (const service of SERVICES) health.setStatus(service, 'NOT_SERVING');
      shutdown.begin();
      const graceful = new Promise<void>((resolve) => {
        server.tryShutdown(() => {
          resolve();
        });
      });
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => {
          resolve('timeout');
        }, graceMs);
      });
      const outcome = await Promise.race([graceful, deadline]);
      clearTimeout(timer);
      if (outcome === 'timeout') server.forceShutdown();
      refusals.close();
    },
  };
}

/**
 * grpc-js has no option for the header list size, and leaves Node's default
 * (advertised as 2^32 − 1). Its constructor keeps the options every HTTP/2
 * session of the server is created with, settings included: the limit is
 * added there, before anything is bound. Checked, so a grpc-js that stops
 * keeping them fails at start rather than silently serving without a limit.
 */
/** The HTTP/2 servers grpc-js listens with, once bound (grpc-js keeps them in a private map). */
function http2ServersOf(server: Server): Iterable<Http2Server> {
  const servers = (server as unknown as { http2Servers?: Map<Http2Server, unknown> }).http2Servers;
  if (!(servers instanceof Map)) throw new Error('grpc-js no longer exposes its HTTP/2 servers');
  return servers.keys();
}

function limitHeaderList(server: Server, bytes: number): void {
  const common = (server as unknown as { commonServerOptions?: { settings?: object } })
    .commonServerOptions;
  if (common === undefined) throw new Error('grpc-js no longer exposes its HTTP/2 server options');
  common.settings = { ...common.settings, maxHeaderListSize: bytes };
  Object.assign(common, { maxHeaderListPairs: 64 });
}
