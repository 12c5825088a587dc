"""WAL segments are reclaimed: with retention on every topic, the disk holds
the retained bytes plus a few segments however much is written; a restart
starts from the shard's checkpoint and keeps every offset, log start and
producer; a partition kept forever moves to a cold file instead of pinning
the WAL. A cluster keeps its WAL for now (no snapshots yet): a node wiped
after retention trimmed catches up from a peer's WAL."""
import shutil
import time

from confluent_kafka import Producer
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from test_cluster import Cluster
from test_delete_records import low_watermark
from test_roundtrip import create_topic

SEGMENT = 1 << 20
RETAIN = 2 << 20


def wal_bytes(data_dir):
    return sum(f.stat().st_size for f in data_dir.glob("shard-*/wal/*.log"))


def metric(broker, name):
    status, text = broker.admin_get("/metrics")
    assert status == 200
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name)


def write(bootstrap, topic, partitions, megabytes, prefix=b""):
    """`megabytes` MiB of 10 KiB records, numbered, spread over the partitions."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "enable.idempotence": True})
    n = megabytes * 100
    for i in range(n):
        while True:
            try:
                p.produce(topic, value=prefix + b"%08d" % i + b"r" * 10_000, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(60) == 0
    return n


def read_from_start(bootstrap, topic, partition):
    """(offset, first 8 bytes after the prefix) of every record from the log start."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=3000, fetch_max_bytes=8 << 20)
    tp = TopicPartition(topic, partition)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = [(m.offset, m.value) for m in c]
    c.close()
    return got


def test_retention_bounds_the_wal_and_a_restart_starts_from_the_checkpoint(broker_factory):
    broker = broker_factory(shards=1, extra_args=["--wal-segment-bytes", "1MiB"])
    create_topic(broker.bootstrap, "stream", 2, {"retention.bytes": str(RETAIN)})
    written = write(broker.bootstrap, "stream", 2, 40)
    # Trims and reclaims follow the writes (looked at once a second):
    # one more small write after a second lets the last ones through.
    time.sleep(1.2)
    write(broker.bootstrap, "stream", 2, 1, prefix=b"late")
    on_disk = wal_bytes(broker.data_dir)
    # Two partitions' retention (plus the eighth retention trims at), the
    # active segment, the prepared next one, and a segment the last trim
    # may not have freed yet.
    bound = 2 * RETAIN * 9 // 8 + 3 * SEGMENT
    assert on_disk <= bound, f"{on_disk} bytes of WAL after writing 41 MiB (bound {bound})"
    assert metric(broker, "corestream_wal_segments_reclaimed_total") >= 30
    assert metric(broker, "corestream_wal_checkpoints_total") >= 1

    before = {p: low_watermark(broker.bootstrap, "stream", p) for p in (0, 1)}
    records = {p: read_from_start(broker.bootstrap, "stream", p) for p in (0, 1)}
    for p in (0, 1):
        low, high = before[p]
        assert 0 < low < high == (written + 100) // 2
        assert [o for o, _ in records[p]] == list(range(low, high))

    broker.restart()
    assert "checkpoint" in {f.name for f in (broker.data_dir / "shard-0" / "wal").iterdir()}
    for p in (0, 1):
        assert low_watermark(broker.bootstrap, "stream", p) == before[p]
        assert read_from_start(broker.bootstrap, "stream", p) == records[p]
    # Offsets continue where they were, and retention goes on trimming.
    write(broker.bootstrap, "stream", 2, 4, prefix=b"after")
    for p in (0, 1):
        low, high = low_watermark(broker.bootstrap, "stream", p)
        assert high == before[p][1] + 200 and low > before[p][0]
        last = read_from_start(broker.bootstrap, "stream", p)[-1]
        assert last[0] == high - 1 and last[1].startswith(b"after")


def test_a_cluster_keeps_its_wal_so_a_wiped_node_rebuilds_under_retention(tmp_path):
    """On a 3-node cluster retention moves every replica's log start, but
    the WAL segments stay (until a node that lost its disk can install a
    snapshot, it rebuilds from a peer's WAL from the first entry): a node
    wiped after the trims catches up, metadata included, and serves the
    same log from the same log start."""
    cluster = Cluster(tmp_path, shards=1)
    cluster.start()
    try:
        create_topic(cluster.nodes[0].bootstrap, "stream", 1, {"retention.bytes": str(RETAIN)}, replication_factor=3)
        cluster.wait(lambda: cluster.settled("stream", 1))
        write(cluster.bootstrap(), "stream", 1, 12)
        low, high = low_watermark(cluster.bootstrap(), "stream", 0)
        assert 0 < low < high
        expected = read_from_start(cluster.bootstrap(), "stream", 0)
        assert [o for o, _ in expected] == list(range(low, high))
        for b in cluster.nodes:
            assert metric(b, "corestream_wal_segments_reclaimed_total") == 0
        follower = next(b for i, b in enumerate(cluster.nodes)
                        if i != cluster.wait(lambda: cluster.settled("stream", 1))[0])
        follower.kill9()
        shutil.rmtree(follower.data_dir)
        follower.start()
        cluster.wait(lambda: cluster.settled("stream", 1), timeout=60)
        # The wiped node leads: every other one goes down in turn until it does.
        for _ in range(4):
            leader = cluster.nodes[cluster.wait(lambda: cluster.settled("stream", 1), timeout=60)[0]]
            if leader is follower:
                break
            leader.kill9()
            cluster.wait(lambda: cluster.settled("stream", 1), timeout=60)
            leader.start()
            cluster.wait(lambda: cluster.settled("stream", 1), timeout=60)
        assert low_watermark(cluster.bootstrap(), "stream", 0) == (low, high)
        assert read_from_start(cluster.bootstrap(), "stream", 0) == expected
    finally:
        cluster.stop()


def test_a_trickle_kept_forever_moves_to_cold_files_instead_of_pinning_the_wal(broker_factory):
    """Mixed retention: a topic kept forever, written at a trickle, beside
    one with retention.bytes written fast. The trickle's batches are moved
    out of the segments they would pin, so the WAL stays bounded; they read
    back whole, from the start, before and after a restart; and consumer
    group commits (`__consumer_offsets`, kept forever too) pin nothing."""
    from confluent_kafka import Consumer
    broker = broker_factory(shards=1, extra_args=["--wal-segment-bytes", "1MiB"])
    create_topic(broker.bootstrap, "stream", 1, {"retention.bytes": str(RETAIN)})
    create_topic(broker.bootstrap, "audit", 1, {"retention.ms": "-1"})
    trickle = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    group = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "auditors", "enable.auto.commit": False})
    kept = []
    # Batches move once they pinned free segments for 10 s (a partition
    # whose own retention is catching up is left to free them itself).
    started = time.time()
    round_ = 0
    while time.time() - started < 25:
        write(broker.bootstrap, "stream", 1, 1, prefix=b"s%02d" % round_)
        time.sleep(0.5)
        v = b"audit-%04d" % round_
        trickle.produce("audit", value=v, partition=0)
        assert trickle.flush(10) == 0
        kept.append(v)
        from confluent_kafka import TopicPartition as CTP
        group.commit(offsets=[CTP("audit", 0, round_ + 1)], asynchronous=False)
        round_ += 1
    time.sleep(1.2)
    write(broker.bootstrap, "stream", 1, 1, prefix=b"late")
    group.close()
    on_disk = wal_bytes(broker.data_dir)
    cold = sum(f.stat().st_size for f in broker.data_dir.glob("shard-*/wal/cold-*.dat"))
    bound = RETAIN * 9 // 8 + 4 * SEGMENT
    assert on_disk <= bound, f"{on_disk} bytes of WAL segments after {round_ + 1} MiB (bound {bound})"
    assert 0 < cold < 1 << 20, cold
    assert metric(broker, "corestream_cold_files") >= 1
    assert [v for _, v in read_from_start(broker.bootstrap, "audit", 0)] == kept
    broker.restart()
    assert [v for _, v in read_from_start(broker.bootstrap, "audit", 0)] == kept
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "auditors"})
    from confluent_kafka import TopicPartition as CTP
    assert c.committed([CTP("audit", 0)], timeout=10)[0].offset == len(kept)
    c.close()
