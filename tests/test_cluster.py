"""A 3-node cluster on loopback: every partition replicated to all three
nodes through the Raft group of its shard, metadata replicated through
group 0. Driven with librdkafka and kafka-python; nodes are killed with
SIGKILL, and nothing an acks=all producer was told is stored may be lost.
"""
import json
import re
import shutil
import subprocess
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic as KNewTopic
from prometheus_client.parser import text_string_to_metric_families

from conftest import BIN, Broker, free_port


def free_port_run(n):
    """A port p with p..p+n-1 all free (shard k takes Raft port + k)."""
    return free_port(room=n)


class Cluster:
    def __init__(self, tmp_path, n=3, shards=1, env=None, extra="", segment="8MiB", sasl=False, per_node=None):
        self.nodes = []
        raft = [free_port_run(shards) for _ in range(n)]
        self.raft_ports = raft
        for i in range(n):
            cfg = tmp_path / f"node{i}.toml"
            b = Broker(tmp_path / f"node{i}", shards=shards, extra_args=["--config", str(cfg), "--node-id", str(i)],
                       log_path=tmp_path / f"node{i}.log", env=env, sasl_port=free_port() if sasl else None)
            self.nodes.append(b)
        # With SASL, each node also advertises its SASL_PLAINTEXT listener.
        listeners = (lambda b: f', listeners = {{ SASL_PLAINTEXT = "127.0.0.1:{b.sasl_port}" }}') if sasl else (
            lambda b: "")
        lines = ",\n".join(
            f'  {{ id = {i}, kafka = "127.0.0.1:{b.port}", raft = "127.0.0.1:{raft[i]}"{listeners(b)} }}'
            for i, b in enumerate(self.nodes))
        for i in range(n):
            (tmp_path / f"node{i}.toml").write_text(
                f'{extra}[wal]\nsegment_bytes = "{segment}"\n[groups]\ninitial_rebalance_delay_ms = 0\n'
                f'[cluster]\nnodes = [\n{lines}\n]\n' + (per_node(i) if per_node else ""))

    def start(self):
        for b in self.nodes:
            b.start()
        return self

    def stop(self):
        for b in self.nodes:
            b.stop()

    def bootstrap(self, nodes=None):
        return ",".join(b.bootstrap for b in (nodes or self.alive()))

    def alive(self):
        return [b for b in self.nodes if b.alive()]

    def metadata(self, via):
        admin = AdminClient({"bootstrap.servers": via.bootstrap})
        return admin.list_topics(timeout=10)

    def wait(self, what, timeout=30):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = what()
                if last:
                    return last
            except Exception as e:  # metadata during an election
                last = e
            time.sleep(0.2)
        code = getattr(what, "__code__", None)
        where = f"{code.co_name} at {code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno}" if code else what
        raise AssertionError(f"timed out waiting for {where}; last: {last!r}")

    def leaders(self, via, topic):
        md = self.metadata(via)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            return None
        return {p.id: p.leader for p in t.partitions.values()}

    def settled(self, topic, partitions):
        """Every live node reports the same live leader for every partition
        and lists exactly the live brokers."""
        live_ids = {self.nodes.index(b) for b in self.alive()}
        seen = None
        for b in self.alive():
            md = self.metadata(b)
            if set(md.brokers) != live_ids:
                return None
            ls = self.leaders(b, topic)
            if ls is None or len(ls) != partitions or any(l not in live_ids for l in ls.values()):
                return None
            if seen is not None and ls != seen:
                return None
            seen = ls
        return seen


def produce_all(bootstrap, topic, values, partitions):
    acked, errors = [], []

    def on_delivery(err, msg):
        (errors if err else acked).append(err or msg.value())

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 60000, "linger.ms": 5})
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, value=v, partition=i % partitions, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(90) == 0
    return acked, errors


def consume_all(bootstrap, topic, partitions, expected, timeout=60):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time()}", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.time() + timeout
    while len(got) < expected and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            assert m.error().code() == KafkaError._PARTITION_EOF or m.error().retriable(), m.error()
            continue
        got.append(m.value())
    c.close()
    return got


def test_three_nodes_replicate_and_survive_losing_leaders(tmp_path):
    cluster = Cluster(tmp_path).start()
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
        futures = admin.create_topics([NewTopic("orders", num_partitions=3, replication_factor=3)])
        futures["orders"].result(timeout=30)
        first = cluster.wait(lambda: cluster.settled("orders", 3))
        md = cluster.metadata(cluster.nodes[0])
        for p in md.topics["orders"].partitions.values():
            assert sorted(p.replicas) == [0, 1, 2] and sorted(p.isrs) == [0, 1, 2]
        # A replication factor the cluster cannot have is refused, with Kafka's code.
        bad = admin.create_topics([NewTopic("two", num_partitions=1, replication_factor=2)])
        try:
            bad["two"].result(timeout=30)
            raise AssertionError("replication factor 2 on 3 nodes was accepted")
        except Exception as e:
            assert e.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR, e

        values = [b"a%d" % i for i in range(3000)]
        acked, errors = produce_all(cluster.bootstrap(), "orders", values, 3)
        assert not errors and sorted(acked) == sorted(values)

        # Kill the leader; the survivors elect another and go on.
        leader = cluster.nodes[first[0]]
        leader.kill9()
        second = cluster.wait(lambda: cluster.settled("orders", 3))
        assert first[0] not in second.values()
        # The operator's view: `corestream cluster status` lists the two
        # live brokers, each partition led by one of them, and every
        # partition under-replicated.
        out = subprocess.run([str(BIN), "cluster", "status", "--bootstrap", cluster.alive()[0].bootstrap,
                              "--output", "json"], capture_output=True, text=True, timeout=20, check=True)
        status = json.loads(out.stdout)
        assert sorted(b["id"] for b in status["brokers"]) == sorted(cluster.nodes.index(b) for b in cluster.alive())
        assert status["leaderless"] == 0 and sum(b["leads"] for b in status["brokers"]) == status["partitions"]
        assert status["under_replicated"] == status["partitions"] > 0
        more = [b"b%d" % i for i in range(3000)]
        acked, errors = produce_all(cluster.bootstrap(), "orders", more, 3)
        assert not errors and sorted(acked) == sorted(more)
        got = consume_all(cluster.bootstrap(), "orders", 3, 6000)
        assert sorted(got) == sorted(values + more), f"{len(got)} of 6000"

        # The killed node comes back and catches up; then another goes down
        # and the returned node, with the third, still holds everything.
        leader.start()
        cluster.wait(lambda: cluster.settled("orders", 3))
        again = cluster.nodes[second[0]]
        time.sleep(1)  # heartbeats carry the commit index to the returned node
        again.kill9()
        cluster.wait(lambda: cluster.settled("orders", 3))
        got = consume_all(cluster.bootstrap(), "orders", 3, 6000)
        assert sorted(got) == sorted(values + more), f"{len(got)} of 6000"
    finally:
        cluster.stop()


def test_any_node_takes_metadata_requests_and_all_agree(tmp_path):
    cluster = Cluster(tmp_path, shards=2).start()
    try:
        cluster.wait(lambda: all(cluster.metadata(b).controller_id >= 0 for b in cluster.nodes))
        controller = cluster.metadata(cluster.nodes[0]).controller_id
        follower = next(b for i, b in enumerate(cluster.nodes) if i != controller)
        # kafka-python sends CreateTopics to the controller it learns from
        # Metadata; ask a follower directly by hand through librdkafka's
        # admin bootstrapped on that follower only.
        k = KafkaAdminClient(bootstrap_servers=follower.bootstrap)
        k.create_topics([KNewTopic("from-kafka-python", num_partitions=4, replication_factor=3)])
        k.close()
        admin = AdminClient({"bootstrap.servers": follower.bootstrap})
        admin.create_topics([NewTopic("from-librdkafka", num_partitions=4, replication_factor=-1)])["from-librdkafka"].result(30)
        for topic in ("from-kafka-python", "from-librdkafka"):
            cluster.wait(lambda: cluster.settled(topic, 4))
            ids = {cluster.metadata(b).topics[topic].partitions[0].leader for b in cluster.nodes}
            assert len(ids) == 1
        # Both shards' groups have leaders, and kafka-python reads what
        # librdkafka wrote through any node.
        values = [b"v%d" % i for i in range(400)]
        acked, errors = produce_all(cluster.bootstrap(), "from-librdkafka", values, 4)
        assert not errors
        kc = KafkaConsumer("from-librdkafka", bootstrap_servers=cluster.nodes[2].bootstrap,
                           auto_offset_reset="earliest", consumer_timeout_ms=5000, group_id=None)
        got = [m.value for m in kc]
        kc.close()
        assert sorted(got) == sorted(values)
    finally:
        cluster.stop()


def test_a_consumer_group_moves_with_its_coordinator(tmp_path):
    cluster = Cluster(tmp_path).start()
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
        admin.create_topics([NewTopic("jobs", num_partitions=2, replication_factor=3)])["jobs"].result(30)
        cluster.wait(lambda: cluster.settled("jobs", 2))
        values = [b"j%d" % i for i in range(200)]
        produce_all(cluster.bootstrap(), "jobs", values, 2)
        c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "workers", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest"})
        c.subscribe(["jobs"])
        got = []
        deadline = time.time() + 60
        while len(got) < 100 and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
        assert len(got) >= 100
        c.commit(asynchronous=False)
        committed = {tp.partition: tp.offset for tp in c.committed(c.assignment(), timeout=10)}
        c.close()
        # Kill the node that leads everything (one shard: one group); the
        # commit is on the survivors and the new coordinator serves it.
        leader = cluster.nodes[cluster.wait(lambda: cluster.settled("jobs", 2))[0]]
        leader.kill9()
        cluster.wait(lambda: cluster.settled("jobs", 2))
        c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "workers", "enable.auto.commit": False})
        after = cluster.wait(lambda: {tp.partition: tp.offset for tp in
                                      c.committed([TopicPartition("jobs", p) for p in (0, 1)], timeout=10)})
        c.close()
        assert after == committed
    finally:
        cluster.stop()


def test_a_request_to_a_node_still_joining_waits_for_the_cluster_and_a_cut_off_one_is_closed(tmp_path):
    """A client that finds a node before its peers are up is answered once
    they are (the node is joining, as a Kafka broker that is still starting);
    once joined, a node that loses its majority closes client connections
    so clients go to the nodes that can serve them."""
    from kafka_raw import Conn, frame
    metadata_v1_all_topics = frame(3, 1, 7, (-1).to_bytes(4, "big", signed=True))
    cluster = Cluster(tmp_path, shards=1)
    first = cluster.nodes[0].start()
    try:
        early = Conn(first.port, timeout=15)
        early.send(metadata_v1_all_topics)
        time.sleep(0.5)
        for b in cluster.nodes[1:]:
            b.start()
        reply = early.recv_frame()
        assert reply is not None, "the joining node closed the connection instead of waiting for its peers"
        assert int.from_bytes(reply[:4], "big") == 7
        early.close()
        cluster.wait(lambda: all(cluster.metadata(b).controller_id >= 0 for b in cluster.nodes))

        for b in cluster.nodes[1:]:
            b.kill9()
        status, health = cluster.wait(
            lambda: (lambda r: r if "no majority" in r[1] else None)(first.admin_get("/health")))
        assert status == 503, health
        late = Conn(first.port, timeout=15)
        late.send(metadata_v1_all_topics)
        assert late.recv_frame() is None, "a node cut off from its majority answered instead of closing"
        late.close()
        assert first.alive()
    finally:
        cluster.stop()


def test_1000_topics_x_3_partitions_on_3_nodes_survive_a_dead_node_and_idle_quietly(tmp_path):
    """The workload that killed the broker we replace: 1000 topics x 3
    partitions on 3 nodes, one node dies, and every one of 3000 messages is
    still delivered; then the survivors sit idle, logging nothing at debug."""
    cluster = Cluster(tmp_path, shards=2, env={"RUST_LOG": "debug"}).start()
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
        names = [f"seed-{i:04d}" for i in range(1000)]
        for chunk in range(0, 1000, 250):
            fs = admin.create_topics([NewTopic(n, num_partitions=3, replication_factor=3)
                                      for n in names[chunk:chunk + 250]], request_timeout=60)
            for f in fs.values():
                f.result(timeout=60)
        cluster.wait(lambda: cluster.settled("seed-0999", 3))
        # A node dies; the others notice within seconds and lead everything.
        dead = cluster.nodes[cluster.metadata(cluster.nodes[0]).controller_id]
        dead.kill9()
        cluster.wait(lambda: cluster.settled("seed-0000", 3))

        p = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all", "linger.ms": 5,
                      "message.timeout.ms": 60000})
        delivered = []
        for n in names:
            for part in range(3):
                p.produce(n, value=f"{n}/{part}".encode(), partition=part,
                          on_delivery=lambda e, m: delivered.append(e))
        p.flush(90)
        assert len(delivered) == 3000 and not any(delivered), [e for e in delivered if e][:3]

        c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "seed", "enable.auto.commit": False})
        c.assign([TopicPartition(n, part, 0) for n in names for part in range(3)])
        got = set()
        deadline = time.time() + 90
        while len(got) < 3000 and time.time() < deadline:
            for m in c.consume(1000, timeout=1):
                if m.error():
                    assert m.error().retriable(), m.error()
                    continue
                assert m.value() == f"{m.topic()}/{m.partition()}".encode()
                got.add((m.topic(), m.partition(), m.offset()))
        c.close()
        assert len(got) == 3000, f"{len(got)} of 3000 delivered"

        survivors = cluster.alive()
        for b in survivors:
            # The dead node is noticed: in the metrics, and in /health
            # (still ready: the two survivors are a majority).
            families = {f.name: f for f in text_string_to_metric_families(b.admin_get("/metrics")[1])}
            assert families["corestream_cluster_brokers"].samples[0].value == 3
            assert families["corestream_cluster_brokers_live"].samples[0].value == 2
            leaders = {s.labels["shard"]: s.value for s in families["corestream_raft_leader_broker"].samples}
            assert len(leaders) == 2 and all(v in (0, 1, 2) and v != cluster.nodes.index(dead) for v in leaders.values())
            status, health = b.admin_get("/health")
            assert status == 200 and f"broker {cluster.nodes.index(dead)} has not been heard from" in health, health
            rss, threads = b.proc_status()
            print(f"\nnode RSS {rss / 2**20:.1f} MiB, {threads} threads")
            assert rss < 512 * 2**20
        # Leadership settles first: each group goes back to its preferred
        # node (group k: node k) where that node is alive, once.
        dead_id = cluster.nodes.index(dead)

        def balanced():
            fams = {f.name: f for f in text_string_to_metric_families(survivors[0].admin_get("/metrics")[1])}
            leaders = {int(x.labels["shard"]): int(x.value) for x in fams["corestream_raft_leader_broker"].samples}
            return all(leaders[k] == k for k in leaders if k != dead_id)

        cluster.wait(balanced, timeout=30)
        time.sleep(1)
        lines = [len(b.log_text().splitlines()) for b in survivors]
        cpu = [b.cpu_seconds() for b in survivors]
        time.sleep(5)
        idle_lines = [len(b.log_text().splitlines()) - n for b, n in zip(survivors, lines)]
        idle_cpu = [b.cpu_seconds() - t for b, t in zip(survivors, cpu)]
        print(f"idle 5 s, 3000 replicated partitions, one peer down: log lines {idle_lines}, CPU s {idle_cpu}")
        assert idle_lines == [0, 0]
        assert all(t < 0.25 for t in idle_cpu)
    finally:
        cluster.stop()


def test_a_node_far_behind_catches_up_from_the_leaders_wal(tmp_path):
    """A node that was down while 40 MiB were written (the leader keeps only
    4 MiB of applied entries in memory with a 16 MiB budget) is caught up
    from the leader's WAL; then the node it caught up from dies, and it
    serves everything with the third."""
    cluster = Cluster(tmp_path, extra='memory_per_shard = "16MiB"\n').start()
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
        admin.create_topics([NewTopic("big", num_partitions=2, replication_factor=3)])["big"].result(30)
        first = cluster.wait(lambda: cluster.settled("big", 2))
        behind = next(b for i, b in enumerate(cluster.nodes) if i != first[0])
        behind.kill9()
        cluster.wait(lambda: cluster.settled("big", 2))
        values = [(b"%06d" % i) * 170 for i in range(40_000)]  # ~40 MiB
        acked, errors = produce_all(cluster.bootstrap(), "big", values, 2)
        assert not errors and len(acked) == len(values)
        behind.start()
        cluster.wait(lambda: cluster.settled("big", 2))
        # Wait until the returned node holds the whole log: its Raft commit
        # index (from its metrics) reaches the leader's.
        leader = cluster.nodes[cluster.settled("big", 2)[0]]

        def commit_index(b):
            _, body = b.admin_get("/metrics")
            m = re.search(r'^corestream_raft_commit_index\{shard="0"\} (\d+)', body, re.M)
            return int(m.group(1))

        cluster.wait(lambda: commit_index(behind) >= commit_index(leader), timeout=60)
        others = [b for b in cluster.alive() if b is not behind]
        for b in others:
            b.kill9()
        # One of the others comes back with an empty disk: the node that
        # caught up is the only one holding the log now, and the new one
        # gets all of it (metadata included) from that node's WAL.
        shutil.rmtree(others[0].data_dir)
        others[0].start()
        cluster.wait(lambda: cluster.settled("big", 2))
        got = consume_all(cluster.bootstrap(), "big", 2, len(values), timeout=120)
        assert len(got) == len(values) and sorted(got) == sorted(values)
    finally:
        cluster.stop()


def test_leadership_spreads_over_the_nodes(tmp_path):
    """Three shards per node: each Raft group hands its leadership to its
    preferred node once that node has the whole log, so each node leads
    one group (one third of the partitions) rather than whichever node won
    the elections leading them all; after a node dies and returns, the
    spread comes back."""
    cluster = Cluster(tmp_path, shards=3).start()
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
        admin.create_topics([NewTopic("spread", num_partitions=3, replication_factor=3)])["spread"].result(30)
        spread = lambda: (lambda ls: ls if ls and sorted(ls.values()) == [0, 1, 2] else None)(
            cluster.settled("spread", 3))
        cluster.wait(spread, timeout=40)
        cluster.nodes[1].kill9()
        cluster.wait(lambda: cluster.settled("spread", 3))
        cluster.nodes[1].start()
        cluster.wait(spread, timeout=40)
    finally:
        cluster.stop()
