"""Kafka's own command-line tools against the real broker, run as the
Java classes Kafka's scripts start (kafka-tools, pinned in
tests/java/pom.xml, from Maven Central): kafka-topics, the console
producer and consumer, kafka-get-offsets, kafka-consumer-groups (list,
describe with lag, reset-offsets, delete-offsets, delete),
kafka-delete-records, kafka-log-dirs and kafka-configs. Each check reads what the tool
printed, as an operator would."""
import json
import re
import subprocess

from test_java_client import CLASSPATH, JAVA

TOOLS = {
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "kafka-log-dirs": "org.apache.kafka.tools.LogDirsCommand",
    # In Kafka's core jar (kafka_2.13), not kafka-tools.
    "kafka-configs": "kafka.admin.ConfigCommand",
}


def tool(name, *args, stdin=None):
    assert (JAVA / "target" / "dependency").is_dir(), "build tests/java first (scripts/test does)"
    r = subprocess.run(["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", CLASSPATH, TOOLS[name], *args],
                       input=stdin, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{name} {' '.join(args)}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def group_rows(bootstrap, group):
    """kafka-consumer-groups --describe: {partition: (current, log_end, lag)}."""
    out = tool("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--describe", "--group", group)
    rows = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 6 and f[0] == group and f[2].isdigit():
            num = lambda s: None if s == "-" else int(s)  # noqa: E731
            rows[int(f[2])] = (num(f[3]), num(f[4]), num(f[5]))
    return rows


def test_kafka_topics_console_clients_and_offsets(broker):
    b = broker.bootstrap
    tool("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "tools", "--partitions", "3",
         "--replication-factor", "1", "--config", "retention.ms=3600000")
    assert "tools" in tool("kafka-topics", "--bootstrap-server", b, "--list").split()
    described = tool("kafka-topics", "--bootstrap-server", b, "--describe", "--topic", "tools")
    assert re.search(r"PartitionCount:\s*3", described) and "retention.ms=3600000" in described
    assert len(re.findall(r"Partition: \d+\s+Leader: 0\s+Replicas: 0\s+Isr: 0", described)) == 3

    lines = [f"line-{i}" for i in range(30)]
    tool("kafka-console-producer", "--bootstrap-server", b, "--topic", "tools", stdin="\n".join(lines) + "\n")
    offsets = tool("kafka-get-offsets", "--bootstrap-server", b, "--topic", "tools")
    ends = {int(p): int(o) for t, p, o in (line.split(":") for line in offsets.split())}
    assert set(ends) == {0, 1, 2} and sum(ends.values()) == 30

    read = tool("kafka-console-consumer", "--bootstrap-server", b, "--topic", "tools", "--from-beginning",
                "--max-messages", "30", "--group", "tools-group", "--timeout-ms", "30000")
    assert sorted(read.split()) == sorted(lines)


def test_kafka_consumer_groups_lists_describes_resets_and_deletes(broker):
    b = broker.bootstrap
    tool("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "cg", "--partitions", "2")
    tool("kafka-console-producer", "--bootstrap-server", b, "--topic", "cg",
         stdin="".join(f"v{i}\n" for i in range(20)))
    tool("kafka-console-consumer", "--bootstrap-server", b, "--topic", "cg", "--from-beginning",
         "--max-messages", "20", "--group", "cg-group", "--timeout-ms", "30000")
    assert "cg-group" in tool("kafka-consumer-groups", "--bootstrap-server", b, "--list").split()
    rows = group_rows(b, "cg-group")
    assert set(rows) == {0, 1}
    assert all(cur == end and lag == 0 for cur, end, lag in rows.values()), rows
    assert sum(end for _, end, _ in rows.values()) == 20

    # Back to the start: the lag is everything.
    out = tool("kafka-consumer-groups", "--bootstrap-server", b, "--reset-offsets", "--group", "cg-group",
               "--topic", "cg", "--to-earliest", "--execute")
    assert "cg-group" in out
    rows = group_rows(b, "cg-group")
    assert all(cur == 0 and lag == end for cur, end, lag in rows.values()), rows

    tool("kafka-consumer-groups", "--bootstrap-server", b, "--delete-offsets", "--group", "cg-group",
         "--topic", "cg:0")
    rows = group_rows(b, "cg-group")
    # An empty group is described by its committed offsets: partition 0 has none now.
    assert set(rows) == {1} and rows[1][0] == 0, rows

    out = tool("kafka-consumer-groups", "--bootstrap-server", b, "--delete", "--group", "cg-group")
    assert "successful" in out.lower(), out
    assert "cg-group" not in tool("kafka-consumer-groups", "--bootstrap-server", b, "--list").split()


def test_kafka_delete_records_and_log_dirs(broker, tmp_path):
    b = broker.bootstrap
    tool("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "dr", "--partitions", "1")
    tool("kafka-console-producer", "--bootstrap-server", b, "--topic", "dr",
         stdin="".join(f"r{i}\n" for i in range(10)))
    spec = tmp_path / "offsets.json"
    spec.write_text(json.dumps({"version": 1, "partitions": [{"topic": "dr", "partition": 0, "offset": 4}]}))
    out = tool("kafka-delete-records", "--bootstrap-server", b, "--offset-json-file", str(spec))
    assert re.search(r"partition: dr-0\s+low_watermark: 4", out), out
    earliest = tool("kafka-get-offsets", "--bootstrap-server", b, "--topic", "dr", "--time", "-2")
    assert earliest.split() == ["dr:0:4"]

    out = tool("kafka-log-dirs", "--bootstrap-server", b, "--describe", "--topic-list", "dr")
    report = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    (node,) = report["brokers"]
    parts = [p for d in node["logDirs"] for p in d["partitions"]]
    assert [p["partition"] for p in parts] == ["dr-0"] and parts[0]["size"] > 0


def test_kafka_configs_describes_and_alters_topic_and_broker_configs(broker):
    b = broker.bootstrap
    tool("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "cfg", "--partitions", "1",
         "--config", "retention.ms=3600000")
    described = tool("kafka-configs", "--bootstrap-server", b, "--describe", "--entity-type", "topics",
                     "--entity-name", "cfg")
    assert "retention.ms=3600000" in described, described

    tool("kafka-configs", "--bootstrap-server", b, "--alter", "--entity-type", "topics", "--entity-name", "cfg",
         "--add-config", "retention.ms=1000,cleanup.policy=[compact,delete]")
    tool("kafka-configs", "--bootstrap-server", b, "--alter", "--entity-type", "topics", "--entity-name", "cfg",
         "--delete-config", "retention.ms")
    described = tool("kafka-configs", "--bootstrap-server", b, "--describe", "--entity-type", "topics",
                     "--entity-name", "cfg", "--all")
    assert "cleanup.policy=compact,delete sensitive=false synonyms={}" in described or \
        re.search(r"cleanup\.policy=compact,delete\b", described), described
    # Deleted: back to the default, a week.
    assert re.search(r"retention\.ms=604800000\b", described), described

    # A bad value is refused with Kafka's error, the topic unchanged.
    r = subprocess.run(["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", CLASSPATH,
                        TOOLS["kafka-configs"], "--bootstrap-server", b, "--alter", "--entity-type", "topics",
                        "--entity-name", "cfg", "--add-config", "retention.ms=soon"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "InvalidConfigurationException" in r.stdout + r.stderr, r.stdout + r.stderr

    broker_cfg = tool("kafka-configs", "--bootstrap-server", b, "--describe", "--entity-type", "brokers",
                      "--entity-name", "0", "--all")
    assert re.search(r"message\.max\.bytes=\d+", broker_cfg), broker_cfg
