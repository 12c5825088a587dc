"""DeleteRecords (API 21): librdkafka's and kafka-python's admin clients
move a partition's log start; consumers, ListOffsets and a restart all see
it; bad offsets and unknown partitions get Kafka's error codes; on a
3-node cluster every replica trims at the same point, so a new leader
answers with the same low watermark."""
import struct

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient
from kafka.structs import TopicPartition as KTP

import kafka_raw as raw
from test_cluster import Cluster
from test_roundtrip import create_topic

OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC_OR_PARTITION = 1, 3


def produce(bootstrap, topic, partition, n, prefix=b"m"):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2})
    for i in range(n):
        p.produce(topic, value=prefix + b"%d" % i, partition=partition)
    assert p.flush(20) == 0


def delete_records(bootstrap, topic, partition, offset):
    """The low watermark librdkafka's admin client reports, or its error code."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.delete_records([TopicPartition(topic, partition, offset)])
    try:
        return fut[TopicPartition(topic, partition)].result(timeout=20).low_watermark
    except Exception as e:
        return ("error", e.args[0].code())


def first_from(bootstrap, topic, partition, start):
    """The first record a consumer gets when it asks for `start`
    (auto.offset.reset=earliest: below the log start, it is moved there)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "dr-check", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, start)])
    try:
        for _ in range(60):
            m = c.poll(0.5)
            if m is not None and not m.error():
                return m.offset(), m.value()
    finally:
        c.close()
    raise AssertionError("nothing consumed")


def low_watermark(bootstrap, topic, partition):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "dr-wm"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def raw_fetch_error(port, topic, partition, offset):
    """Fetch v4 at `offset`: the partition's error code."""
    body = struct.pack(">iiiib", -1, 500, 1, 1 << 20, 0)  # replica, max wait, min bytes, max bytes, isolation
    body += struct.pack(">i", 1) + raw.string(topic) + struct.pack(">i", 1)
    body += struct.pack(">iqi", partition, offset, 1 << 20)
    c = raw.Conn(port)
    c.send(raw.frame(1, 4, 7, body))
    payload = c.recv_frame()
    at = 4 + 4 + 4  # correlation id, throttle, topic count
    (name_len,) = struct.unpack_from(">h", payload, at)
    at += 2 + name_len + 4
    _, err = struct.unpack_from(">ih", payload, at)
    return err


def raw_delete_records(port, topic, partition, offset):
    """DeleteRecords v0 for one partition: (error code, low watermark)."""
    body = struct.pack(">i", 1) + raw.string(topic) + struct.pack(">i", 1) + struct.pack(">iq", partition, offset)
    body += struct.pack(">i", 5000)
    c = raw.Conn(port)
    c.send(raw.frame(21, 0, 9, body))
    payload = c.recv_frame()
    at = 4 + 4 + 4  # correlation id, throttle, topic count
    (name_len,) = struct.unpack_from(">h", payload, at)
    at += 2 + name_len + 4
    _, low, err = struct.unpack_from(">iqh", payload, at)
    return err, low


def test_delete_records_moves_the_log_start_for_every_client(broker):
    create_topic(broker.bootstrap, "dr", 2)
    produce(broker.bootstrap, "dr", 0, 100)
    produce(broker.bootstrap, "dr", 1, 10)
    assert delete_records(broker.bootstrap, "dr", 0, 40) == 40
    assert low_watermark(broker.bootstrap, "dr", 0) == (40, 100)
    assert first_from(broker.bootstrap, "dr", 0, 0) == (40, b"m40")
    assert raw_fetch_error(broker.port, "dr", 0, 10) == OFFSET_OUT_OF_RANGE
    assert raw_fetch_error(broker.port, "dr", 0, 40) == 0
    # Never back; offset -1 means the high watermark (kafka-python).
    assert delete_records(broker.bootstrap, "dr", 0, 20) == 40
    k = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    got = k.delete_records({KTP("dr", 1): -1})
    assert got[KTP("dr", 1)]["low_watermark"] == 10, got
    k.close()
    assert low_watermark(broker.bootstrap, "dr", 1) == (10, 10)
    # Kafka's errors: past the high watermark, an unknown partition.
    assert delete_records(broker.bootstrap, "dr", 0, 101) == ("error", KafkaError.OFFSET_OUT_OF_RANGE)
    # (librdkafka refuses an unknown partition itself: ask on the wire.)
    assert raw_delete_records(broker.port, "dr", 5, 1) == (UNKNOWN_TOPIC_OR_PARTITION, -1)
    assert raw_delete_records(broker.port, "nosuch", 0, 1) == (UNKNOWN_TOPIC_OR_PARTITION, -1)
    assert raw_delete_records(broker.port, "dr", 0, -7) == (OFFSET_OUT_OF_RANGE, -1)
    # The log start is in the log: a restart (kill -9) keeps it, and new
    # records go on from where they were.
    broker.restart()
    assert low_watermark(broker.bootstrap, "dr", 0) == (40, 100)
    produce(broker.bootstrap, "dr", 0, 5, prefix=b"n")
    assert low_watermark(broker.bootstrap, "dr", 0) == (40, 105)
    assert first_from(broker.bootstrap, "dr", 0, 0) == (40, b"m40")
    assert first_from(broker.bootstrap, "dr", 0, 100) == (100, b"n0")


def test_every_replica_trims_at_the_same_point(tmp_path):
    cluster = Cluster(tmp_path).start()
    try:
        create_topic(cluster.bootstrap(), "drc", 1, replication_factor=3)
        first = cluster.wait(lambda: cluster.settled("drc", 1))
        produce(cluster.bootstrap(), "drc", 0, 50)
        assert delete_records(cluster.bootstrap(), "drc", 0, 30) == 30
        # The leader goes; the new one answers with the same log start.
        cluster.nodes[first[0]].kill9()
        second = cluster.wait(lambda: cluster.settled("drc", 1))
        assert second[0] != first[0]
        assert low_watermark(cluster.bootstrap(), "drc", 0) == (30, 50)
        assert first_from(cluster.bootstrap(), "drc", 0, 0) == (30, b"m30")
    finally:
        cluster.stop()


def test_retention_bytes_trims_the_oldest_batches(broker):
    """retention.bytes: the leader moves the log start (the same Raft entry
    as DeleteRecords) once a partition holds more than the limit and an
    eighth; consumers from the beginning start at the new log start. Lifting
    the limit stops it. (Disk space is reclaimed with WAL segments, later.)"""
    from test_log_dirs import sizes
    create_topic(broker.bootstrap, "capped", 1, {"retention.bytes": "20000"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(400):
        p.produce("capped", value=b"%05d" % i + b"x" * 195, partition=0)
        p.flush(10)  # a batch each: retention works in whole batches
    low, high = low_watermark(broker.bootstrap, "capped", 0)
    assert high == 400 and low > 250, (low, high)
    _, got = sizes(broker.bootstrap)
    assert got[("capped", 0)] <= 20000 + 20000 // 8 + 300, got
    offset, value = first_from(broker.bootstrap, "capped", 0, 0)
    assert offset == low and value.startswith(b"%05d" % low)
    # The limit survives a restart, and lifting it stops the trimming.
    broker.restart()
    assert low_watermark(broker.bootstrap, "capped", 0)[0] == low
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    lift = ConfigResource(ConfigResource.Type.TOPIC, "capped", incremental_configs=[
        ConfigEntry("retention.bytes", "-1", incremental_operation=AlterConfigOpType.SET)])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.incremental_alter_configs([lift])[lift].result(timeout=10)
    for i in range(200):
        p.produce("capped", value=b"y" * 200, partition=0)
    assert p.flush(10) == 0
    assert low_watermark(broker.bootstrap, "capped", 0) == (low, 600)
