"""Kafka's message.timestamp.* topic configs, through librdkafka and
kafka-python: a LogAppendTime topic stamps every record with the broker's
clock (the delivery report says so, from the produce response's
log_append_time_ms; consumers read the type and the time; offsets_for_times
answers by it); a CreateTime topic refuses, with INVALID_TIMESTAMP, a batch
with a record stamped further ahead than message.timestamp.after.max.ms (an
hour by default, as in Kafka 4) or further back than
message.timestamp.before.max.ms, and takes the others, unchanged."""
import time

from confluent_kafka import (TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaError,
                             Producer, TopicPartition)
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition

import kafka_raw as raw
from test_roundtrip import create_topic

HOUR = 3_600_000


def produce(bootstrap, topic, stamps):
    """Produces one record per timestamp, one at a time; returns each
    delivery's (error code or None, timestamp type, timestamp)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "retries": 0})
    out = []
    for i, ts in enumerate(stamps):
        def done(err, msg):
            out.append((err.code() if err else None,) + msg.timestamp())
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0, timestamp=ts, on_delivery=done)
        p.flush(10)
    assert len(out) == len(stamps)
    return out


def read_confluent(bootstrap, topic, n):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "ts", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 20
    while len(got) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append((m.offset(), m.value()) + m.timestamp())
    c.close()
    return got


def test_log_append_time_stamps_records_with_the_broker_clock(broker):
    create_topic(broker.bootstrap, "appended", 1, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    # A producer's clock far behind, and far ahead: neither matters here.
    deliveries = produce(broker.bootstrap, "appended", [1000, before, before + 10 * HOUR])
    after = int(time.time() * 1000)
    for err, kind, ts in deliveries:
        assert err is None
        assert kind == TIMESTAMP_LOG_APPEND_TIME and before <= ts <= after, (kind, ts, before, after)
    read = read_confluent(broker.bootstrap, "appended", 3)
    assert [r[:2] for r in read] == [(0, b"v0"), (1, b"v1"), (2, b"v2")]
    for (_, _, kind, ts), (_, _, dts) in zip(read, deliveries):
        assert kind == TIMESTAMP_LOG_APPEND_TIME and ts == dts
    k = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, consumer_timeout_ms=10_000)
    k.assign([KTopicPartition("appended", 0)])
    k.seek(KTopicPartition("appended", 0), 0)
    records = []
    for r in k:
        records.append(r)
        if len(records) == 3:
            break
    k.close()
    assert [(r.offset, r.timestamp_type, r.timestamp) for r in records] == [(o, 1, ts) for o, _, _, ts in read]
    # Offsets by time follow the broker's stamps, not the producer's.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ts"})
    try:
        found = c.offsets_for_times([TopicPartition("appended", 0, read[2][3])], timeout=10)[0].offset
        late = c.offsets_for_times([TopicPartition("appended", 0, after + 1)], timeout=10)[0].offset
    finally:
        c.close()
    # The earliest record stamped at or after it: records appended within
    # one millisecond share their stamp.
    first = min(o for o, _, _, ts in read if ts >= read[2][3])
    assert found == first and late == -1, (found, late, read)


def test_create_time_refuses_stamps_out_of_range(broker):
    create_topic(broker.bootstrap, "created", 1)
    create_topic(broker.bootstrap, "recent", 1, {"message.timestamp.before.max.ms": str(HOUR)})
    now = int(time.time() * 1000)
    # Default: an hour ahead at most, any time back.
    deliveries = produce(broker.bootstrap, "created", [now, now + 2 * HOUR, 1000, now + HOUR // 2])
    assert [d[0] for d in deliveries] == [None, KafkaError.INVALID_TIMESTAMP, None, None], deliveries
    read = read_confluent(broker.bootstrap, "created", 3)
    assert [(o, v, kind, ts) for o, v, kind, ts in read] == [
        (0, b"v0", TIMESTAMP_CREATE_TIME, now),
        (1, b"v2", TIMESTAMP_CREATE_TIME, 1000),
        (2, b"v3", TIMESTAMP_CREATE_TIME, now + HOUR // 2),
    ], read
    # message.timestamp.before.max.ms: an hour back at most.
    deliveries = produce(broker.bootstrap, "recent", [now - 2 * HOUR, now - HOUR // 2])
    assert [d[0] for d in deliveries] == [KafkaError.INVALID_TIMESTAMP, None], deliveries


def test_before_max_ms_checks_each_record_of_a_batch(broker):
    """A batch's records need not be in time order: one stamped now, then
    one two hours back. Its first and largest timestamps are both now;
    where message.timestamp.before.max.ms is set, the broker reads the
    records (decompressed, for a compressed batch) and refuses the batch,
    as Kafka does. Without it the same batch is taken whole. The batches
    are built by hand (kafka_raw): a client may split such records into
    two batches."""
    create_topic(broker.bootstrap, "strict", 1, {"message.timestamp.before.max.ms": str(HOUR)})
    create_topic(broker.bootstrap, "lenient", 1)
    now = int(time.time() * 1000)
    conn = raw.Conn(broker.port)
    try:
        for i, gzip in enumerate((False, True)):
            batch = raw.record_batch([b"now", b"earlier"], base_timestamp=now, deltas=[0, -2 * HOUR], gzip=gzip)
            for topic, want in (("strict", KafkaError.INVALID_TIMESTAMP), ("lenient", 0)):
                conn.send(raw.frame(0, 3, i, raw.produce_v3(topic, 0, batch)))
                [(_, _, err, _)] = raw.parse_produce_v3_response(conn.recv_frame())
                assert err == want, (gzip, topic, err)
    finally:
        conn.close()
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ts"})
    try:
        assert c.get_watermark_offsets(TopicPartition("strict", 0), timeout=10) == (0, 0)
    finally:
        c.close()
    read = read_confluent(broker.bootstrap, "lenient", 4)
    assert [(v, ts) for _, v, _, ts in read] == [(b"now", now), (b"earlier", now - 2 * HOUR)] * 2, read
