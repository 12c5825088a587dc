"""The per-shard memory budget: when producers outrun the disk, the shard
stops reading their sockets and reports the wait as throttle_time_ms. It
slows them down; it never drops a batch, and never acknowledges data it
did not keep."""
from confluent_kafka import Producer

from test_roundtrip import consume_all, create_topic


def test_full_budget_throttles_and_loses_nothing(broker_factory):
    b = broker_factory(shards=1, extra_args=["--memory-per-shard", "16MiB"])
    create_topic(b.bootstrap, "flood", 4)
    throttles, acked, errors = [], [], []
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 20,
                  "batch.size": 1_000_000, "queue.buffering.max.kbytes": 1_000_000,
                  "compression.type": "none", "throttle_cb": lambda ev: throttles.append(ev.throttle_time)})
    value = b"v" * 1000
    n = 120_000  # 120 MB against a 16 MiB budget

    def on_delivery(err, msg):
        (errors if err else acked).append(err or (msg.partition(), msg.offset()))

    for i in range(n):
        while True:
            try:
                p.produce("flood", value=value, partition=i % 4, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(120) == 0
    assert not errors, errors[:3]
    assert len(acked) == n
    print(f"\n{len(throttles)} throttle events, max {max(throttles, default=0):.3f} s")
    from test_metrics import scrape, total
    waits = total(scrape(b), "corestream_backpressure_waits_total")
    assert waits > 0, "120 MB through a 16 MiB budget must have waited for the budget"
    assert throttles, "and the producer was told, through throttle_time_ms"
    got = consume_all(b.bootstrap, "flood", 4, n, timeout=120)
    assert len(got) == n
    assert sorted((m.partition(), m.offset()) for m in got) == sorted(acked)
    assert b.alive()
