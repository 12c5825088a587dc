"""Bad input on raw sockets, checked against the Kafka protocol spec: a
broken frame closes that connection only; a bad batch gets its Kafka error
code; the broker keeps serving everyone else and keeps nothing it refused."""
import os
import struct

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

import kafka_raw as raw
from test_roundtrip import consume_all, create_topic

UNSUPPORTED_VERSION = 35
CORRUPT_MESSAGE = 2
MESSAGE_TOO_LARGE = 10
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_REQUIRED_ACKS = 21


def still_serving(b):
    err, apis = raw.api_versions(b.port)
    assert err == 0 and 0 in apis
    md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5)
    assert md.brokers
    assert b.alive()


def send_and_expect_close(b, data):
    c = raw.Conn(b.port)
    c.send(data)
    assert c.recv_frame() is None, "the broker must close a connection that sent a broken frame"
    c.close()


@pytest.mark.parametrize("case", ["garbage", "length_2gb", "length_negative", "shorter_than_header",
                                  "unknown_api_key", "unsupported_metadata_version", "undecodable_body"])
def test_broken_frames_close_only_that_connection(broker, case):
    bystander = raw.Conn(broker.port)  # an innocent client, connected throughout
    data = {
        "garbage": struct.pack(">i", 32) + os.urandom(32),
        "length_2gb": struct.pack(">I", 0x7FFFFFFF) + b"\x00" * 64,
        "length_negative": struct.pack(">i", -5) + b"\x00" * 16,
        "shorter_than_header": struct.pack(">i", 3) + b"\x00\x03\x00",
        "unknown_api_key": raw.frame(1999, 0, 1, b""),
        "unsupported_metadata_version": raw.frame(3, 99, 1, b""),
        # Metadata v1 whose topic array claims 1000 entries that are not there.
        "undecodable_body": raw.frame(3, 1, 1, struct.pack(">i", 1000)),
    }[case]
    if case == "garbage":
        data = struct.pack(">i", 32) + struct.pack(">h", 4242) + os.urandom(30)
    send_and_expect_close(broker, data)
    bystander.send(raw.frame(18, 0, 99, b""))
    assert bystander.recv_frame()[:4] == struct.pack(">i", 99)
    still_serving(broker)


def test_truncated_frame_then_hangup(broker):
    c = raw.Conn(broker.port)
    c.send(struct.pack(">i", 100) + b"\x00\x12\x00\x00" + b"\x00" * 6)  # 10 of 100 bytes
    c.close()
    still_serving(broker)


def test_api_versions_unsupported_version_gets_error_and_list(broker):
    err, apis = raw.api_versions(broker.port, version=99)
    assert err == UNSUPPORTED_VERSION
    assert apis[18] == (0, 4), "the v0-shaped error reply still lists what we serve"
    assert 0 in apis and 1 in apis


def test_api_versions_lists_exactly_what_is_served(broker):
    err, apis = raw.api_versions(broker.port)
    assert err == 0
    # Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch,
    # FindCoordinator, JoinGroup, Heartbeat, LeaveGroup, SyncGroup,
    # ApiVersions, CreateTopics, DeleteTopics, DeleteRecords, InitProducerId,
    # DescribeConfigs, CreatePartitions, DescribeLogDirs, IncrementalAlterConfigs,
    # DescribeGroups, ListGroups, DeleteGroups, OffsetDelete, DescribeCluster,
    # SaslHandshake, SaslAuthenticate, Describe/AlterUserScramCredentials,
    # Describe/Create/DeleteAcls.
    assert set(apis) == {0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18, 19, 20, 21, 22, 32, 35, 37, 44,
                         15, 16, 42, 47, 60, 17, 36, 50, 51, 29, 30, 31}
    assert apis[29] == apis[30] == apis[31] == (1, 3)
    assert apis[60] == (0, 2)
    assert apis[17] == (0, 1) and apis[36] == (0, 2) and apis[50] == (0, 0) and apis[51] == (0, 0)
    assert apis[21] == (0, 2)
    assert apis[0] == (3, 11) and apis[1] == (4, 12)


def produce_raw(b, topic, partition, batch, acks=-1):
    c = raw.Conn(b.port)
    c.send(raw.frame(0, 3, 5, raw.produce_v3(topic, partition, batch, acks=acks)))
    resp = c.recv_frame()
    c.close()
    assert resp is not None, "a bad batch must get an error code, not a closed connection"
    return raw.parse_produce_v3_response(resp)


def test_bad_batches_get_error_codes_and_nothing_is_stored(broker):
    create_topic(broker.bootstrap, "small", 1, {"max.message.bytes": "2048"})
    good = raw.record_batch([b"hello"])
    corrupt = bytearray(good)
    corrupt[-1] ^= 0xFF
    assert produce_raw(broker, "small", 0, bytes(corrupt)) == [("small", 0, CORRUPT_MESSAGE, -1)]
    truncated = good[:-3]
    assert produce_raw(broker, "small", 0, truncated)[0][2] == CORRUPT_MESSAGE
    big = raw.record_batch([b"x" * 4000])
    assert produce_raw(broker, "small", 0, big)[0][2] == MESSAGE_TOO_LARGE
    assert produce_raw(broker, "nope", 0, good)[0][2] == UNKNOWN_TOPIC_OR_PARTITION
    assert produce_raw(broker, "small", 7, good)[0][2] == UNKNOWN_TOPIC_OR_PARTITION
    assert produce_raw(broker, "small", 0, good, acks=5)[0][2] == INVALID_REQUIRED_ACKS
    # Only the good batch lands, at offset 0: nothing refused was kept.
    assert produce_raw(broker, "small", 0, good) == [("small", 0, 0, 0)]
    got = consume_all(broker.bootstrap, "small", 1, 1)
    assert [(m.offset(), m.value()) for m in got] == [(0, b"hello")]
    still_serving(broker)


def test_client_sees_message_too_large(broker):
    create_topic(broker.bootstrap, "capped", 1, {"max.message.bytes": "2048"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 1_000_000,
                  "compression.type": "none", "message.send.max.retries": 0})
    errs = []
    p.produce("capped", value=b"y" * 10_000, on_delivery=lambda e, m: errs.append(e))
    p.flush(10)  # alone in its batch: the limit is per batch
    p.produce("capped", value=b"small", on_delivery=lambda e, m: errs.append(e))
    p.flush(10)
    codes = sorted(str(e.name()) if e else "OK" for e in errs)
    assert codes == ["MSG_SIZE_TOO_LARGE", "OK"]


def test_connections_beyond_the_per_shard_limit_are_refused(broker_factory, tmp_path):
    cfg = tmp_path / "limits.toml"
    cfg.write_text("[limits]\nmax_connections_per_shard = 3\n[wal]\nsegment_bytes = \"8MiB\"\n")
    b = broker_factory(shards=1, extra_args=["--config", str(cfg)])
    import time
    from test_metrics import scrape, total
    deadline = time.time() + 5
    while total(scrape(b), "corestream_connections") > 0:  # the start-up probe's connection
        assert time.time() < deadline
        time.sleep(0.02)
    kept = [raw.Conn(b.port) for _ in range(3)]
    for c in kept:
        c.send(raw.frame(18, 0, 1, b""))
        assert c.recv_frame() is not None
    extra = raw.Conn(b.port)
    assert extra.closed_by_peer(), "a fourth connection on a 3-connection shard is closed"
    assert "max_connections_per_shard" in b.log_text()
    kept[0].close()
    deadline = time.time() + 5
    while True:  # the slot frees once the broker sees the close
        c = raw.Conn(b.port)
        c.send(raw.frame(18, 0, 2, b""))
        if c.recv_frame() is not None:
            break
        assert time.time() < deadline, "a freed slot is usable again"
        time.sleep(0.05)


INVALID_GROUP_ID = 24
INVALID_TOPIC = 17
INVALID_COMMIT_OFFSET_SIZE = 28


def offset_commit_v8(group, topic, partitions):
    body = raw.compact_string(group) + struct.pack(">i", -1) + raw.compact_string("") + b"\x00"  # null instance id
    body += raw.uvarint(2) + raw.compact_string(topic) + raw.uvarint(len(partitions) + 1)
    for p in partitions:
        body += struct.pack(">iqi", p, 5, -1) + raw.compact_string("") + b"\x00"
    return body + b"\x00" + b"\x00"


def offset_commit_v8_errors(payload):
    """Every partition's error code in an OffsetCommit v8 response."""
    at = 4 + 1 + 4  # correlation id, header tags, throttle
    codes = []
    n_topics, at = raw.read_uvarint(payload, at)
    for _ in range(n_topics - 1):
        name_len, at = raw.read_uvarint(payload, at)
        at += name_len - 1
        n_parts, at = raw.read_uvarint(payload, at)
        for _ in range(n_parts - 1):
            _, err = struct.unpack_from(">ih", payload, at)
            codes.append(err)
            at += 6 + 1
        at += 1
    return codes


def test_a_40000_byte_group_id_gets_invalid_group_id(broker):
    """Found by trying inputs as an attacker would: this used to panic the
    shard that handled it (the group id did not fit the offsets record)."""
    create_topic(broker.bootstrap, "t", 1)
    c = raw.Conn(broker.port)
    c.send(raw.flexible_frame(8, 8, 5, offset_commit_v8("g" * 40_000, "t", [0])))
    payload = c.recv_frame()
    assert payload is not None and struct.unpack_from(">i", payload)[0] == 5
    assert offset_commit_v8_errors(payload) == [INVALID_GROUP_ID]
    c.close()
    still_serving(broker)


def test_an_offset_commit_larger_than_a_message_is_refused(broker):
    """Every committed partition is a record repeating the group id: 40,000
    partitions of a 30,000-byte group would be a 1.2 GB batch."""
    create_topic(broker.bootstrap, "t", 1)
    c = raw.Conn(broker.port, timeout=30)
    c.send(raw.flexible_frame(8, 8, 6, offset_commit_v8("g" * 30_000, "t", [0] * 40_000)))
    payload = c.recv_frame()
    assert payload is not None
    codes = offset_commit_v8_errors(payload)
    assert len(codes) == 40_000 and set(codes) == {INVALID_COMMIT_OFFSET_SIZE}
    c.close()
    still_serving(broker)


def test_offset_fetch_of_many_partitions_of_a_long_name_costs_no_more_than_its_answer(broker):
    """Found by the wire fuzzer: OffsetFetch copied the topic name once per
    requested partition, so 100,000 partitions of a long name grew the
    broker by GiBs a second until the kernel killed it."""
    rss_before, _ = broker.proc_status()
    name = "n" * 30_000
    n = 100_000
    body = raw.string("fuzz-group") + struct.pack(">i", 1) + raw.string(name) + struct.pack(">i", n)
    body += struct.pack(f">{n}i", *range(n))
    c = raw.Conn(broker.port, timeout=30)
    c.send(raw.frame(9, 1, 9, body))
    payload = c.recv_frame()
    assert payload is not None, "the broker must answer"
    # correlation id, topics: [name, partitions: [index, offset, metadata, error]]
    (corr, topics) = struct.unpack_from(">ii", payload)
    (name_len,) = struct.unpack_from(">h", payload, 8)
    (parts,) = struct.unpack_from(">i", payload, 10 + name_len)
    assert (corr, topics, name_len, parts) == (9, 1, 30_000, n)
    c.close()
    rss_after, _ = broker.proc_status()
    assert rss_after - rss_before < 256 << 20, f"RSS grew by {(rss_after - rss_before) >> 20} MiB"
    still_serving(broker)


def test_an_invalid_topic_name_of_32000_bytes_gets_invalid_topic(broker):
    """Found by the wire fuzzer: the error message quoted the name whole,
    which made the response too long to encode (a non-flexible string holds
    32,767 bytes), so the broker closed the connection instead of answering."""
    name = "ü" * 16_000  # 32,000 bytes, not a legal topic name
    body = struct.pack(">i", 1) + raw.string(name) + struct.pack(">ihii", 1, -1, 0, 0)  # 1 partition, rf -1
    body += struct.pack(">ib", 5000, 0)  # timeout, validate_only
    c = raw.Conn(broker.port)
    c.send(raw.frame(19, 2, 11, body))
    payload = c.recv_frame()
    assert payload is not None, "the broker must answer, not close"
    # correlation id, throttle, topics: [name, error code, error message]
    (corr, _throttle, n) = struct.unpack_from(">iii", payload)
    (name_len,) = struct.unpack_from(">h", payload, 12)
    (err,) = struct.unpack_from(">h", payload, 14 + name_len)
    (msg_len,) = struct.unpack_from(">h", payload, 16 + name_len)
    assert (corr, n, name_len, err) == (11, 1, 32_000, INVALID_TOPIC)
    assert 0 < msg_len <= 1024
    c.close()
    still_serving(broker)


COORDINATOR_NOT_AVAILABLE, MEMBER_ID_REQUIRED, GROUP_MAX_SIZE_REACHED = 15, 79, 81


def join_group_v5(group, member_id=""):
    body = raw.string(group) + struct.pack(">ii", 10_000, 10_000) + raw.string(member_id) + raw.string_null()
    body += raw.string("consumer") + struct.pack(">i", 1) + raw.string("range") + struct.pack(">i", 0)
    return raw.frame(11, 5, 1, body)


def join_error(conn, group, member_id=""):
    conn.send(join_group_v5(group, member_id))
    payload = conn.recv_frame()
    assert payload is not None, "JoinGroup answered"
    return struct.unpack_from(">h", payload, 4 + 4)[0]  # correlation id, throttle time


def test_groups_and_members_beyond_their_limits_are_refused(broker_factory, tmp_path):
    """A client cannot grow a coordinator without bound: new groups past
    groups.max_groups_per_shard get COORDINATOR_NOT_AVAILABLE (joins and
    standalone commits alike), new members past max_members_per_group get
    GROUP_MAX_SIZE_REACHED; each refusal is counted."""
    from test_metrics import scrape, total
    cfg = tmp_path / "groups.toml"
    cfg.write_text("[groups]\nmax_groups_per_shard = 3\nmax_members_per_group = 2\n")
    b = broker_factory(shards=1, extra_args=["--config", str(cfg)])
    create_topic(b.bootstrap, "t", 1)
    c = raw.Conn(b.port)
    # Two members may be handed ids (KIP-394), the third may not.
    assert join_error(c, "g") == MEMBER_ID_REQUIRED
    assert join_error(c, "g") == MEMBER_ID_REQUIRED
    assert join_error(c, "g") == GROUP_MAX_SIZE_REACHED
    # Three groups with members; the fourth is refused, the first still joins.
    assert join_error(c, "g2") == MEMBER_ID_REQUIRED
    assert join_error(c, "g3") == MEMBER_ID_REQUIRED
    assert join_error(c, "g4") == COORDINATOR_NOT_AVAILABLE
    # Committed offsets are kept per group too: three groups, not a fourth.
    for i, want in enumerate([0, 0, 0, COORDINATOR_NOT_AVAILABLE]):
        c.send(raw.flexible_frame(8, 8, 1, offset_commit_v8(f"standalone-{i}", "t", [0])))
        assert offset_commit_v8_errors(c.recv_frame()) == [want]
    m = scrape(b)
    assert total(m, "corestream_group_limit_refusals_total", limit="members") == 1
    assert total(m, "corestream_group_limit_refusals_total", limit="groups") == 2
    assert b.log_text().count("refusing a new") == 1, "one warning per shard, not one per request"
    still_serving(b)



def test_a_fetch_asking_to_wait_for_weeks_is_answered_within_seconds(broker):
    """max_wait_ms of 2^31-1 with min_bytes that never arrive (the wire
    fuzzer found one): the fetch parks at most 10 s, then gets what there
    is, as a client that times out after 30 s needs."""
    import time
    create_topic(broker.bootstrap, "waits", 1)
    body = (struct.pack(">iiiib", -1, 2**31 - 1, 2**31 - 1, 1 << 20, 0) + struct.pack(">i", 1)
            + raw.string("waits") + struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 1 << 20))
    c = raw.Conn(broker.port, timeout=30)
    started = time.time()
    c.send(raw.frame(1, 4, 11, body))
    payload = c.recv_frame()
    waited = time.time() - started
    c.close()
    assert payload is not None and struct.unpack_from(">i", payload)[0] == 11
    assert 9 <= waited < 15, f"answered after {waited:.1f} s"
