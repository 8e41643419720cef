import Module from 'node:module';

/**
 * A planted bug, for showing that the cluster checker can fail. Never part of
 * the shipped code: a test preloads it into one replica with
 * `node --require dist/test/helpers/planted-unfenced-owner.js`, and it
 * monkey-patches that process's etcd-replica module as it loads.
 *
 * `VIGIL_PLANTED` (read here only) chooses the bug:
 * - `withhold`: the replica is never told that another replica took one of
 *   its workspaces over (as if its watch lagged, or it was paused): it keeps
 *   believing it owns them. Its owner writes stay fenced, so they must fail.
 * - `unfenced`: the same, and its owner writes carry no fence (the compare on
 *   `own/<id>` is dropped): a stale owner's write commits.
 */

interface ReplicaLike {
  observe(kv: { key: Buffer; value: Buffer }, deleted: boolean): void;
  ownerFence(id: string): unknown[];
}
interface ReplicaOptionsLike {
  readonly replicaId: string;
  readonly keys: { own(id: string): string };
}
type CreateReplica = (options: ReplicaOptionsLike) => ReplicaLike;
type Load = (request: string, parent: unknown, isMain: boolean) => unknown;

const mode = process.env['VIGIL_PLANTED'] ?? 'unfenced';
const loader = Module as unknown as { _load: Load };
const originalLoad = loader._load;
const patched = new WeakSet<object>();

function plant(exports: { createEtcdReplica: CreateReplica }): void {
  if (patched.has(exports)) return;
  patched.add(exports);
  const create = exports.createEtcdReplica;
  exports.createEtcdReplica = (options) => {
    const replica = create(options);
    const ownPrefix = options.keys.own('');
    return {
      ...replica,
      observe(kv, deleted) {
        const key = kv.key.toString();
        if (key.startsWith(ownPrefix) && !deleted) {
          const doc = JSON.parse(kv.value.toString()) as { replica?: string };
          // The planted blindness: a take-over by another replica is never noticed.
          if (doc.replica !== options.replicaId) return;
        }
        replica.observe(kv, deleted);
      },
      ownerFence(id) {
        const fence = replica.ownerFence(id);
        return mode === 'unfenced' ? [] : fence;
      },
    };
  };
}

loader._load = function load(this: unknown, request, parent, isMain) {
  const loaded = originalLoad.call(this, request, parent, isMain);
  if (/etcd-replica(\.js)?$/.test(request)) {
    plant(loaded as { createEtcdReplica: CreateReplica });
  }
  return loaded;
};
process.stderr.write(`planted bug loaded: ${mode}\n`);
