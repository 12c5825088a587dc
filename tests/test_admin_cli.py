"""The admin CLI against the real broker: create / list / describe /
alter-config / add-partitions / delete-records / delete round trip with JSON output parsed
here, errors as a non-zero exit naming the Kafka error; cluster status."""
import json
import subprocess

from confluent_kafka import Producer

from conftest import BIN


def cli(b, *args, ok=True):
    r = subprocess.run([str(BIN), *args, "--bootstrap", b.bootstrap, "--output", "json"],
                       capture_output=True, text=True, timeout=30)
    if ok:
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)
    assert r.returncode != 0
    return r.stderr


def test_topic_roundtrip(broker):
    assert cli(broker, "topic", "create", "orders", "-p", "3", "-c", "retention.ms=60000")["created"] == "orders"
    assert cli(broker, "topic", "list") == [{"name": "orders", "id": cli(broker, "topic", "list")[0]["id"], "partitions": 3}]
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(5):
        p.produce("orders", value=b"x", partition=1)
    p.flush(10)
    d = cli(broker, "topic", "describe", "orders")
    assert [x["partition"] for x in d["partitions"]] == [0, 1, 2]
    assert [x["high_watermark"] for x in d["partitions"]] == [0, 5, 0]
    # Sizes from DescribeLogDirs: five records (in one to five batches of a
    # 61-byte header and a few bytes each) in partition 1 only.
    sizes = [x["size_bytes"] for x in d["partitions"]]
    assert sizes[0] == sizes[2] == 0 and 61 + 5 * 7 <= sizes[1] <= 5 * 100, sizes
    assert all(x["leader"] == 0 and x["replicas"] == [0] for x in d["partitions"])
    configs = {c["name"]: c for c in d["configs"]}
    assert configs["retention.ms"]["value"] == "60000" and not configs["retention.ms"]["default"]
    assert configs["max.message.bytes"]["default"]

    cli(broker, "topic", "alter-config", "orders", "--set", "max.message.bytes=2048", "--delete", "retention.ms")
    configs = {c["name"]: c for c in cli(broker, "topic", "describe", "orders")["configs"]}
    assert configs["max.message.bytes"]["value"] == "2048" and not configs["max.message.bytes"]["default"]
    assert configs["retention.ms"]["default"]
    # The new limit is enforced at once.
    errs = []
    p.produce("orders", value=b"y" * 5000, partition=0, on_delivery=lambda e, m: errs.append(e))
    p.flush(10)
    assert errs[0] is not None and errs[0].name() == "MSG_SIZE_TOO_LARGE"

    # delete-records moves the log start, which describe shows.
    assert cli(broker, "topic", "delete-records", "orders", "--before", "3", "-p", "1")["low_watermarks"] == {"1": 3}
    assert cli(broker, "topic", "delete-records", "orders", "--before", "-1")["low_watermarks"] == \
        {"0": 0, "1": 5, "2": 0}
    d = cli(broker, "topic", "describe", "orders")
    assert [x["log_start_offset"] for x in d["partitions"]] == [0, 5, 0]
    assert "OffsetOutOfRange" in cli(broker, "topic", "delete-records", "orders", "--before", "9", "-p", "1", ok=False)

    assert cli(broker, "topic", "add-partitions", "orders", "--count", "5")["partitions"] == 5
    assert len(cli(broker, "topic", "describe", "orders")["partitions"]) == 5
    assert cli(broker, "topic", "delete", "orders")["deleted"] == "orders"
    assert cli(broker, "topic", "list") == []


def test_errors_exit_non_zero_with_the_kafka_error(broker):
    cli(broker, "topic", "create", "dup")
    assert "TopicAlreadyExists" in cli(broker, "topic", "create", "dup", ok=False)
    assert "UnknownTopicOrPartition" in cli(broker, "topic", "describe", "missing", ok=False)
    assert "InvalidConfig" in cli(broker, "topic", "alter-config", "dup", "--set", "retention.ms=soon", ok=False)
    assert "InvalidPartitions" in cli(broker, "topic", "add-partitions", "dup", "--count", "1", ok=False)


def test_configs_altered_survive_restart(broker):
    cli(broker, "topic", "create", "keep")
    cli(broker, "topic", "alter-config", "keep", "--set", "cleanup.policy=compact")
    broker.restart()
    configs = {c["name"]: c for c in cli(broker, "topic", "describe", "keep")["configs"]}
    assert configs["cleanup.policy"]["value"] == "compact"


def test_cluster_status(broker):
    cli(broker, "topic", "create", "a", "-p", "2")
    s = cli(broker, "cluster", "status")
    assert s["brokers"] == [{"id": 0, "host": "127.0.0.1", "port": broker.port, "leads": 2}]
    assert s["controller"] == 0 and s["topics"] == 1 and s["partitions"] == 2
    assert s["leaderless"] == 0 and s["under_replicated"] == 0
    assert s["cluster_id"]
    text = subprocess.run([str(BIN), "cluster", "status", "--bootstrap", broker.bootstrap],
                          capture_output=True, text=True, timeout=30).stdout
    assert "BROKER" in text and "127.0.0.1" in text
