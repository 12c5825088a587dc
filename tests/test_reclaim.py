"""WAL segments are reclaimed: with retention on every topic, the disk holds
the retained bytes plus a few segments however much is written; a restart
starts from the shard's checkpoint and keeps every offset, log start and
producer; a partition kept forever moves to a cold file instead of pinning
the WAL. A cluster reclaims too, and a node wiped afterwards rebuilds
through a snapshot."""
import re
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


def shards_that_installed(broker):
    """The shards whose log says they installed a snapshot."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", broker.log_text())
    return {int(k) for k in re.findall(r"installed a snapshot from the leader; pulling its batches shard=(\d+)", text)}


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
    from test_retention_ms import wait_for  # (which imports this module)
    broker = broker_factory(shards=1, extra_args=["--wal-segment-bytes", "1MiB"])
    create_topic(broker.bootstrap, "stream", 2, {"retention.bytes": str(RETAIN)})
    written = write(broker.bootstrap, "stream", 2, 40)
    time.sleep(1.2)
    write(broker.bootstrap, "stream", 2, 1, prefix=b"late")
    # Trims and reclaims follow the writes, a moment after their acks.
    # Two partitions' retention (plus the eighth retention trims at), the
    # active segment, the prepared next one, and a segment the last trim
    # may not have freed yet.
    bound = 2 * RETAIN * 9 // 8 + 3 * SEGMENT
    wait_for(lambda: wal_bytes(broker.data_dir) <= bound, timeout=10)
    # Segments are 1 MiB, or one group commit when that is larger (the
    # driver held up by a checkpoint gathers more): of 41 MiB written, at
    # least a dozen went.
    assert metric(broker, "corestream_wal_segments_reclaimed_total") >= 12
    assert metric(broker, "corestream_wal_checkpoints_total") >= 1

    def settled():
        first = {p: low_watermark(broker.bootstrap, "stream", p) for p in (0, 1)}
        time.sleep(0.5)
        return first if first == {p: low_watermark(broker.bootstrap, "stream", p) for p in (0, 1)} else None
    before = wait_for(settled, timeout=10)
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


def test_a_wiped_node_rebuilds_through_a_snapshot_then_leads_and_serves_everything(tmp_path):
    """A 3-node cluster reclaims its WAL under retention once every replica
    holds the entries (a release entry says so). A node wiped afterwards is
    behind every peer's WAL: it installs a snapshot (log starts, producers,
    the metadata), then pulls the retained batches in chunks; killed -9
    while it pulls, it goes on from its checkpoint. Then it leads and serves
    every retained record of a topic with retention and of one kept
    forever, from the same log starts."""
    # Two shards: each group's snapshot is installed on its own (group 0's
    # carries the metadata, the other's none).
    cluster = Cluster(tmp_path, shards=2, segment="1MiB")
    cluster.start()
    try:
        boot = cluster.nodes[0].bootstrap
        create_topic(boot, "stream", 2, {"retention.bytes": str(RETAIN)}, replication_factor=3)
        create_topic(boot, "kept", 2, {"retention.ms": "-1"}, replication_factor=3)
        cluster.wait(lambda: cluster.settled("stream", 2) and cluster.settled("kept", 2))
        # The topic kept forever pins the segments it shares with the other:
        # its batches move to a cold file once most of them are dead.
        write(cluster.bootstrap(), "kept", 2, 12)
        write(cluster.bootstrap(), "stream", 2, 40)
        # Trims, releases and reclaims follow the writes: later small
        # writes let the last ones through. (Segments are 1 MiB, or one
        # group commit when that is larger: of 55 MiB, well over 20 go.)
        for _ in range(3):
            time.sleep(1.2)
            write(cluster.bootstrap(), "stream", 2, 1, prefix=b"late")
        cluster.wait(lambda: all(metric(b, "corestream_wal_segments_reclaimed_total") > 20 for b in cluster.nodes),
                     timeout=60)
        parts = [(t, p) for t in ("stream", "kept") for p in (0, 1)]
        expected = {tp: read_from_start(cluster.bootstrap(), *tp) for tp in parts}
        starts = {tp: low_watermark(cluster.bootstrap(), *tp) for tp in parts}
        for p in (0, 1):
            assert 0 < starts[("stream", p)][0] < starts[("stream", p)][1] and starts[("kept", p)][0] == 0
            assert len(expected[("kept", p)]) == 600

        # Node 2 is wiped: no group prefers it (group k prefers node k), so
        # it leads nothing once the leaders are balanced.
        cluster.wait(lambda: cluster.settled("stream", 2))
        wiped = cluster.nodes[2]
        wiped.kill9()
        shutil.rmtree(wiped.data_dir)
        wiped.start()
        # kill -9 while it pulls the snapshot's batches.
        deadline = time.time() + 60
        while time.time() < deadline and metric(wiped, "corestream_snapshot_pulling") == 0:
            time.sleep(0.01)
        assert "installed a snapshot from the leader" in wiped.log_text(), wiped.log_text()[-3000:]
        assert "holds every batch" not in wiped.log_text(), "the pull finished before the kill"
        wiped.kill9()
        wiped.start()
        # Both groups' snapshots installed (before the kill or after), and
        # neither shard lacks a batch of its own.
        cluster.wait(lambda: shards_that_installed(wiped) == {0, 1}
                     and metric(wiped, "corestream_snapshot_pulling") == 0, timeout=60)
        assert "holds every batch of the snapshot" in wiped.log_text()
        # It rebuilt from snapshots, not from its peers' whole WAL (43 MiB
        # went through each shard's 1 MiB segments).
        assert wal_bytes(wiped.data_dir) < 2 * 8 * SEGMENT
        cold = sum(f.stat().st_size for f in wiped.data_dir.glob("shard-*/wal/cold-*.dat"))
        assert cold >= 4 << 20

        # Once it holds every batch, a checkpoint names the cold files the
        # pull wrote (written after the last of them): a restart then pulls
        # nothing again.
        def pull_saved():
            for wal in wiped.data_dir.glob("shard-*/wal"):
                cold = [f.stat().st_mtime_ns for f in wal.glob("cold-*.dat")]
                checkpoint = wal / "checkpoint"
                if cold and (not checkpoint.exists() or checkpoint.stat().st_mtime_ns < max(cold)):
                    return False
            return True
        try:
            cluster.wait(pull_saved, timeout=30)
        except AssertionError as e:
            files = {str(f.relative_to(wiped.data_dir)): (f.stat().st_size, f.stat().st_mtime_ns)
                     for f in sorted(wiped.data_dir.glob("shard-*/wal/*")) if f.suffix != ".log"}
            raise AssertionError(f"{e}; {files}; log: {wiped.log_text()[-3000:]}") from None
        ends = wiped.log_text().count("holds every batch of the snapshot")
        wiped.kill9()
        wiped.start()
        cluster.wait(lambda: cluster.settled("stream", 2), timeout=60)
        time.sleep(2)
        assert metric(wiped, "corestream_snapshot_pulling") == 0
        assert metric(wiped, "corestream_snapshot_bytes_pulled_total") == 0
        assert wiped.log_text().count("holds every batch of the snapshot") == ends, "pulled again after a restart"

        # The wiped node leads. Node 1 is down while a record goes to each
        # shard's group, so its log is behind the wiped node's; then node 0
        # goes down and node 1 comes back. Only the wiped node can win group
        # 0's election, and it keeps the group: its preferred leader, node
        # 0, is down. (Node 1 is killed, not paused: a paused node reads
        # the entries its peers sent meanwhile as soon as it resumes.)
        cluster.nodes[1].kill9()
        p = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all", "enable.idempotence": True,
                      "message.timeout.ms": 60000})
        for part in (0, 1):
            p.produce("kept", value=b"behind", partition=part)
            expected[("kept", part)].append((600, b"behind"))
            starts[("kept", part)] = (0, 601)
        assert p.flush(60) == 0
        cluster.nodes[0].kill9()
        cluster.nodes[1].start()
        leaders = cluster.wait(lambda: cluster.settled("stream", 2), timeout=60)
        led = [part for part, node in leaders.items() if cluster.nodes[node] is wiped]
        assert led, f"the wiped node leads nothing: {leaders}"
        for tp in parts:
            assert low_watermark(cluster.bootstrap([wiped]), *tp) == starts[tp]
            assert read_from_start(cluster.bootstrap([wiped]), *tp) == expected[tp]
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
    # The topic kept forever moves as soon as it pins segments more than
    # half dead (a partition whose own retention is catching up would be
    # left 10 s to free them itself).
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
