import type { Clock } from './clock.js';

/**
 * Token buckets, one per key: `ratePerSecond` sustained, `burst` at once.
 * `take` spends one token and returns 0, or returns how many milliseconds
 * until a token is free (spending nothing). Full buckets are forgotten when
 * the map grows, so memory stays bounded by the keys that are actually busy.
 */
export interface RateLimiter {
  take(key: string): number;
}

export interface RateLimit {
  readonly ratePerSecond: number;
  readonly burst: number;
}

export function createRateLimiter(limit: RateLimit, clock: Clock, maxKeys = 100_000): RateLimiter {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const refill = (bucket: { tokens: number; at: number }, now: number) => {
    bucket.tokens = Math.min(
      limit.burst,
      bucket.tokens + ((now - bucket.at) / 1000) * limit.ratePerSecond,
    );
    bucket.at = now;
  };
  return {
    take(key) {
      const now = clock.now();
      let bucket = buckets.get(key);
      if (!bucket) {
        if (buckets.size >= maxKeys) {
          for (const [k, b] of buckets) {
            refill(b, now);
            if (b.tokens >= limit.burst) buckets.delete(k);
          }
        }
        bucket = { tokens: limit.burst, at: now };
        buckets.set(key, bucket);
      }
      refill(bucket, now);
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return 0;
      }
      return Math.ceil(((1 - bucket.tokens) / limit.ratePerSecond) * 1000);
    },
  };
}

/** Parses `5/s`, `300/m` or `off`; undefined when malformed. */
export function parseRate(text: string): number | 'off' | undefined {
  if (text === 'off' || text === '0') return 'off';
  const match = /^(\d+(?:\.\d+)?)\/(s|m)$/.exec(text);
  if (!match) return undefined;
  const amount = Number(match[1]);
  return amount > 0 ? (match[2] === 'm' ? amount / 60 : amount) : undefined;
}
