"""Idempotent producers: the clients' defaults (kafka-python 3, librdkafka
with enable.idempotence) work, and the broker's sequence checks follow the
protocol: a retried batch gets its original offset and is stored once, a
gap gets OUT_OF_ORDER_SEQUENCE_NUMBER, an old epoch INVALID_PRODUCER_EPOCH,
and all of it survives kill -9."""
from confluent_kafka import Producer

import kafka_raw as raw
from test_bad_input import produce_raw
from test_roundtrip import consume_all, create_topic

OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47


def test_kafka_python_default_producer_is_idempotent(broker):
    from kafka import KafkaProducer

    create_topic(broker.bootstrap, "idem-kp", 1)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap)  # defaults: idempotence on, acks=all
    metas = [p.send("idem-kp", value=b"%d" % i, partition=0) for i in range(200)]
    p.flush(20)
    assert [f.get(10).offset for f in metas] == list(range(200))
    p.close()
    assert [m.value() for m in consume_all(broker.bootstrap, "idem-kp", 1, 200)] == [b"%d" % i for i in range(200)]


def test_librdkafka_idempotent_producer(broker):
    create_topic(broker.bootstrap, "idem-rd", 2)
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    errs = []
    for i in range(1000):
        p.produce("idem-rd", value=b"%d" % i, partition=i % 2, on_delivery=lambda e, m: errs.append(e))
    p.flush(20)
    assert len(errs) == 1000 and not any(errs)
    assert len(consume_all(broker.bootstrap, "idem-rd", 2, 1000)) == 1000


def batch(values, pid, epoch, seq):
    return raw.record_batch(values, producer=(pid, epoch, seq))


def test_sequence_rules_and_recovery(broker):
    create_topic(broker.bootstrap, "seq", 1)
    first = batch([b"a", b"b"], 900, 0, 0)
    assert produce_raw(broker, "seq", 0, first) == [("seq", 0, 0, 0)]
    # A retry of the same batch: its original offset, stored once.
    assert produce_raw(broker, "seq", 0, first) == [("seq", 0, 0, 0)]
    assert produce_raw(broker, "seq", 0, batch([b"c"], 900, 0, 2)) == [("seq", 0, 0, 2)]
    assert produce_raw(broker, "seq", 0, batch([b"gap"], 900, 0, 9))[0][2] == OUT_OF_ORDER_SEQUENCE_NUMBER
    # A new epoch starts at sequence 0 and fences the old one.
    assert produce_raw(broker, "seq", 0, batch([b"d"], 900, 1, 0)) == [("seq", 0, 0, 3)]
    assert produce_raw(broker, "seq", 0, batch([b"old"], 900, 0, 3))[0][2] == INVALID_PRODUCER_EPOCH
    # Producer state is rebuilt from the WAL: a retry after a crash is still
    # recognised.
    broker.restart()
    assert produce_raw(broker, "seq", 0, batch([b"d"], 900, 1, 0)) == [("seq", 0, 0, 3)]
    assert produce_raw(broker, "seq", 0, batch([b"e"], 900, 1, 1)) == [("seq", 0, 0, 4)]
    values = [m.value() for m in consume_all(broker.bootstrap, "seq", 1, 5)]
    assert values == [b"a", b"b", b"c", b"d", b"e"]


def test_producer_ids_are_unique_across_restarts(broker):
    def init_producer_id():
        c = raw.Conn(broker.port)
        c.send(raw.frame(22, 0, 3, raw.string_null() + b"\x00\x00\x75\x30"))
        payload = c.recv_frame()
        c.close()
        import struct
        _corr, _throttle, err, pid, epoch = struct.unpack_from(">iihqh", payload, 0)
        assert err == 0
        return pid, epoch

    ids = [init_producer_id() for _ in range(3)]
    broker.restart()
    ids += [init_producer_id() for _ in range(3)]
    assert len({pid for pid, _ in ids}) == 6
    assert all(epoch == 0 for _, epoch in ids)
