"""franz-go (kgo and kadm 1.22.3 / 1.20.0, from the Go module proxy) against
the real broker: the idempotent producer with every codec and headers, a
consumer group of three that rebalances on join and on leave and commits,
and kadm's topic, config, partition, offset, DeleteRecords and group
administration with Kafka's errors. franz-go is strict about protocol
details. The same checks run against Apache Kafka (scripts/kafka-ref), so
they test Kafka's semantics. The checks assert as they go
(tests/go/main.go); scripts/test builds them."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ROOT / "target" / "franz-checks"


def run_check(check, bootstrap):
    if not CHECKS.exists():
        pytest.fail("franz-go checks not built: (cd tests/go && go build -o ../../target/franz-checks .)")
    r = subprocess.run([str(CHECKS), check, bootstrap], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return [line for line in r.stdout.splitlines() if line.startswith("ok ")]


def test_franz_go_producer_every_codec_and_headers(broker):
    done = run_check("produce", broker.bootstrap)
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        assert f"ok produce {codec}: 200 records acknowledged" in done
    assert "ok consume: 1000 records back, offsets dense, headers intact" in done


def test_franz_go_consumer_group(broker_factory):
    b = broker_factory(extra_args=["--group-initial-rebalance-delay-ms", "0"])
    done = run_check("groups", b.bootstrap)
    assert done == [
        "ok groups: three members, two partitions each, 600 records read",
        "ok groups: rebalanced on leave, the two members hold all six partitions",
        "ok groups: committed offsets at the end of every partition",
    ]


def test_franz_go_admin(broker):
    done = run_check("admin", broker.bootstrap)
    assert done == [
        "ok admin: broker metadata",
        "ok admin: create topics, and Kafka's errors",
        "ok admin: describe and alter topic configs",
        "ok admin: create partitions",
        "ok admin: list offsets and delete records",
        "ok admin: commit, fetch, list, lag and delete a group's offsets",
        "ok admin: delete topics",
    ]


@pytest.mark.parametrize("check", ["produce", "groups", "admin"])
def test_franz_go_checks_hold_against_apache_kafka(kafka_ref, check):
    assert run_check(check, kafka_ref)
