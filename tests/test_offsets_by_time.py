"""ListOffsets by timestamp at record granularity, as Kafka answers it
(KIP-79, and KIP-734 for the max timestamp): the first *record* at or after
the time asked, even inside a batch of many records, under every
compression codec; the record with the largest timestamp; never a record
below the log start. Asked through librdkafka, kafka-python and a raw
ListOffsets v7 (the max timestamp, -3, which neither client sends)."""
import struct

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from kafka_raw import Conn, compact_string, flexible_frame, read_uvarint
from test_delete_records import delete_records
from test_roundtrip import create_topic

# One producer batch: out of order, with a repeated maximum.
TIMES = [1000, 5000, 3000, 7000, 7000, 2000]


def produce_one_batch(bootstrap, topic, codec):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 500, "compression.type": codec,
                  "batch.num.messages": 100})
    for i, ts in enumerate(TIMES):
        p.produce(topic, value=b"v%d" % i * 50, key=b"k%d" % i, partition=0, timestamp=ts)
    assert p.flush(10) == 0


def librdkafka_times(bootstrap, topic, ts):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "t"})
    try:
        return c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)[0].offset
    finally:
        c.close()


def raw_list_offsets_v7(port, topic, ts):
    """(error, timestamp, offset) of partition 0 from a ListOffsets v7."""
    body = (struct.pack(">ib", -1, 0) + b"\x02" + compact_string(topic) + b"\x02"
            + struct.pack(">iiq", 0, -1, ts) + b"\x00" + b"\x00" + b"\x00")
    c = Conn(port)
    try:
        c.send(flexible_frame(2, 7, 7, body))
        payload = c.recv_frame()
    finally:
        c.close()
    assert payload is not None, "the broker closed the connection"
    (corr,) = struct.unpack_from(">i", payload)
    assert corr == 7
    at = 4 + 1 + 4  # header tagged fields, throttle time
    n_topics, at = read_uvarint(payload, at)
    assert n_topics - 1 == 1
    name_len, at = read_uvarint(payload, at)
    at += name_len - 1
    n_parts, at = read_uvarint(payload, at)
    assert n_parts - 1 == 1
    _part, err, timestamp, offset = struct.unpack_from(">ihqq", payload, at)
    return err, timestamp, offset


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_a_timestamp_finds_its_record_inside_a_batch(broker, codec):
    topic = f"times-{codec}"
    create_topic(broker.bootstrap, topic, 1)
    produce_one_batch(broker.bootstrap, topic, codec)
    # The first record at or after each time, by its position in TIMES.
    for ts, want in [(0, 0), (1000, 0), (1001, 1), (2500, 1), (5001, 3), (7000, 3), (7001, -1)]:
        assert librdkafka_times(broker.bootstrap, topic, ts) == want, (codec, ts)
    # The max timestamp is the first record that holds it.
    assert raw_list_offsets_v7(broker.port, topic, -3) == (0, 7000, 3)
    assert raw_list_offsets_v7(broker.port, topic, 2500) == (0, 5000, 1)


def test_kafka_python_and_the_log_start(broker):
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition as KTP

    topic = "times-start"
    create_topic(broker.bootstrap, topic, 1)
    produce_one_batch(broker.bootstrap, topic, "lz4")
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        tp = KTP(topic, 0)
        found = c.offsets_for_times({tp: 2500})[tp]
        assert (found.offset, found.timestamp) == (1, 5000)
        # DeleteRecords inside the batch: no answer below the new log start.
        assert delete_records(broker.bootstrap, topic, 0, 2) == 2
        found = c.offsets_for_times({tp: 0})[tp]
        assert (found.offset, found.timestamp) == (2, 3000)
        found = c.offsets_for_times({tp: 4000})[tp]
        assert (found.offset, found.timestamp) == (3, 7000)
        assert delete_records(broker.bootstrap, topic, 0, 4) == 4
        assert raw_list_offsets_v7(broker.port, topic, -3) == (0, 7000, 4)
        assert c.offsets_for_times({tp: 7001})[tp] is None
    finally:
        c.close()
