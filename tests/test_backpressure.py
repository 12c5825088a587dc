"""The per-shard memory budget: when producers outrun the disk, the shard
stops reading their sockets and reports the wait as throttle_time_ms. It
slows them down; it never drops a batch, and never acknowledges data it
did not keep."""
import struct

from confluent_kafka import Producer

import kafka_raw as raw
from test_metrics import scrape, total
from test_roundtrip import consume_all, create_topic


def test_pipelined_frames_beyond_the_budget_wait_and_lose_nothing(broker_factory):
    b = broker_factory(shards=1, extra_args=["--memory-per-shard", "16MiB"])
    create_topic(b.bootstrap, "flood", 1)
    batch = raw.record_batch([b"v" * 999] * 1000)  # ~1 MB
    frames = 48  # 48 MB sent without waiting for an answer, into a 16 MiB budget
    c = raw.Conn(b.port, timeout=60)
    c.send(b"".join(raw.frame(0, 3, i, raw.produce_v3("flood", 0, batch, acks=-1)) for i in range(frames)))
    throttled, offsets = 0, []
    for _ in range(frames):
        payload = c.recv_frame()
        assert payload is not None
        [(topic, part, err, base)] = raw.parse_produce_v3_response(payload)
        assert err == 0
        offsets.append(base)
        throttled += struct.unpack(">i", payload[-4:])[0] > 0  # throttle_time_ms
    c.close()
    assert offsets == [i * 1000 for i in range(frames)], "every batch kept, in order"
    assert total(scrape(b), "corestream_backpressure_waits_total") > 0, "the budget made frames wait"
    assert throttled > 0, "and the producer was told, through throttle_time_ms"
    assert len(consume_all(b.bootstrap, "flood", 1, frames * 1000, timeout=60)) == frames * 1000
    assert b.alive()


def test_librdkafka_through_a_small_budget_loses_nothing(broker_factory):
    b = broker_factory(shards=1, extra_args=["--memory-per-shard", "16MiB"])
    create_topic(b.bootstrap, "flood", 4)
    acked, errors = [], []
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 20,
                  "batch.size": 1_000_000, "queue.buffering.max.kbytes": 1_000_000, "compression.type": "none"})
    n = 120_000  # 120 MB through a 16 MiB budget

    def on_delivery(err, msg):
        (errors if err else acked).append(err or (msg.partition(), msg.offset()))

    for i in range(n):
        while True:
            try:
                p.produce("flood", value=b"v" * 1000, partition=i % 4, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(120) == 0
    assert not errors, errors[:3]
    assert len(acked) == n
    got = consume_all(b.bootstrap, "flood", 4, n, timeout=120)
    assert sorted((m.partition(), m.offset()) for m in got) == sorted(acked)
