"""Compaction (cleanup.policy=compact), read back from the start by
librdkafka and kafka-python: the last value of every key stays at the
offset it was written at, older values go, tombstones go once
delete.retention.ms passed their timestamp; a compact-only topic is never
trimmed by retention.ms; kill -9 while compaction runs loses nothing and
brings nothing back; __consumer_offsets is compacted and a group's last
commit survives a restart."""
import random
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KTP

from test_delete_records import low_watermark
from test_reclaim import metric
from test_roundtrip import create_topic

KEYS = 200
ROUNDS = 8
DAY_MS = 86_400_000


def produce_rounds(bootstrap, topic, rounds, codec):
    """`rounds` values of every key (5 KiB each), then two tombstones: one
    dated two days back (older than delete.retention.ms), one now. Returns
    {offset: (key, value)} of everything acknowledged."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "compression.type": codec, "enable.idempotence": True})
    written = {}

    def done(err, msg):
        assert err is None, err
        written[msg.offset()] = (msg.key(), msg.value())

    for r in range(rounds):
        for k in range(KEYS):
            key = b"k%03d" % k
            # Random bytes: compression cannot shrink them away, so the
            # rounds fill several WAL segments.
            value = b"%d:" % r + random.randbytes(5000)
            p.produce(topic, key=key, value=value, on_delivery=done)
            p.poll(0)
    now = int(time.time() * 1000)
    p.produce(topic, key=b"k000", value=None, timestamp=now - 2 * DAY_MS, on_delivery=done)
    p.produce(topic, key=b"k001", value=None, timestamp=now, on_delivery=done)
    assert p.flush(60) == 0
    return written


def read_librdkafka(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compaction-check", "enable.auto.commit": False,
                  "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    got = {}
    deadline = time.time() + 60
    while time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            break  # end of the partition
        got[m.offset()] = (m.key(), m.value())
    c.close()
    return got


def read_kafka_python(bootstrap, topic):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=5000, fetch_max_bytes=8 << 20)
    tp = KTP(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = {m.offset: (m.key, m.value) for m in c}
    c.close()
    return got


def check_compacted(got, written, settled=True):
    """Every record read is the one written at its offset; the last value
    of every key is there; of the tombstones only the recent one is (the
    old one may be too before compaction reached it: not `settled`)."""
    for offset, rec in got.items():
        assert written.get(offset) == rec, f"offset {offset} reads {rec!r:.60}, not what was written there"
    last = {}
    for offset in sorted(written):
        last[written[offset][0]] = offset
    for key, offset in last.items():
        if key == b"k000":
            assert not settled or offset not in got, "a tombstone older than delete.retention.ms stayed"
        else:
            assert offset in got, f"the last value of {key} (offset {offset}) is gone"
    assert got[last[b"k001"]] == (b"k001", None), "a recent tombstone went"


def wait_for_compaction(broker, runs, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metric(broker, "corestream_compaction_runs_total") >= runs:
            return
        time.sleep(0.3)
    raise AssertionError(f"no compaction pass in {timeout} s")


def seal_and_wait(broker, topic, bound, timeout=60):
    """Writes to another topic until the WAL segment the last records of
    `topic` are in is sealed (the active segment is not cleaned, as
    Kafka's is not), then waits until `topic` reads back in at most
    `bound` records."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for _ in range(300):
        p.produce("filler", value=random.randbytes(5000))
    assert p.flush(30) == 0
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(read_kafka_python(broker.bootstrap, topic)) <= bound:
            return
        time.sleep(0.5)
    raise AssertionError(f"{topic} not compacted to {bound} records in {timeout} s")


def test_a_compacted_topic_keeps_the_last_value_of_each_key_through_kill_9(broker_factory):
    broker = broker_factory(shards=1, extra_args=["--wal-segment-bytes", "1MiB"])
    create_topic(broker.bootstrap, "table", 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"})
    written = produce_rounds(broker.bootstrap, "table", ROUNDS, "lz4")
    assert len(written) == KEYS * ROUNDS + 2
    wait_for_compaction(broker, 1)
    create_topic(broker.bootstrap, "filler", 1)
    seal_and_wait(broker, "table", KEYS - 1)
    for read in (read_librdkafka, read_kafka_python):
        got = read(broker.bootstrap, "table")
        check_compacted(got, written)
        # k000 went with its tombstone; k001 is its tombstone.
        assert len(got) == KEYS - 1, f"{read.__name__}: {len(got)} records of {len(written)} after compaction"
    assert low_watermark(broker.bootstrap, "table", 0) == (0, KEYS * ROUNDS + 2), "compaction moves no offset"
    assert metric(broker, "corestream_compaction_written_bytes_total") > 0

    # More rounds, and kill -9 at random points while they are compacted:
    # what a restart serves is still exactly what was written at each
    # offset, with every key's last value.
    for i in range(3):
        more = produce_rounds(broker.bootstrap, "table", 2, "zstd")
        written.update(more)
        time.sleep(random.uniform(0.0, 1.5))
        broker.restart()
        got = read_librdkafka(broker.bootstrap, "table")
        check_compacted(got, written, settled=False)
    # After the restarts, the partition is compacted again (a restart
    # cleans it whole once).
    seal_and_wait(broker, "table", KEYS - 1)
    assert metric(broker, "corestream_compaction_runs_total") >= 1
    check_compacted(read_kafka_python(broker.bootstrap, "table"), written)


def test_a_compact_only_topic_is_never_trimmed_by_time_but_compact_delete_is(broker_factory):
    broker = broker_factory(shards=1, extra_args=["--retention-check-interval-ms", "200"])
    create_topic(broker.bootstrap, "compact-only", 1, {"cleanup.policy": "compact", "retention.ms": "1000"})
    create_topic(broker.bootstrap, "both", 1, {"cleanup.policy": "compact,delete", "retention.ms": "1000"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    old = int(time.time() * 1000) - DAY_MS
    for topic in ("compact-only", "both"):
        for i in range(20):
            p.produce(topic, key=b"k%d" % i, value=b"v", timestamp=old)
    assert p.flush(20) == 0
    deadline = time.time() + 20
    while time.time() < deadline and low_watermark(broker.bootstrap, "both", 0)[0] < 20:
        time.sleep(0.5)
    assert low_watermark(broker.bootstrap, "both", 0) == (20, 20), "compact,delete honours retention.ms"
    assert low_watermark(broker.bootstrap, "compact-only", 0) == (0, 20), "compact alone never trims by time"


def test_consumer_offsets_is_compacted_and_the_last_commit_survives_a_restart(broker_factory):
    broker = broker_factory(shards=1, extra_args=["--wal-segment-bytes", "1MiB"])
    create_topic(broker.bootstrap, "events", 1)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "committer", "enable.auto.commit": False})
    for i in range(1, 3001):
        c.commit(offsets=[TopicPartition("events", 0, i)], asynchronous=False)
    c.close()
    # Seal the segments the commits are in, so that they can be cleaned.
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for _ in range(400):
        p.produce("events", value=random.randbytes(5000))
    assert p.flush(30) == 0
    wait_for_compaction(broker, 1)
    broker.restart()
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "committer", "enable.auto.commit": False})
    committed = c.committed([TopicPartition("events", 0)], timeout=20)
    c.close()
    assert committed[0].offset == 3000


def test_a_record_without_a_key_is_refused_by_a_compacted_topic(broker_factory):
    broker = broker_factory(shards=1)
    create_topic(broker.bootstrap, "keyed", 1, {"cleanup.policy": "compact"})
    errors = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "compression.type": "gzip"})
    p.produce("keyed", key=b"k", value=b"kept", on_delivery=lambda e, m: errors.append(e))
    assert p.flush(20) == 0
    p.produce("keyed", value=b"no key", on_delivery=lambda e, m: errors.append(e))
    assert p.flush(20) == 0
    assert errors[0] is None
    assert errors[1] is not None and errors[1].code() == KafkaError.INVALID_RECORD, errors[1]
    assert low_watermark(broker.bootstrap, "keyed", 0) == (0, 1), "the keyless record was not stored"
