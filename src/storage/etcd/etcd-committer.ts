import { randomUUID } from 'node:crypto';
import type { ICompare, IKeyValue, IRequestOp, IResponseOp } from 'etcd3';
import { VigilError } from '../../domain/errors.js';
import type { EtcdConnection } from './etcd-connection.js';
import { prefixEnd, revision } from './etcd-keys.js';

/** What a write job read, as it stood at the revision its transaction compares against. */
export interface ReadView {
  /** The key's current value and mod revision (0 when absent). */
  get(key: string): { readonly value: Buffer | undefined; readonly modRevision: number };
  /** Every key under a prefix (it was read because the job asked for it). */
  list(prefix: string): readonly IKeyValue[];
  /** The last committed seq. */
  readonly seq: number;
}

/** What a job writes, collected while it builds. */
export interface WriteBuilder {
  put(key: string, value: Buffer, lease?: string): void;
  del(key: string, rangeEnd?: Buffer): void;
  /** Takes the next seq for a transition this job commits. */
  nextSeq(): number;
  /** The write id of the transaction this build goes into. */
  readonly txid: string;
}

/**
 * One use-case write. The committer reads `keys` and `prefixes`, calls
 * `build` with what it read, and commits what `build` wrote in one guarded
 * transaction: every key read is compared on its mod revision and `seq` on its
 * value, so a concurrent writer makes the transaction fail and the job is
 * rebuilt from a fresh read — never applied twice, never over a stale read.
 * `build` may throw a VigilError: that job fails alone, writing nothing.
 */
export interface WriteJob<T> {
  readonly keys: readonly string[];
  readonly prefixes?: readonly string[];
  /**
   * Extra compares that fence the write (ownership, leadership), taken when
   * it is built; throwing (this replica no longer holds what the write needs)
   * fails the job alone, like `build`.
   */
  readonly fence?: () => readonly ICompare[];
  build(view: ReadView, write: WriteBuilder): (revision: number) => T;
}

export interface CommitterOptions {
  readonly connection: EtcdConnection;
  /** `txn/<replica>`: written with each transaction's id, read back when an outcome is unknown. */
  readonly txnKey: string;
  readonly seqKey: string;
  /** Resolves once the replica's watch has delivered `revision` (publication happened). */
  readonly published: (revision: number) => Promise<void>;
}

export interface Committer {
  submit<T>(job: WriteJob<T>): Promise<T>;
}

/** Jobs per transaction: each may commit a transition (3 ops) and the log needs ≤ 128 ops. */
const MAX_JOBS = 40;
const MAX_OPS = 120;
/** Ranges of the read transaction of one batch (its jobs' keys and prefixes, plus `seq`). */
const MAX_READ_OPS = 120;
/** Below etcd's default request limit of 1.5 MiB. */
const MAX_BYTES = 1024 * 1024;
const MAX_ATTEMPTS = 25;

interface Queued {
  readonly job: WriteJob<unknown>;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

interface Built {
  readonly queued: Queued;
  readonly finish: (revision: number) => unknown;
  readonly fence: readonly ICompare[];
}

/**
 * One committer per replica: group commit (jobs queued in one event-loop turn
 * share a transaction), one transaction in flight, at most 40 jobs and
 * 120 operations per transaction.
 */
export function createCommitter(options: CommitterOptions): Committer {
  const { connection } = options;
  let queue: Queued[] = [];
  // Scheduled or running: one drain loop at a time, so one transaction in flight.
  let draining = false;

  async function read(jobs: readonly Queued[]) {
    const keys = [...new Set([options.seqKey, ...jobs.flatMap((q) => q.job.keys)])];
    const prefixes = [...new Set(jobs.flatMap((q) => q.job.prefixes ?? []))];
    const ops: IRequestOp[] = [
      ...keys.map((key) => ({ request_range: { key: Buffer.from(key) } })),
      ...prefixes.map((prefix) => ({
        request_range: { key: Buffer.from(prefix), range_end: prefixEnd(prefix) },
      })),
    ];
    const response = await connection.txn([], ops);
    const found = new Map<string, IKeyValue>();
    const listed = new Map<string, readonly IKeyValue[]>();
    const answers: readonly IResponseOp[] = response.responses;
    keys.forEach((key, index) => {
      const kv = answers[index]?.response_range.kvs[0];
      if (kv) found.set(key, kv);
    });
    prefixes.forEach((prefix, index) => {
      listed.set(prefix, answers[keys.length + index]?.response_range.kvs ?? []);
    });
    const seqValue = found.get(options.seqKey)?.value;
    const view: ReadView = {
      get(key) {
        const kv = found.get(key);
        return { value: kv?.value, modRevision: kv ? revision(kv.mod_revision) : 0 };
      },
      list: (prefix) => listed.get(prefix) ?? [],
      seq: seqValue ? Number(seqValue.toString()) : 0,
    };
    return { keys, view };
  }

  /** Builds what fits into one transaction; jobs that do not fit go back to the queue. */
  function build(jobs: readonly Queued[], view: ReadView, txid: string) {
    const ops: IRequestOp[] = [];
    let bytes = 0;
    let seq = view.seq;
    const built: Built[] = [];
    const deferred: Queued[] = [];
    // Keys the jobs built so far read: a later job of the same keys waits for the next
    // transaction, so that it builds on what the earlier one wrote.
    const claimed = new Set<string>();
    for (const queued of jobs) {
      if (queued.job.keys.some((key) => claimed.has(key))) {
        deferred.push(queued);
        continue;
      }
      const jobOps: IRequestOp[] = [];
      let jobBytes = 0;
      let jobSeq = seq;
      const writer: WriteBuilder = {
        put(key, value, lease) {
          jobBytes += key.length + value.length;
          jobOps.push({
            request_put: { key: Buffer.from(key), value, ...(lease ? { lease } : {}) },
          });
        },
        del(key, rangeEnd) {
          jobOps.push({
            request_delete_range: {
              key: Buffer.from(key),
              ...(rangeEnd ? { range_end: rangeEnd } : {}),
            },
          });
        },
        nextSeq: () => (jobSeq += 1),
        txid,
      };
      let finish: (revision: number) => unknown;
      let fence: readonly ICompare[];
      try {
        finish = queued.job.build(view, writer);
        fence = queued.job.fence?.() ?? [];
      } catch (error) {
        queued.reject(error);
        continue;
      }
      if (
        built.length > 0 &&
        (ops.length + jobOps.length > MAX_OPS || bytes + jobBytes > MAX_BYTES)
      ) {
        deferred.push(queued);
        continue;
      }
      ops.push(...jobOps);
      for (const key of queued.job.keys) claimed.add(key);
      bytes += jobBytes;
      seq = jobSeq;
      built.push({ queued, finish, fence });
    }
    return { ops, built, deferred, seq };
  }

  async function commitBatch(jobs: readonly Queued[]): Promise<Queued[]> {
    let pending = [...jobs];
    for (let attempt = 1; pending.length > 0; attempt += 1) {
      const txid = randomUUID();
      const { keys, view } = await read(pending);
      const { ops, built, deferred, seq } = build(pending, view, txid);
      if (built.length === 0) return deferred;
      if (ops.length === 0) {
        // Nothing to write (every job found nothing to change): answer at the read revision.
        for (const b of built) b.queued.resolve(b.finish(0));
        return deferred;
      }
      if (seq !== view.seq)
        ops.push({
          request_put: { key: Buffer.from(options.seqKey), value: Buffer.from(String(seq)) },
        });
      ops.push({ request_put: { key: Buffer.from(options.txnKey), value: Buffer.from(txid) } });
      const builtKeys = new Set(built.flatMap((b) => b.queued.job.keys));
      const compare: ICompare[] = [
        ...keys
          .filter((key) => key === options.seqKey || builtKeys.has(key))
          .map((key): ICompare => ({
            key: Buffer.from(key),
            target: 'Mod',
            result: 'Equal',
            mod_revision: view.get(key).modRevision,
          })),
        ...built.flatMap((b) => b.fence),
      ];
      let committedAt: number | undefined;
      try {
        const response = await connection.txn(compare, ops);
        if (response.succeeded) committedAt = revision(response.header.revision);
      } catch (error) {
        committedAt = await outcome(txid, error);
      }
      if (committedAt !== undefined) {
        await options.published(committedAt);
        for (const b of built) {
          try {
            b.queued.resolve(b.finish(committedAt));
          } catch (error) {
            b.queued.reject(error);
          }
        }
        return deferred;
      }
      if (attempt >= MAX_ATTEMPTS) {
        const error = new VigilError(
          'STORE_UNAVAILABLE',
          'the cluster store stayed too contended to commit this write; retry',
        );
        for (const b of built) b.queued.reject(error);
        return deferred;
      }
      // A concurrent writer or a lost fence: read again and rebuild.
      pending = [...built.map((b) => b.queued), ...deferred];
    }
    return [];
  }

  /**
   * The outcome of a transaction whose answer was lost: committed (its
   * revision) when `txn/<replica>` holds its id, otherwise it fails the jobs
   * as UNAVAILABLE (retryable; the guards make a later retry safe).
   */
  async function outcome(txid: string, cause: unknown): Promise<number | undefined> {
    for (let attempt = 0; attempt < 5; attempt += 1) {
      try {
        const response = await connection.range({ key: Buffer.from(options.txnKey) });
        const kv = response.kvs[0];
        if (kv?.value.toString() === txid) return revision(kv.mod_revision);
        break;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
    throw new VigilError(
      'STORE_UNAVAILABLE',
      'the cluster store did not confirm this write; retry',
      {},
      { cause },
    );
  }

  /** How many jobs from the head of `queued` one batch takes: ≤ MAX_JOBS, and reads ≤ MAX_READ_OPS. */
  function takeable(queued: readonly Queued[]): number {
    let reads = 1;
    let n = 0;
    for (const { job } of queued) {
      const more = job.keys.length + (job.prefixes?.length ?? 0);
      if (n >= MAX_JOBS || (n > 0 && reads + more > MAX_READ_OPS)) break;
      reads += more;
      n += 1;
    }
    return n;
  }

  async function drain(): Promise<void> {
    try {
      while (queue.length > 0) {
        const taken = queue.splice(0, takeable(queue));
        let rest: Queued[];
        try {
          rest = await commitBatch(taken);
        } catch (error) {
          for (const q of taken) q.reject(error);
          rest = [];
        }
        queue = [...rest, ...queue];
      }
    } finally {
      draining = false;
    }
  }

  return {
    submit<T>(job: WriteJob<T>): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        queue.push({
          job,
          resolve: (value) => {
            resolve(value as T);
          },
          reject,
        });
        if (!draining) {
          draining = true;
          setImmediate(() => void drain());
        }
      });
    },
  };
}
