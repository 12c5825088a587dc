"""Memory follows what is retained, not what was written: a broker whose
1,000 partitions have retention.bytes keeps the same RSS (within 64 MiB)
after 1 GiB and after several GiB more went through it (issue 10, scaled to
the test machine: Kafka's own index grows with retained segments only)."""
import re

from test_bench import bench
from test_roundtrip import create_topic


def produced_mib(out):
    return float(re.search(r"produce: \d+ messages, ([\d.]+) MiB", out).group(1))


def test_rss_stays_flat_while_data_flows_through_retention(broker_factory):
    broker = broker_factory(shards=1, extra_args=["--wal-segment-bytes", "16MiB"])
    # 1,000 partitions keep 256 KiB each: 250 MiB retained in all.
    create_topic(broker.bootstrap, "flow", 1000, {"retention.bytes": str(256 << 10)})
    args = ["produce", "--bootstrap", broker.bootstrap, "--topic", "flow", "--acks", "1",
            "--message-bytes", "1024", "--cores", "1"]
    first = produced_mib(bench(*args, "--duration", "3s"))
    rss_after_first, _ = broker.proc_status()
    more = produced_mib(bench(*args, "--duration", "12s", timeout=120))
    rss_after_more, _ = broker.proc_status()
    assert first >= 256, f"only {first:.0f} MiB in the first run"
    assert more >= 3 * first, f"only {more:.0f} MiB after the first {first:.0f} MiB"
    grown = (rss_after_more - rss_after_first) / 2**20
    assert grown < 64, (f"RSS grew {grown:.0f} MiB (from {rss_after_first / 2**20:.0f} MiB) while "
                        f"{more:.0f} MiB more went through {first:.0f} MiB")
    print(f"\nRSS {rss_after_first / 2**20:.0f} MiB after {first:.0f} MiB, "
          f"{rss_after_more / 2**20:.0f} MiB after {first + more:.0f} MiB")
