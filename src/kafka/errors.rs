//! The one place where internal errors become Kafka error codes.

use corestream_shards::batch::BatchError;
use corestream_shards::producer::SeqError;
use corestream_shards::ShardError;
use kafka_protocol::error::ResponseError as E;

use crate::controller::plan::ControlError;

pub const NONE: i16 = 0;

pub fn shard(e: &ShardError) -> i16 {
    match e {
        ShardError::UnknownPartition(_) => E::UnknownTopicOrPartition.code(),
        ShardError::NotLeader => E::NotLeaderOrFollower.code(),
        ShardError::OffsetOutOfRange { .. } => E::OffsetOutOfRange.code(),
        ShardError::Storage(_) => E::KafkaStorageError.code(),
        ShardError::Sequence(SeqError::OutOfOrder { .. }) => E::OutOfOrderSequenceNumber.code(),
        ShardError::Sequence(SeqError::StaleEpoch { .. }) => E::InvalidProducerEpoch.code(),
    }
}

pub fn batch(e: &BatchError) -> i16 {
    match e {
        BatchError::TooLarge { .. } => E::MessageTooLarge.code(),
        BatchError::UnsupportedMagic(_) => E::UnsupportedForMessageFormat.code(),
        BatchError::Truncated | BatchError::CrcMismatch | BatchError::BadRecordCount { .. } => E::CorruptMessage.code(),
    }
}

pub fn control(e: &ControlError) -> i16 {
    match e {
        ControlError::TopicExists(_) => E::TopicAlreadyExists.code(),
        ControlError::InvalidTopic(_) => E::InvalidTopicException.code(),
        ControlError::InvalidPartitions(_) => E::InvalidPartitions.code(),
        ControlError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor.code(),
        ControlError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment.code(),
        ControlError::InvalidConfig(_) => E::InvalidConfig.code(),
        ControlError::PolicyViolation(_) => E::PolicyViolation.code(),
        ControlError::UnknownTopic(_) => E::UnknownTopicOrPartition.code(),
        ControlError::Storage(_) => E::KafkaStorageError.code(),
    }
}

pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = E::UnknownTopicOrPartition.code();
pub const INVALID_REQUIRED_ACKS: i16 = E::InvalidRequiredAcks.code();
pub const UNSUPPORTED_VERSION: i16 = E::UnsupportedVersion.code();
pub const FETCH_SESSION_ID_NOT_FOUND: i16 = E::FetchSessionIdNotFound.code();
pub const INVALID_REQUEST: i16 = E::InvalidRequest.code();
pub const INVALID_TOPIC: i16 = E::InvalidTopicException.code();

/// The Kafka error codes a response carries (top level, per topic, per
/// partition), so the errors metric is counted in one place, `dispatch`.
pub trait ErrorCodes {
    fn error_codes(&self, each: &mut dyn FnMut(i16));
}

mod codes {
    use super::ErrorCodes;
    use kafka_protocol::messages::*;

    impl ErrorCodes for ProduceResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.responses
                .iter()
                .flat_map(|t| &t.partition_responses)
                .for_each(|p| each(p.error_code));
        }
    }
    impl ErrorCodes for FetchResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
            self.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
    }
    impl ErrorCodes for ListOffsetsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
    }
    impl ErrorCodes for MetadataResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.topics.iter().for_each(|t| each(t.error_code));
        }
    }
    impl ErrorCodes for ApiVersionsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
        }
    }
    impl ErrorCodes for CreateTopicsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.topics.iter().for_each(|t| each(t.error_code));
        }
    }
    impl ErrorCodes for DeleteTopicsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.responses.iter().for_each(|t| each(t.error_code));
        }
    }
    impl ErrorCodes for CreatePartitionsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.results.iter().for_each(|t| each(t.error_code));
        }
    }
    impl ErrorCodes for DescribeConfigsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.results.iter().for_each(|r| each(r.error_code));
        }
    }
    impl ErrorCodes for IncrementalAlterConfigsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.responses.iter().for_each(|r| each(r.error_code));
        }
    }
    impl ErrorCodes for InitProducerIdResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
        }
    }
}
