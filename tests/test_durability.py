"""Crash safety: kill -9 during acks=all production loses nothing that was
acknowledged; a WAL cut anywhere in its tail, or a flipped bit, recovers to
a prefix of what was written and never serves what follows the cut."""
import shutil
import threading
import time

from confluent_kafka import Producer

import kafka_raw as raw
from test_roundtrip import consume_all, create_topic


def test_kill9_during_acks_all_loses_nothing_acknowledged(broker_factory):
    b = broker_factory()
    create_topic(b.bootstrap, "durable", 4)
    acked = {}
    lock = threading.Lock()
    stop = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            with lock:
                acked[msg.value()] = (msg.partition(), msg.offset())

    def produce():
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 1,
                      "message.send.max.retries": 0, "message.timeout.ms": 3000})
        i = 0
        while not stop.is_set():
            try:
                p.produce("durable", value=b"m-%08d" % i, partition=i % 4, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0)
        p.flush(5)

    t = threading.Thread(target=produce)
    t.start()
    deadline = time.time() + 20
    while len(acked) < 20_000 and time.time() < deadline:
        time.sleep(0.05)
    b.kill9()
    stop.set()
    t.join()
    assert len(acked) >= 1000, "the producer should have been acknowledged before the crash"

    b.start()
    got = consume_all(b.bootstrap, "durable", 4, len(acked))
    seen = {}
    for m in got:
        assert m.value() not in seen, "a message must be read back once"
        seen[m.value()] = (m.partition(), m.offset())
    missing = [v for v in acked if v not in seen]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:3]}"
    for v, where in acked.items():
        assert seen[v] == where, "an acknowledged message keeps its partition and offset"
    for part in range(4):
        offs = sorted(o for (p, o) in seen.values() if p == part)
        assert offs == list(range(len(offs))), "offsets stay dense after recovery"


WAL_CONFIG = '[wal]\nsegment_bytes = "1MiB"\n'


def small_log(broker_factory, tmp_path, n=6):
    cfg = tmp_path / "wal.toml"
    cfg.write_text(WAL_CONFIG)
    b = broker_factory("orig", shards=1, extra_args=["--config", str(cfg)])
    create_topic(b.bootstrap, "w", 1)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(n):
        p.produce("w", value=b"record-%d" % i, partition=0)
        p.flush(10)  # one WAL entry per message
    b.kill9()
    seg = b.wal_segments(0)
    assert len(seg) == 1
    recs = raw.wal_records(seg[0])
    data = [r for r in recs if r[4] == 1 and r[1] > 25]
    assert len(data) == n, recs
    return b, cfg, seg[0], recs, data


def recovered_values(broker_factory, tmp_path, orig, cfg, name, damage):
    d = tmp_path / name
    shutil.copytree(orig.data_dir, d)
    seg = next((d / "shard-0" / "wal").glob("*.log"))
    damage(seg)
    b = broker_factory(name, shards=1, extra_args=["--config", str(cfg)])
    got = consume_all(b.bootstrap, "w", 1, 0, timeout=10)
    values = [m.value() for m in got]
    # After recovery the log takes new writes at the next dense offset.
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    offs = []
    p.produce("w", value=b"after", partition=0, on_delivery=lambda e, m: offs.append((e, m.offset())))
    p.flush(10)
    assert len(offs) == 1 and offs[0][0] is None, f"produce after recovery: {offs}, log: {b.log_text()[-1500:]}"
    b.stop()
    shutil.rmtree(d)
    return values, offs[0][1]


def zero_from(cut):
    def damage(seg):
        with open(seg, "r+b") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(cut)
            f.write(b"\x00" * (size - cut))
    return damage


def surviving_data_records(original, recs, cut):
    """Data records in the prefix a cut at `cut` leaves intact. A record the
    cut crosses survives only if the zeroed bytes were zero already."""
    n = 0
    for at, ln, _term, _index, kind in recs:
        if at + ln > cut and any(original[max(at, cut):at + ln]):
            break
        if kind == 1 and ln > 25:
            n += 1
    return n


def test_wal_cut_anywhere_in_the_tail_recovers_a_prefix(broker_factory, tmp_path):
    orig, cfg, seg, recs, data = small_log(broker_factory, tmp_path)
    end = recs[-1][0] + recs[-1][1]
    # Every byte of the tail: the last data entry and the records after it.
    # (The recovery scanner's unit tests do the same on in-memory logs.)
    cuts = range(data[-1][0] - 1, end + 2)
    original = seg.read_bytes()
    for cut in cuts:
        whole = surviving_data_records(original, recs, cut)
        values, next_offset = recovered_values(broker_factory, tmp_path, orig, cfg, f"cut{cut}", zero_from(cut))
        assert values == [b"record-%d" % i for i in range(whole)], f"cut at {cut}"
        assert next_offset == whole, f"cut at {cut}: next offset"


def test_flipped_bit_cuts_the_log_before_that_record(broker_factory, tmp_path):
    orig, cfg, seg, recs, data = small_log(broker_factory, tmp_path)
    victim = 3
    at, ln = data[victim][0], data[victim][1]

    def flip(seg_path):
        with open(seg_path, "r+b") as f:
            f.seek(at + ln - 5)
            byte = f.read(1)[0]
            f.seek(at + ln - 5)
            f.write(bytes([byte ^ 0x04]))

    values, next_offset = recovered_values(broker_factory, tmp_path, orig, cfg, "flip", flip)
    assert values == [b"record-%d" % i for i in range(victim)]
    assert next_offset == victim


def test_segments_roll_and_recover_across_segments(broker_factory, tmp_path):
    cfg = tmp_path / "wal.toml"
    cfg.write_text(WAL_CONFIG)
    b = broker_factory(shards=1, extra_args=["--config", str(cfg)])
    create_topic(b.bootstrap, "roll", 2)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 2, "compression.type": "none"})
    n = 6000
    for i in range(n):
        p.produce("roll", value=(b"%06d" % i) * 170, partition=i % 2)  # ~1 KB each: ~6 MB in all
        if i % 500 == 0:
            p.flush(10)
    p.flush(30)
    segments = b.wal_segments(0)
    assert len(segments) >= 5, "1 MiB segments must have rolled"
    names = [int(s.stem) for s in segments]
    assert names == sorted(names) and names[0] == 1
    b.kill9()
    b.start()
    got = consume_all(b.bootstrap, "roll", 2, n, timeout=60)
    assert len(got) == n
    for part in (0, 1):
        vals = [m.value()[:6] for m in got if m.partition() == part]
        assert vals == [b"%06d" % i for i in range(part, n, 2)]
