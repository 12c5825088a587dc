// franz-go (kgo and kadm) against a Kafka broker: the checks that
// tests/test_franz_go.py runs against corestream and against Apache Kafka.
// franz-go is strict about protocol details: it checks versions, fields and
// error codes a laxer client lets pass. Each check prints "ok ..." lines as
// it goes and exits non-zero at the first thing that is not as Kafka
// promises.
//
//	franz-checks produce|groups|admin BOOTSTRAP
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func fail(format string, args ...any) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func check(ok bool, format string, args ...any) {
	if !ok {
		fail(format, args...)
	}
}

func must(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

// eventually polls cond for up to 10 s; the caller then checks what it
// last saw, so a timeout fails with the values that were wrong.
func eventually(cond func() bool) {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
}

func client(bootstrap string, opts ...kgo.Opt) *kgo.Client {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(bootstrap)}, opts...)...)
	must(err, "new client")
	return cl
}

func createTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, topic)
	must(err, "create topic "+topic)
	must(resp.Err, "create topic "+topic)
}

// produce: the idempotent producer (franz-go's default) with every codec
// and headers, acks=all; then everything read back in order.
func produce(ctx context.Context, bootstrap string) {
	topic := "franz-produce"
	admCl := client(bootstrap)
	defer admCl.Close()
	createTopic(ctx, kadm.NewClient(admCl), topic, 4, nil)

	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	names := []string{"none", "gzip", "snappy", "lz4", "zstd"}
	sent := map[string]bool{}
	for _, name := range names {
		cl := client(bootstrap, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(codecs[name]),
			kgo.RequiredAcks(kgo.AllISRAcks()))
		var recs []*kgo.Record
		for i := 0; i < 200; i++ {
			v := fmt.Sprintf("%s-%03d", name, i)
			sent[v] = true
			recs = append(recs, &kgo.Record{
				Key: []byte(fmt.Sprintf("k%d", i%16)), Value: []byte(v),
				Headers: []kgo.RecordHeader{{Key: "codec", Value: []byte(name)}},
			})
		}
		must(cl.ProduceSync(ctx, recs...).FirstErr(), "produce "+name)
		cl.Close()
		fmt.Printf("ok produce %s: 200 records acknowledged\n", name)
	}

	cl := client(bootstrap, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	got := map[string]bool{}
	last := map[int32]int64{}
	for len(got) < len(sent) {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			fail("consumed %d of %d before the deadline", len(got), len(sent))
		}
		fetches.EachError(func(t string, p int32, err error) { fail("fetch %s/%d: %v", t, p, err) })
		fetches.EachRecord(func(r *kgo.Record) {
			check(len(r.Headers) == 1 && r.Headers[0].Key == "codec", "headers of %s: %v", r.Value, r.Headers)
			if prev, ok := last[r.Partition]; ok {
				check(r.Offset == prev+1, "partition %d: offset %d after %d", r.Partition, r.Offset, prev)
			}
			last[r.Partition] = r.Offset
			got[string(r.Value)] = true
		})
	}
	for v := range sent {
		check(got[v], "record %s not read back", v)
	}
	fmt.Printf("ok consume: %d records back, offsets dense, headers intact\n", len(got))
}

// groups: three members share a topic (rebalance on join), one leaves
// (rebalance on leave), every record is read once and the commits stick.
func groups(ctx context.Context, bootstrap string) {
	topic, group := "franz-groups", "franz-group"
	admCl := client(bootstrap)
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	createTopic(ctx, adm, topic, 6, nil)
	p := client(bootstrap, kgo.DefaultProduceTopic(topic))
	var recs []*kgo.Record
	for i := 0; i < 600; i++ {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i))})
	}
	must(p.ProduceSync(ctx, recs...).FirstErr(), "produce")
	p.Close()

	var mu sync.Mutex
	seen := map[string]int{}
	assigned := map[int]int{}
	member := func(id int, stop <-chan struct{}, wg *sync.WaitGroup) {
		defer wg.Done()
		cl := client(bootstrap, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
			kgo.Balancers(kgo.RangeBalancer()),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
				mu.Lock()
				assigned[id] = len(a[topic])
				mu.Unlock()
			}))
		defer cl.Close()
		for {
			select {
			case <-stop:
				must(cl.CommitUncommittedOffsets(context.Background()), "final commit")
				cl.LeaveGroup()
				return
			default:
			}
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			fetches := cl.PollFetches(pctx)
			cancel()
			fetches.EachError(func(t string, p int32, err error) {
				if !errors.Is(err, context.DeadlineExceeded) {
					fail("member %d fetch %s/%d: %v", id, t, p, err)
				}
			})
			fetches.EachRecord(func(r *kgo.Record) {
				mu.Lock()
				seen[string(r.Value)]++
				mu.Unlock()
			})
			must(cl.CommitUncommittedOffsets(ctx), "commit")
		}
	}
	stops := []chan struct{}{make(chan struct{}), make(chan struct{}), make(chan struct{})}
	var wg sync.WaitGroup
	for i := range stops {
		wg.Add(1)
		go member(i, stops[i], &wg)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n, a := len(seen), fmt.Sprint(assigned)
		shared := len(assigned) == 3 && assigned[0] == 2 && assigned[1] == 2 && assigned[2] == 2
		mu.Unlock()
		if n == 600 && shared {
			break
		}
		check(time.Now().Before(deadline), "after 60 s: %d of 600 read, assignment %s", n, a)
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Println("ok groups: three members, two partitions each, 600 records read")
	close(stops[2])
	for {
		mu.Lock()
		moved := assigned[0]+assigned[1] == 6
		mu.Unlock()
		if moved {
			break
		}
		check(time.Now().Before(deadline), "no rebalance after a member left: %v", assigned)
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Println("ok groups: rebalanced on leave, the two members hold all six partitions")
	close(stops[0])
	close(stops[1])
	wg.Wait()
	for v, n := range seen {
		check(n == 1, "%s read %d times", v, n)
	}
	offsets, err := adm.FetchOffsets(ctx, group)
	must(err, "fetch offsets")
	must(offsets.Error(), "fetch offsets")
	ends, err := adm.ListEndOffsets(ctx, topic)
	must(err, "end offsets")
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := offsets.Lookup(topic, o.Partition)
		check(ok && c.At == o.Offset, "partition %d: committed %v, end %d", o.Partition, c.At, o.Offset)
		total += o.Offset
	})
	check(total == 600, "end offsets sum to %d", total)
	fmt.Println("ok groups: committed offsets at the end of every partition")
}

// admin: kadm over topics, configs, partitions, offsets, records, groups.
func admin(ctx context.Context, bootstrap string) {
	topic := "franz-admin"
	cl := client(bootstrap)
	defer cl.Close()
	adm := kadm.NewClient(cl)

	meta, err := adm.BrokerMetadata(ctx)
	must(err, "broker metadata")
	check(len(meta.Brokers) == 1 && meta.Cluster != "", "one broker and a cluster id: %+v", meta)
	fmt.Println("ok admin: broker metadata")

	createTopic(ctx, adm, topic, 2, map[string]*string{"retention.ms": kadm.StringPtr("3600000")})
	// CreateTopic (one topic) returns the topic's error as its error too.
	_, err = adm.CreateTopic(ctx, 2, 1, nil, topic)
	check(errors.Is(err, kerr.TopicAlreadyExists), "creating it again: %v", err)
	_, err = adm.CreateTopic(ctx, 0, 1, nil, "franz-zero")
	check(errors.Is(err, kerr.InvalidPartitions), "zero partitions: %v", err)
	_, err = adm.CreateTopic(ctx, 1, 1, map[string]*string{"retention.ms": kadm.StringPtr("soon")}, "franz-bad")
	check(errors.Is(err, kerr.InvalidConfig), "a bad config: %v", err)
	topics, err := adm.ListTopics(ctx, topic)
	must(err, "list topics")
	check(len(topics[topic].Partitions) == 2, "two partitions: %+v", topics[topic])
	fmt.Println("ok admin: create topics, and Kafka's errors")

	_, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("1000")},
		{Op: kadm.SetConfig, Name: "cleanup.policy", Value: kadm.StringPtr("compact,delete")},
	}, topic)
	must(err, "alter configs")
	// Kafka answers the alter once its controller committed it and describes
	// it once the broker's metadata caught up: a client must poll.
	values := map[string]string{}
	eventually(func() bool {
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		must(err, "describe configs")
		rc, err := rcs.On(topic, nil)
		must(err, "describe configs")
		for _, c := range rc.Configs {
			values[c.Key] = c.MaybeValue()
		}
		return values["retention.ms"] == "1000" && values["cleanup.policy"] == "compact,delete"
	})
	check(values["retention.ms"] == "1000" && values["cleanup.policy"] == "compact,delete",
		"configs after alter: retention.ms=%s cleanup.policy=%s", values["retention.ms"], values["cleanup.policy"])
	fmt.Println("ok admin: describe and alter topic configs")

	_, err = adm.CreatePartitions(ctx, 2, topic)
	must(err, "create partitions")
	eventually(func() bool {
		topics, err = adm.ListTopics(ctx, topic)
		must(err, "list topics")
		return len(topics[topic].Partitions) == 4
	})
	check(len(topics[topic].Partitions) == 4, "four partitions after adding two: %d", len(topics[topic].Partitions))
	fmt.Println("ok admin: create partitions")

	p := client(bootstrap, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for i := 0; i < 10; i++ {
		// Keyed: the topic is compacted now, and Kafka refuses keyless records there.
		recs = append(recs, &kgo.Record{Partition: 0, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("r%d", i))})
	}
	must(p.ProduceSync(ctx, recs...).FirstErr(), "produce")
	p.Close()
	ends, err := adm.ListEndOffsets(ctx, topic)
	must(err, "end offsets")
	end, _ := ends.Lookup(topic, 0)
	check(end.Offset == 10, "end offset of partition 0: %d", end.Offset)
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: topic, Partition: 0, At: 4})
	deleted, err := adm.DeleteRecords(ctx, del)
	must(err, "delete records")
	must(deleted.Error(), "delete records")
	starts, err := adm.ListStartOffsets(ctx, topic)
	must(err, "start offsets")
	start, _ := starts.Lookup(topic, 0)
	check(start.Offset == 4, "log start after DeleteRecords: %d", start.Offset)
	fmt.Println("ok admin: list offsets and delete records")

	group := "franz-admin-group"
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: topic, Partition: 0, At: 7})
	committed, err := adm.CommitOffsets(ctx, group, commit)
	must(err, "commit offsets")
	must(committed.Error(), "commit offsets")
	fetched, err := adm.FetchOffsets(ctx, group)
	must(err, "fetch offsets")
	o, ok := fetched.Lookup(topic, 0)
	check(ok && o.At == 7, "committed offset read back: %+v", o)
	listed, err := adm.ListGroups(ctx)
	must(err, "list groups")
	groupsListed := listed.Groups()
	sort.Strings(groupsListed)
	check(sort.SearchStrings(groupsListed, group) < len(groupsListed), "the group is listed: %v", groupsListed)
	lag, err := adm.Lag(ctx, group)
	must(err, "lag")
	l := lag[group].Lag[topic][0]
	check(l.Lag == 3, "lag of partition 0: %d (committed 7, end 10)", l.Lag)
	deletedGroups, err := adm.DeleteGroups(ctx, group)
	must(err, "delete groups")
	must(deletedGroups.Error(), "delete groups")
	fmt.Println("ok admin: commit, fetch, list, lag and delete a group's offsets")

	dt, err := adm.DeleteTopics(ctx, topic)
	must(err, "delete topics")
	must(dt.Error(), "delete topics")
	fmt.Println("ok admin: delete topics")
}

func main() {
	if len(os.Args) != 3 {
		fmt.Println("usage: franz-checks produce|groups|admin BOOTSTRAP")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	switch os.Args[1] {
	case "produce":
		produce(ctx, os.Args[2])
	case "groups":
		groups(ctx, os.Args[2])
	case "admin":
		admin(ctx, os.Args[2])
	default:
		fail("unknown check %q", os.Args[1])
	}
}
