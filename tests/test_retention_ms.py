"""retention.ms: a partition's oldest batches go once their largest
timestamp is older than the limit (as Kafka deletes segments by their
largest timestamp), checked every topics.retention_check_interval_ms by
one wake-up per shard; the leader moves the log start through a Raft
entry, so a restart keeps it, and the disk is reclaimed with the WAL
segments. Batches with future timestamps, and topics with retention.ms=-1,
keep their data."""
import time

from confluent_kafka import Producer

from test_delete_records import first_from, low_watermark
from test_reclaim import metric, wal_bytes
from test_roundtrip import create_topic


def produce_at(bootstrap, topic, stamps, size=100):
    """One record per timestamp (ms), each its own batch; returns how many."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    for i, ts in enumerate(stamps):
        p.produce(topic, value=b"%06d" % i + b"v" * size, partition=0, timestamp=ts)
        p.flush(10)
    return len(stamps)


def wait_for(what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out; last: {got!r}")


def test_batches_older_than_retention_ms_go_and_newer_ones_stay(broker_factory):
    broker = broker_factory(shards=1, extra_args=["--retention-check-interval-ms", "200",
                                                  "--wal-segment-bytes", "1MiB"])
    now = int(time.time() * 1000)
    create_topic(broker.bootstrap, "short", 1, {"retention.ms": "3000"})
    create_topic(broker.bootstrap, "forever", 1, {"retention.ms": "-1"})
    # Ten records from an hour ago (a producer replaying old data), ten
    # now, ten 50 minutes ahead (a clock ahead of ours, within the hour
    # that message.timestamp.after.max.ms allows).
    stamps = [now - 3_600_000] * 10 + [now] * 10 + [now + 3_000_000] * 10
    produce_at(broker.bootstrap, "short", stamps)
    produce_at(broker.bootstrap, "forever", stamps)
    # The hour-old batches go at the next check; the current ones 3 s later.
    wait_for(lambda: low_watermark(broker.bootstrap, "short", 0)[0] >= 10)
    low, high = low_watermark(broker.bootstrap, "short", 0)
    assert high == 30 and low in (10, 20), (low, high)
    assert wait_for(lambda: low_watermark(broker.bootstrap, "short", 0)[0] == 20, timeout=30)
    offset, value = first_from(broker.bootstrap, "short", 0, 0)
    assert offset == 20 and value.startswith(b"000020")
    # Future timestamps stay (Kafka too keeps a segment until its largest
    # timestamp is old), and so does everything of retention.ms=-1.
    time.sleep(1)
    assert low_watermark(broker.bootstrap, "short", 0) == (20, 30)
    assert low_watermark(broker.bootstrap, "forever", 0) == (0, 30)
    # The log start is a replicated decision: a restart keeps it.
    broker.restart()
    assert low_watermark(broker.bootstrap, "short", 0) == (20, 30)


def test_time_retention_bounds_the_wal(broker_factory):
    """A topic with a 2 s retention.ms, written at 3 MiB/s for 12 s: the
    WAL holds a few seconds of it, not the whole."""
    broker = broker_factory(shards=1, extra_args=["--retention-check-interval-ms", "250",
                                                  "--wal-segment-bytes", "1MiB"])
    create_topic(broker.bootstrap, "rolling", 1, {"retention.ms": "2000"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    written = 0
    started = time.time()
    while time.time() - started < 12:
        for _ in range(30):
            p.produce("rolling", value=b"r" * 10_000, partition=0)
            written += 10_000
        p.flush(10)
        time.sleep(0.1)
    assert p.flush(10) == 0
    on_disk = wal_bytes(broker.data_dir)
    # 2 s of writes, a check interval, trims and reclaims a second apart,
    # and the active and prepared segments: under half of what was written.
    assert on_disk < written / 2, (on_disk, written)
    assert metric(broker, "corestream_wal_segments_reclaimed_total") > 0
    low, high = low_watermark(broker.bootstrap, "rolling", 0)
    assert 0 < low < high
