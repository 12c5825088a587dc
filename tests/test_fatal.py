"""A shard that panics takes the whole broker down at once, with the panic in
the log and a non-zero exit status, so that a supervisor restarts it; the
restarted broker has everything that was acknowledged. Driven through the
fault hook of the test build (target/release/corestream-faults, built by
scripts/test with `--features fault-injection`)."""
import struct
import time

import pytest
from confluent_kafka import Producer

import conftest
import kafka_raw as raw
from test_roundtrip import consume_all, create_topic

FAULTS_BIN = conftest.ROOT / "target" / "release" / "corestream-faults"
PANIC_TOPIC = "__corestream_fault_panic"
PANIC_EXIT_CODE = 101


def metadata_v1(topic):
    return struct.pack(">i", 1) + raw.string(topic)


@pytest.fixture
def faulty_bin(monkeypatch):
    if not FAULTS_BIN.exists():
        pytest.fail(f"{FAULTS_BIN} is missing: scripts/test builds it (cargo build --release --features fault-injection)")
    monkeypatch.setattr(conftest, "BIN", FAULTS_BIN)


@pytest.mark.parametrize("shards", [1, 2])
def test_a_shard_panic_ends_the_process_and_a_restart_recovers(broker_factory, faulty_bin, shards):
    b = broker_factory(shards=shards)
    create_topic(b.bootstrap, "kept", 4)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    for i in range(400):
        p.produce("kept", value=f"m{i}".encode(), partition=i % 4)
    assert p.flush(10) == 0

    # Each shard serves the connections the kernel hands it: try several,
    # so that whichever shard takes one panics.
    c = raw.Conn(b.port)
    c.send(raw.frame(3, 1, 7, metadata_v1(PANIC_TOPIC)))
    deadline = time.time() + 10
    while time.time() < deadline and b.proc.poll() is None:
        time.sleep(0.05)
    assert b.proc.poll() == PANIC_EXIT_CODE, f"broker still up or exited otherwise: {b.proc.poll()}"
    log = b.log_text()
    assert "fault injection" in log and "supervisor restarts it" in log, log[-3000:]
    assert "panicked at" in log and "shard-" in log, log[-3000:]
    c.close()

    b.proc = None
    b.log.close()
    b.start()
    got = consume_all(b.bootstrap, "kept", 4, 400)
    assert sorted(m.value() for m in got) == sorted(f"m{i}".encode() for i in range(400))
