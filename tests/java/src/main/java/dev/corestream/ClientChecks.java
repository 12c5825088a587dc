package dev.corestream;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialDeletion;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.errors.ResourceNotFoundException;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.UnacceptableCredentialException;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.consumer.OffsetOutOfRangeException;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.FencedInstanceIdException;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Kafka's own Java client against a broker: `ClientChecks CHECK BOOTSTRAP`
 * runs one check (produce, groups, admin), asserting as it goes; it prints
 * one "ok ..." line per step and exits 0, or prints why and exits 1.
 */
public final class ClientChecks {
    private static final Duration POLL = Duration.ofMillis(200);
    private static final long WAIT_MS = 30_000;

    private final String bootstrap;
    /** A SASL_PLAINTEXT listener of the same broker (the scram check). */
    private final String saslBootstrap;
    /** SASL settings added to every client, when set. */
    private Properties login = new Properties();

    private ClientChecks(String bootstrap, String saslBootstrap) {
        this.bootstrap = bootstrap;
        this.saslBootstrap = saslBootstrap;
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 2 || args.length > 3) {
            System.err.println("usage: ClientChecks produce|groups|group-admin|static|admin|scram BOOTSTRAP [SASL_BOOTSTRAP]");
            System.exit(2);
        }
        ClientChecks c = new ClientChecks(args[1], args.length == 3 ? args[2] : null);
        try {
            switch (args[0]) {
                case "produce" -> c.checkProduce();
                case "groups" -> c.checkGroups();
                case "group-admin" -> c.checkGroupAdmin();
                case "static" -> c.checkStaticMembership();
                case "admin" -> c.checkAdmin();
                case "scram" -> c.checkScram();
                default -> throw new IllegalArgumentException("unknown check " + args[0]);
            }
        } catch (Throwable t) {
            System.out.println("FAILED " + args[0] + ": " + t);
            t.printStackTrace(System.out);
            System.exit(1);
        }
        System.exit(0);
    }

    // ---- produce: the idempotent producer (the default), every codec,
    // headers, read back whole by a consumer without a group.

    private void checkProduce() throws Exception {
        String topic = "java-produce";
        int partitions = 4;
        try (Admin admin = admin()) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        }
        List<String> codecs = List.of("none", "gzip", "snappy", "lz4", "zstd");
        int perCodec = 200;
        Map<TopicPartition, List<Long>> offsets = new TreeMap<>(ClientChecks::byPartition);
        for (String codec : codecs) {
            Properties p = producerProps();
            p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
            p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                List<CompletableFuture<RecordMetadata>> sent = new ArrayList<>();
                for (int i = 0; i < perCodec; i++) {
                    List<Header> headers = List.of(
                            new RecordHeader("codec", codec.getBytes(StandardCharsets.UTF_8)),
                            new RecordHeader("i", Integer.toString(i).getBytes(StandardCharsets.UTF_8)));
                    ProducerRecord<String, String> r = new ProducerRecord<>(topic, i % partitions, null,
                            codec + "-" + i, "value " + codec + " " + i + " " + "x".repeat(i), headers);
                    CompletableFuture<RecordMetadata> f = new CompletableFuture<>();
                    producer.send(r, (md, e) -> {
                        if (e != null) {
                            f.completeExceptionally(e);
                        } else {
                            f.complete(md);
                        }
                    });
                    sent.add(f);
                }
                producer.flush();
                for (CompletableFuture<RecordMetadata> f : sent) {
                    RecordMetadata md = f.get(WAIT_MS, TimeUnit.MILLISECONDS);
                    offsets.computeIfAbsent(new TopicPartition(md.topic(), md.partition()), k -> new ArrayList<>())
                            .add(md.offset());
                }
            }
            System.out.println("ok produce " + codec + ": " + perCodec + " records acknowledged");
        }
        for (Map.Entry<TopicPartition, List<Long>> e : offsets.entrySet()) {
            List<Long> got = e.getValue();
            got.sort(Long::compare);
            for (int i = 0; i < got.size(); i++) {
                check(got.get(i) == i, e.getKey() + ": offsets dense from 0, got " + got.get(i) + " at " + i);
            }
        }
        System.out.println("ok produce: offsets dense on " + offsets.size() + " partitions");

        Properties c = consumerProps(null);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            List<ConsumerRecord<String, String>> got = pollUntil(consumer, codecs.size() * perCodec);
            Map<TopicPartition, Long> next = new HashMap<>();
            Set<String> keys = new HashSet<>();
            for (ConsumerRecord<String, String> r : got) {
                TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                long want = next.getOrDefault(tp, 0L);
                check(r.offset() == want, tp + ": offset " + r.offset() + ", expected " + want);
                next.put(tp, want + 1);
                String[] key = r.key().split("-");
                String codec = key[0];
                int i = Integer.parseInt(key[1]);
                check(r.value().equals("value " + codec + " " + i + " " + "x".repeat(i)), "value of " + r.key());
                check(r.partition() == i % partitions, r.key() + " in partition " + r.partition());
                check(new String(r.headers().lastHeader("codec").value(), StandardCharsets.UTF_8).equals(codec),
                        "codec header of " + r.key());
                check(new String(r.headers().lastHeader("i").value(), StandardCharsets.UTF_8).equals(key[1]),
                        "i header of " + r.key());
                keys.add(r.key());
            }
            check(keys.size() == codecs.size() * perCodec, "every record once, got " + keys.size());
            Map<TopicPartition, Long> end = consumer.endOffsets(tps);
            for (TopicPartition tp : tps) {
                check(end.get(tp) == (long) codecs.size() * perCodec / partitions, tp + " end offset " + end.get(tp));
            }
        }
        System.out.println("ok consume: " + codecs.size() * perCodec + " records back, values and headers intact");
    }

    // ---- groups: subscribe, a rebalance when a member joins and when one
    // leaves (a member commits what it read of the partitions it gives up,
    // so the group reads each record once), commitSync and commitAsync,
    // committed offsets, seek, and offsetsForTimes at record granularity.

    private void checkGroups() throws Exception {
        String topic = "java-groups";
        int partitions = 6;
        int records = 600;
        try (Admin admin = admin()) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        }
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps())) {
            for (int i = 0; i < records; i++) {
                producer.send(new ProducerRecord<>(topic, i % partitions, "k" + i, "v" + i));
            }
            producer.flush();
        }
        String group = "java-group";
        Owned a = new Owned();
        Owned b = new Owned();
        Map<String, Long> seen = new HashMap<>();
        try (KafkaConsumer<String, String> ca = new KafkaConsumer<>(consumerProps(group));
             KafkaConsumer<String, String> cb = new KafkaConsumer<>(consumerProps(group))) {
            a.consumer = ca;
            b.consumer = cb;
            ca.subscribe(List.of(topic), a);
            waitFor(() -> {
                take(ca.poll(POLL), seen);
                return a.owned.size() == partitions;
            }, "the first member owns every partition");
            System.out.println("ok groups: one member owns all " + partitions + " partitions");
            cb.subscribe(List.of(topic), b);
            waitFor(() -> {
                take(ca.poll(POLL), seen);
                take(cb.poll(POLL), seen);
                return a.owned.size() + b.owned.size() == partitions && !a.owned.isEmpty() && !b.owned.isEmpty()
                        && disjoint(a.owned, b.owned);
            }, "a second member takes its share");
            System.out.println("ok groups: rebalanced on join: " + a.owned.size() + " + " + b.owned.size());
            waitFor(() -> {
                take(ca.poll(POLL), seen);
                take(cb.poll(POLL), seen);
                return seen.size() == records;
            }, "the members read every record, got " + seen.size());
            ca.commitSync();
            CompletableFuture<Map<TopicPartition, OffsetAndMetadata>> async = new CompletableFuture<>();
            cb.commitAsync((offs, e) -> {
                if (e != null) {
                    async.completeExceptionally(e);
                } else {
                    async.complete(offs);
                }
            });
            waitFor(() -> {
                cb.poll(POLL);
                return async.isDone();
            }, "commitAsync's callback");
            check(async.get().size() == b.owned.size(), "commitAsync committed " + async.get());
            System.out.println("ok groups: " + records + " records read; commitSync and commitAsync done");
            cb.close();
            waitFor(() -> {
                take(ca.poll(POLL), seen);
                return a.owned.size() == partitions;
            }, "the member left alone owns every partition again");
            System.out.println("ok groups: rebalanced on leave");
        }
        // Both left: the committed offsets are the end of every partition.
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(group))) {
            Set<TopicPartition> tps = new HashSet<>();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            Map<TopicPartition, OffsetAndMetadata> committed = c.committed(tps);
            for (TopicPartition tp : tps) {
                check(committed.get(tp) != null && committed.get(tp).offset() == records / partitions,
                        tp + " committed " + committed.get(tp));
            }
            System.out.println("ok groups: committed offsets at the end of every partition");
            // A new member starts from the group's offsets: nothing new to read.
            Owned solo = new Owned();
            c.subscribe(List.of(topic), solo);
            waitFor(() -> {
                check(c.poll(POLL).isEmpty(), "a member reads nothing past the committed offsets");
                return solo.owned.size() == partitions;
            }, "a new member owns every partition");
            TopicPartition p0 = new TopicPartition(topic, 0);
            c.seek(p0, 10);
            List<ConsumerRecord<String, String>> after = new ArrayList<>();
            waitFor(() -> {
                for (ConsumerRecord<String, String> r : c.poll(POLL)) {
                    if (r.partition() == 0) {
                        after.add(r);
                    }
                }
                return !after.isEmpty();
            }, "records after a seek");
            check(after.get(0).offset() == 10 && after.get(0).key().equals("k60"), "seek to 10 gives " + after.get(0));
            System.out.println("ok groups: a new member resumes at the committed offsets; seek");
        }
        // Records of one batch with distinct timestamps: offsetsForTimes
        // finds the record, not the batch.
        String times = "java-times";
        try (Admin admin = admin()) {
            admin.createTopics(List.of(new NewTopic(times, 1, (short) 1))).all().get();
        }
        long t0 = 1_700_000_000_000L;
        Properties pp = producerProps();
        pp.put(ProducerConfig.LINGER_MS_CONFIG, 100);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            for (int i = 0; i < 5; i++) {
                producer.send(new ProducerRecord<>(times, 0, t0 + i * 1000L, "t" + i, "v" + i));
            }
            producer.flush();
        }
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null))) {
            TopicPartition tp = new TopicPartition(times, 0);
            Map<TopicPartition, OffsetAndTimestamp> found = c.offsetsForTimes(Map.of(tp, t0 + 2500));
            check(found.get(tp) != null && found.get(tp).offset() == 3 && found.get(tp).timestamp() == t0 + 3000,
                    "offsetsForTimes(t0 + 2.5 s) gives " + found.get(tp));
            Map<TopicPartition, OffsetAndTimestamp> none = c.offsetsForTimes(Map.of(tp, t0 + 10_000));
            check(none.get(tp) == null, "offsetsForTimes past the last record gives " + none.get(tp));
        }
        System.out.println("ok groups: offsetsForTimes at record granularity");
    }

    // ---- group-admin: what kafka-consumer-groups.sh and lag exporters
    // use: list, describe (members, client ids, hosts, assignments), the
    // group's offsets, altering and deleting them, deleting the group, and
    // the errors Kafka gives while the group has members.

    @SuppressWarnings("deprecation")
    private void checkGroupAdmin() throws Exception {
        String topic = "java-ga";
        String group = "java-ga-group";
        int partitions = 3;
        try (Admin admin = admin()) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps())) {
                for (int i = 0; i < 30; i++) {
                    producer.send(new ProducerRecord<>(topic, i % partitions, "k" + i, "v" + i));
                }
                producer.flush();
            }
            TopicPartition p0 = new TopicPartition(topic, 0);
            Properties cp = consumerProps(group);
            cp.put(ConsumerConfig.CLIENT_ID_CONFIG, "java-ga-client");
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
                c.subscribe(List.of(topic));
                pollUntil(c, 30);
                c.commitSync();

                var listed = admin.listConsumerGroups().all().get();
                var mine = listed.stream().filter(g -> g.groupId().equals(group)).findFirst();
                check(mine.isPresent(), "listConsumerGroups names the group: " + listed);
                check(mine.get().groupState().map(st -> st.toString()).orElse("").equalsIgnoreCase("Stable"),
                        "the group is stable: " + mine.get());
                var d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
                check(d.groupState().toString().equalsIgnoreCase("Stable") && d.members().size() == 1,
                        "describeConsumerGroups: " + d);
                var m = d.members().iterator().next();
                check(m.clientId().equals("java-ga-client") && m.host().equals("/127.0.0.1")
                        && m.assignment().topicPartitions().size() == partitions, "the member: " + m);
                check(d.partitionAssignor().equals("range") || d.partitionAssignor().equals("cooperative-sticky"),
                        "the assignor: " + d.partitionAssignor());
                System.out.println("ok group-admin: listConsumerGroups, describeConsumerGroups of a stable group");

                var offsets = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
                check(offsets.size() == partitions && offsets.values().stream().allMatch(o -> o.offset() == 10),
                        "listConsumerGroupOffsets: " + offsets);
                expectError(() -> admin.deleteConsumerGroupOffsets(group, Set.of(p0)).all().get(),
                        GroupSubscribedToTopicException.class, "deleting offsets of a subscribed topic");
                expectError(() -> admin.deleteConsumerGroups(List.of(group)).all().get(),
                        GroupNotEmptyException.class, "deleting a group with members");
                System.out.println("ok group-admin: listConsumerGroupOffsets; deletes refused while it has members");
            }
            // The member left: the group is empty, its offsets stay.
            var d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
            check(d.groupState().toString().equalsIgnoreCase("Empty") && d.members().isEmpty(),
                    "the group after its member left: " + d);
            admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(5))).all().get();
            var offsets = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
            check(offsets.get(p0).offset() == 5, "altered offset " + offsets.get(p0));
            admin.deleteConsumerGroupOffsets(group, Set.of(p0)).all().get();
            offsets = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
            check(!offsets.containsKey(p0) && offsets.size() == partitions - 1, "after deleting p0's offset: " + offsets);
            System.out.println("ok group-admin: alterConsumerGroupOffsets, deleteConsumerGroupOffsets of an empty group");

            admin.deleteConsumerGroups(List.of(group)).all().get();
            var listed = admin.listConsumerGroups().all().get();
            check(listed.stream().noneMatch(g -> g.groupId().equals(group)), "the deleted group is not listed: " + listed);
            check(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().isEmpty(),
                    "a deleted group has no offsets");
            expectError(() -> admin.deleteConsumerGroups(List.of(group)).all().get(),
                    GroupIdNotFoundException.class, "deleting it again");
            System.out.println("ok group-admin: deleteConsumerGroups");
            // Its offsets went with it: a new member starts from the beginning.
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(group))) {
                c.subscribe(List.of(topic));
                check(pollUntil(c, 30).size() == 30, "a new member reads everything again");
            }
            System.out.println("ok group-admin: a new member of the deleted group starts over");
        }
    }

    // ---- static: static membership (KIP-345). A member with a
    // group.instance.id that restarts within its session timeout gets its
    // partitions back with no rebalance: the other member sees no revoke
    // and no new generation. A second process with the same instance id
    // fences the first.

    private void checkStaticMembership() throws Exception {
        String topic = "java-static";
        String group = "java-static-group";
        int partitions = 4;
        try (Admin admin = admin()) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        }
        Owned a = new Owned();
        Owned b = new Owned();
        Counting bEvents = new Counting(b);
        try (KafkaConsumer<String, String> cb = new KafkaConsumer<>(staticProps(group, "static-b"))) {
            Set<TopicPartition> before;
            int generation;
            try (KafkaConsumer<String, String> ca = new KafkaConsumer<>(staticProps(group, "static-a"))) {
                ca.subscribe(List.of(topic), a);
                cb.subscribe(List.of(topic), bEvents);
                waitFor(() -> {
                    ca.poll(POLL);
                    cb.poll(POLL);
                    return a.owned.size() + b.owned.size() == partitions && !a.owned.isEmpty() && !b.owned.isEmpty()
                            && disjoint(a.owned, b.owned);
                }, "two static members share the partitions");
                before = new HashSet<>(a.owned);
                generation = cb.groupMetadata().generationId();
                System.out.println("ok static: two static members, generation " + generation);
            }
            // The first member's process is gone (a static member sends no
            // LeaveGroup); its partitions wait for it.
            int eventsBefore = bEvents.calls;
            long until = System.currentTimeMillis() + 2_000;
            while (System.currentTimeMillis() < until) {
                cb.poll(POLL);
            }
            Owned back = new Owned();
            try (KafkaConsumer<String, String> ca2 = new KafkaConsumer<>(staticProps(group, "static-a"))) {
                ca2.subscribe(List.of(topic), back);
                waitFor(() -> {
                    ca2.poll(POLL);
                    cb.poll(POLL);
                    return !back.owned.isEmpty();
                }, "the restarted static member gets partitions");
                check(back.owned.equals(before), "the restarted member gets its old partitions: " + back.owned
                        + ", had " + before);
                check(cb.groupMetadata().generationId() == generation,
                        "no new generation: " + cb.groupMetadata().generationId() + " after " + generation);
                check(bEvents.calls == eventsBefore, "the other member saw no rebalance: " + bEvents.calls
                        + " listener calls, " + eventsBefore + " before");
                System.out.println("ok static: restarted within its session, old partitions back, no rebalance");

                try (Admin admin = admin()) {
                    var d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
                    Set<String> instances = new HashSet<>();
                    d.members().forEach(m -> instances.add(m.groupInstanceId().orElse("")));
                    check(instances.equals(Set.of("static-a", "static-b")), "instance ids described: " + d);
                }
                System.out.println("ok static: describeConsumerGroups shows the instance ids");

                // A second process with the same instance id takes over; the
                // first is fenced.
                try (KafkaConsumer<String, String> ca3 = new KafkaConsumer<>(staticProps(group, "static-a"))) {
                    ca3.subscribe(List.of(topic));
                    expectError(() -> {
                        long end = System.currentTimeMillis() + WAIT_MS;
                        while (System.currentTimeMillis() < end) {
                            ca3.poll(POLL);
                            ca2.poll(POLL);
                        }
                        return null;
                    }, FencedInstanceIdException.class, "the older process with the same instance id");
                }
                System.out.println("ok static: a second process with the same instance id fences the first");
            }
        }
    }

    /** Counts a member's rebalance callbacks. */
    private static final class Counting implements ConsumerRebalanceListener {
        final Owned inner;
        int calls;

        Counting(Owned inner) {
            this.inner = inner;
        }

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            calls++;
            inner.onPartitionsRevoked(partitions);
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            calls++;
            inner.onPartitionsAssigned(partitions);
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            calls++;
            inner.onPartitionsLost(partitions);
        }
    }

    private Properties staticProps(String group, String instance) {
        Properties p = consumerProps(group);
        p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instance);
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 30_000);
        return p;
    }

    // ---- admin: topics, configs, partitions, offsets, records, log dirs,
    // the cluster, and the errors Kafka gives.

    private void checkAdmin() throws Exception {
        String topic = "java-admin";
        try (Admin admin = admin()) {
            DescribeClusterResult cluster = admin.describeCluster();
            check(cluster.nodes().get().size() == 1, "one node: " + cluster.nodes().get());
            check(cluster.clusterId().get() != null && !cluster.clusterId().get().isEmpty(), "a cluster id");
            check(cluster.controller().get() != null, "a controller");
            // DescribeCluster (not Metadata) when asked for the operations.
            var ops = admin.describeCluster(new DescribeClusterOptions().includeAuthorizedOperations(true))
                    .authorizedOperations().get();
            check(ops != null && ops.contains(AclOperation.DESCRIBE) && ops.contains(AclOperation.ALTER_CONFIGS),
                    "the cluster's authorized operations: " + ops);
            System.out.println("ok admin: describeCluster " + cluster.nodes().get() + " operations " + ops);

            var created = admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1)
                    .configs(Map.of("retention.ms", "3600000", "cleanup.policy", "delete"))));
            created.all().get();
            // CreateTopics v5+ answers with the new topic's every config.
            check("3600000".equals(created.config(topic).get().get("retention.ms").value())
                    && "1".equals(created.config(topic).get().get("min.insync.replicas").value())
                    && created.numPartitions(topic).get() == 2 && created.replicationFactor(topic).get() == 1,
                    "createTopics answers with the topic's configs, partitions and replication factor");
            System.out.println("ok admin: createTopics answers with the topic's configs");
            check(admin.listTopics().names().get().contains(topic), "listTopics names the new topic");
            expectError(() -> admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(),
                    TopicExistsException.class, "creating it again");
            expectError(() -> admin.createTopics(List.of(new NewTopic("java-zero", 0, (short) 1))).all().get(),
                    InvalidPartitionsException.class, "zero partitions");
            expectError(() -> admin.describeTopics(List.of("java-no-such-topic")).allTopicNames().get(),
                    UnknownTopicOrPartitionException.class, "describing an unknown topic");
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            check(d.partitions().size() == 2 && d.partitions().get(0).leader() != null, "describeTopics " + d);
            System.out.println("ok admin: createTopics, listTopics, describeTopics, and their errors");

            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config config = admin.describeConfigs(List.of(res)).all().get().get(res);
            check("3600000".equals(config.get("retention.ms").value()), "retention.ms " + config.get("retention.ms"));
            admin.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET))))
                    .all().get();
            config = admin.describeConfigs(List.of(res)).all().get().get(res);
            check("7200000".equals(config.get("retention.ms").value()), "altered retention.ms " + config.get("retention.ms"));
            System.out.println("ok admin: describeConfigs, incrementalAlterConfigs");

            admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all().get();
            waitFor(() -> describe(admin, topic).partitions().size() == 3, "three partitions after createPartitions");
            System.out.println("ok admin: createPartitions");

            try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps())) {
                for (int i = 0; i < 20; i++) {
                    producer.send(new ProducerRecord<>(topic, 0, "k" + i, "v" + i));
                }
                producer.flush();
            }
            TopicPartition p0 = new TopicPartition(topic, 0);
            check(admin.listOffsets(Map.of(p0, OffsetSpec.latest())).all().get().get(p0).offset() == 20, "latest 20");
            check(admin.listOffsets(Map.of(p0, OffsetSpec.earliest())).all().get().get(p0).offset() == 0, "earliest 0");
            long low = admin.deleteRecords(Map.of(p0, RecordsToDelete.beforeOffset(5)))
                    .lowWatermarks().get(p0).get().lowWatermark();
            check(low == 5, "deleteRecords low watermark " + low);
            check(admin.listOffsets(Map.of(p0, OffsetSpec.earliest())).all().get().get(p0).offset() == 5,
                    "earliest after deleteRecords");
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null))) {
                c.assign(List.of(p0));
                c.seekToBeginning(List.of(p0));
                List<ConsumerRecord<String, String>> got = pollUntil(c, 15);
                check(got.get(0).offset() == 5 && got.get(0).key().equals("k5"), "first record after deleteRecords");
            }
            Properties strict = consumerProps(null);
            strict.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(strict)) {
                c.assign(List.of(p0));
                c.seek(p0, 2);
                expectError(() -> {
                    long until = System.currentTimeMillis() + WAIT_MS;
                    while (System.currentTimeMillis() < until) {
                        c.poll(POLL);
                    }
                    return null;
                }, OffsetOutOfRangeException.class, "fetching below the log start");
            }
            System.out.println("ok admin: listOffsets, deleteRecords, and OFFSET_OUT_OF_RANGE below the log start");

            var dirs = admin.describeLogDirs(List.of(cluster.nodes().get().iterator().next().id())).allDescriptions().get();
            long bytes = dirs.values().stream().flatMap(m -> m.values().stream())
                    .flatMap(dir -> dir.replicaInfos().entrySet().stream())
                    .filter(e -> e.getKey().topic().equals(topic)).mapToLong(e -> e.getValue().size()).sum();
            check(bytes > 0, "describeLogDirs gives " + topic + " a size: " + dirs);
            System.out.println("ok admin: describeLogDirs (" + bytes + " bytes in " + topic + ")");

            admin.deleteTopics(List.of(topic)).all().get();
            waitFor(() -> {
                try {
                    return !admin.listTopics().names().get().contains(topic);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            }, "the deleted topic gone from listTopics");
            System.out.println("ok admin: deleteTopics");
        }
    }

    // ---- helpers

    private static TopicDescription describe(Admin admin, String topic) {
        try {
            return admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
    }

    /** What a member owns; what it read of a partition it gives up is committed first. */
    private static final class Owned implements ConsumerRebalanceListener {
        final Set<TopicPartition> owned = new HashSet<>();
        KafkaConsumer<String, String> consumer;

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            if (consumer != null && !partitions.isEmpty()) {
                Map<TopicPartition, OffsetAndMetadata> read = new HashMap<>();
                for (TopicPartition tp : partitions) {
                    read.put(tp, new OffsetAndMetadata(consumer.position(tp)));
                }
                consumer.commitSync(read);
            }
            owned.removeAll(partitions);
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            owned.addAll(partitions);
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            owned.removeAll(partitions);
        }
    }

    // ---- scram: users made and described with the Admin API (KIP-554),
    // then producer, consumer and admin logging in with each mechanism on
    // the SASL listener; a wrong password and a deleted user are refused.

    private void checkScram() throws Exception {
        check(saslBootstrap != null, "the scram check needs a SASL_PLAINTEXT listener");
        try (Admin admin = admin()) {
            // One mechanism per call: a user twice in one request is
            // DUPLICATE_RESOURCE (Kafka's controller rule).
            admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("java-user",
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), "java-pw"))).all().get();
            admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("java-user",
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), "java-pw"))).all().get();
            waitFor(() -> {
                try {
                    UserScramCredentialsDescription d =
                            admin.describeUserScramCredentials(List.of("java-user")).description("java-user").get();
                    Set<String> infos = new HashSet<>();
                    d.credentialInfos().forEach(i -> infos.add(i.mechanism() + "/" + i.iterations()));
                    return infos.equals(Set.of("SCRAM_SHA_512/8192", "SCRAM_SHA_256/4096"));
                } catch (Exception e) {
                    return false;
                }
            }, "java-user described with both mechanisms");
            expectError(() -> admin.describeUserScramCredentials(List.of("nobody")).description("nobody").get(),
                    ResourceNotFoundException.class, "describing an unknown user");
            expectError(() -> admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("weak",
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 10), "pw"))).all().get(),
                    UnacceptableCredentialException.class, "too few iterations");
        }
        System.out.println("ok users made and described");
        for (String mechanism : List.of("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")) {
            loginAs(mechanism, "java-user", "java-pw");
            String topic = "java-sasl-" + mechanism.toLowerCase();
            try (KafkaProducer<String, String> p = new KafkaProducer<>(producerProps())) {
                for (int i = 0; i < 50; i++) {
                    p.send(new ProducerRecord<>(topic, "k" + i, mechanism + "-" + i)).get();
                }
            }
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps("java-sasl-" + mechanism))) {
                c.subscribe(List.of(topic));
                List<ConsumerRecord<String, String>> got = pollUntil(c, 50);
                check(got.size() == 50, mechanism + ": 50 records read back, got " + got.size());
            }
            try (Admin admin = admin()) {
                check(admin.listTopics().names().get().contains(topic), mechanism + ": the topic is listed");
                Node node = admin.describeCluster().nodes().get().iterator().next();
                check((node.host() + ":" + node.port()).equals(saslBootstrap),
                        mechanism + ": the cluster is described with the SASL listener's address, got " + node);
            }
            System.out.println("ok " + mechanism + " producer, consumer and admin");
        }
        loginAs("SCRAM-SHA-512", "java-user", "wrong");
        try (Admin admin = admin()) {
            expectError(() -> admin.listTopics().names().get(), SaslAuthenticationException.class, "a wrong password");
        }
        login = new Properties();
        try (Admin admin = admin()) {
            admin.alterUserScramCredentials(List.of(
                    new UserScramCredentialDeletion("java-user", ScramMechanism.SCRAM_SHA_512))).all().get();
            admin.alterUserScramCredentials(List.of(
                    new UserScramCredentialDeletion("java-user", ScramMechanism.SCRAM_SHA_256))).all().get();
        }
        loginAs("SCRAM-SHA-256", "java-user", "java-pw");
        try (Admin admin = admin()) {
            expectError(() -> admin.listTopics().names().get(), SaslAuthenticationException.class, "a deleted user");
        }
        System.out.println("ok a wrong password and a deleted user are refused");
    }

    private void loginAs(String mechanism, String user, String password) {
        String module = mechanism.equals("PLAIN") ? "org.apache.kafka.common.security.plain.PlainLoginModule"
                : "org.apache.kafka.common.security.scram.ScramLoginModule";
        login = new Properties();
        login.put("bootstrap.servers", saslBootstrap);
        login.put("security.protocol", "SASL_PLAINTEXT");
        login.put("sasl.mechanism", mechanism);
        login.put("sasl.jaas.config",
                module + " required username=\"" + user + "\" password=\"" + password + "\";");
    }

    private static boolean disjoint(Set<TopicPartition> a, Set<TopicPartition> b) {
        Set<TopicPartition> both = new HashSet<>(a);
        both.retainAll(b);
        return both.isEmpty();
    }

    private static void take(Iterable<ConsumerRecord<String, String>> records, Map<String, Long> seen) {
        for (ConsumerRecord<String, String> r : records) {
            Long before = seen.put(r.key(), r.offset());
            check(before == null, "record " + r.key() + " read twice by the group");
        }
    }

    private static int byPartition(TopicPartition a, TopicPartition b) {
        int t = a.topic().compareTo(b.topic());
        return t != 0 ? t : Integer.compare(a.partition(), b.partition());
    }

    private List<ConsumerRecord<String, String>> pollUntil(KafkaConsumer<String, String> c, int n) {
        List<ConsumerRecord<String, String>> got = new ArrayList<>();
        waitFor(() -> {
            c.poll(POLL).forEach(got::add);
            return got.size() >= n;
        }, n + " records, got " + got.size());
        return got;
    }

    private static void waitFor(BooleanSupplier cond, String what) {
        long until = System.currentTimeMillis() + WAIT_MS;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > until) {
                throw new AssertionError("timed out waiting for " + what);
            }
        }
    }

    interface Call {
        Object call() throws Exception;
    }

    private static void expectError(Call call, Class<? extends Throwable> want, String what) {
        try {
            call.call();
        } catch (Throwable t) {
            Throwable cause = t instanceof ExecutionException && t.getCause() != null ? t.getCause() : t;
            check(want.isInstance(cause), what + ": expected " + want.getSimpleName() + ", got " + cause);
            return;
        }
        throw new AssertionError(what + ": expected " + want.getSimpleName() + ", got success");
    }

    private static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    private Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30_000);
        p.putAll(login);
        return Admin.create(p);
    }

    private Properties producerProps() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 45_000);
        p.putAll(login);
        return p;
    }

    private Properties consumerProps(String group) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        }
        p.putAll(login);
        return p;
    }
}
