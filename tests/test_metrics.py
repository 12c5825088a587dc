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
