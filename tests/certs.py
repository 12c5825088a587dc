"""Test certificates made with the openssl command line: a CA, server and
client certificates it signs, a second CA nobody trusts, and certificates
that expired (made under faketime, which scripts/test installs)."""
import subprocess
from pathlib import Path


def _run(*args, cwd, fake_time=None):
    cmd = (["faketime", fake_time] if fake_time else []) + ["openssl", *args]
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=60)


class Certs:
    """PEM files under `dir`: ca.pem; server.pem/.key (127.0.0.1), client.pem/.key
    (CN=client), rogue-ca.pem with rogue-server and rogue-client it signs,
    expired-server and expired-client (valid for a day in 2020)."""

    def __init__(self, dir):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca("ca")
        self.ca("rogue-ca")
        self.leaf("server", "ca", "localhost", server=True)
        self.leaf("client", "ca", "client")
        self.leaf("rogue-server", "rogue-ca", "localhost", server=True)
        self.leaf("rogue-client", "rogue-ca", "client")
        self.leaf("expired-server", "ca", "localhost", server=True, fake_time="2020-01-01 00:00:00", days=1)
        self.leaf("expired-client", "ca", "client", fake_time="2020-01-01 00:00:00", days=1)

    def path(self, name):
        return str(self.dir / name)

    def ca(self, name):
        _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "365", "-subj", f"/CN={name}", cwd=self.dir)

    def node(self, name, ca, node_id):
        """A Raft peer certificate: it names corestream-node-<id>, for both ends of a connection."""
        self.leaf(name, ca, f"corestream-node-{node_id}", server=True,
                  san=f"DNS:corestream-node-{node_id}", usage="serverAuth,clientAuth")

    def leaf(self, name, ca, cn, server=False, fake_time=None, days=365, san=None, usage=None, subject=None):
        """`subject` (openssl's /K=V/... form) replaces /CN=cn."""
        _run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject or f"/CN={cn}", cwd=self.dir)
        ext = self.dir / f"{name}.ext"
        if san:
            ext.write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
        else:
            ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else "extendedKeyUsage=clientAuth\n")
        _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", str(days), "-extfile", ext.name, cwd=self.dir, fake_time=fake_time)
