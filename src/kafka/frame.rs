//! Response frames: length prefix, header, body — kept as a list of byte
//! segments, so fetched record batches go to the socket as the `Bytes`
//! they were read into, not copied into the frame first.

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Encodable, HeaderVersion};

use super::FrameError;

/// Slices at least this long that lie inside a borrowed buffer become
/// their own segment instead of being copied.
const BORROW_BYTES_MIN: usize = 16 << 10;

/// The largest response encoded (inline bytes, not counting fetched
/// batches, which the fetch's own limits bound). A response is sized
/// before it is built; larger ones close the connection instead: a
/// request of a few hundred KiB can ask for gigabytes (a DescribeGroups
/// naming one group with large member metadata 50,000 times), which would
/// take the broker's memory, and librdkafka refuses anything over 100 MB
/// (`receive.message.max.bytes`). A Metadata answer for a million
/// partitions is about 50 MiB.
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// One response on the wire, in order.
#[derive(Debug, Clone)]
pub struct Frame {
    segments: Vec<Bytes>,
    len: usize,
}

impl Frame {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn segments(&self) -> &[Bytes] {
        &self.segments
    }
}

/// A bare SASL token, length-prefixed with no header: how tokens travel
/// after a v0 SaslHandshake (KIP-43).
pub fn raw(token: &[u8]) -> Frame {
    let mut buf = BytesMut::with_capacity(token.len() + 4);
    buf.put_i32(token.len() as i32);
    buf.put_slice(token);
    let len = buf.len();
    Frame {
        segments: vec![buf.freeze()],
        len,
    }
}

/// A `BufMut` that copies small writes and takes large ones that come from
/// a known `Bytes` by reference.
struct GatherBuf {
    done: Vec<Bytes>,
    done_len: usize,
    current: BytesMut,
    borrowed: Vec<Bytes>,
}

impl GatherBuf {
    fn borrow(&self, src: &[u8]) -> Option<Bytes> {
        let (start, end) = (src.as_ptr() as usize, src.as_ptr() as usize + src.len());
        self.borrowed
            .iter()
            .find(|b| b.as_ptr() as usize <= start && end <= b.as_ptr() as usize + b.len())
            .map(|b| b.slice_ref(src))
    }

    fn finish(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.done.push(self.current.split().freeze());
        }
        self.done
    }
}

// SAFETY: every method delegates to `current`, a BytesMut, except
// `put_slice`, which either does the same or appends a whole segment.
unsafe impl BufMut for GatherBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `current`'s chunk.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= BORROW_BYTES_MIN {
            if let Some(segment) = self.borrow(src) {
                self.done_len += self.current.len() + segment.len();
                if !self.current.is_empty() {
                    self.done.push(self.current.split().freeze());
                }
                self.done.push(segment);
                return;
            }
        }
        self.current.extend_from_slice(src);
    }
}

impl ByteBufMut for GatherBuf {
    fn offset(&self) -> usize {
        self.done_len + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        assert!(offset >= self.done_len, "seek back into a finished segment");
        self.current.resize(offset - self.done_len, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        assert!(r.start >= self.done_len, "range in a finished segment");
        &mut self.current[r.start - self.done_len..r.end - self.done_len]
    }
}

/// Encodes `resp` behind its response header, length-prefixed. Large
/// slices of `borrowed` buffers that the message refers to (fetched record
/// batches) are not copied.
pub fn encode<R: Encodable + HeaderVersion>(
    api: ApiKey,
    correlation_id: i32,
    version: i16,
    resp: &R,
    borrowed: Vec<Bytes>,
) -> Result<Frame, FrameError> {
    let err = |e: anyhow::Error| FrameError::Encode {
        api,
        version,
        reason: e.to_string(),
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let inline = if borrowed.is_empty() {
        let size = resp.compute_size(version).map_err(err)?;
        if size > MAX_RESPONSE_BYTES {
            return Err(err(anyhow::anyhow!(
                "the answer would take {size} bytes, over the {MAX_RESPONSE_BYTES} a response may"
            )));
        }
        size + 16
    } else {
        4096
    };
    let mut buf = GatherBuf {
        done: Vec::new(),
        done_len: 0,
        current: BytesMut::with_capacity(inline),
        borrowed,
    };
    buf.put_i32(0);
    header.encode(&mut buf, R::header_version(version)).map_err(err)?;
    resp.encode(&mut buf, version).map_err(err)?;
    let len = buf.offset();
    if len - 4 > i32::MAX as usize {
        return Err(err(anyhow::anyhow!(
            "the answer took {len} bytes, more than a frame can hold"
        )));
    }
    let mut segments = buf.finish();
    let mut first = BytesMut::from(&segments[0][..]);
    first[0..4].copy_from_slice(&((len - 4) as i32).to_be_bytes());
    segments[0] = first.freeze();
    Ok(Frame { segments, len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::FetchResponse;

    fn response(records: &[Bytes]) -> FetchResponse {
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default().with_partitions(
            records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    PartitionData::default()
                        .with_partition_index(i as i32)
                        .with_records(Some(r.clone()))
                })
                .collect(),
        )])
    }

    /// A response over the bound is refused before a byte of it is
    /// allocated: 300 members' 1 MiB metadata, one buffer shared by all.
    #[test]
    fn a_response_over_the_bound_is_refused_before_it_is_built() {
        use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
        use kafka_protocol::messages::DescribeGroupsResponse;
        let metadata = Bytes::from(vec![1u8; 1 << 20]);
        let group = |members: usize| {
            DescribedGroup::default().with_members(
                (0..members)
                    .map(|_| DescribedGroupMember::default().with_member_metadata(metadata.clone()))
                    .collect(),
            )
        };
        let over = DescribeGroupsResponse::default().with_groups(vec![group(300)]);
        let e = encode(ApiKey::DescribeGroups, 1, 0, &over, vec![]).unwrap_err();
        assert!(e.to_string().contains("over the"), "{e}");
        let under = DescribeGroupsResponse::default().with_groups(vec![group(3)]);
        let frame = encode(ApiKey::DescribeGroups, 1, 0, &under, vec![]).unwrap();
        assert!(frame.len() > 3 << 20);
    }

    /// The gathered frame is byte for byte what a plain encode writes, and
    /// large records were not copied.
    #[test]
    fn gathered_frame_equals_the_plain_encoding() {
        let big = Bytes::from(vec![7u8; 100_000]);
        let small = Bytes::from(vec![9u8; 100]);
        for version in [4, 11, 12] {
            let resp = response(&[big.clone(), small.clone(), big.slice(10..50_000)]);
            let gathered = encode(ApiKey::Fetch, 42, version, &resp, vec![big.clone(), small.clone()]).unwrap();
            let plain = encode(ApiKey::Fetch, 42, version, &resp, vec![]).unwrap();
            assert_eq!(plain.segments().len(), 1);
            let joined: Vec<u8> = gathered.segments().iter().flat_map(|s| s.iter().copied()).collect();
            assert_eq!(joined, &plain.segments()[0][..], "v{version}");
            assert_eq!(gathered.len(), joined.len());
            assert!(
                gathered.segments().iter().any(|s| s.as_ptr() == big.as_ptr()),
                "v{version}: the large batch is a segment of its own"
            );
        }
    }
}
