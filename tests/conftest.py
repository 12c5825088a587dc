"""Fixtures that run the real corestream binary on a free loopback port.

Every broker a test starts is started here and stopped here (SIGTERM, then
SIGKILL); nothing else is ever signalled.
"""
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("CORESTREAM_BIN", ROOT / "target" / "release" / "corestream"))


def _ephemeral_low():
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports are picked below the kernel's ephemeral range: a port the kernel
# handed out by bind(0) may be taken, before the broker binds it, as the
# source port of any outgoing connection (a client's, a Raft peer's), and
# the broker then fails with "Address already in use". No port is handed
# out twice by one test run.
_PORTS_LOW, _PORTS_HIGH = 10000, min(_ephemeral_low(), 65536)
_given = set()


def free_port(room=1):
    """A port p, with p..p+room-1 all free, below the ephemeral range."""
    rng = random.Random()
    for _ in range(1000):
        p = rng.randrange(_PORTS_LOW, _PORTS_HIGH - room)
        if any(q in _given for q in range(p, p + room)):
            continue
        try:
            for q in range(p, p + room):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
        except OSError:
            continue
        _given.update(range(p, p + room))
        return p
    raise RuntimeError(f"no {room} free ports in [{_PORTS_LOW}, {_PORTS_HIGH})")


class Broker:
    """One corestream process with its own data dir and port."""

    def __init__(self, data_dir, shards=2, extra_args=(), env=None, log_path=None, host="127.0.0.1",
                 port=None, admin_port=None, prefix=(), sasl_port=None, listeners=()):
        self.data_dir = Path(data_dir)
        # Where it listens, and what runs it (e.g. `ip netns exec NS` for a
        # broker in a network namespace, which execs it: the pid is the broker's).
        self.host = host
        self.port = port or free_port()
        self.admin_port = admin_port or free_port()
        self.prefix = list(prefix)
        # A SASL_PLAINTEXT listener beside the PLAINTEXT one, when asked
        # for, and any others ("SSL://127.0.0.1:PORT").
        self.sasl_port = sasl_port
        self.listeners = list(listeners) + ([f"SASL_PLAINTEXT://{host}:{sasl_port}"] if sasl_port else [])
        self.shards = shards
        self.extra_args = list(extra_args)
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("RUST_LOG", "info")
        self.log_path = Path(log_path or self.data_dir.parent / f"broker-{self.port}.log")
        self.proc = None

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def start(self, timeout=20):
        assert self.proc is None, "already running"
        self.log = open(self.log_path, "ab")
        if self.listeners:
            listen = ["--listeners", ",".join([f"PLAINTEXT://{self.bootstrap}", *self.listeners])]
        else:
            listen = ["--listen", self.bootstrap]
        args = self.prefix + [str(BIN), "start", *listen, "--data-dir", str(self.data_dir),
                              "--admin-listen", f"{self.host}:{self.admin_port}", "--shards", str(self.shards)]
        args += self.extra_args
        if "--config" not in self.extra_args and "--wal-segment-bytes" not in self.extra_args:
            # Each broker preallocates a segment per shard: keep the suite's
            # disk use small (the default is 128 MiB).
            args += ["--wal-segment-bytes", "8MiB"]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            if self.answers():
                return self
            time.sleep(0.02)
        raise RuntimeError("broker did not start listening")

    def answers(self):
        """True once an ApiVersions request gets its response: a listener
        left behind by a killed predecessor accepts but never answers."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.sendall(bytes.fromhex("0000000c00120000000000010002") + b"ok")
                return len(s.recv(4)) == 4
        except OSError:
            return False

    def admin_get(self, path):
        """(status, body) of an HTTP GET on the admin port."""
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.admin_port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        self.log.close()

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.log.close()

    def restart(self):
        self.kill9()
        return self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def proc_status(self):
        """RSS in bytes and thread count, from /proc."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            fields[k] = v.strip()
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["Threads"])

    def cpu_seconds(self):
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        parts = stat[stat.rindex(")") + 2:].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(parts[11]) + int(parts[12])) / ticks

    def wal_segments(self, shard):
        return sorted((self.data_dir / f"shard-{shard}" / "wal").glob("*.log"))


def free_port_pair():
    """A port whose next port is free too (Apache Kafka's client and controller listeners)."""
    return free_port(room=2)


def start_kafka_ref(tmp_path_factory, name, extra_props=""):
    data = tmp_path_factory.mktemp(name)
    port = free_port_pair()
    script = ROOT / "scripts" / "kafka-ref"
    env = dict(os.environ, EXTRA_PROPS=extra_props)
    r = subprocess.run([str(script), "start", str(port), str(data)], capture_output=True, text=True, timeout=240,
                       env=env)
    if r.returncode != 0:
        pytest.fail(f"Apache Kafka did not start:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(script), "stop", str(data)], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def kafka_ref(tmp_path_factory):
    """Apache Kafka 4.1.1 (KRaft, one node) from the Maven jars, started and
    stopped by scripts/kafka-ref: the reference the differential test
    compares corestream with. Yields its bootstrap address."""
    yield from start_kafka_ref(tmp_path_factory, "kafka-ref")


@pytest.fixture(scope="module")
def kafka_ref_authorizer(tmp_path_factory):
    """The same, authorizing with Kafka's StandardAuthorizer; a resource
    without ACLs stays open (allow.everyone.if.no.acl.found), so the
    anonymous client may create ACLs and meet them."""
    yield from start_kafka_ref(
        tmp_path_factory, "kafka-ref-acl",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n"
        "allow.everyone.if.no.acl.found=true")


@pytest.fixture
def broker_factory(tmp_path):
    started = []

    def make(name="data", data_dir=None, **kw):
        if data_dir is not None:
            kw.setdefault("log_path", tmp_path / f"{name}.log")
        b = Broker(data_dir or tmp_path / name, **kw)
        started.append(b)
        return b.start()

    yield make
    for b in started:
        b.stop()


@pytest.fixture
def broker(broker_factory):
    return broker_factory()
