"""A full disk: producers get KAFKA_STORAGE_ERROR, never a success for data
that was not kept; everything acknowledged before stays readable, and the
broker stays up. The data dir is a small ext4 image this test loop-mounts
itself (ext4, because corestream refuses file systems without O_DIRECT)."""
import os
import subprocess

import pytest
from confluent_kafka import Producer

from test_roundtrip import consume_all, create_topic


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("loop-mounting a file system needs root")
    image, mnt = tmp_path / "small.ext4", tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "12M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_disk_full_gives_storage_errors_and_keeps_acknowledged_data(small_disk, broker_factory, tmp_path):
    # small_disk first: fixtures are torn down in reverse, so the broker
    # stops before its file system is unmounted (a busy mount stayed behind).
    cfg = tmp_path / "wal.toml"
    cfg.write_text('[wal]\nsegment_bytes = "1MiB"\n')
    b = broker_factory(shards=1, data_dir=small_disk / "data", extra_args=["--config", str(cfg)])
    create_topic(b.bootstrap, "full", 1)
    acked, failed = [], []
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5, "compression.type": "none",
                  "message.send.max.retries": 0})

    def on_delivery(err, msg):
        if err is None:
            acked.append((msg.offset(), msg.value()))
        else:
            failed.append(err.name())

    for i in range(15_000):  # ~15 MB into a 12 MB file system
        p.produce("full", value=(b"%06d" % i) * 170, partition=0, on_delivery=on_delivery)
        if i % 200 == 0:
            p.flush(10)
    p.flush(30)
    print(f"\n{len(acked)} acknowledged, {len(failed)} refused with {set(failed)}")
    assert failed, "a full disk must fail some writes"
    assert set(failed) == {"KAFKA_STORAGE_ERROR"}, set(failed)
    assert acked, "writes before the disk filled are acknowledged"
    got = consume_all(b.bootstrap, "full", 1, len(acked), timeout=30)
    assert [(m.offset(), m.value()) for m in got] == sorted(acked)
    assert b.alive()
    # The operator sees it: /health says why writes stop and how full the
    # disk is, and the metrics carry the free bytes.
    status, body = b.admin_get("/health")
    assert status == 503 and "refuses writes" in body and "% full" in body, body
    from test_metrics import scrape, total
    m = scrape(b)
    assert 0 <= total(m, "corestream_disk_free_bytes") < 2 << 20  # less than two 1 MiB segments
    assert total(m, "corestream_disk_total_bytes") > 8 << 20
    b.stop()
