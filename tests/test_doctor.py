"""`corestream doctor`: every check's pass path on this machine, and the
fail paths that can be simulated — a data dir on tmpfs (memory: nothing
acknowledged would survive a reboot; older kernels also refuse O_DIRECT
there), and a low locked-memory limit for an unprivileged user — with
`start` refusing to run, with the same sentence, on a fatal one."""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import BIN, free_port

CHECKS = {"io_uring sysctl", "io_uring", "locked memory", "open files", "cpus", "data dir", "free disk", "clock sync"}


def doctor(*args, prefix=()):
    return subprocess.run([*prefix, str(BIN), "doctor", *args], capture_output=True, text=True, timeout=30)


def test_doctor_passes_here_and_writes_nothing(tmp_path):
    data = tmp_path / "data"
    r = doctor("--data-dir", str(data), "--output", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    checks = {c["name"]: c for c in json.loads(r.stdout)}
    assert set(checks) == CHECKS
    for name in ["io_uring", "locked memory", "data dir"]:
        assert checks[name]["status"] == "pass" and checks[name]["fatal"]
    for c in checks.values():
        assert c["status"] in ("pass", "warn", "fail")
        assert (c["fix"] is None) == (c["status"] == "pass")
    assert not data.exists() and list(tmp_path.iterdir()) == []
    text = doctor("--data-dir", str(data)).stdout
    assert "PASS  io_uring" in text


@pytest.fixture
def tmpfs_dir(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_data_dir_on_tmpfs_fails_and_start_refuses(tmpfs_dir):
    r = doctor("--data-dir", str(tmpfs_dir / "data"), "--output", "json")
    assert r.returncode == 1
    dd = {c["name"]: c for c in json.loads(r.stdout)}["data dir"]
    assert dd["status"] == "fail" and "tmpfs" in dd["detail"] and "ext4 or xfs" in dd["fix"]
    port = free_port()
    s = subprocess.run([str(BIN), "start", "--data-dir", str(tmpfs_dir / "data"), "--listen", f"127.0.0.1:{port}",
                        "--admin-listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=30)
    assert s.returncode == 1
    assert "data dir" in s.stderr and "tmpfs" in s.stderr and "ext4 or xfs" in s.stderr
    assert "panicked" not in s.stderr and "backtrace" not in s.stderr


def test_low_memlock_for_an_unprivileged_user_fails_with_the_fix(request):
    if os.geteuid() != 0:
        pytest.skip("dropping to an unprivileged user needs root")
    # A directory the unprivileged user can reach (pytest's tmp_path is 0700).
    shared = tempfile.mkdtemp(prefix="corestream-doctor-")
    os.chmod(shared, 0o777)
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    data = os.path.join(shared, "data")
    drop = ["prlimit", "--memlock=65536:65536", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    r = doctor("--data-dir", data, "--shards", "2", "--output", "json", prefix=drop)
    assert r.returncode == 1, r.stdout + r.stderr
    mem = {c["name"]: c for c in json.loads(r.stdout)}["locked memory"]
    assert mem["status"] == "fail" and "64 KiB" in mem["detail"]
    assert "LimitMEMLOCK=infinity" in mem["fix"] and "ulimit -l unlimited" in mem["fix"]
    s = subprocess.run([*drop, str(BIN), "start", "--data-dir", data, "--shards", "2",
                        "--listen", f"127.0.0.1:{free_port()}", "--admin-listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=30)
    assert s.returncode == 1
    assert "locked memory" in s.stderr and "LimitMEMLOCK=infinity" in s.stderr


def test_authorizer_checks(tmp_path):
    """With the authorizer on: a warning when nobody is a super user, and
    when the anonymous super user is reachable from the network."""
    def check(toml):
        cfg = tmp_path / "c.toml"
        cfg.write_text(toml)
        r = doctor("--config", str(cfg), "--data-dir", str(tmp_path / "data"), "--output", "json")
        return {c["name"]: c for c in json.loads(r.stdout)}.get("authorizer")
    assert check("") is None
    none = check("[authorizer]\nenabled = true\n")
    assert none["status"] == "warn" and "no super user" in none["detail"]
    exposed = check('listeners = ["PLAINTEXT://0.0.0.0:9092", "SASL_PLAINTEXT://127.0.0.1:9093"]\n'
                    '[authorizer]\nenabled = true\nsuper_users = ["User:ANONYMOUS"]\n')
    assert exposed["status"] == "warn" and "0.0.0.0:9092" in exposed["detail"], exposed
    local = check('listeners = ["PLAINTEXT://127.0.0.1:9092", "SASL_PLAINTEXT://0.0.0.0:9093"]\n'
                  '[authorizer]\nenabled = true\nsuper_users = ["User:ANONYMOUS", "User:admin"]\n')
    assert local["status"] == "pass" and "User:admin" in local["detail"], local
