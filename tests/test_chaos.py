"""The 2-minute version of the fault-injection run (tests/chaos.py): a
3-node cluster in network namespaces under kill -9, SIGSTOP, SIGTERM and
partitions, with producers and a consumer group running throughout; no
acknowledged record may be lost or moved, the idempotent producer's
records stay once each and in order, committed offsets never go back.
CHAOS_SEED=<seed> replays a run's faults; scripts/chaos runs it longer."""
import os
import random

import pytest

import chaos


def test_chaos_two_minutes(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    seed = int(os.environ.get("CHAOS_SEED", random.randrange(1 << 30)))
    print(f"\nCHAOS_SEED={seed}")
    summary = chaos.run(2, seed, tmp_path)
    print(summary)
    assert not summary["problems"], summary
    assert summary["acknowledged"]["idempotent"] > 1000
    assert sum(summary["faults"].values()) >= 8
