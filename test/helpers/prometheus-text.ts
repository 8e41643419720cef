import { expect } from 'chai';

/** Reading Prometheus text exposition in tests. */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A scrape: its samples and a way to look one up by name and exact label set. */
export interface Scrape {
  readonly text: string;
  readonly samples: readonly Sample[];
  /** The value of the sample with exactly these labels, or undefined when there is none. */
  value(name: string, labels?: Readonly<Record<string, string>>): number | undefined;
  /** Every sample of `name` whose labels include `labels`. */
  all(name: string, labels?: Readonly<Record<string, string>>): Sample[];
}

/** Parses the Prometheus text format (0.0.4); throws on a line it cannot read. */
export function parseExposition(text: string): Scrape {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(
      /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g,
    )) {
      labels[label[1]!] = label[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    const raw = match[3]!;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    samples.push({ name: match[1]!, labels, value });
  }
  const sameLabels = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) =>
    Object.keys(a).length === Object.keys(b).length &&
    Object.entries(b).every(([k, v]) => a[k] === v);
  const includes = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) =>
    Object.entries(b).every(([k, v]) => a[k] === v);
  return {
    text,
    samples,
    value: (name, labels = {}) =>
      samples.find((s) => s.name === name && sameLabels(s.labels, labels))?.value,
    all: (name, labels = {}) =>
      samples.filter((s) => s.name === name && includes(s.labels, labels)),
  };
}

/** GETs `url` (a /metrics endpoint), expects 200 with the Prometheus text content type, and parses it. */
export async function scrape(url: string): Promise<Scrape> {
  const response = await fetch(url);
  expect(response.status, `GET ${url}`).to.equal(200);
  expect(response.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await response.text());
}

/**
 * Scrapes until `done` holds for the scrape or `timeoutMs` passes, then
 * returns the last scrape (the caller asserts on it). For values the server
 * updates asynchronously, such as a watch stream noticing cancellation.
 */
export async function scrapeUntil(
  url: string,
  done: (scrape: Scrape) => boolean,
  timeoutMs = 2_000,
): Promise<Scrape> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await scrape(url);
    if (done(result) || Date.now() >= deadline) return result;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
