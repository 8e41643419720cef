import { constants, type Http2Server, type Http2Session } from 'node:http2';

/**
 * Keepalive enforcement, which grpc-js has no option for: a peer that pings
 * more often than `minIntervalMs` collects a strike per early ping, and its
 * connection is closed with GOAWAY ENHANCE_YOUR_CALM after `maxStrikes` in a
 * row (as gRPC's core servers do); a ping that comes in time clears them.
 * Every PING costs the server a PING ACK and a turn of its event loop, so a
 * flood of them is load a connection could generate for free. Node emits
 * each PING received as the session's 'ping' event.
 */
export interface PingPolicy {
  readonly minIntervalMs: number;
  readonly maxStrikes: number;
  /** Told once per connection closed for pinging too often. */
  onAbuse?: (session: Http2Session) => void;
}

/** The consecutive early pings that close a connection (gRPC core's default). */
export const MAX_PING_STRIKES = 2;

export function enforcePings(session: Http2Session, policy: PingPolicy): void {
  let last = -Infinity;
  let strikes = 0;
  session.on('ping', () => {
    const now = performance.now();
    const early = now - last < policy.minIntervalMs;
    last = now;
    if (!early) {
      strikes = 0;
      return;
    }
    strikes += 1;
    if (strikes <= policy.maxStrikes || session.closed || session.destroyed) return;
    policy.onAbuse?.(session);
    session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM, 0, Buffer.from('too_many_pings'));
    session.close();
    // A peer that ignores the GOAWAY and keeps the socket open is cut off.
    setTimeout(() => {
      if (!session.destroyed) session.destroy();
    }, 1_000).unref();
  });
}

/** Applies the policy to every connection the servers accept from now on. */
export function enforcePingsOn(servers: Iterable<Http2Server>, policy: PingPolicy): void {
  for (const server of servers) {
    server.on('session', (session: Http2Session) => {
      enforcePings(session, policy);
    });
  }
}
