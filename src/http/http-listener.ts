import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/**
 * One route of the HTTP listener (the port that serves /metrics). Routes are matched in
 * order: the first whose `matches` accepts the request path handles it.
 */
export interface HttpRoute {
  /** Accepts the request path (query string removed). */
  matches(path: string): boolean;
  /** Answers the request; a rejected promise answers 500 when nothing was sent yet. */
  handle(request: IncomingMessage, response: ServerResponse, path: string): void | Promise<void>;
}

/** A bound HTTP listener. */
export interface HttpListener {
  readonly port: number;
  /** Stops accepting and closes every open connection (long-lived streams included). */
  close(): Promise<void>;
}

/** A route for exactly one path. */
export function exactRoute(path: string, handle: HttpRoute['handle']): HttpRoute {
  return { matches: (candidate) => candidate === path, handle };
}

/**
 * Serves `routes` on `listen` (HOST:PORT, IPv6 hosts in brackets). Unmatched paths answer
 * 404 naming the routes a client may want. Resolves with the bound port.
 */
export async function serveHttp(
  listen: string,
  routes: readonly HttpRoute[],
  notFoundHint = 'try /metrics',
): Promise<HttpListener> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0] ?? '/';
    const route = routes.find((candidate) => candidate.matches(path));
    if (!route) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${notFoundHint}\n`);
      return;
    }
    const fail = (error: unknown): void => {
      if (!response.headersSent) {
        response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(error)}\n`);
      } else {
        response.destroy();
      }
    };
    try {
      const answered = route.handle(request, response, path);
      if (answered) answered.catch(fail);
    } catch (error) {
      fail(error);
    }
  });
  const separator = listen.lastIndexOf(':');
  const host = listen.slice(0, separator).replace(/^\[(.*)\]$/, '$1');
  const port = Number(listen.slice(separator + 1));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}
