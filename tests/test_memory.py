"""Memory follows what is retained, not what was written: a broker whose
1,000 partitions have retention.bytes keeps the same RSS (within 64 MiB)
after 1 GiB and after several GiB more went through it (issue 10, scaled to
the test machine: Kafka's own index grows with retained segments only)."""
import re

from test_bench import bench
from test_roundtrip import create_topic


def produced_mib(out):
    return float(re.search(r"produce: \d+ messages, ([\d.]+) MiB", out).group(1))


def test_rss_stays_flat_while_data_flows_through_retention(broker_factory):
    broker = broker_factory(shards=1, extra_args=["--wal-segment-bytes", "16MiB"])
    # 1,000 partitions keep 256 KiB each: 250 MiB retained in all.
    create_topic(broker.bootstrap, "flow", 1000, {"retention.bytes": str(256 << 10)})
    args = ["produce", "--bootstrap", broker.bootstrap, "--topic", "flow", "--acks", "1",
            "--message-bytes", "1024", "--cores", "1"]
    first = produced_mib(bench(*args, "--duration", "3s"))
    rss_after_first, _ = broker.proc_status()
    more = produced_mib(bench(*args, "--duration", "12s", timeout=120))
    rss_after_more, _ = broker.proc_status()
    assert first >= 256, f"only {first:.0f} MiB in the first run"
    assert more >= 3 * first, f"only {more:.0f} MiB after the first {first:.0f} MiB"
    grown = (rss_after_more - rss_after_first) / 2**20
    assert grown < 64, (f"RSS grew {grown:.0f} MiB (from {rss_after_first / 2**20:.0f} MiB) while "
                        f"{more:.0f} MiB more went through {first:.0f} MiB")
    print(f"\nRSS {rss_after_first / 2**20:.0f} MiB after {first:.0f} MiB, "
          f"{rss_after_more / 2**20:.0f} MiB after {first + more:.0f} MiB")


def index_files(broker):
    return {f.name: f.stat() for f in (broker.data_dir / "shard-0" / "index").glob("*.idx")}


def test_the_offset_index_of_retained_batches_lives_in_index_files(broker_factory):
    """Older index entries are frozen into blocks kept in mapped index
    files: the files hold them, reads and lookups by time go through them,
    and a restart removes them and builds them again from the WAL."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from test_reclaim import metric

    broker = broker_factory(shards=1)
    create_topic(broker.bootstrap, "kept", 2)
    # A batch per record: 3,000 batches a partition, 23 frozen blocks.
    n, start_ms = 6000, 1_700_000_000_000
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "batch.num.messages": 1,
                  "acks": 1})
    for i in range(n):
        while True:
            try:
                p.produce("kept", value=b"%06d" % i, partition=i % 2, timestamp=start_ms + i)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(60) == 0

    files = index_files(broker)
    assert files, "no index file"
    live = metric(broker, "corestream_index_live_bytes")
    assert 0 < live <= sum(f.st_size for f in files.values())
    assert metric(broker, "corestream_index_file_bytes") == sum(f.st_size for f in files.values())

    def check_reads():
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "idx", "enable.auto.commit": False})
        try:
            for part in (0, 1):
                c.assign([TopicPartition("kept", part, 0)])
                got = []
                while len(got) < n // 2:
                    m = c.poll(5)
                    assert m is not None, f"partition {part}: {len(got)} records read"
                    assert m.error() is None, m.error()
                    got.append((m.offset(), m.value()))
                assert got == [(k, b"%06d" % (2 * k + part)) for k in range(n // 2)]
            # Lookups by time inside frozen blocks: record i was stamped start + i.
            for i in (2, 999, 4321):
                tp = c.offsets_for_times([TopicPartition("kept", i % 2, start_ms + i)], timeout=10)[0]
                assert tp.offset == i // 2, (i, tp)
        finally:
            c.close()

    check_reads()
    # Index files are a cache: a start removes what was there (a crash
    # leaves them, as kill -9 does here) and writes its own.
    broker.kill9()
    (broker.data_dir / "shard-0" / "index" / "99-99.idx").write_bytes(b"left behind")
    broker.start()
    again = index_files(broker)
    assert again and "99-99.idx" not in again, sorted(again)
    assert metric(broker, "corestream_index_file_bytes") == sum(f.st_size for f in again.values())
    check_reads()
