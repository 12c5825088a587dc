"""Group administration, as kafka-consumer-groups.sh, UIs and lag
exporters use it: ListGroups (with the state filter), DescribeGroups,
DeleteGroups and OffsetDelete, driven by librdkafka's and kafka-python's
admin clients (the Java AdminClient's are in test_java_client.py). Each
broker lists the groups whose offsets partitions it leads, from every
shard; groups with committed offsets and no members are listed "Empty"."""
import random
import struct
import time

from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.error import KafkaException
from kafka import KafkaAdminClient, TopicPartition as KTP
from kafka.errors import KafkaError

from kafka_raw import Conn, compact_string, flexible_frame, frame, read_uvarint, string, uvarint
from test_groups import committed
from test_roundtrip import create_topic

GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, GROUP_SUBSCRIBED_TO_TOPIC = 69, 68, 86


def consume_all(consumer, n):
    got = []
    deadline = time.time() + 30
    while len(got) < n and time.time() < deadline:
        m = consumer.poll(0.2)
        if m is not None and not m.error():
            got.append(m)
    assert len(got) == n
    return got


def listed(admin, **kw):
    result = admin.list_consumer_groups(**kw).result(timeout=30)
    assert not result.errors, result.errors
    return {g.group_id: g.state for g in result.valid}


def error_code(future):
    try:
        future.result(timeout=30)
    except KafkaException as e:
        return e.args[0].code()
    return 0


def test_groups_are_listed_described_and_deleted(broker):
    create_topic(broker.bootstrap, "ga", 2)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        p.produce("ga", value=b"v%d" % i, partition=i % 2)
    p.flush(10)
    # Twelve groups with committed offsets only, spread over both shards'
    # offsets partitions, and one with a member.
    idle = [f"idle-{i}" for i in range(12)]
    for g in idle:
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": g, "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition("ga", 0, 3)], asynchronous=False)
        c.close()
    member = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "busy", "client.id": "busy-client",
                       "auto.offset.reset": "earliest", "enable.auto.commit": False})
    member.subscribe(["ga"])
    consume_all(member, 20)
    member.commit(asynchronous=False)

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    everything = listed(admin)
    assert everything == {**{g: ConsumerGroupState.EMPTY for g in idle}, "busy": ConsumerGroupState.STABLE}
    assert listed(admin, states={ConsumerGroupState.STABLE}) == {"busy": ConsumerGroupState.STABLE}
    assert set(listed(admin, states={ConsumerGroupState.EMPTY})) == set(idle)

    d = admin.describe_consumer_groups(["busy", "idle-0", "never-used"])
    busy = d["busy"].result(timeout=30)
    assert busy.state == ConsumerGroupState.STABLE and len(busy.members) == 1
    assert busy.partition_assignor in ("range", "roundrobin", "cooperative-sticky")
    (m,) = busy.members
    assert m.client_id == "busy-client" and m.host == "/127.0.0.1"
    assert sorted(tp.partition for tp in m.assignment.topic_partitions) == [0, 1]
    assert d["idle-0"].result(timeout=30).state == ConsumerGroupState.EMPTY
    assert d["never-used"].result(timeout=30).state == ConsumerGroupState.DEAD

    # While "busy" has a member: its subscribed topic's offsets stay, and
    # the group cannot be deleted.
    gone = admin.delete_consumer_groups(["busy", "idle-0", "never-used"])
    assert error_code(gone["busy"]) == NON_EMPTY_GROUP
    assert error_code(gone["idle-0"]) == 0
    assert error_code(gone["never-used"]) == GROUP_ID_NOT_FOUND
    assert "idle-0" not in listed(admin)
    assert committed(broker.bootstrap, "idle-0", "ga", [0]) == {0: -1001}

    member.close()
    assert listed(admin)["busy"] == ConsumerGroupState.EMPTY
    assert committed(broker.bootstrap, "busy", "ga", [0, 1]) == {0: 10, 1: 10}


class Reader:
    """Reads a response payload field by field."""

    def __init__(self, payload):
        self.b, self.at = payload, 0

    def take(self, fmt):
        (v,) = struct.unpack_from(fmt, self.b, self.at)
        self.at += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take(">h")
        self.at += max(n, 0)
        return self.b[self.at - n:self.at].decode() if n >= 0 else None

    def uvarint(self):
        v, self.at = read_uvarint(self.b, self.at)
        return v

    def compact_string(self):
        n = self.uvarint() - 1
        self.at += max(n, 0)
        return self.b[self.at - n:self.at].decode() if n >= 0 else None

    def skip_tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.at += self.uvarint()


def call(conn, request):
    conn.send(request)
    payload = conn.recv_frame()
    assert payload is not None, "the broker closed the connection"
    r = Reader(payload)
    r.take(">i")  # correlation id
    return r


def describe_v0(conn, names):
    body = struct.pack(">i", len(names)) + b"".join(string(n) for n in names)
    r = call(conn, frame(15, 0, 1, body))
    out = []
    for _ in range(r.take(">i")):
        code, group, state = r.take(">h"), r.string(), r.string()
        r.string(), r.string()  # protocol type, protocol
        members = r.take(">i")
        assert members == 0
        out.append((group, code, state))
    return out


def test_requests_naming_tens_of_thousands_of_groups_are_answered_in_order(broker):
    """DescribeGroups, DeleteGroups and OffsetFetch v8 name many groups in
    one request; each group is answered by its coordinator shard, in the
    request's order; a group named again gets the same answer (Kafka
    deletes each named group once). They go to each coordinator shard as
    one message: a round trip per group once kept a fuzzed DescribeGroups
    of 60,000 names unanswered for 50 s."""
    create_topic(broker.bootstrap, "many", 1)
    kept = [f"kept-{i}" for i in range(6)]
    for i, g in enumerate(kept):
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": g, "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition("many", 0, 10 + i)], asynchronous=False)
        c.close()
    rng = random.Random(7)
    unknown = [f"unknown-{i}" for i in range(20_000)]
    names = unknown + [rng.choice(kept) for _ in range(30_000)]
    rng.shuffle(names)
    conn = Conn(broker.port, timeout=20)
    try:
        described = describe_v0(conn, names)
        assert [g for g, _, _ in described] == names
        assert {(g.startswith("kept"), code, state) for g, code, state in described} == {
            (True, 0, "Empty"), (False, 0, "Dead")}

        # OffsetFetch v8 (flexible): every committed offset of each group.
        body = uvarint(len(names[:10_000]) + 1)
        for g in names[:10_000]:
            body += compact_string(g) + uvarint(0) + b"\x00"  # topics null: all committed
        body += b"\x00" + b"\x00"  # require_stable, tags
        r = call(conn, flexible_frame(9, 8, 2, body))
        r.skip_tags()
        r.take(">i")  # throttle
        fetched = []
        for _ in range(r.uvarint() - 1):
            group = r.compact_string()
            offsets = {}
            for _ in range(r.uvarint() - 1):
                topic = r.compact_string()
                for _ in range(r.uvarint() - 1):
                    p, offset, _epoch = r.take(">i"), r.take(">q"), r.take(">i")
                    r.compact_string()
                    assert r.take(">h") == 0
                    r.skip_tags()
                    offsets[(topic, p)] = offset
                r.skip_tags()
            assert r.take(">h") == 0
            r.skip_tags()
            fetched.append((group, offsets))
        assert fetched == [(g, {("many", 0): 10 + kept.index(g)} if g in kept else {}) for g in names[:10_000]]

        # DeleteGroups v0: the groups with offsets go, each named many
        # times; those never used are GROUP_ID_NOT_FOUND.
        body = struct.pack(">i", len(names)) + b"".join(string(n) for n in names)
        r = call(conn, frame(42, 0, 3, body))
        r.take(">i")  # throttle
        results = [(r.string(), r.take(">h")) for _ in range(r.take(">i"))]
        assert results == [(g, 0 if g in kept else GROUP_ID_NOT_FOUND) for g in names]
        assert {state for _, _, state in describe_v0(conn, kept)} == {"Dead"}
    finally:
        conn.close()


def test_offset_delete_refuses_subscribed_topics_and_unknown_groups(broker):
    """OffsetDelete through kafka-python's admin (librdkafka's Python
    binding has none): any offset of a group without members goes; a
    member's subscribed topic stays (GROUP_SUBSCRIBED_TO_TOPIC); an unknown
    group is GROUP_ID_NOT_FOUND."""
    create_topic(broker.bootstrap, "od-a", 1)
    create_topic(broker.bootstrap, "od-b", 1)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "od", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("od-a", 0, 7), TopicPartition("od-b", 0, 9)], asynchronous=False)
    c.close()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        done = admin.delete_group_offsets("od", [KTP("od-a", 0)])
        assert {tp: e.errno for tp, e in done.items()} == {KTP("od-a", 0): 0}
        assert committed(broker.bootstrap, "od", "od-a", [0]) == {0: -1001}
        assert committed(broker.bootstrap, "od", "od-b", [0]) == {0: 9}

        # A member subscribed to od-b: its offsets stay.
        m = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "od", "auto.offset.reset": "earliest"})
        m.subscribe(["od-b"])
        deadline = time.time() + 30
        while not m.assignment() and time.time() < deadline:
            m.poll(0.2)
        done = admin.delete_group_offsets("od", [KTP("od-b", 0)])
        assert {tp: e.errno for tp, e in done.items()} == {KTP("od-b", 0): GROUP_SUBSCRIBED_TO_TOPIC}
        m.close()
        assert committed(broker.bootstrap, "od", "od-b", [0])[0] >= 9

        try:
            admin.delete_group_offsets("nobody", [KTP("od-a", 0)])
            raise AssertionError("an unknown group's offsets were deleted")
        except KafkaError as e:
            assert e.errno == GROUP_ID_NOT_FOUND
    finally:
        admin.close()


def test_a_cluster_lists_each_group_once_from_the_broker_that_coordinates_it(tmp_path):
    """Groups spread over the offsets partitions, whose leaders are spread
    over the nodes: each broker lists its own, the admin client asks them
    all, and every group comes back exactly once."""
    from test_cluster import Cluster
    cluster = Cluster(tmp_path, n=3, shards=2).start()
    try:
        boot = cluster.bootstrap()
        create_topic(boot, "cl", 1, replication_factor=3)
        cluster.wait(lambda: cluster.settled("cl", 1))
        groups = [f"cluster-group-{i}" for i in range(16)]
        for g in groups:
            c = Consumer({"bootstrap.servers": boot, "group.id": g, "enable.auto.commit": False})
            c.commit(offsets=[TopicPartition("cl", 0, 1)], asynchronous=False)
            c.close()
        admin = AdminClient({"bootstrap.servers": boot})
        result = admin.list_consumer_groups().result(timeout=30)
        assert not result.errors, result.errors
        ids = [g.group_id for g in result.valid]
        assert sorted(ids) == sorted(groups)
        d = admin.describe_consumer_groups(groups[:4])
        assert all(d[g].result(timeout=30).state == ConsumerGroupState.EMPTY for g in groups[:4])
    finally:
        cluster.stop()
