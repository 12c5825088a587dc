"""The workload that killed the broker we replace — 1000 topics x 3
partitions on one node, one message each, consume all 3000 — and idleness:
a long-polling consumer costs almost no CPU, and an idle broker with 3000
partitions logs nothing even at debug."""
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from test_roundtrip import create_topic

TOPICS, PARTS = 1000, 3


def test_1000_topics_x_3_partitions_then_idle(broker_factory):
    b = broker_factory(env={"RUST_LOG": "debug"})
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    names = [f"seed-{i:04d}" for i in range(TOPICS)]
    for chunk in range(0, TOPICS, 100):
        fs = admin.create_topics([NewTopic(n, num_partitions=PARTS, replication_factor=1)
                                  for n in names[chunk:chunk + 100]], request_timeout=30)
        for f in fs.values():
            f.result(timeout=30)
    md = admin.list_topics(timeout=10)
    assert sum(len(t.partitions) for n, t in md.topics.items() if n.startswith("seed-")) == TOPICS * PARTS

    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5})
    delivered = []
    for n in names:
        for part in range(PARTS):
            p.produce(n, value=f"{n}/{part}".encode(), partition=part,
                      on_delivery=lambda e, m: delivered.append(e))
    p.flush(60)
    assert len(delivered) == TOPICS * PARTS and not any(delivered)

    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "seed", "enable.auto.commit": False})
    c.assign([TopicPartition(n, part, 0) for n in names for part in range(PARTS)])
    got = set()
    deadline = time.time() + 60
    while len(got) < TOPICS * PARTS and time.time() < deadline:
        for m in c.consume(1000, timeout=1):
            assert not m.error(), m.error()
            assert m.value() == f"{m.topic()}/{m.partition()}".encode()
            got.add((m.topic(), m.partition(), m.offset()))
    c.close()
    assert len(got) == TOPICS * PARTS, f"{len(got)} of {TOPICS * PARTS} delivered"

    rss, threads = b.proc_status()
    print(f"\n3000 partitions: broker RSS {rss / 2**20:.1f} MiB, {threads} threads")
    assert rss < 512 * 2**20
    assert threads <= 4 * b.shards + 4

    # Idle: nothing logged at debug, and almost no CPU, over a quiet window.
    time.sleep(1)
    lines_before = len(b.log_text().splitlines())
    cpu_before = b.cpu_seconds()
    time.sleep(5)
    idle_lines = len(b.log_text().splitlines()) - lines_before
    idle_cpu = b.cpu_seconds() - cpu_before
    print(f"idle 5 s with 3000 partitions at debug: {idle_lines} log lines, {idle_cpu:.3f} s CPU")
    assert idle_lines == 0
    assert idle_cpu < 0.25


def test_long_polling_consumer_costs_almost_no_cpu(broker):
    create_topic(broker.bootstrap, "quiet", 1)
    stop = threading.Event()
    polls = []

    def consume():
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "q", "enable.auto.commit": False,
                      "fetch.wait.max.ms": 500})
        c.assign([TopicPartition("quiet", 0, 0)])
        while not stop.is_set():
            polls.append(c.poll(0.2))
        c.close()

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(1.5)
    before = broker.cpu_seconds()
    time.sleep(5)
    used = broker.cpu_seconds() - before
    stop.set()
    t.join()
    print(f"\nbroker CPU over 5 s of long-polling an empty partition: {used:.3f} s")
    assert all(m is None for m in polls)
    assert used < 0.25


def test_fetch_wakes_when_data_arrives(broker):
    """A parked fetch returns as soon as data commits, long before max_wait."""
    create_topic(broker.bootstrap, "wake", 1)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "w", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 10_000})
    c.assign([TopicPartition("wake", 0, 0)])
    assert c.poll(1.0) is None  # now parked in a long poll
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce("wake", value=b"ping", partition=0)
    p.flush(5)
    m = c.poll(5.0)
    c.close()
    assert m is not None and m.value() == b"ping"
