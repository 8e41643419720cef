/** Latency bookkeeping for the bench: bounded sample storage and percentiles. */

/**
 * Stores latencies in a Float64Array. Past `capacity` samples it keeps a
 * uniform random sample (reservoir sampling), so memory stays bounded
 * whatever the run length.
 */
export interface LatencyRecorder {
  add(ms: number): void;
  readonly count: number;
  /** The kept samples (a copy). */
  samples(): Float64Array;
}

export function createLatencyRecorder(capacity = 1_000_000): LatencyRecorder {
  let buffer = new Float64Array(Math.min(capacity, 4096));
  let kept = 0;
  let seen = 0;
  return {
    add(ms) {
      seen += 1;
      if (kept < capacity) {
        if (kept === buffer.length) {
          const grown = new Float64Array(Math.min(capacity, buffer.length * 2));
          grown.set(buffer);
          buffer = grown;
        }
        buffer[kept] = ms;
        kept += 1;
        return;
      }
      const slot = Math.floor(Math.random() * seen);
      if (slot < capacity) buffer[slot] = ms;
    },
    get count() {
      return seen;
    },
    samples() {
      return buffer.slice(0, kept);
    },
  };
}

export interface Summary {
  readonly count: number;
  readonly min: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

/** Nearest-rank percentiles of the given samples (NaN when there are none). */
export function summarize(values: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  const rank = (q: number): number => {
    if (n === 0) return Number.NaN;
    const index = Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1));
    return sorted[index] ?? Number.NaN;
  };
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: n,
    min: rank(0),
    p50: rank(0.5),
    p90: rank(0.9),
    p99: rank(0.99),
    max: n === 0 ? Number.NaN : (sorted[n - 1] ?? Number.NaN),
    mean: n === 0 ? Number.NaN : sum / n,
  };
}

/** Concatenates the sample arrays of several workers. */
export function concatSamples(parts: readonly Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Rounds for display and JSON: 3 significant decimals at most. */
export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
