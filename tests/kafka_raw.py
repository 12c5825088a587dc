"""Raw Kafka wire helpers for tests that must send what no client would:
hand-built frames per the Kafka protocol guide, and a record-batch encoder
with its CRC-32C, so the broker's answers are checked against the spec
rather than against a client library's behaviour."""
import socket
import struct


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def uvarint(n):
    """An unsigned varint (lengths of flexible versions' compact strings)."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(n):
    """A zigzag varint (record fields)."""
    return uvarint((n << 1) ^ (n >> 63))


def read_uvarint(b, at):
    """(value, position after it)."""
    n = shift = 0
    while True:
        byte = b[at]
        at += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, at


def record_batch(values, base_timestamp=1_700_000_000_000, producer=(-1, -1, -1), deltas=None,
                 gzip=False):
    """A magic-2 batch holding `values` (bytes), no keys; `producer` is
    (producer id, epoch, base sequence) for idempotence; `deltas` the
    records' timestamp deltas from `base_timestamp` (0 each by default);
    `gzip`: the records compressed with gzip (codec 1)."""
    deltas = deltas or [0] * len(values)
    records = b""
    for i, v in enumerate(values):
        body = b"\x00" + varint(deltas[i]) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        records += varint(len(body)) + body
    if gzip:
        import gzip as gz
        records = gz.compress(records)
    pid, epoch, seq = producer
    after_crc = struct.pack(">hiqqqhii", 1 if gzip else 0, len(values) - 1, base_timestamp,
                            base_timestamp + max(deltas), pid, epoch, seq, len(values)) + records
    crc = crc32c(after_crc)
    head = struct.pack(">iBI", 0, 2, crc)  # partitionLeaderEpoch, magic, crc
    body = head + after_crc
    return struct.pack(">qi", 0, len(body)) + body


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def string_null():
    return struct.pack(">h", -1)


def compact_string(s):
    b = s.encode()
    return uvarint(len(b) + 1) + b


def flexible_frame(api_key, version, correlation_id, body):
    """A request with a v2 (flexible) header: client id, no tagged fields."""
    payload = struct.pack(">hhi", api_key, version, correlation_id) + string("raw-test") + b"\x00" + body
    return struct.pack(">i", len(payload)) + payload


def frame(api_key, version, correlation_id, body, client_id="raw-test"):
    """A request with a v1 (non-flexible) header."""
    payload = struct.pack(">hhi", api_key, version, correlation_id) + string(client_id) + body
    return struct.pack(">i", len(payload)) + payload


def produce_v3(topic, partition, batch, acks=-1, timeout_ms=5000):
    body = struct.pack(">hhi", -1, acks, timeout_ms)  # null transactional id
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1)
    body += struct.pack(">i", partition) + struct.pack(">i", len(batch)) + batch
    return body


def parse_produce_v3_response(payload):
    """Returns [(topic, partition, error_code, base_offset)]."""
    at = 4  # correlation id
    out = []
    (n_topics,) = struct.unpack_from(">i", payload, at)
    at += 4
    for _ in range(n_topics):
        (ln,) = struct.unpack_from(">h", payload, at)
        topic = payload[at + 2:at + 2 + ln].decode()
        at += 2 + ln
        (n_parts,) = struct.unpack_from(">i", payload, at)
        at += 4
        for _ in range(n_parts):
            part, err, base, _append_time = struct.unpack_from(">ihqq", payload, at)
            at += 22
            out.append((topic, part, err, base))
    return out


class Conn:
    def __init__(self, port, timeout=5, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)

    def send(self, data):
        self.sock.sendall(data)

    def recv_frame(self):
        """The next response payload, or None if the broker closed the connection."""
        head = self._recv_exact(4)
        if head is None:
            return None
        (n,) = struct.unpack(">i", head)
        return self._recv_exact(n)

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def closed_by_peer(self):
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def api_versions(port, version=0):
    """(error_code, {api_key: (min, max)}) from an ApiVersions request."""
    c = Conn(port)
    c.send(frame(18, version, 7, b""))
    payload = c.recv_frame()
    c.close()
    (corr, err, n) = struct.unpack_from(">ihi", payload, 0)
    assert corr == 7
    apis = {}
    for i in range(n):
        k, lo, hi = struct.unpack_from(">hhh", payload, 10 + 6 * i)
        apis[k] = (lo, hi)
    return err, apis


def wal_records(path):
    """(offset, length, term, index, kind) of each valid record of a WAL
    segment, parsed from the documented framing
    `len u32 | crc32c u32 | term u64 | index u64 | kind u8 | payload`."""
    data = open(path, "rb").read()
    at = 0
    out = []
    while at + 25 <= len(data):
        (ln, crc) = struct.unpack_from("<II", data, at)
        end = at + 25 + ln
        if end > len(data):
            break
        if crc32c(data[at:at + 4] + data[at + 8:end]) != crc:
            break
        term, index, kind = struct.unpack_from("<QQB", data, at + 8)
        out.append((at, 25 + ln, term, index, kind))
        at = end
    return out
