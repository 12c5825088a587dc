"""Produce and consume through two independent client implementations
(librdkafka via confluent-kafka, and kafka-python): keys, headers,
timestamps, every compression codec, several partitions; per-partition
order and dense offsets."""
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def create_topic(bootstrap, name, partitions, config=None, replication_factor=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replication_factor,
                                       config=config or {})])
    for f in fs.values():
        f.result(timeout=10)


def consume_all(bootstrap, topic, partitions, expected, timeout=30):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "enable.auto.commit": False,
                  "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, eof = [], set()
    deadline = time.time() + timeout
    while time.time() < deadline and (len(got) < expected or len(eof) < partitions):
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
                continue
            raise AssertionError(m.error())
        got.append(m)
    c.close()
    return got


@pytest.mark.parametrize("codec", CODECS)
def test_librdkafka_roundtrip(broker, codec):
    topic = f"rt-{codec}"
    create_topic(broker.bootstrap, topic, 3)
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec, "acks": "all",
                  "linger.ms": 5})
    sent = {}
    errors = []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            sent[(msg.partition(), msg.offset())] = msg.value()

    n = 600
    for i in range(n):
        p.produce(topic, key=f"k{i % 7}".encode(), value=f"value-{i}".encode() * (1 + i % 5),
                  partition=i % 3, headers=[("h", f"{i}".encode()), ("empty", b"")],
                  timestamp=1_700_000_000_000 + i, on_delivery=on_delivery)
    p.flush(30)
    assert not errors and len(sent) == n

    got = consume_all(broker.bootstrap, topic, 3, n)
    assert len(got) == n
    by_part = {}
    for m in got:
        by_part.setdefault(m.partition(), []).append(m)
    for part, msgs in by_part.items():
        offsets = [m.offset() for m in msgs]
        assert offsets == list(range(len(msgs))), "offsets must be dense and in order"
        indexes = [int(m.value().split(b"-")[1].split(b"value")[0]) for m in msgs]
        assert indexes == sorted(indexes), "per-partition order is produce order"
        for m in msgs:
            i = int(dict(m.headers())["h"])
            assert m.key() == f"k{i % 7}".encode()
            assert m.value() == sent[(part, m.offset())]
            assert m.timestamp()[1] == 1_700_000_000_000 + i
            assert dict(m.headers())["empty"] in (b"", None)


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_kafka_python_roundtrip(broker, codec):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTP

    topic = f"kp-{codec or 'none'}"
    create_topic(broker.bootstrap, topic, 2)
    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec, acks="all", linger_ms=5)
    futures = [prod.send(topic, key=b"key-%d" % i, value=b"v%d" % i, partition=i % 2,
                         headers=[("n", b"%d" % i)], timestamp_ms=1_600_000_000_000 + i) for i in range(300)]
    prod.flush(30)
    metas = [f.get(timeout=10) for f in futures]
    prod.close()
    for part in (0, 1):
        offs = sorted(m.offset for m in metas if m.partition == part)
        assert offs == list(range(150))

    cons = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                         auto_offset_reset="earliest", consumer_timeout_ms=5000)
    cons.assign([KTP(topic, 0), KTP(topic, 1)])
    cons.seek_to_beginning()
    got = list(cons)
    cons.close()
    assert len(got) == 300
    for part in (0, 1):
        msgs = [m for m in got if m.partition == part]
        assert [m.offset for m in msgs] == list(range(150))
        for m in msgs:
            i = int(m.value[1:])
            assert i % 2 == part
            assert m.key == b"key-%d" % i
            assert m.headers == [("n", b"%d" % i)]
            assert m.timestamp == 1_600_000_000_000 + i


def test_cross_client(broker):
    """What librdkafka writes, kafka-python reads, and the other way round."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTP

    create_topic(broker.bootstrap, "cross", 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(50):
        p.produce("cross", value=b"rd-%d" % i, partition=0)
    p.flush(10)
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1, enable_idempotence=False)
    for i in range(50):
        kp.send("cross", value=b"kp-%d" % i, partition=0)
    kp.flush(10)
    kp.close()
    cons = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    cons.assign([KTP("cross", 0)])
    cons.seek_to_beginning()
    values = [m.value for m in cons]
    cons.close()
    assert values == [b"rd-%d" % i for i in range(50)] + [b"kp-%d" % i for i in range(50)]
    got = consume_all(broker.bootstrap, "cross", 1, 100)
    assert [m.value() for m in got] == values


def test_debian_kcat(broker):
    """Debian's kcat is built on librdkafka 2.0.2: an old client must get
    an ApiVersions reply it understands, then list, produce and consume."""
    import subprocess

    listing = subprocess.run(["kcat", "-b", broker.bootstrap, "-L"], capture_output=True, text=True, timeout=20)
    assert listing.returncode == 0 and "1 brokers" in listing.stdout, listing.stderr
    lines = "".join(f"key{i}:line {i}\n" for i in range(1000))
    prod = subprocess.run(["kcat", "-b", broker.bootstrap, "-P", "-t", "kc", "-K:", "-z", "lz4"],
                          input=lines, capture_output=True, text=True, timeout=30)
    assert prod.returncode == 0, prod.stderr
    cons = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", "kc", "-e", "-f", "%o %k %s\n"],
                          capture_output=True, text=True, timeout=30)
    assert cons.returncode == 0, cons.stderr
    assert cons.stdout.splitlines() == [f"{i} key{i} line {i}" for i in range(1000)]
