"""The command line: help that documents every option, and config files
whose mistakes are reported by key, with a non-zero exit and nothing
written to the data directory."""
import subprocess

from conftest import BIN


def run(*args):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=20)


def test_help_documents_every_option():
    out = run("start", "--help").stdout
    for flag in ["--config", "--listen", "--advertised", "--admin-listen", "--data-dir", "--shards", "--cores",
                 "--memory-per-shard", "--node-id", "--max-partitions-per-shard", "--wal-segment-bytes",
                 "--print-config"]:
        assert flag in out


def test_bad_config_names_the_key_and_writes_nothing(tmp_path):
    data = tmp_path / "data"
    cases = {
        'lisen = "127.0.0.1:1"\n': "lisen",
        'memory_per_shard = "1KiB"\n': "memory_per_shard",
        '[limits]\nmax_partitions_per_shard = 0\n': "limits.max_partitions_per_shard",
        '[wal]\nsegment_bytes = "1000000"\n': "wal.segment_bytes",
        'memory_per_shard = "12 parsecs"\n': "parsecs",
    }
    for text, key in cases.items():
        cfg = tmp_path / "bad.toml"
        cfg.write_text(f'data_dir = "{data}"\n' + text)
        r = run("start", "--config", str(cfg))
        assert r.returncode != 0
        assert key in r.stderr, (text, r.stderr)
        assert not data.exists(), "a rejected config must not create the data directory"


def test_print_config_shows_effective_values(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[limits]\nmax_partitions_per_shard = 77\n')
    r = run("start", "--config", str(cfg), "--listen", "127.0.0.1:19999", "--print-config")
    assert r.returncode == 0, r.stderr
    assert 'listen = "127.0.0.1:19999"' in r.stdout
    assert "max_partitions_per_shard = 77" in r.stdout
