//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz) and their
//! smoke test: each takes bytes from outside (a client, a peer, the disk)
//! and runs the decoder that meets them, checking what it can of the
//! result. None may panic, whatever the bytes.

use protobuf::Message as _;
use raft::prelude::Message;

use crate::batch;
use crate::raft::entry;
use crate::wal::{decode_hard_state, encode_hard_state, scan_bytes, Continuity, RecordKind};

/// A produce request's `records` field: split into batches and validated;
/// the header fields the shard reads afterwards are read from each.
pub fn record_batches(data: &[u8]) {
    if let Ok(parts) = batch::split_batches(data, usize::MAX) {
        let mut end = 0;
        for (at, info) in parts {
            assert!(at >= end && at + info.bytes <= data.len(), "batches overlap or overrun");
            let b = &data[at..at + info.bytes];
            assert_eq!(batch::last_offset_delta(b) + 1, info.record_count);
            let _ = (batch::producer(b), batch::max_timestamp(b), batch::base_offset(b));
            end = at + info.bytes;
        }
        assert_eq!(end, data.len(), "split_batches accepted trailing bytes");
    }
    let _ = batch::validate(data, 1 << 20);
}

/// A WAL segment as recovery reads it: the valid prefix is records in
/// index order, inside the buffer; their payloads decode as replay reads
/// them.
pub fn wal_segment(data: &[u8]) {
    let mut continuity = Continuity::starting_after(0);
    let (records, end) = scan_bytes(data, &mut continuity);
    assert!(end as usize <= data.len(), "valid prefix ends past the segment");
    let mut last = None;
    for (r, pos) in records {
        assert!(pos <= end, "record payload past the valid prefix");
        // Entries continue the log without a gap; a lower index is a Raft
        // overwrite of an uncommitted tail, and hard states carry none.
        if r.kind != RecordKind::HardState {
            assert!(
                r.index >= 1 && last.is_none_or(|l| r.index <= l + 1),
                "a gap in the indexes"
            );
            last = Some(r.index);
        }
        match r.kind {
            RecordKind::HardState => {
                if let Some(hs) = decode_hard_state(&r.payload) {
                    assert_eq!(&encode_hard_state(hs)[..], &r.payload[..], "hard state round trip");
                }
            }
            RecordKind::Entry => entry_payload(&r.payload),
            _ => {}
        }
    }
}

/// A checkpoint's body as a restart reads it: every partition in it is
/// restored or refused, never a panic; and a checkpoint whose partitions
/// all restore reads back as the same state once written again (by value:
/// version 1 bodies and varints written longer than needed decode too).
pub fn checkpoint(data: &[u8]) {
    use crate::shard::checkpoint::Checkpoint;
    if let Ok(c) = Checkpoint::decode(data) {
        let valid = c
            .partitions
            .iter()
            .all(|p| crate::partition::Partition::restore(p.clone()).is_ok());
        if valid {
            assert_eq!(Checkpoint::decode(&c.encode()), Ok(c), "checkpoint round trip");
        }
    }
}

/// A stored batch as the cleaner meets it (`cleanup.policy=compact`):
/// decompressed, its records parsed, rebuilt around those that stay.
pub fn compaction(data: &[u8]) {
    crate::shard::compact::fuzz_one(data);
}

/// A Raft transport frame from a peer: what passes `check_from_peer` is
/// what the shard then persists and applies.
pub fn raft_message(data: &[u8]) {
    if let Ok(m) = Message::parse_from_bytes(data) {
        if crate::raft::check_from_peer(&m).is_ok() {
            for e in m.get_entries().iter().filter(|e| crate::raft::is_data(e)) {
                entry_payload(&e.data);
            }
        }
    }
    entry_payload(data);
    // The pull frames beside Raft messages, and a snapshot's data: what
    // decodes encodes back to itself.
    if let Ok(pull) = crate::shard::pull::PullMessage::decode(data) {
        assert_eq!(crate::shard::pull::PullMessage::decode(&pull.encode()), Ok(pull));
    }
    if let Ok(snap) = crate::shard::snapshot::SnapshotData::decode(data) {
        assert_eq!(crate::shard::snapshot::SnapshotData::decode(&snap.encode()), Ok(snap));
    }
}

/// A data entry's payload: if it validates, `items` (which asserts) walks
/// it to the end, item for item.
fn entry_payload(payload: &[u8]) {
    if let Ok(count) = entry::validate_payload(payload) {
        let items: Vec<_> = entry::items(payload).collect();
        assert_eq!(items.len(), count);
        for it in items {
            assert!(batch::validate(&payload[it.at..it.at + it.len], usize::MAX).is_ok());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    /// Inputs that once failed a target, kept as they were found.
    #[test]
    fn found_inputs() {
        // wal_segment: two hard states in a row (index 0 each), a valid
        // prefix that the target's own check called "indexes go back" (the
        // check was wrong, not the scan: hard states carry no index, and a
        // lower entry index is a Raft overwrite).
        let hex = "37000000f4f21e01000000000000000000000000000000000400004242424200000000000000424242424242424242420a0000000000000000000000ff00c0000000000000000000400000000000000037000000f4f21e01000000000000000000000000000000000400004242424200000000000000424242424242424242420a0000000000000000000000ff00c00000000000000000004000000000000000000000000000008000000000ef0000000000000000000000fc000000000000008000000000ef0000000000000000000000fc";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        wal_segment(&bytes);
    }

    /// The fuzz targets' smoke test on stable Rust: random and mutated
    /// inputs from a seed (the cargo-fuzz run in scripts/fuzz goes further).
    #[test]
    fn decoders_of_outside_bytes_never_panic() {
        let seed = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed);
        println!("FUZZ_SEED={seed}");
        let mut rng = Rng::new(seed);
        let valid = batch::tests::make_batch(3, b"hello");
        let keyed = crate::records::tests::batch(
            9,
            &[(Some("k"), Some("v1"), 5), (Some("k"), None, 6), (None, Some("x"), 7)],
            0,
        );
        let pull = crate::shard::pull::PullMessage::Reply(crate::shard::pull::PullReply {
            from: 2,
            at: 40,
            parts: vec![crate::shard::pull::Pulled {
                partition: crate::types::PartitionId(1),
                status: crate::shard::pull::PullStatus::Data,
                log_start: crate::types::Offset(0),
                bytes: valid.len() as u32,
            }],
            data: valid.clone().into(),
        })
        .encode();
        for _ in 0..20_000 {
            let mut data = match rng.below(5) {
                0 => valid.clone(),
                3 => keyed.clone(),
                1 => [valid.clone(), valid.clone()].concat(),
                2 => pull.clone(),
                _ => {
                    let n = rng.below(200);
                    (0..n).map(|_| rng.below(256) as u8).collect()
                }
            };
            for _ in 0..rng.below(4) {
                if !data.is_empty() {
                    let at = rng.below(data.len() as u64) as usize;
                    data[at] = rng.below(256) as u8;
                }
            }
            data.truncate(rng.below(data.len() as u64 + 1) as usize);
            record_batches(&data);
            wal_segment(&data);
            raft_message(&data);
            checkpoint(&data);
            compaction(&data);
        }
    }
}
