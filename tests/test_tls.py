"""TLS on SSL and SASL_SSL listeners, with real clients (confluent-kafka /
librdkafka, kcat, kafka-python, Kafka's Java tools) and certificates made by
openssl: trusted, untrusted (another CA) and expired server certificates,
client certificates optional and required (mTLS), and a certificate
replaced on disk while connections are open."""
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from kafka import KafkaConsumer, KafkaProducer

import kafka_raw as raw
from certs import Certs
from conftest import free_port
from test_sasl import create_user


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("certs"))


def tls_broker(broker_factory, tmp_path, certs, client_auth="none", server="server", more_toml=""):
    ssl_port, sasl_ssl_port = free_port(), free_port()
    cfg = tmp_path / "tls.toml"
    cfg.write_text(
        "[ssl]\n"
        f'certificate_chain_file = "{tmp_path / "live.pem"}"\n'
        f'private_key_file = "{tmp_path / "live.key"}"\n'
        f'truststore_file = "{certs.path("ca.pem")}"\n'
        f'client_auth = "{client_auth}"\n' + more_toml)
    # The broker reads its certificate from files the test may replace.
    shutil.copy(certs.path(f"{server}.pem"), tmp_path / "live.pem")
    shutil.copy(certs.path(f"{server}.key"), tmp_path / "live.key")
    b = broker_factory(listeners=[f"SSL://127.0.0.1:{ssl_port}", f"SASL_SSL://127.0.0.1:{sasl_ssl_port}"],
                       extra_args=["--config", str(cfg), "--group-initial-rebalance-delay-ms", "0"])
    b.ssl_port, b.sasl_ssl_port = ssl_port, sasl_ssl_port
    return b


def rdkafka_conf(port, certs, **more):
    conf = {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SSL",
            "ssl.ca.location": certs.path("ca.pem")}
    conf.update(more)
    return conf


def tls_api_versions(port, context):
    """ApiVersions over TLS on a raw socket: (error_code, the server's certificate serial)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with context.wrap_socket(s, server_hostname="127.0.0.1") as t:
            t.sendall(raw.frame(18, 0, 7, b""))
            head = t.recv(4)
            (n,) = struct.unpack(">i", head)
            body = b""
            while len(body) < n:
                body += t.recv(n - len(body))
            cert = t.getpeercert()
            return struct.unpack_from(">h", body, 4)[0], cert["serialNumber"]


def tls_failures(b):
    _, text = b.admin_get("/metrics")
    return sum(int(m[1]) for m in re.finditer(r"corestream_tls_handshake_failures_total\{[^}]*\} (\d+)", text))


def round_trip_rdkafka(conf, topic, n=50):
    p = Producer(conf)
    for i in range(n):
        p.produce(topic, f"{topic}-{i}".encode())
    assert p.flush(20) == 0
    c = Consumer(dict(conf, **{"group.id": f"g-{topic}", "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got, deadline = [], time.time() + 30
    while len(got) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    c.close()
    assert sorted(got) == sorted(f"{topic}-{i}" for i in range(n))


def test_clients_over_ssl_and_sasl_ssl(broker_factory, tmp_path, certs):
    b = tls_broker(broker_factory, tmp_path, certs)
    create_user(b, "alice", "alice-secret")
    # librdkafka: SSL, and SASL_SSL with SCRAM.
    round_trip_rdkafka(rdkafka_conf(b.ssl_port, certs), "tls-rd")
    round_trip_rdkafka(rdkafka_conf(b.sasl_ssl_port, certs, **{
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice",
        "sasl.password": "alice-secret"}), "tls-rd-sasl")
    # kafka-python: SASL_SSL with PLAIN, checking the hostname.
    common = dict(bootstrap_servers=f"127.0.0.1:{b.sasl_ssl_port}", security_protocol="SASL_SSL",
                  ssl_cafile=certs.path("ca.pem"), sasl_mechanism="PLAIN", sasl_plain_username="alice",
                  sasl_plain_password="alice-secret")
    p = KafkaProducer(**common)
    for i in range(20):
        p.send("tls-kp", f"kp-{i}".encode())
    p.flush()
    p.close()
    kc = KafkaConsumer("tls-kp", auto_offset_reset="earliest", consumer_timeout_ms=5000, **common)
    assert sorted(m.value.decode() for m in kc) == sorted(f"kp-{i}" for i in range(20))
    kc.close()
    # kcat over SSL: metadata names the SSL listener's address.
    r = subprocess.run(["kcat", "-b", f"127.0.0.1:{b.ssl_port}", "-X", "security.protocol=SSL",
                        "-X", f"ssl.ca.location={certs.path('ca.pem')}", "-L"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"broker 0 at 127.0.0.1:{b.ssl_port}" in r.stdout, r.stdout
    # Kafka's Java console tools over SASL_SSL, trusting the CA as PEM.
    from test_kafka_tools import tool
    props = tmp_path / "java.properties"
    props.write_text("security.protocol=SASL_SSL\nssl.truststore.type=PEM\n"
                     f"ssl.truststore.location={certs.path('ca.pem')}\nsasl.mechanism=SCRAM-SHA-256\n"
                     "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                     'username="alice" password="alice-secret";\n')
    lines = [f"java-{i}" for i in range(10)]
    sasl_ssl = f"127.0.0.1:{b.sasl_ssl_port}"
    tool("kafka-console-producer", "--bootstrap-server", sasl_ssl, "--topic", "tls-java", "--producer.config",
         str(props), stdin="\n".join(lines) + "\n")
    read = tool("kafka-console-consumer", "--bootstrap-server", sasl_ssl, "--topic", "tls-java",
                "--from-beginning", "--max-messages", "10", "--timeout-ms", "30000", "--consumer.config", str(props))
    assert sorted(read.split()) == sorted(lines)
    # Nothing above failed a handshake.
    assert tls_failures(b) == 0


def test_untrusted_expired_and_plaintext_are_refused(broker_factory, tmp_path, certs):
    b = tls_broker(broker_factory, tmp_path, certs)
    # A client that trusts another CA refuses the broker.
    errors = []
    p = Producer(rdkafka_conf(b.ssl_port, certs, **{"ssl.ca.location": certs.path("rogue-ca.pem"),
                                                     "error_cb": errors.append}))
    p.produce("never", b"x")
    deadline = time.time() + 15
    while not errors and time.time() < deadline:
        p.poll(0.2)
    assert any(e.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN) for e in errors)
    assert any("certificate verify failed" in e.str() for e in errors), [e.str() for e in errors]
    p.purge()
    # A plaintext client on the TLS port: its handshake fails, counted.
    before = tls_failures(b)
    c = raw.Conn(b.ssl_port)
    c.send(raw.frame(18, 0, 1, b""))
    assert c.recv_frame() is None
    deadline = time.time() + 5
    while tls_failures(b) == before and time.time() < deadline:
        time.sleep(0.1)
    assert tls_failures(b) == before + 1
    # The broker still serves TLS clients.
    ctx = ssl.create_default_context(cafile=certs.path("ca.pem"))
    assert tls_api_versions(b.ssl_port, ctx)[0] == 0


def test_an_expired_server_certificate_is_refused_by_clients(broker_factory, tmp_path, certs):
    b = tls_broker(broker_factory, tmp_path, certs, server="expired-server")
    ctx = ssl.create_default_context(cafile=certs.path("ca.pem"))
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        tls_api_versions(b.ssl_port, ctx)
    r = subprocess.run(["kcat", "-b", f"127.0.0.1:{b.ssl_port}", "-X", "security.protocol=SSL",
                        "-X", f"ssl.ca.location={certs.path('ca.pem')}", "-L", "-m", "5"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "certificate verify failed" in r.stderr, r.stderr


def test_client_certificates_required(broker_factory, tmp_path, certs):
    b = tls_broker(broker_factory, tmp_path, certs, client_auth="required")

    def attempt(cert):
        ctx = ssl.create_default_context(cafile=certs.path("ca.pem"))
        if cert:
            ctx.load_cert_chain(certs.path(f"{cert}.pem"), certs.path(f"{cert}.key"))
        try:
            return tls_api_versions(b.ssl_port, ctx)[0] == 0
        except (ssl.SSLError, ConnectionError, OSError, struct.error):
            return False

    assert attempt("client")
    before = tls_failures(b)
    assert not attempt(None), "a client without a certificate must be refused"
    assert not attempt("rogue-client"), "a certificate from another CA must be refused"
    assert not attempt("expired-client"), "an expired client certificate must be refused"
    assert tls_failures(b) >= before + 3
    # librdkafka with its certificate.
    round_trip_rdkafka(rdkafka_conf(b.ssl_port, certs, **{
        "ssl.certificate.location": certs.path("client.pem"), "ssl.key.location": certs.path("client.key")}),
        "mtls-rd")


def test_a_replaced_certificate_serves_new_connections_and_keeps_old_ones(broker_factory, tmp_path, certs):
    b = tls_broker(broker_factory, tmp_path, certs)
    ctx = ssl.create_default_context(cafile=certs.path("ca.pem"))
    _, first_serial = tls_api_versions(b.ssl_port, ctx)
    # A connection that stays open across the change.
    s = socket.create_connection(("127.0.0.1", b.ssl_port), timeout=5)
    held = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    # Renew: a new certificate for the same name from the same CA. Written
    # to temporary names and renamed, as certificate tools do.
    Certs.leaf(certs, "renewed", "ca", "localhost", server=True)
    shutil.copy(certs.path("renewed.pem"), tmp_path / "live.pem.new")
    shutil.copy(certs.path("renewed.key"), tmp_path / "live.key.new")
    os.replace(tmp_path / "live.key.new", tmp_path / "live.key")
    os.replace(tmp_path / "live.pem.new", tmp_path / "live.pem")
    deadline = time.time() + 30
    serial = first_serial
    while serial == first_serial and time.time() < deadline:
        time.sleep(1)
        _, serial = tls_api_versions(b.ssl_port, ctx)
    assert serial != first_serial, "new connections still get the old certificate"
    # The connection made before the change still works.
    held.sendall(raw.frame(18, 0, 9, b""))
    (n,) = struct.unpack(">i", held.recv(4))
    assert n > 0
    held.close()
    assert "TLS certificate reloaded" in b.log_text()


def test_raft_peers_need_a_certificate_naming_their_node(tmp_path, certs):
    """cluster.tls: the Raft transport is mutual TLS; a peer is taken only
    with a certificate from the cluster's CA that names the node its hello
    claims to be."""
    from test_cluster import Cluster
    for i in range(3):
        certs.node(f"node{i}", "ca", i)
    certs.node("rogue-node1", "rogue-ca", 1)

    def tls_for(i):
        return ("[cluster.tls]\n"
                f'ca_file = "{certs.path("ca.pem")}"\n'
                f'certificate_chain_file = "{certs.path(f"node{i}.pem")}"\n'
                f'private_key_file = "{certs.path(f"node{i}.key")}"\n')

    c = Cluster(tmp_path, per_node=tls_for).start()
    try:
        # Replication works over TLS: a replicated topic, acks=all, read back.
        conf = {"bootstrap.servers": c.bootstrap()}
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient(conf)
        admin.create_topics([NewTopic("raft-tls", 2, 3)])["raft-tls"].result(30)
        c.wait(lambda: c.settled("raft-tls", 2))
        round_trip_rdkafka(dict(conf, acks="all"), "raft-tls", n=40)

        raft_port = c.raft_ports[0]

        def attempt(cert, claim):
            """Connects to node 0's Raft port as `claim` (a node id): True if
            the connection is still open after the hello."""
            ctx = ssl.create_default_context(cafile=certs.path("ca.pem"))
            ctx.check_hostname = False
            if cert:
                ctx.load_cert_chain(certs.path(f"{cert}.pem"), certs.path(f"{cert}.key"))
            try:
                with socket.create_connection(("127.0.0.1", raft_port), timeout=5) as s:
                    with ctx.wrap_socket(s) as t:
                        t.sendall(struct.pack("<Q", claim + 1))
                        t.settimeout(2)
                        try:
                            return t.recv(1) != b""
                        except socket.timeout:
                            return True  # still open, nothing to say: taken
            except (ssl.SSLError, ConnectionError, OSError):
                return False

        assert attempt("node1", 1), "node 1's own certificate must be taken"
        assert not attempt("node2", 1), "node 2's certificate claiming node 1 must be refused"
        assert not attempt(None, 1), "no certificate must be refused"
        assert not attempt("rogue-node1", 1), "a certificate from another CA must be refused"
        # A plaintext peer (the transport without TLS) is closed, at most
        # with a TLS alert record (type 21).
        with socket.create_connection(("127.0.0.1", raft_port), timeout=5) as s:
            s.sendall(struct.pack("<Q", 2) + b"\x00" * 64)
            got = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            assert got == b"" or got[0] == 21, got[:16]
        assert "certificate does not name that node" in c.nodes[0].log_text()
        # The cluster still serves.
        round_trip_rdkafka(dict(conf, acks="all"), "raft-tls-after", n=20)
    finally:
        c.stop()


def test_doctor_checks_the_certificates(tmp_path, certs):
    import json
    from test_doctor import doctor
    for i in range(2):
        certs.node(f"doc-node{i}", "ca", i)

    def run(cert, key, raft=None, mode=0o600):
        os.chmod(certs.path(f"{key}.key"), mode)
        cfg = tmp_path / "doctor.toml"
        text = (f'listeners = ["SSL://127.0.0.1:{free_port()}"]\n'
                f'[ssl]\ncertificate_chain_file = "{certs.path(cert + ".pem")}"\n'
                f'private_key_file = "{certs.path(key + ".key")}"\n')
        if raft:
            text += (f'[cluster]\nnodes = [{{ id = 0, kafka = "127.0.0.1:1", raft = "127.0.0.1:2" }}]\n'
                     f'[cluster.tls]\nca_file = "{certs.path("ca.pem")}"\n'
                     f'certificate_chain_file = "{certs.path(raft + ".pem")}"\n'
                     f'private_key_file = "{certs.path(raft + ".key")}"\n')
        cfg.write_text(text)
        r = doctor("--config", str(cfg), "--data-dir", str(tmp_path / "data"), "--output", "json")
        return {c["name"]: c for c in json.loads(r.stdout)}

    good = run("server", "server")["tls certificate (listeners)"]
    assert good["status"] == "pass" and "valid for 364 more days" in good["detail"], good
    expired = run("expired-server", "expired-server")["tls certificate (listeners)"]
    assert expired["status"] == "fail" and "expired" in expired["detail"] and "renew" in expired["fix"], expired
    mismatched = run("server", "client")["tls certificate (listeners)"]
    assert mismatched["status"] == "fail" and "does not belong" in mismatched["detail"], mismatched
    readable = run("server", "server", mode=0o644)["tls certificate (listeners)"]
    assert readable["status"] == "warn" and readable["fix"].startswith("chmod 600"), readable
    os.chmod(certs.path("server.key"), 0o600)
    assert run("server", "server", raft="doc-node0")["tls certificate (raft)"]["status"] == "pass"
    other = run("server", "server", raft="doc-node1")["tls certificate (raft)"]
    assert other["status"] == "fail" and "corestream-node-0" in other["detail"], other
