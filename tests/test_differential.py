"""Differential test: one corpus of requests and scenarios sent to corestream
and to Apache Kafka 4.1.1 (scripts/kafka-ref, from the Maven jars), the
answers compared field by field (corestream-wirediff; the corpus is
wirefuzz/src/diff/corpus.rs): ApiVersions ranges; CreateTopics with bad
configs, names, partition counts and replication factors; Produce to
unknown topics and partitions, with bad acks, oversized, corrupt or
doubled batches; Fetch and ListOffsets at and past the ends, by time inside
a batch; DeleteRecords; DescribeConfigs and IncrementalAlterConfigs;
CreatePartitions; a consumer group's whole life and its errors;
InitProducerId; DescribeCluster; SaslHandshake and SaslAuthenticate on a
PLAINTEXT listener; SCRAM users made, refused (a user twice, iterations,
mechanism, empty name, deleting what is not there), described and deleted
(KIP-554); the ACL APIs answering SECURITY_DISABLED; DescribeLogDirs;
DeleteTopics. Every
difference must be listed, with its reason, in tests/differential/allowlist.txt,
and every line there must still match one (--strict)."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIREDIFF = ROOT / "target" / "release" / "corestream-wirediff"
ALLOWLIST = ROOT / "tests" / "differential" / "allowlist.txt"
ALLOWLIST_ACL = ROOT / "tests" / "differential" / "allowlist-acl.txt"
SUMMARY = re.compile(r"(\d+) steps compared; (\d+) fields differ: (\d+) allowed, (\d+) not allowed")


def wirediff(corestream, kafka, allowlist, tag, strict=True, authorizer=False):
    args = [str(WIREDIFF), "--corestream", corestream, "--kafka", kafka, "--allowlist", str(allowlist),
            "--tag", tag]
    if strict:
        args.append("--strict")
    if authorizer:
        args.append("--authorizer")
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    m = SUMMARY.search(r.stdout)
    assert m, f"no summary (exit {r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r, [int(g) for g in m.groups()]


def corestream_like_kafka(broker_factory):
    # Kafka's reference node is node 1 and starts a group's rebalance at
    # once (group.initial.rebalance.delay.ms=0): the same here.
    return broker_factory(extra_args=["--node-id", "1", "--group-initial-rebalance-delay-ms", "0"])


def test_every_answer_matches_apache_kafka_or_is_allowed(broker_factory, kafka_ref):
    b = corestream_like_kafka(broker_factory)
    r, (steps, differ, allowed, failed) = wirediff(b.bootstrap, kafka_ref, ALLOWLIST, "all")
    not_allowed = [line for line in r.stdout.splitlines() if "NOT ALLOWED" in line or "matched nothing" in line]
    assert r.returncode == 0 and failed == 0, "\n".join(not_allowed[:80])
    assert steps >= 120, r.stdout[-2000:]
    assert allowed == differ
    assert b.alive()


def test_the_comparison_sees_differences(broker_factory, kafka_ref, tmp_path):
    """With nothing allowed the same run fails, on the differences the
    allowlist names: the comparison cannot pass by seeing nothing."""
    b = corestream_like_kafka(broker_factory)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing allowed\n")
    r, (steps, differ, allowed, failed) = wirediff(b.bootstrap, kafka_ref, empty, "none", strict=False)
    assert r.returncode == 1
    assert allowed == 0 and failed == differ and differ > 100
    # Among them: the APIs only Kafka serves, and the generated topic ids.
    assert "api_keys[api_key=24].max_version: corestream (absent) | kafka" in r.stdout
    assert re.search(r"topics\[name=ct-none\]\.topic_id: corestream [0-9a-f-]{36} \| kafka [0-9a-f-]{36}", r.stdout)


def test_authorization_matches_apache_kafka(broker_factory, kafka_ref_authorizer, tmp_path):
    """Both brokers authorizing (Kafka's StandardAuthorizer, corestream's
    [authorizer], a resource without ACLs open to all): CreateAcls with
    Kafka's checks, DescribeAcls by every kind of filter, DeleteAcls; then
    DENY and ALLOW ACLs on this run's topics and groups, and each API's
    authorization error (Metadata, Produce, Fetch, ListOffsets,
    DeleteRecords, DescribeConfigs, IncrementalAlterConfigs,
    CreatePartitions, CreateTopics, DeleteTopics, FindCoordinator,
    JoinGroup, Heartbeat, OffsetCommit, OffsetFetch, DescribeGroups,
    DeleteGroups) and authorized_operations, field by field."""
    cfg = tmp_path / "authorizer.toml"
    cfg.write_text('[wal]\nsegment_bytes = "8MiB"\n'
                   '[authorizer]\nenabled = true\nallow_everyone_if_no_acl_found = true\n')
    b = broker_factory(extra_args=["--config", str(cfg), "--node-id", "1", "--group-initial-rebalance-delay-ms", "0"])
    r, (steps, differ, allowed, failed) = wirediff(b.bootstrap, kafka_ref_authorizer, ALLOWLIST_ACL, "acl",
                                                    authorizer=True)
    not_allowed = [line for line in r.stdout.splitlines() if "NOT ALLOWED" in line or "matched nothing" in line]
    assert r.returncode == 0 and failed == 0, "\n".join(not_allowed[:80])
    assert steps >= 45, r.stdout[-2000:]
    assert b.alive()
