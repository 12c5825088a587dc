"""Group administration, as kafka-consumer-groups.sh, UIs and lag
exporters use it: ListGroups (with the state filter), DescribeGroups,
DeleteGroups and OffsetDelete, driven by librdkafka's and kafka-python's
admin clients (the Java AdminClient's are in test_java_client.py). Each
broker lists the groups whose offsets partitions it leads, from every
shard; groups with committed offsets and no members are listed "Empty"."""
import time

from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.error import KafkaException
from kafka import KafkaAdminClient, TopicPartition as KTP
from kafka.errors import KafkaError

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
