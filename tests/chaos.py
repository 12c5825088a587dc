"""Fault injection on real processes, in the spirit of Jepsen's Kafka and
Redpanda workloads: a 3-node cluster in network namespaces (one host each,
on a bridge), a nemesis that kills -9, pauses (SIGSTOP/SIGCONT), stops
gracefully (SIGTERM), partitions nodes (one node, the leader alone, or a
bridge: two nodes cut from each other, both still reaching the third),
fills a node's disk (each node's data is on its own small ext4 image) and
skews a node's clock (libfaketime moves its wall clock by hours or a day),
one fault at a time; producers (librdkafka idempotent, kafka-python plain,
both acks=all) and a consumer group run throughout. Then everything heals
and a checker reads every partition from the start:

- every acknowledged record is there (lost must be 0), at the offset its
  acknowledgement gave (no divergence between what was acked and what the
  cluster serves);
- offsets are dense; each partition holds the idempotent producer's
  records once each and in the order it sent them;
- the group's committed offsets never go back;
- and it reports, per fault kind, the longest time a partition of the
  idempotent producer went without an acknowledgement.

    python3 tests/chaos.py --minutes 30 [--seed N] [--json out.json]
    (scripts/chaos runs it; tests/test_chaos.py runs 2 minutes)
"""
import argparse
import json
import os
import random
import subprocess
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kafka import KafkaProducer  # noqa: E402

from test_partition import Hosts, netns_cluster  # noqa: E402

TOPIC = "chaos"
PARTITIONS = 6
FAULTS = ["kill9", "pause", "sigterm", "partition_one", "partition_leader", "partition_bridge", "disk_full",
          "clock_skew"]
FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


class Disks:
    """A small ext4 file system per node, loop-mounted, so that the nemesis
    can fill one node's disk without touching the machine's."""

    def __init__(self, workdir, size="512M"):
        self.workdir, self.size, self.mounts = Path(workdir), size, []

    def build(self):
        for i in range(3):
            image, mnt = self.workdir / f"disk{i}.ext4", self.workdir / f"disk{i}"
            mnt.mkdir()
            subprocess.run(["truncate", "-s", self.size, str(image)], check=True)
            subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
            subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
            self.mounts.append(mnt)

    def data_dir(self, i):
        return self.mounts[i] / "data"

    def fill(self, i):
        """Takes every free block, the reserved ones too (the broker runs
        as root, which may use them)."""
        filler = self.mounts[i] / "filler"
        st = os.statvfs(self.mounts[i])
        with open(filler, "wb") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, st.f_bfree * st.f_frsize)
            except OSError:
                pass
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass

    def free(self, i):
        (self.mounts[i] / "filler").unlink(missing_ok=True)

    def destroy(self):
        for mnt in self.mounts:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


class Clocks:
    """Each node's wall clock offset, read by libfaketime in the node at
    every clock call (the monotonic clock, which timers use, is left
    alone)."""

    def __init__(self, workdir):
        self.files = [Path(workdir) / f"clock{i}" for i in range(3)]
        for f in self.files:
            f.write_text("+0\n")

    def wrapper(self, i):
        return ["env", f"LD_PRELOAD={FAKETIME}", f"FAKETIME_TIMESTAMP_FILE={self.files[i]}", "FAKETIME_NO_CACHE=1",
                "FAKETIME_DONT_FAKE_MONOTONIC=1"]

    def skew(self, i, offset):
        self.files[i].write_text(f"{offset}\n")


class Acks:
    """Acknowledged records of one producer: value -> (partition, offset, time)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}
        self.times = defaultdict(list)  # partition -> ack times
        self.errors = 0

    def ok(self, value, partition, offset):
        now = time.monotonic()
        with self.lock:
            self.acked[value] = (partition, offset, now)
            self.times[partition].append(now)

    def failed(self):
        with self.lock:
            self.errors += 1


class IdempotentProducer(threading.Thread):
    def __init__(self, bootstrap, rate):
        super().__init__(daemon=True)
        self.p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                           "linger.ms": 5, "message.timeout.ms": 120000, "reconnect.backoff.max.ms": 500})
        self.acks, self.rate, self.stop_flag, self.sent = Acks(), rate, False, 0

    def delivered(self, err, msg):
        if err is None:
            self.acks.ok(msg.value(), msg.partition(), msg.offset())
        else:
            self.acks.failed()

    def run(self):
        while not self.stop_flag:
            n = self.sent
            self.p.produce(TOPIC, value=f"i-{n}".encode(), partition=n % PARTITIONS, on_delivery=self.delivered)
            self.sent += 1
            self.p.poll(0)
            time.sleep(1 / self.rate)
        self.p.flush(120)


class PlainProducer(threading.Thread):
    """kafka-python, acks=all, not idempotent: its retries may duplicate."""

    def __init__(self, bootstrap, rate):
        super().__init__(daemon=True)
        self.p = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", retries=10,
                               enable_idempotence=False, request_timeout_ms=10000, linger_ms=5,
                               max_in_flight_requests_per_connection=1)
        self.acks, self.rate, self.stop_flag, self.sent = Acks(), rate, False, 0

    def run(self):
        while not self.stop_flag:
            value = f"p-{self.sent}".encode()
            try:
                f = self.p.send(TOPIC, value=value, partition=self.sent % PARTITIONS)
                f.add_callback(lambda md, v=value: self.acks.ok(v, md.partition, md.offset))
                f.add_errback(lambda _e: self.acks.failed())
            except Exception:  # buffer full while the cluster is down
                self.acks.failed()
            self.sent += 1
            time.sleep(1 / self.rate)
        self.p.flush(120)
        self.p.close(30)


class GroupConsumer(threading.Thread):
    """A member of group `chaos-group` that commits what it read every
    second; every successful commit's offsets are kept, in order."""

    def __init__(self, bootstrap):
        super().__init__(daemon=True)
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-group", "enable.auto.commit": False,
                           "auto.offset.reset": "earliest", "session.timeout.ms": 10000})
        self.stop_flag, self.read = False, 0
        self.commits = defaultdict(list)  # partition -> committed offsets in order

    def commit(self):
        try:
            for tp in self.c.commit(asynchronous=False) or []:
                if tp.error is None and tp.offset >= 0:
                    self.commits[tp.partition].append(tp.offset)
        except Exception:  # no coordinator during a fault, nothing to commit
            pass

    def run(self):
        self.c.subscribe([TOPIC])
        last = time.monotonic()
        while not self.stop_flag:
            m = self.c.poll(0.2)
            if m is not None and not m.error():
                self.read += 1
            if time.monotonic() - last > 1:
                self.commit()
                last = time.monotonic()
        self.commit()
        self.c.close()


class Nemesis:
    def __init__(self, cluster, hosts, disks, clocks, rng, log):
        self.cluster, self.hosts, self.disks, self.clocks, self.rng, self.log = cluster, hosts, disks, clocks, rng, log
        self.kinds = FAULTS if clocks else [k for k in FAULTS if k != "clock_skew"]

    def leader(self):
        for b in self.cluster.alive():
            try:
                ls = self.cluster.leaders(b, TOPIC)
                if ls and ls.get(0, -1) >= 0:
                    return ls[0]
            except Exception:
                continue
        return None

    def one(self):
        kind = self.rng.choice(self.kinds)
        node = self.leader() if kind == "partition_leader" else self.rng.randrange(3)
        if node is None:
            node = self.rng.randrange(3)
        b = self.cluster.nodes[node]
        hold = self.rng.uniform(2, 6)
        start = time.monotonic()
        if kind == "kill9":
            b.kill9()
            time.sleep(hold)
            b.start(timeout=60)
        elif kind == "pause":
            b.proc.send_signal(signal.SIGSTOP)
            time.sleep(hold)
            b.proc.send_signal(signal.SIGCONT)
        elif kind == "sigterm":
            b.proc.send_signal(signal.SIGTERM)
            rc = b.proc.wait(timeout=30)
            b.proc = None
            b.log.close()
            if rc != 0:
                raise AssertionError(f"node {node} exited {rc} on SIGTERM")
            time.sleep(hold)
            b.start(timeout=60)
        elif kind == "partition_bridge":
            # `node` is the bridge: the other two lose each other only.
            a, c = [i for i in range(3) if i != node]
            self.hosts.cut_link(a, c)
            time.sleep(hold)
            self.hosts.cut_link(a, c, on=False)
        elif kind == "disk_full":
            self.disks.fill(node)
            time.sleep(hold)
            self.disks.free(node)
            # A WAL append that met the full disk leaves its shard refusing
            # writes until a restart recovers the log (/health says so):
            # restart it, as its operator or health check would.
            status, body = b.admin_get("/health")
            if status != 200 and "refuses writes" in body:
                b.kill9()
                b.start(timeout=60)
                kind = "disk_full_restart"
        elif kind == "clock_skew":
            self.clocks.skew(node, self.rng.choice(["+3h", "-3h", "+1d", "-1d", "+7d"]))
            time.sleep(hold)
            self.clocks.skew(node, "+0")
        else:
            self.hosts.cut(node)
            time.sleep(hold)
            self.hosts.cut(node, on=False)
        self.log.append({"kind": kind, "node": node, "start": start, "end": time.monotonic()})


def read_everything(bootstrap):
    """Every partition from offset 0 up to its high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-check", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    ends = {p: c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=30)[1] for p in range(PARTITIONS)}
    c.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    got = defaultdict(list)
    deadline = time.time() + 300
    while time.time() < deadline and any(len(got[p]) < ends[p] for p in range(PARTITIONS)):
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF and not m.error().retriable():
                raise AssertionError(m.error())
            continue
        got[m.partition()].append((m.offset(), m.value()))
    c.close()
    return got, ends


def check(idem, plain, group, got, ends, faults):
    problems = []
    at = {p: dict(recs) for p, recs in got.items()}
    for p in range(PARTITIONS):
        offsets = [o for o, _ in got[p]]
        if offsets != list(range(ends[p])):
            problems.append(f"partition {p}: offsets not dense 0..{ends[p]}: {len(offsets)} read")
    lost, moved = [], []
    for acks in (idem.acks, plain.acks):
        for value, (p, offset, _) in acks.acked.items():
            if value not in at[p].values():
                lost.append(value)
            elif at[p].get(offset) != value:
                moved.append((value, p, offset))
    if lost:
        problems.append(f"{len(lost)} acknowledged records lost, e.g. {lost[:5]}")
    if moved:
        problems.append(f"{len(moved)} acknowledged records not at their acknowledged offset, e.g. {moved[:5]}")
    idem_dupes = plain_dupes = 0
    for p in range(PARTITIONS):
        values = [v for _, v in got[p]]
        seen = defaultdict(int)
        for v in values:
            seen[v] += 1
        idem_dupes += sum(n - 1 for v, n in seen.items() if v.startswith(b"i-"))
        plain_dupes += sum(n - 1 for v, n in seen.items() if v.startswith(b"p-"))
        ns = [int(v[2:]) for v in values if v.startswith(b"i-")]
        if ns != sorted(ns):
            problems.append(f"partition {p}: the idempotent producer's records are out of order")
    if idem_dupes:
        problems.append(f"{idem_dupes} duplicates from the idempotent producer")
    for p, offsets in group.commits.items():
        if offsets != sorted(offsets):
            problems.append(f"partition {p}: the group's committed offset went back: {offsets}")
    # Each fault is charged for the gaps from its start until 10 s after it
    # healed, or until the next fault began.
    unavailable = defaultdict(float)
    for i, f in enumerate(faults):
        until = min(f["end"] + 10, faults[i + 1]["start"] if i + 1 < len(faults) else f["end"] + 10)
        for p, times in idem.acks.times.items():
            ts = [t for t in times if f["start"] - 1 <= t <= until]
            gap = max((b - a for a, b in zip(ts, ts[1:])), default=0.0)
            unavailable[f["kind"]] = max(unavailable[f["kind"]], gap)
    summary = {
        "faults": {k: sum(1 for f in faults if f["kind"] == k) for k in FAULTS + ["disk_full_restart"]},
        "acknowledged": {"idempotent": len(idem.acks.acked), "plain": len(plain.acks.acked)},
        "sent": {"idempotent": idem.sent, "plain": plain.sent},
        "failed_sends": {"idempotent": idem.acks.errors, "plain": plain.acks.errors},
        "lost": len(lost),
        "duplicated": {"idempotent": idem_dupes, "plain": plain_dupes},
        "records_in_cluster": sum(ends.values()),
        "group_records_read": group.read,
        "group_commits": sum(len(v) for v in group.commits.values()),
        "longest_unavailability_s": {k: round(v, 2) for k, v in unavailable.items()},
        "problems": problems,
    }
    return summary


def run(minutes, seed, workdir, rate=100, between=(3, 8)):
    rng = random.Random(seed)
    print(f"chaos: seed {seed}, {minutes} min, data in {workdir}", flush=True)
    hosts, disks = Hosts(), Disks(workdir)
    hosts.build()
    cluster = None
    try:
        disks.build()
        clocks = Clocks(workdir) if FAKETIME.exists() else None
        if clocks is None:
            print(f"chaos: {FAKETIME} is missing (Debian package faketime): no clock skew", flush=True)
        # 1 MiB segments: rolls, which allocate, come often enough for a
        # full disk to meet one.
        cluster = netns_cluster(Path(workdir), hosts, data_dirs=[disks.data_dir(i) for i in range(3)],
                                wrappers=[clocks.wrapper(i) for i in range(3)] if clocks else None,
                                segment_bytes="1MiB")
        cluster.start()
        bootstrap = cluster.bootstrap()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=3)])[TOPIC].result(30)
        cluster.wait(lambda: cluster.settled(TOPIC, PARTITIONS), timeout=60)
        idem, plain, group = IdempotentProducer(bootstrap, rate), PlainProducer(bootstrap, rate / 2), \
            GroupConsumer(bootstrap)
        for t in (idem, plain, group):
            t.start()
        faults = []
        nemesis = Nemesis(cluster, hosts, disks, clocks, rng, faults)
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            time.sleep(rng.uniform(*between))
            nemesis.one()
            f = faults[-1]
            print(f"  {f['kind']} node {f['node']} for {f['end'] - f['start']:.1f} s", flush=True)
        for b in cluster.nodes:
            if not b.alive():
                b.start(timeout=60)
        cluster.wait(lambda: cluster.settled(TOPIC, PARTITIONS), timeout=120)
        time.sleep(3)
        for t in (idem, plain):
            t.stop_flag = True
        for t in (idem, plain):
            t.join(180)
        group.stop_flag = True
        group.join(60)
        got, ends = read_everything(bootstrap)
        return check(idem, plain, group, got, ends, faults)
    finally:
        if cluster is not None:
            cluster.stop()
        disks.destroy()
        hosts.destroy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=2)
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="corestream-chaos-") as d:
        summary = run(args.minutes, args.seed, d)
    summary["seed"] = args.seed
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
