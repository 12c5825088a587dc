"""deploy/ stays true to the broker: every metric the Grafana dashboard
queries is one the broker exports, and the example config is accepted."""
import json
import re
import subprocess

from conftest import BIN, ROOT


def test_dashboard_queries_only_exported_metrics(broker):
    status, body = broker.admin_get("/metrics")
    assert status == 200
    families = set(re.findall(r"^# TYPE (corestream_[a-z_]+) (\w+)$", body, re.M))
    exported = {name for name, _ in families}
    exported |= {f"{name}_{suffix}" for name, kind in families if kind == "summary" for suffix in ("sum", "count")}
    dash = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    used = {m for p in dash["panels"] for t in p["targets"] for m in re.findall(r"corestream_[a-z_]+", t["expr"])}
    assert used, "the dashboard queries metrics"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_example_config_is_valid():
    r = subprocess.run([str(BIN), "start", "--config", str(ROOT / "deploy" / "corestream.example.toml"), "--print-config"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr


def test_cluster_example_config_is_valid_for_every_node():
    cfg = ROOT / "deploy" / "corestream.cluster.example.toml"
    for node in (0, 1, 2):
        r = subprocess.run([str(BIN), "start", "--config", str(cfg), "--node-id", str(node), "--print-config"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert f"node_id = {node}" in r.stdout
    # A node missing from the list is refused, naming the key.
    r = subprocess.run([str(BIN), "start", "--config", str(cfg), "--node-id", "7", "--print-config"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "cluster.nodes" in r.stderr, r.stderr
