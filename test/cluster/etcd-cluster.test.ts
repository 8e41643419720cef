import { expect } from 'chai';
import {
  ETCD_INSTALLED,
  ETCDCTL_INSTALLED,
  ETCD_SKIP_REASON,
  parseEndpointStatus,
  startEtcdCluster,
  type EtcdCluster,
} from '../helpers/etcd-cluster.js';

describe('test kit: a 3-member etcd cluster on loopback', function () {
  this.timeout(120_000);

  describe('parseEndpointStatus', () => {
    it('keeps 64-bit member ids exact (never through a JavaScript number)', () => {
      const json =
        '[{"Endpoint":"127.0.0.1:1","Status":{"header":{"cluster_id":17237436991929493444,"member_id":9372538179322589801,"revision":5,"raft_term":2},"version":"3.4.23","dbSize":20480,"leader":10501334649042878790,"raftIndex":8,"raftTerm":2}}]';
      const [row] = parseEndpointStatus(json);
      expect(row?.memberId).to.equal('9372538179322589801');
      expect(row?.leaderId).to.equal('10501334649042878790');
    });
  });

  describe('when etcd is installed', () => {
    let cluster: EtcdCluster | undefined;
    before(async function () {
      if (!ETCD_INSTALLED || !ETCDCTL_INSTALLED) {
        console.log(`      ${ETCD_SKIP_REASON}`);
        this.skip();
      }
      cluster = await startEtcdCluster();
    });
    after(async () => {
      await cluster?.stop();
    });

    it('finds the leader, elects another after kill -9 of it, and takes the member back', async () => {
      const c = cluster!;
      const first = await c.leader();
      const rows = await c.status();
      expect(rows).to.have.length(3);
      await c.kill(first);
      expect(first.alive()).to.equal(false);
      const second = await c.leader();
      expect(second.name).to.not.equal(first.name);
      await c.restart(first);
      await c.healthy();
      expect(await c.status()).to.have.length(3);
    });

    it('pauses and resumes a member by PID', async () => {
      const c = cluster!;
      const leader = await c.leader();
      c.pause(leader);
      const other = await c.leader();
      expect(other.name).to.not.equal(leader.name);
      c.resume(leader);
      await c.healthy();
      expect(await c.status()).to.have.length(3);
    });
  });
});
