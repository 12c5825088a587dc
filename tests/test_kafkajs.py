"""kafkajs, a third independent client (pure JavaScript): admin, plain and
idempotent producers. (Its consumer needs consumer groups, which are not
served yet.)"""
import json
import os
import subprocess
from pathlib import Path

from test_roundtrip import consume_all

JS = Path(__file__).resolve().parent / "js"


def test_kafkajs_admin_and_producers(broker):
    r = subprocess.run(["node", str(JS / "produce.js"), broker.bootstrap, "kjs"], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert sorted((s["partition"], s["errorCode"], s["baseOffset"]) for s in out["sent"]) == [(0, 0, "0"), (1, 0, "0")]
    assert out["idemSent"][0]["errorCode"] == 0 and out["idemSent"][0]["baseOffset"] == "50"
    assert sorted((o["partition"], o["high"]) for o in out["offsets"]) == [(0, "51"), (1, "50")]
    assert "kjs" in out["topics"]
    got = consume_all(broker.bootstrap, "kjs", 2, 101)
    by_key = {m.key(): m.value() for m in got if m.key()}
    assert len(got) == 101 and by_key[b"k7"] == b"v7"
