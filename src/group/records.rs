//! The records of `__consumer_offsets`, in Kafka's layout (so Kafka's own
//! tools can read them): an offset commit's key is version 1 `(group,
//! topic, partition)`, its value version 3 `(offset, leader epoch,
//! metadata, commit timestamp)`; a null value deletes the offset. Strings
//! are an i16 length and UTF-8 bytes; integers are big-endian.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{Record, TimestampType};

const KEY_VERSION: i16 = 1;
const VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// The longest string the layout holds (an i16 length).
pub const STRING_MAX_BYTES: usize = i16::MAX as usize;

/// A string longer than the layout holds (`STRING_MAX_BYTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a string of {0} bytes does not fit the offsets record layout (at most {STRING_MAX_BYTES})")]
pub struct TooLong(pub usize);

fn put_str(buf: &mut BytesMut, s: &str) -> Result<(), TooLong> {
    // Group ids are refused past STRING_MAX_BYTES where they arrive
    // (`coordinator_of`), so this holds for them; checked here all the same.
    let len = i16::try_from(s.len()).map_err(|_| TooLong(s.len()))?;
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

fn get_str(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = usize::try_from(buf.get_i16()).ok()?;
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

pub fn encode_key(k: &CommitKey) -> Result<Bytes, TooLong> {
    let mut buf = BytesMut::new();
    buf.put_i16(KEY_VERSION);
    put_str(&mut buf, &k.group)?;
    put_str(&mut buf, &k.topic)?;
    buf.put_i32(k.partition);
    Ok(buf.freeze())
}

pub fn encode_value(v: &CommitValue) -> Result<Bytes, TooLong> {
    let mut buf = BytesMut::new();
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(v.offset);
    buf.put_i32(v.leader_epoch);
    put_str(&mut buf, &v.metadata)?;
    buf.put_i64(v.commit_timestamp);
    Ok(buf.freeze())
}

/// An offset commit key (versions 0 and 1 share the layout); `None` for
/// other record kinds (version 2 is group metadata) and for garbage.
pub fn decode_key(bytes: &Bytes) -> Option<CommitKey> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 || !matches!(buf.get_i16(), 0 | 1) {
        return None;
    }
    let group = get_str(&mut buf)?;
    let topic = get_str(&mut buf)?;
    if buf.remaining() != 4 {
        return None;
    }
    Some(CommitKey {
        group,
        topic,
        partition: buf.get_i32(),
    })
}

/// An offset commit value of version 3 (the one we write); `None` for
/// versions we do not read and for garbage.
pub fn decode_value(bytes: &Bytes) -> Option<CommitValue> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 || buf.get_i16() != VALUE_VERSION || buf.remaining() < 12 {
        return None;
    }
    let offset = buf.get_i64();
    let leader_epoch = buf.get_i32();
    let metadata = get_str(&mut buf)?;
    if buf.remaining() < 8 {
        return None;
    }
    Some(CommitValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp: buf.get_i64(),
    })
}

/// The `index`-th record of a batch: a commit (`Some`) or a deletion (`None`).
pub fn record(index: i64, key: &CommitKey, value: Option<&CommitValue>, now_ms: i64) -> Result<Record, TooLong> {
    Ok(Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        // Offsets within the batch: the encoder writes them as deltas.
        offset: index,
        sequence: -1,
        timestamp: now_ms,
        key: Some(encode_key(key)?),
        value: value.map(encode_value).transpose()?,
        headers: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value_roundtrip_in_kafkas_layout() {
        let k = CommitKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        let bytes = encode_key(&k).expect("fits");
        // version 1 | "g" | "t" | partition 3
        assert_eq!(&bytes[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]);
        assert_eq!(decode_key(&bytes), Some(k));
        let v = CommitValue {
            offset: 42,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp: 7,
        };
        assert_eq!(decode_value(&encode_value(&v).expect("fits")), Some(v));
    }

    #[test]
    fn other_record_kinds_and_garbage_are_not_commits() {
        let mut group_metadata = BytesMut::new();
        group_metadata.put_i16(2);
        put_str(&mut group_metadata, "g").expect("fits");
        assert_eq!(decode_key(&group_metadata.freeze()), None);
        for junk in [&b""[..], &[0, 1][..], &[0, 1, 0, 9, b'x'][..], &[0, 1, 0xff, 0xff][..]] {
            assert_eq!(decode_key(&Bytes::copy_from_slice(junk)), None);
            assert_eq!(decode_value(&Bytes::copy_from_slice(junk)), None);
        }
    }
}
