"""Controlled shutdown (SIGTERM), as Kafka's: the broker stops accepting,
finishes the requests its connections sent, hands its Raft groups'
leadership to a caught-up peer, and exits 0; nothing acknowledged is lost,
and in a cluster the producers barely notice."""
import signal
import threading
import time

from confluent_kafka import Producer

from test_cluster import Cluster, consume_all as cluster_consume_all
from test_roundtrip import consume_all, create_topic


class SteadyProducer:
    """acks=all at a steady pace from a thread; keeps what was acknowledged
    and when."""

    def __init__(self, bootstrap, topic, partitions, rate=500):
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                           "message.timeout.ms": 30000, "reconnect.backoff.max.ms": 200})
        self.topic, self.partitions, self.rate = topic, partitions, rate
        self.acked, self.ack_times, self.stop_flag = [], [], False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def delivered(self, err, msg):
        if err is None:
            self.acked.append(msg.value())
            self.ack_times.append((msg.partition(), time.monotonic()))

    def run(self):
        i = 0
        while not self.stop_flag:
            self.p.produce(self.topic, value=f"v{i}".encode(), partition=i % self.partitions,
                           on_delivery=self.delivered)
            self.p.poll(0)
            i += 1
            time.sleep(1 / self.rate)
        self.p.flush(30)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_flag = True
        self.thread.join(60)

    def longest_gap(self, after, before):
        """The longest wait between two acks of one partition in the window:
        how long that partition's producer was stalled."""
        gaps = []
        for p in range(self.partitions):
            ts = [t for q, t in self.ack_times if q == p and after <= t <= before]
            gaps += [b - a for a, b in zip(ts, ts[1:])]
        return max(gaps, default=None)


def test_sigterm_drains_and_exits_0_and_loses_nothing(broker_factory):
    b = broker_factory(shards=2)
    create_topic(b.bootstrap, "s", 4)
    prod = SteadyProducer(b.bootstrap, "s", 4).start()
    time.sleep(1.5)
    b.proc.send_signal(signal.SIGTERM)
    assert b.proc.wait(timeout=15) == 0, b.log_text()[-3000:]
    log = b.log_text()
    assert "shutting down" in log and log.count("shard drained") == 2, log[-3000:]
    b.proc = None
    b.log.close()
    b.start()
    prod.stop()
    assert len(prod.acked) > 100
    got = {m.value() for m in consume_all(b.bootstrap, "s", 4, len(prod.acked))}
    missing = [v for v in prod.acked if v not in got]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"


def test_rolling_restart_of_a_cluster_under_acks_all_load_loses_nothing(tmp_path):
    """Each node in turn gets SIGTERM, exits 0 and starts again, while an
    acks=all producer runs: the Raft groups a stopping node leads move to
    a caught-up peer before it closes anything, so producers stall for
    about one metadata refresh."""
    c = Cluster(tmp_path, n=3, shards=2).start()
    try:
        create_topic(c.bootstrap(), "r", 6, replication_factor=3)
        c.wait(lambda: c.settled("r", 6))
        prod = SteadyProducer(c.bootstrap(), "r", 6).start()
        time.sleep(2)
        gaps = []
        for node in c.nodes:
            led = set(c.leaders(node, "r").values()) & {c.nodes.index(node)}
            stopped_at = time.monotonic()
            node.proc.send_signal(signal.SIGTERM)
            assert node.proc.wait(timeout=15) == 0, node.log_text()[-3000:]
            exited_at = time.monotonic()
            if led:
                assert "handing Raft leadership over" in node.log_text(), node.log_text()[-3000:]
            node.proc = None
            node.log.close()
            time.sleep(1)
            gaps.append((c.nodes.index(node), bool(led), exited_at - stopped_at,
                         prod.longest_gap(stopped_at - 0.5, exited_at + 1)))
            node.start()
            c.wait(lambda: c.settled("r", 6), timeout=60)
            time.sleep(1)
        prod.stop()
        for n, led, took, gap in gaps:
            print(f"node {n} (led a group: {led}): stopped in {took:.2f} s; longest gap between acks {gap:.3f} s")
        # Measured here: about 0.1 s (librdkafka's metadata refresh); once
        # in a full suite run on this 2-core machine, 1.01 s. The bounds
        # leave room for one such outlier: no gap reaches 2 s, and most
        # stay under 1 s (the log checks above say the hand-over happened).
        assert all(gap is not None and gap < 2.0 for _, _, _, gap in gaps), gaps
        assert sum(gap < 1.0 for _, _, _, gap in gaps) >= 2, gaps
        got = set(cluster_consume_all(c.bootstrap(), "r", 6, len(prod.acked)))
        missing = [v for v in prod.acked if v not in got]
        assert len(prod.acked) > 1000 and not missing, f"{len(missing)} of {len(prod.acked)} acknowledged messages lost"
    finally:
        c.stop()
