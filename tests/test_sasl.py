"""SASL on a SASL_PLAINTEXT listener, with real clients (kafka-python,
confluent-kafka / librdkafka, kcat) and hand-built frames checked against
the Kafka protocol guide (KIP-43, KIP-152, KIP-368): PLAIN and
SCRAM-SHA-256/512 logins, users made with `corestream user`, the
refusals, re-authentication, and Metadata answering with the addresses
of the listener a client came in on."""
import re
import struct
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer

import kafka_raw as raw
from conftest import BIN, free_port

ILLEGAL_SASL_STATE = 34
UNSUPPORTED_SASL_MECHANISM = 33
SASL_AUTHENTICATION_FAILED = 58
MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]  # in the order the broker offers them


def cli(*args, env=None):
    r = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=60, env=env)
    return r.returncode, r.stdout + r.stderr


def create_user(b, name, password):
    rc, out = cli("user", "create", name, "--password", password, "-b", b.bootstrap)
    assert rc == 0, out


@pytest.fixture
def sasl_broker(broker_factory):
    b = broker_factory(sasl_port=free_port(), extra_args=["--group-initial-rebalance-delay-ms", "0"])
    create_user(b, "alice", "alice-secret")
    return b


def auth_counts(b):
    """{(mechanism, result): count} from /metrics, summed over shards."""
    _, text = b.admin_get("/metrics")
    out = {}
    for m in re.finditer(r'corestream_sasl_authentications_total\{[^}]*mechanism="([^"]+)",result="([^"]+)"\} (\d+)',
                         text):
        out[(m[1], m[2])] = out.get((m[1], m[2]), 0) + int(m[3])
    return out


def handshake(conn, mechanism, version=1, corr=1):
    """(error_code, [mechanisms]) of a SaslHandshake."""
    conn.send(raw.frame(17, version, corr, raw.string(mechanism)))
    payload = conn.recv_frame()
    assert payload is not None, "closed instead of answering the handshake"
    (c, err, n) = struct.unpack_from(">ihi", payload, 0)
    assert c == corr
    at, names = 10, []
    for _ in range(n):
        (ln,) = struct.unpack_from(">h", payload, at)
        names.append(payload[at + 2:at + 2 + ln].decode())
        at += 2 + ln
    return err, names


def authenticate(conn, token, corr=2):
    """SaslAuthenticate v1: (error_code, message, auth_bytes, session_lifetime_ms), or None if closed."""
    conn.send(raw.frame(36, 1, corr, struct.pack(">i", len(token)) + token))
    payload = conn.recv_frame()
    if payload is None:
        return None
    (c, err, mlen) = struct.unpack_from(">ihh", payload, 0)
    assert c == corr
    at = 8
    msg = None
    if mlen >= 0:
        msg = payload[at:at + mlen].decode()
        at += mlen
    (blen,) = struct.unpack_from(">i", payload, at)
    auth = payload[at + 4:at + 4 + blen]
    (lifetime,) = struct.unpack_from(">q", payload, at + 4 + blen)
    return err, msg, auth, lifetime


def metadata_brokers(conn, corr=3):
    """Metadata v1 (no topics): [(node_id, host, port)], or None if closed."""
    conn.send(raw.frame(3, 1, corr, struct.pack(">i", 0)))
    payload = conn.recv_frame()
    if payload is None:
        return None
    at = 4
    (n,) = struct.unpack_from(">i", payload, at)
    at += 4
    out = []
    for _ in range(n):
        (node,) = struct.unpack_from(">i", payload, at)
        (hl,) = struct.unpack_from(">h", payload, at + 4)
        host = payload[at + 6:at + 6 + hl].decode()
        at += 6 + hl
        (port,) = struct.unpack_from(">i", payload, at)
        at += 4
        (rl,) = struct.unpack_from(">h", payload, at)  # rack
        at += 2 + max(rl, 0)
        out.append((node, host, port))
    return out


def plain_login(port, user="alice", password="alice-secret"):
    c = raw.Conn(port)
    assert handshake(c, "PLAIN")[0] == 0
    err, msg, _, lifetime = authenticate(c, f"\0{user}\0{password}".encode())
    assert err == 0, msg
    return c, lifetime


def kafka_python_conf(b, mechanism, password="alice-secret"):
    return dict(bootstrap_servers=f"127.0.0.1:{b.sasl_port}", security_protocol="SASL_PLAINTEXT",
                sasl_mechanism=mechanism, sasl_plain_username="alice", sasl_plain_password=password)


def librdkafka_conf(b, mechanism, password="alice-secret"):
    return {"bootstrap.servers": f"127.0.0.1:{b.sasl_port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": "alice", "sasl.password": password}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_real_clients_log_in_and_round_trip(sasl_broker, mechanism):
    b = sasl_broker
    topic = f"sasl-{mechanism.lower()}"
    before = auth_counts(b)
    # kafka-python: produce, then read back.
    p = KafkaProducer(**kafka_python_conf(b, mechanism))
    for i in range(50):
        p.send(topic, f"kp-{i}".encode())
    p.flush()
    p.close()
    # librdkafka: produce more, then read everything in a group.
    p = Producer(librdkafka_conf(b, mechanism))
    for i in range(50):
        p.produce(topic, f"rd-{i}".encode())
    assert p.flush(15) == 0
    c = Consumer(dict(librdkafka_conf(b, mechanism), **{"group.id": f"g-{mechanism}", "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got, deadline = [], time.time() + 30
    while len(got) < 100 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    c.close()
    assert sorted(got) == sorted([f"kp-{i}" for i in range(50)] + [f"rd-{i}" for i in range(50)])
    kc = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=5000, **kafka_python_conf(b, mechanism))
    assert len(list(kc)) == 100
    kc.close()
    after = auth_counts(b)
    logins = after.get((mechanism, "success"), 0) - before.get((mechanism, "success"), 0)
    assert logins >= 4, after
    assert after.get((mechanism, "failure"), 0) == before.get((mechanism, "failure"), 0)


def test_kcat_logs_in_with_scram(sasl_broker):
    b = sasl_broker
    conf = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=SCRAM-SHA-512",
            "-X", "sasl.username=alice", "-X", "sasl.password=alice-secret", "-b", f"127.0.0.1:{b.sasl_port}"]
    r = subprocess.run(["kcat", *conf, "-P", "-t", "kcat-sasl"], input="one\ntwo\nthree\n", capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["kcat", *conf, "-C", "-t", "kcat-sasl", "-o", "beginning", "-e", "-q"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["one", "two", "three"]
    r = subprocess.run(["kcat", *conf[:-3], "sasl.password=wrong", "-b", f"127.0.0.1:{b.sasl_port}", "-L"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "Authentication failed" in r.stderr or "SASL" in r.stderr, r.stderr


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_wrong_password_and_unknown_user_are_refused(sasl_broker, mechanism):
    b = sasl_broker
    errors = []
    p = Producer(dict(librdkafka_conf(b, mechanism, password="not-it"), error_cb=errors.append))
    p.produce("never", b"x")
    deadline = time.time() + 20
    while not any(e.code() == KafkaError._AUTHENTICATION for e in errors) and time.time() < deadline:
        p.poll(0.2)
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    assert auth, errors
    assert "Authentication failed" in auth[0].str(), auth[0].str()
    p.purge()
    # The same answer on the wire for a user that does not exist: nothing
    # tells which users exist.
    c = raw.Conn(b.sasl_port)
    assert handshake(c, mechanism)[0] == 0
    asked = time.monotonic()
    if mechanism == "PLAIN":
        err, msg, _, _ = authenticate(c, b"\0nobody\0whatever")
    else:
        err, msg, _, _ = authenticate(c, b"n,,n=nobody,r=abcdefgh")
    # sasl.failed_authentication_delay_ms (100 by default) before the answer.
    assert time.monotonic() - asked >= 0.09
    assert err == SASL_AUTHENTICATION_FAILED
    assert msg == f"Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
    assert c.recv_frame() is None, "a failed authentication closes the connection"
    assert auth_counts(b).get((mechanism, "failure"), 0) >= 2


def test_nothing_but_sasl_before_authentication(sasl_broker):
    b = sasl_broker
    # ApiVersions is served before anything else.
    err, apis = raw.api_versions(b.sasl_port)
    assert err == 0 and apis[17] == (0, 1) and apis[36] == (0, 2) and 50 in apis and 51 in apis
    # Any other API before authenticating closes the connection.
    c = raw.Conn(b.sasl_port)
    assert metadata_brokers(c) is None
    # SaslAuthenticate before a handshake.
    c = raw.Conn(b.sasl_port)
    assert authenticate(c, b"\0alice\0alice-secret") is None
    # A mechanism we do not offer: the error lists ours, then a close.
    c = raw.Conn(b.sasl_port)
    err, offered = handshake(c, "GSSAPI")
    assert err == UNSUPPORTED_SASL_MECHANISM and offered == MECHANISMS
    assert c.recv_frame() is None
    # Garbage tokens: SASL_AUTHENTICATION_FAILED and a close.
    for mechanism, token in [("SCRAM-SHA-256", b"\xff\xfe garbage"), ("SCRAM-SHA-512", b"n,,n=alice"),
                             ("SCRAM-SHA-512", b"p=tls-unique,,n=alice,r=x"), ("PLAIN", b"no-nul-bytes"),
                             ("PLAIN", b"\0" * 5000)]:
        c = raw.Conn(b.sasl_port)
        assert handshake(c, mechanism)[0] == 0
        err, msg, _, _ = authenticate(c, token)
        assert err == SASL_AUTHENTICATION_FAILED, (mechanism, token)
        assert c.recv_frame() is None
    # A second handshake in the middle of an exchange.
    c = raw.Conn(b.sasl_port)
    assert handshake(c, "SCRAM-SHA-256")[0] == 0
    c.send(raw.frame(17, 1, 5, raw.string("PLAIN")))
    assert c.recv_frame() is None
    # An oversized frame during the exchange.
    c = raw.Conn(b.sasl_port)
    assert handshake(c, "PLAIN")[0] == 0
    c.send(struct.pack(">i", 0x7FFFFFF0) + b"\x00" * 64)
    assert c.recv_frame() is None
    # The broker still serves: a good login, and Metadata after it.
    c, _ = plain_login(b.sasl_port)
    assert metadata_brokers(c) == [(0, "127.0.0.1", b.sasl_port)]
    c.close()
    assert b.alive()


def test_v0_handshake_takes_bare_tokens(sasl_broker):
    b = sasl_broker
    c = raw.Conn(b.sasl_port)
    assert handshake(c, "PLAIN", version=0)[0] == 0
    token = b"\0alice\0alice-secret"
    c.send(struct.pack(">i", len(token)) + token)
    assert c.recv_frame() == b"", "PLAIN's answer is an empty bare token"
    assert metadata_brokers(c) == [(0, "127.0.0.1", b.sasl_port)]
    # A bad password in a v0 exchange: v0 has no error frame, so a close.
    c = raw.Conn(b.sasl_port)
    assert handshake(c, "PLAIN", version=0)[0] == 0
    token = b"\0alice\0wrong"
    c.send(struct.pack(">i", len(token)) + token)
    assert c.recv_frame() is None


def test_each_listener_advertises_itself(sasl_broker):
    b = sasl_broker
    md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
    assert [(x.id, x.port) for x in md.brokers.values()] == [(0, b.port)]
    md = AdminClient(librdkafka_conf(b, "SCRAM-SHA-256")).list_topics(timeout=10)
    assert [(x.id, x.port) for x in md.brokers.values()] == [(0, b.sasl_port)]
    # The PLAINTEXT listener needs no login, and answers the SASL APIs as
    # Kafka does on a connection that is not authenticating.
    c = raw.Conn(b.port)
    assert handshake(c, "PLAIN") == (ILLEGAL_SASL_STATE, [])
    err, msg, _, _ = authenticate(c, b"\0alice\0alice-secret")
    assert err == ILLEGAL_SASL_STATE and "after successful authentication" in msg
    assert metadata_brokers(c) == [(0, "127.0.0.1", b.port)]


def test_user_cli_creates_lists_deletes_and_users_survive_restart(sasl_broker):
    b = sasl_broker
    create_user(b, "bob", "bob-pw")
    sasl = ["-b", f"127.0.0.1:{b.sasl_port}", "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "bob",
            "--sasl-password", "bob-pw"]
    rc, out = cli("user", "list", *sasl)
    assert rc == 0, out
    assert re.search(r"bob\s+SCRAM-SHA-256 \(4096 iterations\), SCRAM-SHA-512 \(4096 iterations\)", out), out
    rc, out = cli("user", "list", "--output", "json", "-b", b.bootstrap)
    assert rc == 0 and '"alice"' in out and '"bob"' in out, out
    # A new password replaces the old one.
    create_user(b, "bob", "bob-pw-2")
    rc, out = cli("user", "list", *sasl)
    assert rc != 0 and "SaslAuthenticationFailed" in out, out
    sasl[-1] = "bob-pw-2"
    # Replicated metadata: still there after kill -9.
    b.kill9()
    b.start()
    rc, out = cli("topic", "list", *sasl)
    assert rc == 0, out
    # Only SCRAM-SHA-256 deleted: PLAIN logins use the SHA-512 credential left.
    rc, out = cli("user", "delete", "bob", "--mechanism", "SCRAM-SHA-256", "-b", b.bootstrap)
    assert rc == 0, out
    rc, out = cli("topic", "list", "-b", f"127.0.0.1:{b.sasl_port}", "--sasl-mechanism", "PLAIN",
                  "--sasl-username", "bob", "--sasl-password", "bob-pw-2")
    assert rc == 0, out
    rc, out = cli("user", "delete", "bob", "-b", b.bootstrap)
    assert rc == 0, out
    rc, out = cli("topic", "list", *sasl)
    assert rc != 0 and "SaslAuthenticationFailed" in out, out
    rc, out = cli("user", "delete", "bob", "-b", b.bootstrap)
    assert rc != 0 and "ResourceNotFound" in out, out
    rc, out = cli("user", "create", "carol", "--password", "pw", "--iterations", "100", "-b", b.bootstrap)
    assert rc != 0 and "UnacceptableCredential" in out and "Too few iterations" in out, out


def test_sessions_expire_unless_renewed(broker_factory, tmp_path):
    cfg = tmp_path / "reauth.toml"
    cfg.write_text("[sasl]\nconnections_max_reauth_ms = 1500\n")
    b = broker_factory(sasl_port=free_port(), extra_args=["--config", str(cfg)])
    create_user(b, "alice", "alice-secret")
    # A client that does not re-authenticate is closed at its first request
    # after the session it was given.
    idle, lifetime = plain_login(b.sasl_port)
    assert lifetime == 1500
    assert metadata_brokers(idle) is not None
    # One that re-authenticates on the same connection carries on.
    renewing, _ = plain_login(b.sasl_port)
    time.sleep(1.0)
    assert handshake(renewing, "PLAIN", corr=10)[0] == 0
    err, msg, _, lifetime = authenticate(renewing, b"\0alice\0alice-secret", corr=11)
    assert err == 0 and lifetime == 1500, msg
    time.sleep(0.8)
    assert metadata_brokers(idle) is None, "an expired session must be closed"
    assert metadata_brokers(renewing) is not None
    # Re-authenticating as someone else is refused.
    create_user(b, "mallory", "m-pw")
    assert handshake(renewing, "PLAIN", corr=12)[0] == 0
    err, msg, _, _ = authenticate(renewing, b"\0mallory\0m-pw", corr=13)
    assert err == SASL_AUTHENTICATION_FAILED and "Cannot change principals" in msg
    assert renewing.recv_frame() is None
    # librdkafka re-authenticates by itself (KIP-368): it keeps producing
    # over several session lifetimes on its connections.
    p = Producer(librdkafka_conf(b, "SCRAM-SHA-512"))
    for i in range(8):
        p.produce("reauth", f"v{i}".encode())
        assert p.flush(10) == 0
        time.sleep(0.5)
    counts = auth_counts(b)
    assert counts.get(("SCRAM-SHA-512", "reauthenticated"), 0) >= 1, counts
    assert counts.get(("PLAIN", "expired"), 0) == 1, counts
    assert counts.get(("SCRAM-SHA-512", "expired"), 0) == 0, counts


def java_sasl_config(path, mechanism, user, password):
    module = ("org.apache.kafka.common.security.plain.PlainLoginModule" if mechanism == "PLAIN"
              else "org.apache.kafka.common.security.scram.ScramLoginModule")
    path.write_text("security.protocol=SASL_PLAINTEXT\n"
                    f"sasl.mechanism={mechanism}\n"
                    f'sasl.jaas.config={module} required username="{user}" password="{password}";\n')
    return str(path)


def test_java_admin_makes_users_and_clients_log_in(sasl_broker):
    """The Java client's Admin API makes, describes and deletes SCRAM users;
    its producer, consumer and admin log in with each mechanism
    (tests/java/.../ClientChecks.java, check "scram")."""
    from test_java_client import run_check
    done = run_check("scram", sasl_broker.bootstrap, f"127.0.0.1:{sasl_broker.sasl_port}")
    assert len(done) == 5, done


def test_kafka_tools_make_users_and_the_java_client_logs_in(broker_factory, tmp_path):
    """Kafka's kafka-configs makes SCRAM users (AlterUserScramCredentials);
    Kafka's console producer and consumer log in with them, and
    re-authenticate when the broker's sessions run out (KIP-368)."""
    from test_kafka_tools import tool
    cfg = tmp_path / "reauth.toml"
    cfg.write_text("[sasl]\nconnections_max_reauth_ms = 2000\n")
    b = broker_factory(sasl_port=free_port(), extra_args=["--config", str(cfg)])
    # One mechanism per call: two for one user in one request is
    # DUPLICATE_RESOURCE, on Apache Kafka 4.1 as here.
    for config in ["SCRAM-SHA-512=[iterations=8192,password=jane-pw]", "SCRAM-SHA-256=[password=jane-pw]"]:
        tool("kafka-configs", "--bootstrap-server", b.bootstrap, "--alter", "--entity-type", "users",
             "--entity-name", "jane", "--add-config", config)
    # (kafka-configs --describe of users also asks for client quotas,
    # which corestream does not have; the Java check below describes users.)
    deadline = time.time() + 10
    while True:
        rc, out = cli("user", "list", "-b", b.bootstrap)
        if "jane" in out or time.time() > deadline:
            break
        time.sleep(0.2)
    assert re.search(r"jane\s+SCRAM-SHA-256 \(4096 iterations\), SCRAM-SHA-512 \(8192 iterations\)", out), out
    sasl = f"127.0.0.1:{b.sasl_port}"
    for mechanism in MECHANISMS:
        props = java_sasl_config(tmp_path / f"{mechanism}.properties", mechanism, "jane", "jane-pw")
        topic = f"java-{mechanism.lower()}"
        lines = [f"{mechanism}-{i}" for i in range(20)]
        tool("kafka-console-producer", "--bootstrap-server", sasl, "--topic", topic, "--producer.config", props,
             stdin="\n".join(lines) + "\n")
        read = tool("kafka-console-consumer", "--bootstrap-server", sasl, "--topic", topic, "--from-beginning",
                    "--max-messages", "20", "--timeout-ms", "30000", "--consumer.config", props)
        assert sorted(read.split()) == sorted(lines)
    # A consumer that waits past two session lifetimes gets what is
    # produced then: its connections re-authenticated instead of being cut.
    props = java_sasl_config(tmp_path / "wait.properties", "SCRAM-SHA-512", "jane", "jane-pw")
    before = auth_counts(b).get(("SCRAM-SHA-512", "reauthenticated"), 0)
    waiting = subprocess.Popen(
        ["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", __import__("test_java_client").CLASSPATH,
         "org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", sasl, "--topic", "later",
         "--max-messages", "5", "--timeout-ms", "40000", "--consumer.config", props],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(6)
        p = Producer(librdkafka_conf(b, "SCRAM-SHA-256").copy() | {"sasl.username": "jane", "sasl.password": "jane-pw"})
        for i in range(5):
            p.produce("later", f"late-{i}".encode())
        assert p.flush(15) == 0
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert sorted(out.split()) == [f"late-{i}" for i in range(5)], err[-3000:]
    counts = auth_counts(b)
    assert counts.get(("SCRAM-SHA-512", "reauthenticated"), 0) > before, counts
    assert counts.get(("SCRAM-SHA-512", "expired"), 0) == 0, counts
    # A wrong password: the Java client reports the broker's refusal.
    bad = java_sasl_config(tmp_path / "bad.properties", "SCRAM-SHA-512", "jane", "nope")
    r = subprocess.run(["java", "-cp", __import__("test_java_client").CLASSPATH, "org.apache.kafka.tools.TopicCommand",
                        "--bootstrap-server", sasl, "--list", "--command-config", bad],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "SaslAuthenticationException" in r.stderr + r.stdout and "Authentication failed" in r.stderr + r.stdout


def test_a_user_made_on_one_node_logs_in_on_every_node(tmp_path):
    """Users are replicated metadata: made through node 0, they log in on
    each node's SASL listener, whose Metadata lists every node at its SASL
    address; librdkafka produces and consumes over SASL across the cluster."""
    from test_cluster import Cluster
    c = Cluster(tmp_path, sasl=True).start()
    try:
        create_user(c.nodes[0], "alice", "alice-secret")

        def everywhere():
            for b in c.nodes:
                conn = raw.Conn(b.sasl_port)
                assert handshake(conn, "PLAIN")[0] == 0
                err, _, _, _ = authenticate(conn, b"\0alice\0alice-secret")
                if err != 0:
                    return False
                brokers = metadata_brokers(conn)
                if sorted(brokers) != sorted((i, "127.0.0.1", n.sasl_port) for i, n in enumerate(c.nodes)):
                    return False
                conn.close()
            return True
        c.wait(everywhere)
        bootstrap = ",".join(f"127.0.0.1:{b.sasl_port}" for b in c.nodes)
        conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "alice", "sasl.password": "alice-secret"}
        admin = AdminClient(conf)
        admin.create_topics([NewTopic("cl-sasl", 3, 3)])["cl-sasl"].result(30)
        p = Producer(dict(conf, acks="all"))
        for i in range(60):
            p.produce("cl-sasl", f"v{i}".encode(), partition=i % 3)
        assert p.flush(30) == 0
        consumer = Consumer(dict(conf, **{"group.id": "cl-sasl", "auto.offset.reset": "earliest"}))
        consumer.subscribe(["cl-sasl"])
        got, deadline = set(), time.time() + 30
        while len(got) < 60 and time.time() < deadline:
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                got.add(m.value().decode())
        consumer.close()
        assert got == {f"v{i}" for i in range(60)}
    finally:
        c.stop()
