"""DescribeLogDirs (API 35), as kafka-log-dirs.sh and UIs call it through
kafka-python's admin client: each partition's bytes on this broker, the
data dir and its file system's size; sizes follow DeleteRecords."""
from kafka import KafkaAdminClient
from kafka.structs import TopicPartition as KTP

from test_delete_records import delete_records, produce
from test_roundtrip import create_topic


def sizes(bootstrap):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        resp = admin.describe_log_dirs()
    finally:
        admin.close()
    # kafka-python 3 answers per broker.
    assert [b["broker"] for b in resp] == [0], resp
    dirs = resp[0]["log_dirs"]
    assert len(dirs) == 1 and dirs[0]["error_code"] == 0
    assert 0 < dirs[0]["usable_bytes"] <= dirs[0]["total_bytes"]
    out = {}
    for t in dirs[0]["topics"]:
        for p in t["partitions"]:
            out[(t["name"], p["partition_index"])] = p["partition_size"]
    return dirs[0]["log_dir"], out


def test_log_dirs_report_partition_sizes(broker):
    create_topic(broker.bootstrap, "ld", 2)
    produce(broker.bootstrap, "ld", 0, 100)
    log_dir, got = sizes(broker.bootstrap)
    assert log_dir.endswith(broker.data_dir.name)
    # 100 records of 3-4 bytes, in batches of 61 bytes of header and more.
    assert 100 * 4 < got[("ld", 0)] < 100 * 200, got
    assert got[("ld", 1)] == 0
    before = got[("ld", 0)]
    assert delete_records(broker.bootstrap, "ld", 0, -1) == 100
    _, got = sizes(broker.bootstrap)
    assert got[("ld", 0)] < before, "trimmed batches no longer count"
