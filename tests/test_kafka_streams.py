"""Kafka Streams 4.1.1 (Maven Central) against the real broker: the word
count topology, at-least-once, run, stopped and run again from an empty
state directory (tests/java/.../WordCount.java). It needs what Streams
needs of a broker: its internal topics created with their configs (a
compacted changelog, a repartition topic kept until purged), DeleteRecords
to purge the repartition topic, consumer groups with its own assignor, and
compaction that keeps the last count of every word, from which the store is
rebuilt after the restart. The same program runs against Apache Kafka."""
import subprocess

import pytest

from test_java_client import CLASSPATH, JAVA

EXPECTED = [
    "ok streams: 24 words counted from 300 lines",
    "ok streams: internal topics created with their configs (changelog compacted, repartition retention.ms=-1)",
    "ok streams: restarted with an empty state dir, the store rebuilt from its changelog, counts go on",
]


def word_count(bootstrap, workdir):
    if not (JAVA / "target" / "classes" / "dev" / "corestream" / "WordCount.class").exists():
        pytest.fail("the Java checks are not built: mvn -q -B -f tests/java/pom.xml package (scripts/test does)")
    r = subprocess.run(["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", CLASSPATH,
                        "dev.corestream.WordCount", bootstrap, str(workdir)],
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return [line for line in r.stdout.splitlines() if line.startswith("ok ")]


def without_purge_figure(lines):
    # The purge line names how far the log starts moved, which depends on timing.
    return [line for line in lines if not line.startswith("ok streams: the repartition topic purged")]


def test_kafka_streams_word_count_across_a_restart(broker_factory, tmp_path):
    b = broker_factory(extra_args=["--group-initial-rebalance-delay-ms", "0"])
    done = word_count(b.bootstrap, tmp_path / "streams")
    assert without_purge_figure(done) == EXPECTED, done
    assert any(line.startswith("ok streams: the repartition topic purged by DeleteRecords") for line in done)


def test_kafka_streams_word_count_against_apache_kafka(kafka_ref, tmp_path):
    done = word_count(kafka_ref, tmp_path / "streams")
    assert without_purge_figure(done) == EXPECTED, done
