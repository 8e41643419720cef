import { request } from 'node:http';

/**
 * Reads a server's Prometheus text exposition (GET /metrics). Samples are
 * keyed by name plus their label set as written (`name` or `name{a="b"}`).
 */
export type MetricSamples = ReadonlyMap<string, number>;

export function scrapeMetrics(address: string, timeoutMs = 5_000): Promise<MetricSamples> {
  return new Promise((resolve, reject) => {
    const req = request(
      `http://${address}/metrics`,
      { method: 'GET', timeout: timeoutMs },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          if (response.statusCode !== 200) {
            reject(new Error(`GET /metrics on ${address}: HTTP ${response.statusCode ?? '?'}`));
            return;
          }
          resolve(parseMetrics(Buffer.concat(chunks).toString('utf8')));
        });
        response.on('error', reject);
      },
    );
    req.on('timeout', () => {
      req.destroy(new Error(`GET /metrics on ${address}: no answer in ${timeoutMs} ms`));
    });
    req.on('error', reject);
    req.end();
  });
}

export function parseMetrics(text: string): MetricSamples {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (!match?.[1] || match[2] === undefined) continue;
    samples.set(match[1].replace(/\{\}$/, ''), Number(match[2]));
  }
  return samples;
}

/** An unlabelled sample (counter or gauge); undefined when the server does not expose it. */
export function sample(samples: MetricSamples | undefined, name: string): number | undefined {
  return samples?.get(name);
}
