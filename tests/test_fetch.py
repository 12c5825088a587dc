"""Fetch limits as the protocol defines them: max_bytes and the partition
limit bound a response, but the first batch always goes (KIP-74), so a
consumer with limits smaller than a batch still makes progress; min_bytes
waits for data or max_wait_ms, whichever comes first; offsets past the end
get OFFSET_OUT_OF_RANGE."""
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from test_roundtrip import consume_all, create_topic


def test_limits_smaller_than_a_batch_still_make_progress(broker):
    create_topic(broker.bootstrap, "big", 2)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50, "compression.type": "none"})
    for i in range(200):
        p.produce("big", value=bytes([i % 251]) * 5000, partition=i % 2)
    p.flush(10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "big", "enable.auto.commit": False,
                  "fetch.max.bytes": 1024, "message.max.bytes": 1024, "max.partition.fetch.bytes": 1024,
                  "receive.message.max.bytes": 2000000})
    c.assign([TopicPartition("big", 0, 0), TopicPartition("big", 1, 0)])
    got = []
    deadline = time.time() + 30
    while len(got) < 200 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m)
    c.close()
    assert len(got) == 200
    for m in got:
        assert len(m.value()) == 5000


def test_min_bytes_waits_for_max_wait(broker):
    from kafka import KafkaConsumer, TopicPartition as KTP

    create_topic(broker.bootstrap, "mb", 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce("mb", value=b"tiny", partition=0)
    p.flush(5)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                      fetch_min_bytes=10_000_000, fetch_max_wait_ms=800, consumer_timeout_ms=5000)
    c.assign([KTP("mb", 0)])
    c.seek(KTP("mb", 0), 0)
    start = time.time()
    first = next(iter(c))
    waited = time.time() - start
    c.close()
    assert first.value == b"tiny"
    # Less than min_bytes is there, so the broker holds the fetch for about
    # max_wait_ms before answering with what it has.
    assert 0.5 < waited < 4.5, waited


def test_offset_out_of_range_resets_the_consumer(broker):
    create_topic(broker.bootstrap, "oor", 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(3):
        p.produce("oor", value=b"%d" % i, partition=0)
    p.flush(5)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "oor", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("oor", 0, 1000)])  # past the end: OFFSET_OUT_OF_RANGE, then reset
    got = []
    deadline = time.time() + 15
    while len(got) < 3 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert got == [b"0", b"1", b"2"]
    assert len(consume_all(broker.bootstrap, "oor", 1, 3)) == 3
