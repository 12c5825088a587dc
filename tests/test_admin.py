"""Topic administration through librdkafka's AdminClient and kafka-python's
admin client: create (with configs and their validation), describe configs
with defaults, add partitions, delete; the partitions-per-shard limit;
ListOffsets earliest/latest/by timestamp."""
import pytest
from confluent_kafka import KafkaException, Producer, TopicPartition, Consumer
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from test_roundtrip import consume_all, create_topic


def admin(b):
    return AdminClient({"bootstrap.servers": b.bootstrap})


def create_errors(b, topics):
    out = {}
    a = admin(b)
    for name, f in a.create_topics(topics, request_timeout=10).items():
        try:
            f.result(timeout=10)
            out[name] = None
        except KafkaException as e:
            out[name] = e.args[0]
    return out


def test_create_validation_errors(broker):
    errs = create_errors(broker, [
        NewTopic("ok-topic", 2, 1),
        NewTopic("bad name!", 1, 1),
        NewTopic("rf3", 1, 3),
        NewTopic("badcfg", 1, 1, config={"max.message.bytes": "nope"}),
        NewTopic("unknowncfg", 1, 1, config={"no.such.config": "1"}),
    ])
    assert errs["ok-topic"] is None
    assert errs["bad name!"].name() == "TOPIC_EXCEPTION"
    assert errs["rf3"].name() == "INVALID_REPLICATION_FACTOR"
    assert errs["badcfg"].name() == "INVALID_CONFIG"
    assert errs["unknowncfg"].name() == "INVALID_CONFIG"
    again = create_errors(broker, [NewTopic("ok-topic", 2, 1)])
    assert again["ok-topic"].name() == "TOPIC_ALREADY_EXISTS"
    md = admin(broker).list_topics(timeout=5)
    assert set(md.topics) == {"ok-topic"}
    assert len(md.topics["ok-topic"].partitions) == 2


def test_describe_configs_shows_defaults_and_overrides(broker):
    create_topic(broker.bootstrap, "cfg", 1, {"max.message.bytes": "5000", "retention.ms": "1000"})
    res = ConfigResource(ConfigResource.Type.TOPIC, "cfg")
    a = admin(broker)
    configs = a.describe_configs([res])[res].result(timeout=10)
    assert configs["max.message.bytes"].value == "5000"
    assert not configs["max.message.bytes"].is_default
    assert configs["retention.ms"].value == "1000"
    assert configs["cleanup.policy"].value == "delete" and configs["cleanup.policy"].is_default
    missing = ConfigResource(ConfigResource.Type.TOPIC, "nope")
    with pytest.raises(KafkaException):
        a.describe_configs([missing])[missing].result(timeout=10)


def test_every_kafka_topic_config_is_taken_with_kafkas_checks(broker):
    """What Kafka Streams (changelog and repartition topics), Connect and
    Schema Registry send at topic creation is accepted and reported, and
    values Kafka refuses are refused here too (INVALID_CONFIG)."""
    streams_changelog = {"cleanup.policy": "compact", "segment.ms": "600000", "min.compaction.lag.ms": "0",
                         "max.compaction.lag.ms": "86400000", "delete.retention.ms": "86400000",
                         "min.cleanable.dirty.ratio": "0.1", "message.timestamp.type": "CreateTime",
                         "segment.bytes": "52428800", "retention.ms": "-1", "segment.index.bytes": "1048576",
                         "index.interval.bytes": "4096", "preallocate": "false", "file.delete.delay.ms": "60000",
                         "flush.messages": "10000", "flush.ms": "1000", "unclean.leader.election.enable": "false",
                         "leader.replication.throttled.replicas": "*", "message.timestamp.after.max.ms": "3600000"}
    errs = create_errors(broker, [
        NewTopic("app-store-changelog", 1, 1, config=streams_changelog),
        NewTopic("app-repartition", 1, 1, config={"cleanup.policy": "delete", "segment.ms": "600000",
                                                     "retention.ms": "-1", "retention.bytes": "-1"}),
        NewTopic("ratio", 1, 1, config={"min.cleanable.dirty.ratio": "1.5"}),
        NewTopic("lags", 1, 1, config={"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"}),
        NewTopic("policy", 1, 1, config={"cleanup.policy": "compact,forever"}),
        NewTopic("tiered", 1, 1, config={"remote.storage.enable": "true"}),
        NewTopic("segms", 1, 1, config={"segment.ms": "0"}),
    ])
    assert errs["app-store-changelog"] is None and errs["app-repartition"] is None
    for bad in ("ratio", "lags", "policy", "tiered", "segms"):
        assert errs[bad] is not None and errs[bad].name() == "INVALID_CONFIG", (bad, errs[bad])
    res = ConfigResource(ConfigResource.Type.TOPIC, "app-store-changelog")
    a = admin(broker)
    configs = a.describe_configs([res])[res].result(timeout=10)
    for k, v in streams_changelog.items():
        assert configs[k].value == v and not configs[k].is_default, k
    assert configs["compression.zstd.level"].value == "3" and configs["compression.zstd.level"].is_default
    # A change that would break a rule of the whole set is refused too.
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry
    change = ConfigResource(ConfigResource.Type.TOPIC, "app-store-changelog", incremental_configs=[
        ConfigEntry("min.compaction.lag.ms", "999999999999", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as e:
        a.incremental_alter_configs([change])[change].result(timeout=10)
    assert e.value.args[0].name() == "INVALID_CONFIG"


def test_add_partitions_and_delete(broker):
    create_topic(broker.bootstrap, "grow", 1)
    a = admin(broker)
    a.create_partitions([NewPartitions("grow", 4)])["grow"].result(timeout=10)
    assert len(a.list_topics(timeout=5).topics["grow"].partitions) == 4
    with pytest.raises(KafkaException) as e:
        a.create_partitions([NewPartitions("grow", 2)])["grow"].result(timeout=10)
    assert e.value.args[0].name() == "INVALID_PARTITIONS"
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for part in range(4):
        p.produce("grow", value=b"p%d" % part, partition=part)
    p.flush(10)
    assert len(consume_all(broker.bootstrap, "grow", 4, 4)) == 4

    a.delete_topics(["grow"])["grow"].result(timeout=10)
    assert "grow" not in a.list_topics(timeout=5).topics
    with pytest.raises(KafkaException) as e:
        a.delete_topics(["grow"])["grow"].result(timeout=10)
    assert e.value.args[0].name() == "UNKNOWN_TOPIC_OR_PART"
    # Re-created, the topic starts empty: the old data is not resurrected.
    create_topic(broker.bootstrap, "grow", 1)
    p.produce("grow", value=b"new", partition=0)
    p.flush(10)
    got = consume_all(broker.bootstrap, "grow", 1, 1)
    assert [(m.offset(), m.value()) for m in got] == [(0, b"new")]


def test_topics_survive_restart(broker):
    create_topic(broker.bootstrap, "kept", 3, {"max.message.bytes": "4096"})
    broker.restart()
    a = admin(broker)
    md = a.list_topics(timeout=5)
    assert len(md.topics["kept"].partitions) == 3
    res = ConfigResource(ConfigResource.Type.TOPIC, "kept")
    assert a.describe_configs([res])[res].result(timeout=10)["max.message.bytes"].value == "4096"


def test_partition_limit_warns_then_refuses_with_the_setting_named(broker_factory):
    b = broker_factory(extra_args=["--max-partitions-per-shard", "5"])
    assert create_errors(b, [NewTopic("eight", 8, 1)])["eight"] is None
    assert "80%" in b.log_text(), "crossing 80% of the limit is logged"
    err = create_errors(b, [NewTopic("three", 3, 1)])["three"]
    assert err.name() == "POLICY_VIOLATION"
    assert "max_partitions_per_shard" in err.str()
    assert create_errors(b, [NewTopic("two", 2, 1)])["two"] is None


def test_list_offsets(broker):
    create_topic(broker.bootstrap, "lo", 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(5):
        p.produce("lo", value=b"x", partition=0, timestamp=1000 * (i + 1))
        p.flush(5)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "lo"})
    low, high = c.get_watermark_offsets(TopicPartition("lo", 0), timeout=5)
    assert (low, high) == (0, 5)
    found = c.offsets_for_times([TopicPartition("lo", 0, 3000)], timeout=5)
    assert found[0].offset == 2
    past = c.offsets_for_times([TopicPartition("lo", 0, 10_000)], timeout=5)
    assert past[0].offset == -1
    c.close()


def test_kafka_python_admin(broker):
    from kafka.admin import KafkaAdminClient, NewTopic as KNewTopic, ConfigResource as KRes, ConfigResourceType

    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    a.create_topics([KNewTopic("kpa", num_partitions=2, replication_factor=1)])
    assert "kpa" in a.list_topics()
    res = a.describe_configs([KRes(ConfigResourceType.TOPIC, "kpa")])
    assert res
    a.delete_topics(["kpa"])
    assert "kpa" not in a.list_topics()
    a.close()
