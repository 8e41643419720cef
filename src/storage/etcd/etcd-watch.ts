import type { IEvent, IKeyValue, IWatchResponse } from 'etcd3';
import type { CountedStream, EtcdConnection } from './etcd-connection.js';
import { prefixEnd, revision } from './etcd-keys.js';
import type { IWatchRequest } from 'etcd3';

/** The events of one etcd revision, in the order etcd applied them. */
export interface RevisionEvents {
  readonly revision: number;
  readonly events: readonly IEvent[];
}

/** The cached keys as they stood at one revision. */
export interface Listing {
  readonly revision: number;
  readonly kvs: readonly IKeyValue[];
}

export interface EtcdWatchOptions {
  readonly connection: EtcdConnection;
  /** Everything under this prefix is watched. */
  readonly prefix: string;
  /** Full prefixes listed at start (and after a compaction): the keys a replica caches. */
  readonly listed: readonly string[];
  /** The listing at revision R; events follow from R + 1. Called again after a compaction. */
  onListing(listing: Listing): Promise<void> | void;
  /** Each revision once, in revision order, after the listing it follows. */
  onRevision(events: RevisionEvents): void;
  /** A stream failed (it is reopened from the cursor). */
  onError?: (error: unknown) => void;
}

/**
 * One prefix watch that owns its cursor. It resumes from the last revision it
 * delivered + 1 and drops anything at or below it, whatever member it lands
 * on; it does not rely on a client library's own resume (which can set the
 * resume point from response headers and skip events when the member serving
 * it dies mid catch-up). A compaction past the cursor is answered by listing
 * the cached keys again at a new revision R and watching from R + 1. A
 * stream that stalls, fails or does not answer has its member reported to the
 * connection, which passes it over for a while: the reopen after a paused
 * member does not land on that member again.
 */
export interface EtcdWatch {
  /** Lists, then starts watching; resolves after the first listing was delivered. */
  start(): Promise<void>;
  /** The last revision delivered (events, progress or listing). */
  revision(): number;
  /** Resolves once every revision up to `rev` has been delivered. */
  reached(rev: number): Promise<void>;
  stop(): void;
}

const PAGE = 1_000;
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 1_000;
/**
 * A revision someone waits for (a commit of this replica) that the stream has
 * not delivered for this long, while the stream delivered nothing at all, means
 * the member serving it is paused or cut off: reopen elsewhere instead of
 * waiting for gRPC keepalive (5 s + 3 s) to notice.
 */
const STALL_MS = 2_000;
/**
 * An idle stream is asked for a progress notification after this much
 * silence; no answer within ANSWER_MS reopens it elsewhere. So a replica that
 * only watches (no commit of its own waits) also leaves a paused member within
 * a few seconds — for one request per idle period, none while events flow.
 */
const PROBE_IDLE_MS = 2_000;
/**
 * How long a stream may owe the answer to its create request or to a
 * progress request. etcd answers in milliseconds; each extra hop after a
 * paused member (a reopen that lands on a member still electing) costs this.
 */
const ANSWER_MS = 1_000;

export function createEtcdWatch(options: EtcdWatchOptions): EtcdWatch {
  const { connection } = options;
  let cursor = 0;
  let stopped = false;
  const isStopped = () => stopped;
  let stream: CountedStream<IWatchRequest, IWatchResponse> | undefined;
  let retryMs = RETRY_MIN_MS;
  let retryTimer: NodeJS.Timeout | undefined;
  let waiters: { rev: number; resolve: () => void }[] = [];
  let lastResponseAt = Date.now();
  let stallTimer: NodeJS.Timeout | undefined;
  // The member serving the current stream: reported to the connection when it lets the stream down.
  let serving = '';
  function suspect(member: string): void {
    if (member !== '') connection.suspect(member);
  }

  function watchForStall(): void {
    if (stallTimer || stopped) return;
    stallTimer = setTimeout(() => {
      stallTimer = undefined;
      if (stopped || waiters.length === 0) return;
      const stuck = stream;
      if (stuck && Date.now() - lastResponseAt >= STALL_MS) {
        stream = undefined;
        stuck.cancel();
        suspect(serving);
        lastResponseAt = Date.now();
        scheduleReopen(
          new Error(
            `etcd watch on ${serving} delivered nothing for ${STALL_MS} ms while a commit waits`,
          ),
        );
      }
      watchForStall();
    }, STALL_MS);
    stallTimer.unref();
  }

  let probeTimer: NodeJS.Timeout | undefined;
  // Since when the stream owes an answer: to its create request (a stream just
  // opened on a paused member never answers it) or to a progress request.
  let awaitingSince: number | undefined;

  /** Asks an idle stream for progress; reopens it when the member does not answer. */
  function probe(): void {
    const current = stream;
    if (stopped || !current) return;
    const now = Date.now();
    if (awaitingSince !== undefined) {
      if (now - awaitingSince >= ANSWER_MS) {
        awaitingSince = undefined;
        stream = undefined;
        current.cancel();
        suspect(serving);
        lastResponseAt = now;
        scheduleReopen(new Error(`etcd watch on ${serving} did not answer within ${ANSWER_MS} ms`));
      }
      return;
    }
    if (now - lastResponseAt < PROBE_IDLE_MS) return;
    try {
      current.write({ progress_request: {} });
      awaitingSince = now;
    } catch (error) {
      options.onError?.(error);
    }
  }

  function advance(rev: number): void {
    if (rev <= cursor) return;
    cursor = rev;
    const due = waiters.filter((waiter) => waiter.rev <= cursor);
    if (due.length === 0) return;
    waiters = waiters.filter((waiter) => waiter.rev > cursor);
    for (const waiter of due) waiter.resolve();
  }

  async function list(): Promise<Listing> {
    let at = 0;
    const kvs: IKeyValue[] = [];
    for (const prefix of options.listed) {
      let from = Buffer.from(prefix);
      const end = prefixEnd(prefix);
      for (;;) {
        const page = await connection.range({
          key: from,
          range_end: end,
          limit: PAGE,
          ...(at === 0 ? {} : { revision: at }),
        });
        if (at === 0) at = revision(page.header.revision);
        kvs.push(...page.kvs);
        const last = page.kvs[page.kvs.length - 1];
        if (!page.more || !last) break;
        from = Buffer.concat([last.key, Buffer.from([0])]);
      }
    }
    if (at === 0) {
      // Nothing listed: take the current revision from an empty range.
      const head = await connection.range({
        key: Buffer.from(options.prefix),
        limit: 1,
        count_only: true,
      });
      at = revision(head.header.revision);
    }
    return { revision: at, kvs };
  }

  async function relist(): Promise<void> {
    const listing = await list();
    await options.onListing(listing);
    cursor = Math.max(cursor, listing.revision);
    advance(listing.revision);
  }

  function scheduleReopen(error: unknown): void {
    if (stopped || retryTimer) return;
    options.onError?.(error);
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void open();
    }, retryMs);
    retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
  }

  function onResponse(response: IWatchResponse): void {
    if (response.canceled) {
      stream?.cancel();
      stream = undefined;
      if (revision(response.compact_revision) > 0) {
        // Our cursor was compacted away: start over from a fresh listing.
        relist().then(
          () => {
            void open();
          },
          (error: unknown) => {
            scheduleReopen(error);
          },
        );
      } else {
        scheduleReopen(new Error(`etcd canceled the watch: ${response.cancel_reason}`));
      }
      return;
    }
    if (response.created) retryMs = RETRY_MIN_MS;
    // Group by revision; a response carries whole revisions, oldest first.
    let group: IEvent[] = [];
    let groupRev = 0;
    const flush = () => {
      if (group.length > 0 && groupRev > cursor) {
        options.onRevision({ revision: groupRev, events: group });
        advance(groupRev);
      }
      group = [];
    };
    for (const event of response.events) {
      const rev = revision(event.kv.mod_revision);
      if (rev !== groupRev) {
        flush();
        groupRev = rev;
      }
      group.push(event);
    }
    flush();
    // A progress notification of our watch says every event up to its header revision was sent.
    // Not one broadcast to the whole stream (watch id -1: etcd 3.5's answer to a progress
    // request, which before 3.5.8 could overtake events still being caught up): liveness only.
    if (response.events.length === 0 && !response.created && response.watch_id !== '-1') {
      advance(revision(response.header.revision));
    }
  }

  async function open(): Promise<void> {
    if (stopped) return;
    let opened: CountedStream<IWatchRequest, IWatchResponse>;
    try {
      // Opening can itself hang on a paused member: give it ANSWER_MS, then try elsewhere.
      const pending = connection.watch();
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => {
          resolve(undefined);
        }, ANSWER_MS);
      });
      const first = await Promise.race([pending, late]);
      clearTimeout(timer);
      if (first === undefined) {
        pending.then(
          (stale) => {
            stale.stream.cancel();
            suspect(stale.member);
          },
          () => undefined,
        );
        scheduleReopen(new Error(`opening the etcd watch took over ${ANSWER_MS} ms`));
        return;
      }
      opened = first.stream;
      serving = first.member;
    } catch (error) {
      // The connection suspects the member it could not open the stream on.
      scheduleReopen(error);
      return;
    }
    // stop() may have run while the stream was being opened.
    if (isStopped()) {
      opened.cancel();
      return;
    }
    stream = opened;
    lastResponseAt = Date.now();
    opened.on('data', (response) => {
      if (stream !== opened) return;
      lastResponseAt = Date.now();
      awaitingSince = undefined;
      onResponse(response);
    });
    const lost = (error: unknown) => {
      if (stream !== opened) return;
      stream = undefined;
      suspect(serving);
      scheduleReopen(error);
    };
    opened.on('error', lost);
    opened.on('end', () => {
      lost(new Error('etcd ended the watch stream'));
    });
    // Its `created` answer is owed within ANSWER_MS, or the stream goes elsewhere.
    awaitingSince = Date.now();
    opened.write({
      create_request: {
        key: Buffer.from(options.prefix),
        range_end: prefixEnd(options.prefix),
        start_revision: cursor + 1,
        progress_notify: true,
      },
    });
  }

  /**
   * The connection found the member serving the stream unresponsive (a call
   * or the keepalive waited on it): move now.
   */
  function leaveSuspected(member: string): void {
    const current = stream;
    if (!current || member !== serving || stopped) return;
    stream = undefined;
    awaitingSince = undefined;
    current.cancel();
    lastResponseAt = Date.now();
    scheduleReopen(new Error(`etcd watch leaves ${member}: it stopped answering calls`));
  }
  let unsubscribeSuspect: (() => void) | undefined;

  return {
    async start() {
      unsubscribeSuspect = connection.onSuspect(leaveSuspected);
      await relist();
      await open();
      probeTimer = setInterval(probe, 500);
      probeTimer.unref();
    },
    revision: () => cursor,
    reached(rev) {
      if (rev <= cursor) return Promise.resolve();
      return new Promise<void>((resolve) => {
        waiters.push({ rev, resolve });
        watchForStall();
      });
    },
    stop() {
      stopped = true;
      unsubscribeSuspect?.();
      clearTimeout(retryTimer);
      clearTimeout(stallTimer);
      clearInterval(probeTimer);
      stream?.cancel();
      stream = undefined;
    },
  };
}
