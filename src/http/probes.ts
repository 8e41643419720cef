import { exactRoute, type HttpRoute } from './http-listener.js';

/**
 * Kubernetes-style probes on the HTTP port: `/healthz` says the process is
 * alive and answering (liveness), `/readyz` that it can serve (readiness):
 * every readiness check passed within its deadline.
 */

/** One readiness condition: resolves when it holds, rejects (or times out) saying why not. */
export interface ReadinessCheck {
  readonly name: string;
  readonly check: () => Promise<void>;
}

/** How long one check may take before the probe calls it failed. */
const CHECK_DEADLINE_MS = 2_000;

/** `/healthz`: 200 while the process answers HTTP at all. */
export function healthzRoute(): HttpRoute {
  return exactRoute('/healthz', (_request, response) => {
    response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
  });
}

/** `/readyz`: 200 when every check holds, else 503 with one line per failed check. */
export function readyzRoute(checks: () => readonly ReadinessCheck[]): HttpRoute {
  return exactRoute('/readyz', async (_request, response) => {
    const failures = await failedChecks(checks());
    if (failures.length === 0) {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ready\n');
      return;
    }
    response
      .writeHead(503, { 'content-type': 'text/plain' })
      .end(failures.map((f) => `not ready: ${f}\n`).join(''));
  });
}

/** Runs every check at once; returns `name: why` for each that failed or took too long. */
export async function failedChecks(checks: readonly ReadinessCheck[]): Promise<string[]> {
  const results = await Promise.all(
    checks.map(async ({ name, check }) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          check(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => {
              reject(new Error(`no answer within ${CHECK_DEADLINE_MS} ms`));
            }, CHECK_DEADLINE_MS);
          }),
        ]);
        return undefined;
      } catch (error) {
        const why = error instanceof Error ? error.message : String(error);
        return `${name}: ${why.replace(/\s*\n\s*/g, '; ')}`;
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return results.filter((r): r is string => r !== undefined);
}
