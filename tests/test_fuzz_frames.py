"""Random requests on raw sockets: every supported API and version, with
bodies that are random, truncated or that claim huge array lengths. The
broker answers or closes that connection, and stays up for everyone.
The seed is printed, so a failure replays with FUZZ_SEED=<seed>."""
import os
import random
import struct

import kafka_raw as raw
from test_bad_input import still_serving

SUPPORTED = {0: (3, 11), 1: (4, 12), 2: (1, 10), 3: (0, 13), 10: (0, 5), 15: (0, 6), 18: (0, 4), 19: (2, 7),
             20: (1, 6), 22: (0, 4), 32: (1, 4), 37: (0, 3), 44: (0, 1), 60: (0, 2)}


def random_body(rng):
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 200))
    if kind == 1:  # a huge array or string length up front
        return struct.pack(">i", rng.choice([0x7FFFFFFF, 0x10000000, -2])) + rng.randbytes(16)
    if kind == 2:  # compact (flexible) varint lengths that overflow
        return b"\xff\xff\xff\xff\x0f" + rng.randbytes(rng.randrange(0, 40))
    return b""


def test_random_frames_never_take_the_broker_down(broker):
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(1 << 30)))
    print(f"\nFUZZ_SEED={seed}")
    rng = random.Random(seed)
    for _ in range(3000):
        api = rng.choice(list(SUPPORTED))
        lo, hi = SUPPORTED[api]
        version = rng.randint(lo, hi)
        c = raw.Conn(broker.port, timeout=10)
        body = random_body(rng)
        c.send(raw.frame(api, version, rng.randrange(1 << 31), body, client_id=rng.choice(["f", ""])))
        c.recv_frame()  # an answer or a close; either is fine, a hang is not
        c.close()
        assert broker.alive(), f"broker died; replay with FUZZ_SEED={seed}"
    still_serving(broker)
