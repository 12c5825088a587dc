"""Kafka's own Java client (kafka-clients, pinned in tests/java/pom.xml,
from Maven Central) against the real broker: the idempotent producer with
every codec and headers; consumer groups (rebalance on join and leave,
commits, seek, offsetsForTimes); the AdminClient (topics, configs,
partitions, offsets, DeleteRecords, log dirs, the cluster) and the errors
Kafka gives; and the group administration kafka-consumer-groups.sh uses
(ListGroups, DescribeGroups, OffsetFetch, OffsetCommit, OffsetDelete,
DeleteGroups). The checks assert as they go (tests/java/.../ClientChecks.java);
scripts/test builds them with Maven."""
import subprocess
from pathlib import Path

import pytest

JAVA = Path(__file__).resolve().parent / "java"
CLASSPATH = f"{JAVA / 'target' / 'classes'}:{JAVA / 'target' / 'dependency' / '*'}"


def run_check(check, bootstrap, *more):
    if not (JAVA / "target" / "classes" / "dev" / "corestream" / "ClientChecks.class").exists():
        pytest.fail("the Java checks are not built: mvn -q -B -f tests/java/pom.xml package (scripts/test does)")
    r = subprocess.run(["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", CLASSPATH,
                        "dev.corestream.ClientChecks", check, bootstrap, *more],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return [line for line in r.stdout.splitlines() if line.startswith("ok ")]


def test_java_producer_every_codec_and_headers(broker):
    done = run_check("produce", broker.bootstrap)
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        assert f"ok produce {codec}: 200 records acknowledged" in done
    assert "ok consume: 1000 records back, values and headers intact" in done


def test_java_consumer_groups(broker):
    done = run_check("groups", broker.bootstrap)
    assert "ok groups: rebalanced on join: 3 + 3" in done
    assert "ok groups: rebalanced on leave" in done
    assert "ok groups: committed offsets at the end of every partition" in done
    assert "ok groups: offsetsForTimes at record granularity" in done


def test_java_admin_client(broker):
    done = run_check("admin", broker.bootstrap)
    assert "ok admin: createTopics answers with the topic's configs" in done
    assert len(done) == 8, done
    assert done[-1] == "ok admin: deleteTopics"


def test_java_consumer_group_administration(broker):
    done = run_check("group-admin", broker.bootstrap)
    assert done == [
        "ok group-admin: listConsumerGroups, describeConsumerGroups of a stable group",
        "ok group-admin: listConsumerGroupOffsets; deletes refused while it has members",
        "ok group-admin: alterConsumerGroupOffsets, deleteConsumerGroupOffsets of an empty group",
        "ok group-admin: deleteConsumerGroups",
        "ok group-admin: a new member of the deleted group starts over",
    ]


def test_java_static_membership(broker):
    done = run_check("static", broker.bootstrap)
    assert done[1:] == [
        "ok static: restarted within its session, old partitions back, no rebalance",
        "ok static: describeConsumerGroups shows the instance ids",
        "ok static: a second process with the same instance id fences the first",
    ], done


@pytest.mark.parametrize("check", ["produce", "groups", "static", "admin", "group-admin"])
def test_java_checks_hold_against_apache_kafka(kafka_ref, check):
    """The same checks against Apache Kafka 4.1.1 (scripts/kafka-ref): they
    test Kafka's semantics, not corestream's reading of them."""
    done = run_check(check, kafka_ref)
    assert done, check
