import { request, type IncomingMessage } from 'node:http';

/** Plain HTTP reads of the console API and its event stream, for the console suites. */

export interface HttpAnswer {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly text: string;
  /** The body parsed as JSON (undefined when it is not JSON). */
  readonly json: unknown;
}

/** GET `path` on 127.0.0.1:`port`; `token` undefined sends no authorization header. */
export function httpGet(
  port: number,
  path: string,
  token?: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: {
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
          ...options.headers,
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: response.statusCode ?? 0, headers: response.headers, text, json });
        });
        response.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The `{ error: { code, reason } }` of a refused console request. */
export function errorOf(answer: HttpAnswer): { code: string; reason: string; metadata: object } {
  return (answer.json as { error: { code: string; reason: string; metadata: object } }).error;
}

export interface SseEvent {
  readonly id: string;
  readonly event: string;
  readonly data: unknown;
}

/** An open console event stream, read one event at a time. */
export interface SseReader {
  readonly status: number;
  /** The refusal's body, when the stream was refused. */
  readonly body: unknown;
  /** The next event; rejects after `timeoutMs` or when the stream ends first. */
  next(timeoutMs?: number): Promise<SseEvent>;
  /** Reads until `predicate` holds; returns every event read. */
  until(predicate: (event: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent[]>;
  /** Resolves once the server has ended the stream. */
  ended(): Promise<void>;
  close(): void;
}

/** Opens /api/console/events, resuming after `lastEventId` when given. */
export function openEvents(port: number, token: string, lastEventId?: number): Promise<SseReader> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/api/console/events',
        headers: {
          authorization: `Bearer ${token}`,
          ...(lastEventId === undefined ? {} : { 'last-event-id': String(lastEventId) }),
        },
      },
      (response) => {
        const events: SseEvent[] = [];
        const waiters: (() => void)[] = [];
        let finished = false;
        let buffered = '';
        let raw = '';
        const wake = () => {
          for (const w of waiters.splice(0)) w();
        };
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          raw += chunk;
          buffered += chunk;
          let end: number;
          while ((end = buffered.indexOf('\n\n')) >= 0) {
            const frame = buffered.slice(0, end);
            buffered = buffered.slice(end + 2);
            const fields = new Map<string, string>();
            for (const line of frame.split('\n')) {
              const colon = line.indexOf(': ');
              if (line.startsWith(':') || colon < 0) continue;
              fields.set(line.slice(0, colon), line.slice(colon + 2));
            }
            if (!fields.has('data')) continue;
            events.push({
              id: fields.get('id') ?? '',
              event: fields.get('event') ?? 'message',
              data: JSON.parse(fields.get('data') ?? 'null'),
            });
          }
          wake();
        });
        const endedPromise = new Promise<void>((done) => {
          response.on('close', () => {
            finished = true;
            wake();
            done();
          });
        });
        async function next(timeoutMs = 5_000): Promise<SseEvent> {
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const event = events.shift();
            if (event) return event;
            if (finished) throw new Error('the event stream ended');
            const remaining = deadline - Date.now();
            if (remaining <= 0) throw new Error('timed out waiting for a console event');
            await new Promise<void>((done) => {
              const timer = setTimeout(done, remaining);
              waiters.push(() => {
                clearTimeout(timer);
                done();
              });
            });
          }
        }
        const reader: SseReader = {
          status: response.statusCode ?? 0,
          get body() {
            try {
              return JSON.parse(raw) as unknown;
            } catch {
              return undefined;
            }
          },
          next,
          async until(predicate, timeoutMs = 5_000) {
            const read: SseEvent[] = [];
            const deadline = Date.now() + timeoutMs;
            for (;;) {
              const event = await next(Math.max(1, deadline - Date.now()));
              read.push(event);
              if (predicate(event)) return read;
            }
          },
          ended: () => endedPromise,
          close() {
            req.destroy();
          },
        };
        if (response.statusCode === 200) {
          resolve(reader);
        } else {
          response.on('end', () => {
            resolve(reader);
          });
        }
      },
    );
    req.on('error', reject);
    req.end();
  });
}
