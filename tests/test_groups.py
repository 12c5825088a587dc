"""Consumer group offsets: FindCoordinator, OffsetCommit and OffsetFetch
with librdkafka and kafka-python, kept across a restart (they are records
in __consumer_offsets), and the protocol's error codes for bad commits,
checked on hand-built frames against the Kafka protocol guide."""
import struct

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer, TopicPartition as KTP
from kafka.structs import OffsetAndMetadata

import kafka_raw as raw
from test_roundtrip import create_topic

COORDINATOR_NOT_AVAILABLE, INVALID_GROUP_ID, OFFSET_METADATA_TOO_LARGE, UNKNOWN_TOPIC = 15, 24, 12, 3


def committed(bootstrap, group, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    got = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    c.close()
    return {t.partition: t.offset for t in got}


def test_commits_survive_a_restart_and_a_consumer_resumes_there(broker):
    create_topic(broker.bootstrap, "orders", 2)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        p.produce("orders", value=b"m%d" % i, partition=0)
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "billing", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("orders", 0, 4), TopicPartition("orders", 1, 0)], asynchronous=False)
    c.close()
    # kafka-python, an independent implementation, reads and writes the same group.
    k = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="billing", enable_auto_commit=False)
    assert k.committed(KTP("orders", 0)) == 4
    k.commit({KTP("orders", 1): OffsetAndMetadata(0, "kept by kafka-python")})
    k.close()
    assert committed(broker.bootstrap, "billing", "orders", [0, 1]) == {0: 4, 1: 0}
    assert committed(broker.bootstrap, "other-group", "orders", [0, 1]) == {0: -1001, 1: -1001}

    broker.restart()
    assert committed(broker.bootstrap, "billing", "orders", [0, 1]) == {0: 4, 1: 0}
    # A consumer of the group that assigns without an offset starts at the commit.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "billing", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("orders", 0)])
    first = None
    for _ in range(40):
        m = c.poll(0.5)
        if m is not None and not m.error():
            first = m
            break
    c.close()
    assert first is not None and first.offset() == 4 and first.value() == b"m4"


def test_many_groups_spread_over_shards_and_keep_their_own_offsets(broker):
    create_topic(broker.bootstrap, "shared", 1)
    groups = [f"g{i}" for i in range(12)]
    for i, g in enumerate(groups):
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": g, "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition("shared", 0, 100 + i)], asynchronous=False)
        c.close()
    broker.restart()
    for i, g in enumerate(groups):
        assert committed(broker.bootstrap, g, "shared", [0]) == {0: 100 + i}


def find_coordinator_v1(port, key, key_type):
    c = raw.Conn(port)
    c.send(raw.frame(10, 1, 3, raw.string(key) + struct.pack(">b", key_type)))
    payload = c.recv_frame()
    c.close()
    at = 4 + 4  # correlation id, throttle_time_ms
    (err,) = struct.unpack_from(">h", payload, at)
    at += 2
    (ln,) = struct.unpack_from(">h", payload, at)
    at += 2 + max(ln, 0)
    (node,) = struct.unpack_from(">i", payload, at)
    at += 4
    (hl,) = struct.unpack_from(">h", payload, at)
    at += 2 + hl
    (port_,) = struct.unpack_from(">i", payload, at)
    return err, node, port_


def offset_commit_v2(port, group, topic, partition, offset, metadata):
    body = raw.string(group) + struct.pack(">i", -1) + raw.string("") + struct.pack(">q", -1)
    body += struct.pack(">i", 1) + raw.string(topic) + struct.pack(">i", 1)
    body += struct.pack(">iq", partition, offset) + raw.string(metadata)
    c = raw.Conn(port)
    c.send(raw.frame(8, 2, 5, body))
    payload = c.recv_frame()
    c.close()
    at = 4 + 4  # correlation id, topic count
    (ln,) = struct.unpack_from(">h", payload, at)
    at += 2 + ln + 4
    part, err = struct.unpack_from(">ih", payload, at)
    assert part == partition
    return err


def test_bad_group_requests_get_the_protocols_error_codes(broker):
    create_topic(broker.bootstrap, "t", 1)
    assert find_coordinator_v1(broker.port, "g", 0) == (0, 0, broker.port)
    err, node, _ = find_coordinator_v1(broker.port, "txn-1", 1)
    assert (err, node) == (COORDINATOR_NOT_AVAILABLE, -1), "transactions are not served"
    assert offset_commit_v2(broker.port, "g", "t", 0, 5, "ok") == 0
    assert offset_commit_v2(broker.port, "", "t", 0, 5, "") == INVALID_GROUP_ID
    assert offset_commit_v2(broker.port, "g", "no-such-topic", 0, 5, "") == UNKNOWN_TOPIC
    assert offset_commit_v2(broker.port, "g", "t", 9, 5, "") == UNKNOWN_TOPIC
    assert offset_commit_v2(broker.port, "g", "t", 0, 6, "x" * 5000) == OFFSET_METADATA_TOO_LARGE
    # The refused commits changed nothing.
    assert committed(broker.bootstrap, "g", "t", [0]) == {0: 5}
    assert broker.alive()


# ---- membership: real clients -------------------------------------------------

def drain(consumers, want, timeout=30):
    """Polls every consumer until `want` distinct records arrived in all
    (a rebalance may deliver some twice); returns {consumer index:
    [(partition, offset)]}."""
    import time
    got = {i: [] for i in range(len(consumers))}
    deadline = time.time() + timeout
    while time.time() < deadline and len(set().union(*got.values())) < want:
        for i, c in enumerate(consumers):
            m = c.poll(0.05)
            if m is not None and not m.error():
                got[i].append((m.partition(), m.offset()))
    return got


def test_subscribers_share_partitions_and_take_over_when_one_leaves(broker):
    import time
    create_topic(broker.bootstrap, "jobs", 4)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(400):
        p.produce("jobs", value=b"%d" % i, partition=i % 4)
    assert p.flush(10) == 0
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": "workers", "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    a, b = Consumer(dict(conf)), Consumer(dict(conf))
    a.subscribe(["jobs"])
    b.subscribe(["jobs"])
    got = drain([a, b], 400)
    seen = set(got[0]) | set(got[1])
    assert seen == {(part, off) for part in range(4) for off in range(100)}, "every record, at least once"
    # Once the group is stable, the two own disjoint halves of the topic.
    deadline = time.time() + 15
    while time.time() < deadline:
        owned = [{tp.partition for tp in c.assignment()} for c in (a, b)]
        if owned[0] and owned[1] and owned[0] | owned[1] == {0, 1, 2, 3}:
            break
        drain([a, b], 1, timeout=0.2)
    assert owned[0] and owned[1] and not owned[0] & owned[1] and owned[0] | owned[1] == {0, 1, 2, 3}, owned
    a.commit(asynchronous=False)
    b.commit(asynchronous=False)
    b.close()  # LeaveGroup: a rebalance hands everything to `a`
    deadline = time.time() + 15
    while time.time() < deadline and len(a.assignment()) < 4:
        a.poll(0.1)
    assert {tp.partition for tp in a.assignment()} == {0, 1, 2, 3}
    offsets = a.committed([TopicPartition("jobs", i) for i in range(4)], timeout=10)
    a.close()
    assert all(0 < tp.offset <= 100 for tp in offsets), offsets


def test_kafka_python_and_librdkafka_in_one_group(broker):
    """Two client implementations agree on the rebalance protocol: each
    gets part of the topic, and between them every record is read. Each
    consumer polls on its own thread, as applications do: a consumer
    waiting in JoinGroup blocks its caller until the others rejoin."""
    import threading
    import time
    from kafka.coordinator.assignors.range import RangePartitionAssignor

    create_topic(broker.bootstrap, "mixed", 2)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(100):
        p.produce("mixed", value=b"%d" % i, partition=i % 2)
    assert p.flush(10) == 0
    seen, lock, stop = set(), threading.Lock(), threading.Event()
    owners = [set(), set()]

    def kafka_python():
        k = KafkaConsumer("mixed", bootstrap_servers=broker.bootstrap, group_id="mixed-group",
                          auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=500,
                          partition_assignment_strategy=[RangePartitionAssignor])
        while not stop.is_set():
            for recs in k.poll(timeout_ms=50).values():
                with lock:
                    seen.update((m.partition, m.offset) for m in recs)
            owners[0] = {tp.partition for tp in k.assignment()}
        k.close()

    t = threading.Thread(target=kafka_python)
    t.start()
    r = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "mixed-group", "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "partition.assignment.strategy": "range"})
    r.subscribe(["mixed"])
    deadline = time.time() + 30
    try:
        while time.time() < deadline:
            m = r.poll(0.05)
            if m is not None and not m.error():
                with lock:
                    seen.add((m.partition(), m.offset()))
            owners[1] = {tp.partition for tp in r.assignment()}
            with lock:
                done = len(seen) == 100
            if done and owners[0] and owners[1]:
                break
    finally:
        stop.set()
        t.join(30)
        r.close()
    assert seen == {(part, off) for part in range(2) for off in range(50)}
    assert owners[0] and owners[1] and owners[0] | owners[1] == {0, 1} and not owners[0] & owners[1], owners


# ---- membership: the protocol, frame by frame ---------------------------------

INCONSISTENT_GROUP_PROTOCOL, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID = 23, 22, 25
REBALANCE_IN_PROGRESS, INVALID_SESSION_TIMEOUT, MEMBER_ID_REQUIRED = 27, 26, 79


def call(port, api, version, body):
    c = raw.Conn(port, timeout=20)
    c.send(raw.frame(api, version, 9, body))
    payload = c.recv_frame()
    c.close()
    return payload[4:]  # past the correlation id


def rstring(buf, at):
    (n,) = struct.unpack_from(">h", buf, at)
    return buf[at + 2:at + 2 + max(n, 0)].decode(), at + 2 + max(n, 0)


def join_v0(port, group, member, session_ms=6000, protocol_type="consumer", protocols=(("range", b"m"),)):
    body = raw.string(group) + struct.pack(">i", session_ms) + raw.string(member) + raw.string(protocol_type)
    body += struct.pack(">i", len(protocols))
    for name, md in protocols:
        body += raw.string(name) + struct.pack(">i", len(md)) + md
    r = call(port, 11, 0, body)
    err, generation = struct.unpack_from(">hi", r, 0)
    protocol, at = rstring(r, 6)
    leader, at = rstring(r, at)
    member_id, at = rstring(r, at)
    (n,) = struct.unpack_from(">i", r, at)
    return err, generation, protocol, leader, member_id, n


def join_v4_without_member_id(port, group):
    body = raw.string(group) + struct.pack(">ii", 6000, 6000) + raw.string("") + raw.string("consumer")
    body += struct.pack(">i", 1) + raw.string("range") + struct.pack(">i", 1) + b"m"
    r = call(port, 11, 4, body)
    _throttle, err, _gen = struct.unpack_from(">ihi", r, 0)
    _protocol, at = rstring(r, 10)
    _leader, at = rstring(r, at)
    member_id, _ = rstring(r, at)
    return err, member_id


def sync_v0(port, group, generation, member, assignments=()):
    body = raw.string(group) + struct.pack(">i", generation) + raw.string(member) + struct.pack(">i", len(assignments))
    for m, a in assignments:
        body += raw.string(m) + struct.pack(">i", len(a)) + a
    r = call(port, 14, 0, body)
    (err, n) = struct.unpack_from(">hi", r, 0)
    return err, r[6:6 + max(n, 0)]


def heartbeat_v0(port, group, generation, member):
    r = call(port, 12, 0, raw.string(group) + struct.pack(">i", generation) + raw.string(member))
    return struct.unpack_from(">h", r, 0)[0]


def test_rebalance_protocol_errors_follow_the_spec(broker):
    port = broker.port
    assert join_v0(port, "raw", "", session_ms=1000)[0] == INVALID_SESSION_TIMEOUT
    err, member_id = join_v4_without_member_id(port, "raw-v4")
    assert err == MEMBER_ID_REQUIRED and member_id, "KIP-394: v4+ joins first get a member id"
    assert join_v0(port, "raw", "never-issued")[0] == UNKNOWN_MEMBER_ID
    # v0 has no MEMBER_ID_REQUIRED round: the first member joins and leads generation 1.
    err, gen, protocol, leader, me, roster = join_v0(port, "raw", "")
    assert (err, gen, protocol, leader == me, roster) == (0, 1, "range", True, 1)
    assert join_v0(port, "raw", "", protocol_type="connect")[0] == INCONSISTENT_GROUP_PROTOCOL
    assert join_v0(port, "raw", "", protocols=(("sticky", b""),))[0] == INCONSISTENT_GROUP_PROTOCOL
    assert sync_v0(port, "raw", gen + 1, me)[0] == ILLEGAL_GENERATION
    assert sync_v0(port, "raw", gen, "someone-else")[0] == UNKNOWN_MEMBER_ID
    assert sync_v0(port, "raw", gen, me, [(me, b"my-partitions")]) == (0, b"my-partitions")
    assert heartbeat_v0(port, "raw", gen, me) == 0
    assert heartbeat_v0(port, "raw", gen - 1, me) == ILLEGAL_GENERATION
    assert heartbeat_v0(port, "raw", gen, "someone-else") == UNKNOWN_MEMBER_ID
    # A commit from a stale generation is refused; from the member, taken.
    create_topic(broker.bootstrap, "rt", 1)
    assert offset_commit_v2_member(port, "raw", gen + 5, me, "rt", 3) == ILLEGAL_GENERATION
    assert offset_commit_v2_member(port, "raw", gen, "stranger", "rt", 3) == UNKNOWN_MEMBER_ID
    assert offset_commit_v2_member(port, "raw", gen, me, "rt", 3) == 0


def test_a_silent_member_expires_after_its_session_timeout(broker):
    import time
    port = broker.port
    err, gen, _, _, me, _ = join_v0(port, "quiet", "", session_ms=6000)
    assert err == 0
    assert sync_v0(port, "quiet", gen, me, [(me, b"a")])[0] == 0
    time.sleep(3)
    assert heartbeat_v0(port, "quiet", gen, me) == 0, "alive within its session"
    time.sleep(7.5)
    assert heartbeat_v0(port, "quiet", gen, me) == UNKNOWN_MEMBER_ID, "expired 6 s after its last heartbeat"
    assert broker.alive()


def offset_commit_v2_member(port, group, generation, member, topic, offset):
    body = raw.string(group) + struct.pack(">i", generation) + raw.string(member) + struct.pack(">q", -1)
    body += struct.pack(">i", 1) + raw.string(topic) + struct.pack(">i", 1)
    body += struct.pack(">iq", 0, offset) + raw.string("")
    r = call(port, 8, 2, body)
    _n, at = struct.unpack_from(">i", r, 0)[0], 4
    _topic, at = rstring(r, at)
    _parts, _part, err = struct.unpack_from(">iih", r, at)
    return err


def test_members_starting_together_share_the_first_generation(broker):
    """The initial rebalance delay (Kafka's group.initial.rebalance.delay.ms,
    3 s by default): two members joining an empty group within it start
    generation 1 together, instead of a generation each."""
    import threading

    results = []
    joins = [threading.Thread(target=lambda: results.append(join_v0(broker.port, "together", "")))
             for _ in range(2)]
    for t in joins:
        t.start()
    for t in joins:
        t.join(30)
    assert len(results) == 2 and all(r[0] == 0 for r in results), results
    assert {r[1] for r in results} == {1}, "both in generation 1"
    leaders = [r for r in results if r[3] == r[4]]
    assert len(leaders) == 1 and leaders[0][5] == 2, "one leader, told of both members"


def test_offsets_of_a_group_without_members_expire_after_offsets_retention(broker_factory):
    """Kafka's offsets.retention.minutes: a standalone consumer's commit
    goes once it is older than the retention; a group with a member keeps
    its older commit while the member stays, and loses it a retention after
    the member left. Deleted by tombstones: gone after a restart too."""
    import time
    from test_reclaim import metric
    retention = 3.0
    broker = broker_factory(extra_args=["--offsets-retention-ms", str(int(retention * 1000)),
                                        "--offsets-retention-check-interval-ms", "200"])
    create_topic(broker.bootstrap, "orders", 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        p.produce("orders", value=b"m%d" % i, partition=0)
    assert p.flush(10) == 0

    member = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "live", "enable.auto.commit": False,
                       "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    member.subscribe(["orders"])
    got = 0
    deadline = time.time() + 30
    while got < 10 and time.time() < deadline:
        m = member.poll(0.2)
        if m is not None and not m.error():
            got += 1
    assert got == 10
    member.commit(asynchronous=False)
    standalone = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "standalone",
                           "enable.auto.commit": False})
    standalone.commit(offsets=[TopicPartition("orders", 0, 5)], asynchronous=False)
    standalone.close()
    committed_at = time.time()
    assert committed(broker.bootstrap, "standalone", "orders", [0]) == {0: 5}

    # The member stays (polling keeps it in the group) past the retention:
    # the standalone commit goes, the member's stays.
    gone_after = None
    while time.time() < committed_at + 2 * retention + 2:
        member.poll(0.2)
        if gone_after is None and committed(broker.bootstrap, "standalone", "orders", [0]) == {0: -1001}:
            gone_after = time.time() - committed_at
    assert gone_after is not None and gone_after >= retention, gone_after
    assert committed(broker.bootstrap, "live", "orders", [0]) == {0: 10}, "a group with a member lost its offsets"

    # Once the member left, a retention later.
    member.close()
    left_at = time.time()
    assert committed(broker.bootstrap, "live", "orders", [0]) == {0: 10}
    while time.time() < left_at + 4 * retention and committed(broker.bootstrap, "live", "orders", [0]) != {0: -1001}:
        time.sleep(0.2)
    # Activity is noted at each check (every 0.2 s): a group is empty from
    # the last check that saw its member, at most one interval early.
    assert time.time() - left_at >= retention - 0.2
    assert committed(broker.bootstrap, "live", "orders", [0]) == {0: -1001}
    assert metric(broker, "corestream_group_offsets_expired_total") == 2

    # Tombstones: a restart does not bring them back; a new commit is kept.
    broker.restart()
    assert committed(broker.bootstrap, "live", "orders", [0]) == {0: -1001}
    assert committed(broker.bootstrap, "standalone", "orders", [0]) == {0: -1001}
    again = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "standalone", "enable.auto.commit": False})
    again.commit(offsets=[TopicPartition("orders", 0, 7)], asynchronous=False)
    again.close()
    assert committed(broker.bootstrap, "standalone", "orders", [0]) == {0: 7}


def find_coordinator_v4(port, keys, timeout):
    """FindCoordinator v4 (flexible) for `keys`: [(key, error_code)]."""
    header = struct.pack(">hhi", 10, 4, 7) + raw.string("raw-test") + raw.uvarint(0)
    body = struct.pack(">b", 0) + raw.uvarint(len(keys) + 1)
    body += b"".join(raw.compact_string(k) for k in keys) + raw.uvarint(0)
    c = raw.Conn(port, timeout=timeout)
    c.send(struct.pack(">i", len(header) + len(body)) + header + body)
    payload = c.recv_frame()
    c.close()
    assert payload is not None, "the connection was closed"

    def uvarint(at):
        return raw.read_uvarint(payload, at)

    def compact(at):
        n, at = uvarint(at)
        return (None if n == 0 else payload[at:at + n - 1].decode()), at + max(n - 1, 0)

    _, at = uvarint(4)  # correlation id, header tags
    at += 4  # throttle_time_ms
    count, at = uvarint(at)
    out = []
    for _ in range(count - 1):
        key, at = compact(at)
        at += 4  # node id
        _, at = compact(at)  # host
        at += 4  # port
        (err,) = struct.unpack_from(">h", payload, at)
        at += 2
        _, at = compact(at)  # error message
        _, at = uvarint(at)  # tags
        out.append((key, err))
    return out


def test_find_coordinator_for_many_groups_without_room_for_the_offsets_topic(broker_factory):
    """No room for __consumer_offsets' 50 partitions: each of 60,000 groups
    in one FindCoordinator v4 gets COORDINATOR_NOT_AVAILABLE, within the
    client's request timeout (the topic's creation is tried once per
    request, not once per group)."""
    b = broker_factory(extra_args=["--max-partitions-per-shard", "5"])
    keys = [f"group-{i}" for i in range(60_000)]
    got = find_coordinator_v4(b.port, keys, timeout=20)
    assert got == [(k, COORDINATOR_NOT_AVAILABLE) for k in keys]
    # Still serving: a topic that fits is created.
    create_topic(b.bootstrap, "fits", 2)
