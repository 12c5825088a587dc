"""A network partition, on three hosts made of network namespaces this test
builds (one per node, joined by a bridge; the clients stay in the root
namespace). The leader is cut off from its peers but not from clients: it
keeps taking acks=1 writes it can never commit, steps down (check-quorum),
the majority elects a new leader and goes on with acks=all writes; when
the partition heals, the old leader's uncommitted tail is replaced by the
new leader's log. Consumers see exactly the committed writes, at dense
offsets, whichever node leads afterwards.
"""
import os
import subprocess
import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import kafka_raw as raw
from conftest import Broker
from test_cluster import Cluster, consume_all, produce_all

SUBNET = "10.77.{net}.{host}"


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


class Hosts:
    """Three namespaces cs<tag>-<i> with 10.77.<net>.<i+1> on bridge csbr<tag>."""

    def __init__(self):
        self.tag = f"{os.getpid() % 10000}"
        self.net = os.getpid() % 200 + 20
        self.names = [f"cs{self.tag}-{i}" for i in range(3)]
        self.bridge = f"csbr{self.tag}"
        self.made = []

    def ip(self, i):
        return SUBNET.format(net=self.net, host=i + 1)

    def build(self):
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        sh("ip", "addr", "add", SUBNET.format(net=self.net, host=254) + "/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, ns in enumerate(self.names):
            sh("ip", "netns", "add", ns)
            self.made.append(("netns", ns))
            veth = f"csv{self.tag}-{i}"
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.made.append(("link", veth))
            sh("ip", "link", "set", veth, "master", self.bridge, "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", self.ip(i) + "/24", "dev", "eth0")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def cut(self, i, on=True):
        """Cuts (or heals) node i from the other nodes, both ways; clients
        in the root namespace still reach it."""
        verb = "add" if on else "del"
        for j in range(3):
            if j != i:
                sh("ip", "netns", "exec", self.names[i], "ip", "route", verb, "blackhole", self.ip(j) + "/32")
                sh("ip", "netns", "exec", self.names[j], "ip", "route", verb, "blackhole", self.ip(i) + "/32")

    def cut_link(self, i, j, on=True):
        """Cuts (or heals) only the link between nodes i and j: with three
        nodes, the third one still reaches both (a bridge)."""
        verb = "add" if on else "del"
        sh("ip", "netns", "exec", self.names[i], "ip", "route", verb, "blackhole", self.ip(j) + "/32")
        sh("ip", "netns", "exec", self.names[j], "ip", "route", verb, "blackhole", self.ip(i) + "/32")

    def destroy(self):
        for kind, name in reversed(self.made):
            if kind == "netns":
                sh("ip", "netns", "del", name, check=False)
            else:
                sh("ip", "link", "del", name, check=False)


@pytest.fixture
def hosts():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    h = Hosts()
    try:
        h.build()
    except subprocess.CalledProcessError as e:
        h.destroy()
        pytest.skip(f"cannot build network namespaces here: {e.stderr.strip()}")
    yield h
    h.destroy()


def netns_cluster(tmp_path, hosts, data_dirs=None, wrappers=None, segment_bytes="8MiB"):
    """A 3-node cluster, node i in namespace i. `data_dirs[i]` (default
    under tmp_path) and `wrappers[i]`, a command prefix run inside the
    namespace (e.g. `env LD_PRELOAD=...`), are per node."""
    cluster = Cluster.__new__(Cluster)
    cluster.nodes = []
    lines = ",\n".join(f'  {{ id = {i}, kafka = "{hosts.ip(i)}:9092", raft = "{hosts.ip(i)}:9093" }}'
                       for i in range(3))
    for i in range(3):
        cfg = tmp_path / f"node{i}.toml"
        cfg.write_text(f'[wal]\nsegment_bytes = "{segment_bytes}"\n[cluster]\nnodes = [\n{lines}\n]\n')
        data_dir = data_dirs[i] if data_dirs else tmp_path / f"node{i}"
        wrapper = list(wrappers[i]) if wrappers else []
        cluster.nodes.append(Broker(data_dir, shards=1, host=hosts.ip(i), port=9092, admin_port=9644,
                                    prefix=["ip", "netns", "exec", hosts.names[i]] + wrapper,
                                    extra_args=["--config", str(cfg), "--node-id", str(i)],
                                    log_path=tmp_path / f"node{i}.log"))
    return cluster


def test_partitioned_leader_steps_down_and_its_uncommitted_tail_is_replaced(tmp_path, hosts):
    cluster = netns_cluster(tmp_path, hosts).start()
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
        admin.create_topics([NewTopic("p", num_partitions=1, replication_factor=3)])["p"].result(30)
        leader_id = cluster.wait(lambda: cluster.settled("p", 1))[0]
        before = [b"a%d" % i for i in range(500)]
        acked, errors = produce_all(cluster.bootstrap(), "p", before, 1)
        assert not errors and len(acked) == 500

        # Cut the leader off from its peers; a client that only talks to it
        # writes with acks=1 (answered once on the leader's disk). One raw
        # connection: a client library would learn the other brokers from
        # its metadata and send later records to the new leader, where they
        # commit (a loaded machine once let 11 through that way).
        hosts.cut(leader_id)
        old = cluster.nodes[leader_id]
        host, port = old.bootstrap.rsplit(":", 1)
        conn = raw.Conn(int(port), timeout=10, host=host)
        stranded = []
        for i in range(200):
            value = b"x%d" % i
            conn.send(raw.frame(0, 3, i, raw.produce_v3("p", 0, raw.record_batch([value]), acks=1)))
            payload = conn.recv_frame()
            if payload is None:
                break  # cut off from the majority, it closes client connections
            ((_, _, err, _),) = raw.parse_produce_v3_response(payload)
            if err == 0:
                stranded.append(value)
            time.sleep(0.01)
        conn.close()
        assert stranded, "the cut-off leader took acks=1 writes before stepping down"

        # The majority elects a new leader and takes acks=all writes.
        majority = [b for i, b in enumerate(cluster.nodes) if i != leader_id]
        def elected():
            ls = cluster.leaders(majority[0], "p")
            return ls is not None and ls[0] not in (-1, leader_id) and (ls[0],)

        (new_leader,) = cluster.wait(elected)
        assert new_leader != leader_id
        # The cut-off node says so on its health check (for the operator's
        # alert); the majority's nodes stay ready.
        status, health = cluster.wait(lambda: (lambda r: r if "no majority" in r[1] else None)(old.admin_get("/health")))
        assert status == 503 and "no majority of the cluster is reachable" in health, health
        assert majority[0].admin_get("/health")[0] == 200
        after = [b"b%d" % i for i in range(500)]
        acked, errors = produce_all(cluster.bootstrap(majority), "p", after, 1)
        assert not errors and len(acked) == 500

        # Heal: the old leader follows and its stranded tail is replaced.
        hosts.cut(leader_id, on=False)
        cluster.wait(lambda: cluster.settled("p", 1))
        time.sleep(1)
        expected = sorted(before + after)
        for round_ in range(3):
            got = consume_all(cluster.bootstrap(), "p", 1, 1000)
            assert sorted(got) == expected, f"round {round_}: {len(got)} values, stranded present: " \
                                            f"{sum(v.startswith(b'x') for v in got)}"
            # Move the leadership (kill the leader, bring it back) so the
            # node that was cut off gets to lead too.
            lead = cluster.wait(lambda: cluster.settled("p", 1))[0]
            if lead == leader_id:
                break
            cluster.nodes[lead].kill9()
            cluster.wait(lambda: cluster.settled("p", 1))
            cluster.nodes[lead].start()
            cluster.wait(lambda: cluster.settled("p", 1))
        got = consume_all(cluster.bootstrap(), "p", 1, 1000)
        assert sorted(got) == expected
    finally:
        cluster.stop()
