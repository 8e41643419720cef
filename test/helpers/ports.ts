import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * Free loopback ports for the processes tests and benchmarks start.
 *
 * Ports come from below the kernel's ephemeral range, never from `listen(0)`: an
 * ephemeral port is free when it is picked, but the same range is where the kernel
 * takes the source port of every outgoing connection, so with hundreds of sidecar
 * connections opening and reconnecting, a port picked a moment before a child binds
 * it (or re-binds it after kill -9 and restart) can be taken by a client socket, and
 * the child dies with "address already in use" (seen in CI with an etcd member).
 * Below the ephemeral range only explicit listeners can hold a port.
 */

const SPAN = 12_000;

function allocatableRange(): { low: number; high: number } {
  let ephemeralLow = 32_768;
  let ephemeralHigh = 60_999;
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) {
      ephemeralLow = low!;
      ephemeralHigh = high!;
    }
  } catch {
    // Not Linux: keep the Linux defaults.
  }
  if (ephemeralLow - SPAN >= 1_024) return { low: ephemeralLow - SPAN, high: ephemeralLow - 1 };
  if (ephemeralHigh + 1_000 < 65_535) return { low: ephemeralHigh + 1, high: 65_535 };
  return { low: 1_024, high: Math.max(1_025, ephemeralLow - 1) };
}

const range = allocatableRange();
const size = range.high - range.low + 1;
// Each process starts at its own offset so that concurrent processes rarely probe the same ports.
let cursor = (process.pid * 7_919 + Math.floor(Math.random() * size)) % size;

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => {
      resolve(false);
    });
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      server.close(() => {
        resolve(true);
      });
    });
  });
}

/** A TCP port on 127.0.0.1, outside the ephemeral range, free right now and not handed out before by this process. */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < size; tries += 1) {
    const port = range.low + cursor;
    cursor = (cursor + 1) % size;
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port in ${range.low}-${range.high}`);
}
