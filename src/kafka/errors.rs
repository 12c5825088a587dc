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
