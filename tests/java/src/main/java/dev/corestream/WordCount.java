package dev.corestream;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;

/**
 * Kafka Streams against a broker: the word count topology (at-least-once),
 * run twice. `WordCount BOOTSTRAP WORKDIR`:
 *
 * <ol>
 *   <li>writes lines to the input topic, runs the application until the
 *       output holds the right count of every word, and stops it;</li>
 *   <li>checks the internal topics Streams created, with their configs: the
 *       store's changelog compacted, the repartition topic kept until
 *       Streams purges it with DeleteRecords (its log start moved);</li>
 *   <li>writes more lines and runs the application again from an empty
 *       state directory, so the store is rebuilt from its compacted
 *       changelog: the counts go on from where they were.</li>
 * </ol>
 *
 * One "ok ..." line per step; exits 1 at the first thing that is not right.
 */
public final class WordCount {
    private static final String APP = "corestream-wordcount";
    private static final String INPUT = "wc-input";
    private static final String OUTPUT = "wc-output";
    private static final String CHANGELOG = APP + "-counts-changelog";
    private static final String REPARTITION = APP + "-counts-repartition";
    private static final long WAIT_MS = 90_000;

    private final String bootstrap;
    private final Path workdir;

    private WordCount(String bootstrap, Path workdir) {
        this.bootstrap = bootstrap;
        this.workdir = workdir;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: WordCount BOOTSTRAP WORKDIR");
            System.exit(2);
        }
        try {
            new WordCount(args[0], Path.of(args[1])).run();
        } catch (AssertionError e) {
            System.out.println("FAIL " + e.getMessage());
            System.exit(1);
        }
        System.exit(0);
    }

    private static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    private void run() throws Exception {
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            admin.createTopics(List.of(new NewTopic(INPUT, 2, (short) 1), new NewTopic(OUTPUT, 2, (short) 1)))
                    .all().get();
        }
        Map<String, Long> expected = new TreeMap<>();
        List<String> first = lines(0, 300);
        produce(first, expected);
        runUntilCounted(expected, workdir.resolve("state-1"));
        System.out.println("ok streams: " + expected.size() + " words counted from " + first.size() + " lines");

        checkInternalTopics();

        List<String> second = lines(300, 200);
        produce(second, expected);
        runUntilCounted(expected, workdir.resolve("state-2"));
        System.out.println("ok streams: restarted with an empty state dir, the store rebuilt from its changelog, "
                + "counts go on");
    }

    /** Lines of words with known counts: line i holds words w(i % 7), w(i % 11), w(i % 13). */
    private static List<String> lines(int from, int n) {
        List<String> out = new ArrayList<>();
        for (int i = from; i < from + n; i++) {
            out.add("w" + (i % 7) + " W" + (i % 11) + "  x" + (i % 13));
        }
        return out;
    }

    private void produce(List<String> lines, Map<String, Long> expected) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            for (String line : lines) {
                producer.send(new ProducerRecord<>(INPUT, null, line)).get();
                for (String w : line.toLowerCase().split("\\W+")) {
                    if (!w.isEmpty()) {
                        expected.merge(w, 1L, Long::sum);
                    }
                }
            }
        }
    }

    private KafkaStreams streams(Path stateDir) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(INPUT, Consumed.with(Serdes.String(), Serdes.String()))
                .flatMapValues(line -> Arrays.asList(line.toLowerCase().split("\\W+")))
                .filter((k, w) -> !w.isEmpty())
                .groupBy((k, w) -> w, Grouped.with("counts", Serdes.String(), Serdes.String()))
                .count(Materialized.as("counts"))
                .toStream()
                .to(OUTPUT, Produced.with(Serdes.String(), Serdes.Long()));
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, APP);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        // Purge the repartition topic soon after each commit (DeleteRecords).
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 500);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        return new KafkaStreams(builder.build(), p);
    }

    private void runUntilCounted(Map<String, Long> expected, Path stateDir) throws Exception {
        Files.createDirectories(stateDir);
        KafkaStreams app = streams(stateDir);
        app.setUncaughtExceptionHandler(e -> {
            System.out.println("FAIL streams thread: " + e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
                    .SHUTDOWN_CLIENT;
        });
        app.start();
        try {
            Map<String, Long> counted = readOutput(expected);
            check(counted.equals(expected), "counts after " + WAIT_MS / 1000 + " s: " + diff(expected, counted)
                    + " (state " + app.state() + ")");
            // Let the purge of the repartition topic run after a commit.
            Thread.sleep(2_000);
        } finally {
            app.close(Duration.ofSeconds(30));
        }
    }

    /** The latest count of each word in the output, once it equals `expected` or the wait ends. */
    private Map<String, Long> readOutput(Map<String, Long> expected) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
        Map<String, Long> counted = new TreeMap<>();
        try (KafkaConsumer<String, Long> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> parts = List.of(new TopicPartition(OUTPUT, 0), new TopicPartition(OUTPUT, 1));
            c.assign(parts);
            c.seekToBeginning(parts);
            long deadline = System.currentTimeMillis() + WAIT_MS;
            while (!counted.equals(expected) && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, Long> r : c.poll(Duration.ofMillis(200))) {
                    counted.put(r.key(), r.value());
                }
            }
        }
        return counted;
    }

    private static String diff(Map<String, Long> want, Map<String, Long> got) {
        Map<String, String> d = new TreeMap<>();
        for (String k : want.keySet()) {
            if (!want.get(k).equals(got.get(k))) {
                d.put(k, "want " + want.get(k) + " got " + got.get(k));
            }
        }
        for (String k : got.keySet()) {
            if (!want.containsKey(k)) {
                d.put(k, "unexpected " + got.get(k));
            }
        }
        return d.toString();
    }

    private void checkInternalTopics() throws Exception {
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            Set<String> names = admin.listTopics().names().get();
            check(names.contains(CHANGELOG) && names.contains(REPARTITION),
                    "Streams created its internal topics: " + names);
            ConfigResource changelog = new ConfigResource(ConfigResource.Type.TOPIC, CHANGELOG);
            ConfigResource repartition = new ConfigResource(ConfigResource.Type.TOPIC, REPARTITION);
            var configs = admin.describeConfigs(List.of(changelog, repartition)).all().get();
            check("compact".equals(configs.get(changelog).get("cleanup.policy").value()),
                    "the changelog is compacted: " + configs.get(changelog).get("cleanup.policy"));
            check("delete".equals(configs.get(repartition).get("cleanup.policy").value())
                            && "-1".equals(configs.get(repartition).get("retention.ms").value()),
                    "the repartition topic is kept until purged: " + configs.get(repartition));
            System.out.println("ok streams: internal topics created with their configs (changelog compacted, "
                    + "repartition retention.ms=-1)");

            Map<TopicPartition, OffsetSpec> earliest = new HashMap<>();
            for (int p = 0; p < 2; p++) {
                earliest.put(new TopicPartition(REPARTITION, p), OffsetSpec.earliest());
            }
            long deadline = System.currentTimeMillis() + WAIT_MS;
            long moved = 0;
            while (moved == 0 && System.currentTimeMillis() < deadline) {
                moved = admin.listOffsets(earliest).all().get().values().stream()
                        .mapToLong(o -> o.offset()).sum();
                if (moved == 0) {
                    TimeUnit.MILLISECONDS.sleep(200);
                }
            }
            check(moved > 0, "Streams purged the repartition topic (DeleteRecords): log starts " + moved);
            System.out.println("ok streams: the repartition topic purged by DeleteRecords (log starts sum to "
                    + moved + ")");
        }
    }
}
