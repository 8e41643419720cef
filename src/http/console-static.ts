import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { HttpRoute } from './http-listener.js';

/** Where the console's built files are served from: `/` is its page, the rest is under here. */
export const CONSOLE_ASSETS_PREFIX = '/console/';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

/**
 * The page may load only its own scripts and styles and talk only to its own
 * origin: nothing is fetched from anywhere else, and no inline script runs.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

interface StaticFile {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

/**
 * The console's static files, read once from `dir` (what `npm run build`
 * puts in dist/web): `/` answers its index.html, `/console/<file>` the
 * other files. When the directory was not built, both answer 503 saying so.
 */
export function consoleStaticRoute(dir: string): HttpRoute {
  const files = loadFiles(dir);
  return {
    matches: (path) => path === '/' || path.startsWith(CONSOLE_ASSETS_PREFIX),
    handle(request, response, path) {
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end();
        return;
      }
      if (files.size === 0) {
        response
          .writeHead(503, { 'content-type': 'text/plain' })
          .end(`the console is not built (no files in ${dir}): run npm run build\n`);
        return;
      }
      const name = path === '/' ? 'index.html' : path.slice(CONSOLE_ASSETS_PREFIX.length);
      const file = files.get(name);
      if (!file) {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      const headers = {
        'content-type': file.type,
        etag: file.etag,
        'cache-control': 'no-cache',
        'content-security-policy': CONTENT_SECURITY_POLICY,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      };
      if (request.headers['if-none-match'] === file.etag) {
        response.writeHead(304, headers).end();
        return;
      }
      response.writeHead(200, { ...headers, 'content-length': file.body.length });
      response.end(request.method === 'HEAD' ? undefined : file.body);
    },
  };
}

/** Every servable file directly in `dir`, by name (the console has no subdirectories). */
function loadFiles(dir: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  if (!existsSync(dir)) return files;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const type = CONTENT_TYPES[extname(entry.name)];
    if (!entry.isFile() || type === undefined) continue;
    const body = readFileSync(join(dir, entry.name));
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    files.set(entry.name, { body, type, etag });
  }
  return files;
}
