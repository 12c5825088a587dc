"""corestream-bench against the real broker: every message it reports as
produced is consumed and counted once; fixed-rate runs hold their rate;
end-to-end mode measures latency."""
import json
import subprocess

from conftest import ROOT

BENCH = ROOT / "target" / "release" / "corestream-bench"


def bench(*args, timeout=60):
    r = subprocess.run([str(BENCH), *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r.stdout


def results(path):
    return {s["mode"]: s for s in json.loads(path.read_text())}


def test_produce_then_consume_counts_every_message_once(broker, tmp_path):
    p, c = tmp_path / "p.json", tmp_path / "c.json"
    out = bench("produce", "--bootstrap", broker.bootstrap, "--topic", "b", "--partitions", "4",
                "--duration", "2s", "--acks", "all", "--json", str(p))
    assert "msg/s" in out and "latency ms: p50" in out
    bench("consume", "--bootstrap", broker.bootstrap, "--topic", "b", "--until-end", "--json", str(c))
    produced, consumed = results(p)["produce"], results(c)["consume"]
    assert produced["errors"] == {} and consumed["errors"] == {}
    assert produced["messages"] > 0
    assert consumed["messages"] == produced["messages"]
    assert consumed["bytes"] >= produced["bytes"]  # plus batch and record headers
    assert produced["latency_us"]["p50"] <= produced["latency_us"]["p99"] <= produced["latency_us"]["max"]


def test_fixed_rate_and_end_to_end_latency(broker, tmp_path):
    out_json = tmp_path / "e2e.json"
    bench("e2e", "--bootstrap", broker.bootstrap, "--topic", "lat", "--partitions", "2", "--duration", "2s",
          "--rate", "20000", "--acks", "all", "--batch-messages", "50", "--json", str(out_json))
    r = results(out_json)
    produced, consumed = r["produce"], r["consume"]
    # The schedule asks for 20000 msg/s over 2 s, in whole batches.
    assert 36_000 <= produced["messages"] <= 40_000, produced["messages"]
    assert consumed["messages"] == produced["messages"]
    assert consumed["latency_us"]["max"] >= consumed["latency_us"]["p50"] > 0
