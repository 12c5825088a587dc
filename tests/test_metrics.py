"""The admin port: /metrics in Prometheus text format, read back with the
official Python parser, whose counters move by exactly what the test sent;
/health says ready, and warns when a shard nears its partition limit."""
from prometheus_client.parser import text_string_to_metric_families

import kafka_raw as raw
from test_bad_input import produce_raw
from test_roundtrip import create_topic


def scrape(b):
    status, body = b.admin_get("/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples, name, **labels):
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == str(val) for k, val in labels.items()))


def test_metrics_count_what_was_sent(broker):
    create_topic(broker.bootstrap, "m", 3)
    before = scrape(broker)
    good = raw.record_batch([b"a", b"b", b"c"])
    bad = bytearray(good)
    bad[-1] ^= 1
    for _ in range(4):
        assert produce_raw(broker, "m", 0, good)[0][2] == 0
    assert produce_raw(broker, "m", 1, bytes(bad))[0][2] == 2
    after = scrape(broker)

    def moved(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("corestream_kafka_requests_total", api="Produce") == 5
    assert moved("corestream_kafka_errors_total", code=2) == 1
    assert moved("corestream_kafka_request_bytes_total", api="Produce") > 5 * len(good)
    # Each acks=all request waited for its own commit before the next was sent.
    assert moved("corestream_wal_appends_total") >= 4
    assert moved("corestream_wal_bytes_total") >= 4 * len(good)
    assert total(after, "corestream_partitions") == 3
    assert total(after, "corestream_shards") == 2
    assert total(after, "corestream_raft_leader") == 2
    assert total(after, "corestream_memory_budget_bytes") == 2 * 512 * 2**20
    assert total(after, "corestream_kafka_request_latency_seconds_count", api="Produce") >= 5
    assert total(after, "corestream_wal_fsync_seconds_count") == total(after, "corestream_wal_appends_total")
    assert total(after, "corestream_connections_accepted_total") > 0


def test_health_ready_and_partition_warning(broker_factory):
    b = broker_factory(extra_args=["--max-partitions-per-shard", "5"])
    status, body = b.admin_get("/health")
    assert status == 200 and body.startswith("ready")
    assert "warning" not in body
    create_topic(b.bootstrap, "near", 8)  # 4 of 5 on each shard: 80%
    status, body = b.admin_get("/health")
    assert status == 200 and "warning: shard 0 holds 4 of 5 partitions (limits.max_partitions_per_shard)" in body
    assert b.admin_get("/nope")[0] == 404


def test_recent_batches_are_read_from_the_cache(broker):
    create_topic(broker.bootstrap, "hot", 1)
    before = scrape(broker)
    for i in range(5):
        assert produce_raw(broker, "hot", 0, raw.record_batch([b"v%d" % i]))[0][2] == 0
    from test_roundtrip import consume_all
    assert len(consume_all(broker.bootstrap, "hot", 1, 5)) == 5
    after = scrape(broker)
    hits = total(after, "corestream_read_cache_hits_total") - total(before, "corestream_read_cache_hits_total")
    misses = total(after, "corestream_read_cache_misses_total") - total(before, "corestream_read_cache_misses_total")
    assert hits >= 1 and misses == 0, (hits, misses)
    assert 0 < total(after, "corestream_read_cache_bytes") <= 2 * 512 * 2**20 / 8
    # After a restart the cache is empty: the same data comes from the WAL.
    broker.restart()
    before = scrape(broker)
    assert [m.value() for m in consume_all(broker.bootstrap, "hot", 1, 5)] == [b"v%d" % i for i in range(5)]
    after = scrape(broker)
    assert total(after, "corestream_read_cache_misses_total") - total(before, "corestream_read_cache_misses_total") >= 1


def test_group_commit_counts_batches(broker):
    create_topic(broker.bootstrap, "gc", 2)
    before = scrape(broker)
    for i in range(6):
        assert produce_raw(broker, "gc", i % 2, raw.record_batch([b"x"]))[0][2] == 0
    after = scrape(broker)
    moved = total(after, "corestream_produce_batches_total") - total(before, "corestream_produce_batches_total")
    assert moved == 6


def test_consumer_behind_the_tail_is_served_by_read_ahead(broker_factory):
    """After a restart nothing is cached: a consumer reading a log many times
    larger than the caches gets every record intact and in order while the
    shard reads ahead of it (a wrong slice of a read-ahead run would show as
    a CRC error, a wrong value or a gap)."""
    from kafka import KafkaConsumer, TopicPartition as KTP
    from confluent_kafka import Producer

    # 16 MiB per shard: 2 MiB of read cache and 2 MiB of read-ahead.
    b = broker_factory(extra_args=["--memory-per-shard", "16MiB"])
    create_topic(b.bootstrap, "behind", 3)
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 20, "compression.type": "none",
                  "batch.size": 256 * 1024})
    per_partition = 4000
    for i in range(per_partition):
        for part in range(3):
            p.produce("behind", value=b"%d:%06d:" % (part, i) + bytes([i % 251]) * 2000, partition=part)
        if i % 500 == 0:
            p.flush(30)
    assert p.flush(30) == 0
    b.restart()
    before = scrape(b)
    c = KafkaConsumer(bootstrap_servers=b.bootstrap, enable_auto_commit=False, check_crcs=True,
                      max_partition_fetch_bytes=1 << 20, fetch_max_bytes=4 << 20, consumer_timeout_ms=10000)
    c.assign([KTP("behind", part) for part in range(3)])
    c.seek_to_beginning()
    seen = {part: 0 for part in range(3)}
    for m in c:
        i = seen[m.partition]
        assert m.offset == i
        assert m.value == b"%d:%06d:" % (m.partition, i) + bytes([i % 251]) * 2000
        seen[m.partition] = i + 1
        if all(n == per_partition for n in seen.values()):
            break
    c.close()
    assert seen == {part: per_partition for part in range(3)}
    after = scrape(b)
    hits = total(after, "corestream_read_ahead_hits_total") - total(before, "corestream_read_ahead_hits_total")
    runs = total(after, "corestream_read_ahead_runs_total") - total(before, "corestream_read_ahead_runs_total")
    assert runs >= 3 and hits >= 3, (runs, hits)
    assert total(after, "corestream_read_ahead_bytes") <= 2 * 16 * 2**20 / 8
