//! The one place where internal errors become Kafka error codes.

use corestream_shards::batch::BatchError;
use corestream_shards::producer::SeqError;
use corestream_shards::ShardError;
use kafka_protocol::error::ResponseError as E;

use crate::controller::plan::ControlError;

pub const NONE: i16 = 0;

/// Longest error message a response carries. Messages quote what the
/// client sent (a topic name, a config value); a non-flexible response
/// holds a string of at most 32,767 bytes, so an uncut message quoting a
/// 32,000-byte name made the response unencodable and closed the
/// connection instead of answering.
pub const ERROR_MESSAGE_MAX_BYTES: usize = 1024;

/// An error message for a response, cut to `ERROR_MESSAGE_MAX_BYTES` at a
/// character boundary.
pub fn message(mut text: String) -> kafka_protocol::protocol::StrBytes {
    if text.len() > ERROR_MESSAGE_MAX_BYTES {
        let mut end = ERROR_MESSAGE_MAX_BYTES - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    kafka_protocol::protocol::StrBytes::from_string(text)
}

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
        ControlError::NotController(_) => E::NotController.code(),
        ControlError::TimedOut(_) => E::RequestTimedOut.code(),
        ControlError::ResourceNotFound(_) => E::ResourceNotFound.code(),
        ControlError::InvalidRequest(_) => E::InvalidRequest.code(),
        ControlError::TopicAuthorizationFailed(_) => E::TopicAuthorizationFailed.code(),
    }
}

pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = E::UnknownTopicOrPartition.code();
pub const OFFSET_OUT_OF_RANGE: i16 = E::OffsetOutOfRange.code();
pub const INVALID_REQUIRED_ACKS: i16 = E::InvalidRequiredAcks.code();
pub const UNSUPPORTED_VERSION: i16 = E::UnsupportedVersion.code();
pub const FETCH_SESSION_ID_NOT_FOUND: i16 = E::FetchSessionIdNotFound.code();
pub const INVALID_REQUEST: i16 = E::InvalidRequest.code();
pub const INVALID_TOPIC: i16 = E::InvalidTopicException.code();
pub const UNKNOWN_SERVER_ERROR: i16 = E::UnknownServerError.code();
pub const CORRUPT_MESSAGE: i16 = E::CorruptMessage.code();
pub const INVALID_RECORD: i16 = E::InvalidRecord.code();
pub const INVALID_TIMESTAMP: i16 = E::InvalidTimestamp.code();
pub const COORDINATOR_NOT_AVAILABLE: i16 = E::CoordinatorNotAvailable.code();
pub const GROUP_MAX_SIZE_REACHED: i16 = E::GroupMaxSizeReached.code();
pub const INVALID_GROUP_ID: i16 = E::InvalidGroupId.code();
pub const OFFSET_METADATA_TOO_LARGE: i16 = E::OffsetMetadataTooLarge.code();
pub const INVALID_COMMIT_OFFSET_SIZE: i16 = E::InvalidCommitOffsetSize.code();
pub const REBALANCE_IN_PROGRESS: i16 = E::RebalanceInProgress.code();
pub const UNKNOWN_MEMBER_ID: i16 = E::UnknownMemberId.code();
pub const ILLEGAL_GENERATION: i16 = E::IllegalGeneration.code();
pub const INVALID_SESSION_TIMEOUT: i16 = E::InvalidSessionTimeout.code();
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = E::InconsistentGroupProtocol.code();
pub const MEMBER_ID_REQUIRED: i16 = E::MemberIdRequired.code();
pub const NOT_COORDINATOR: i16 = E::NotCoordinator.code();
pub const NON_EMPTY_GROUP: i16 = E::NonEmptyGroup.code();
pub const GROUP_ID_NOT_FOUND: i16 = E::GroupIdNotFound.code();
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = E::GroupSubscribedToTopic.code();
pub const FENCED_INSTANCE_ID: i16 = E::FencedInstanceId.code();
pub const LEADER_NOT_AVAILABLE: i16 = E::LeaderNotAvailable.code();
pub const MISMATCHED_ENDPOINT_TYPE: i16 = E::MismatchedEndpointType.code();
pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = E::UnsupportedEndpointType.code();
pub const ILLEGAL_SASL_STATE: i16 = E::IllegalSaslState.code();
pub const UNSUPPORTED_SASL_MECHANISM: i16 = E::UnsupportedSaslMechanism.code();
pub const SASL_AUTHENTICATION_FAILED: i16 = E::SaslAuthenticationFailed.code();
pub const UNACCEPTABLE_CREDENTIAL: i16 = E::UnacceptableCredential.code();
pub const DUPLICATE_RESOURCE: i16 = E::DuplicateResource.code();
pub const RESOURCE_NOT_FOUND: i16 = E::ResourceNotFound.code();
pub const TOPIC_AUTHORIZATION_FAILED: i16 = E::TopicAuthorizationFailed.code();
pub const GROUP_AUTHORIZATION_FAILED: i16 = E::GroupAuthorizationFailed.code();
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = E::ClusterAuthorizationFailed.code();
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = E::TransactionalIdAuthorizationFailed.code();
pub const SECURITY_DISABLED: i16 = E::SecurityDisabled.code();

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
    impl ErrorCodes for DescribeLogDirsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
            self.results.iter().for_each(|r| each(r.error_code));
        }
    }
    impl ErrorCodes for DeleteRecordsResponse {
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
    impl ErrorCodes for DescribeClusterResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
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
    impl ErrorCodes for FindCoordinatorResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
            self.coordinators.iter().for_each(|c| each(c.error_code));
        }
    }

    impl ErrorCodes for OffsetCommitResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
    }

    impl ErrorCodes for OffsetFetchResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
            self.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
            for g in &self.groups {
                each(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| each(p.error_code));
            }
        }
    }

    impl ErrorCodes for JoinGroupResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
        }
    }

    impl ErrorCodes for SyncGroupResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
        }
    }

    impl ErrorCodes for HeartbeatResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
        }
    }

    impl ErrorCodes for LeaveGroupResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
            self.members.iter().for_each(|m| each(m.error_code));
        }
    }

    impl ErrorCodes for ListGroupsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
        }
    }
    impl ErrorCodes for DescribeGroupsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.groups.iter().for_each(|g| each(g.error_code));
        }
    }
    impl ErrorCodes for DeleteGroupsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.results.iter().for_each(|g| each(g.error_code));
        }
    }
    impl ErrorCodes for OffsetDeleteResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
            self.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
    }
    impl ErrorCodes for InitProducerIdResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
        }
    }
    impl ErrorCodes for SaslHandshakeResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
        }
    }
    impl ErrorCodes for SaslAuthenticateResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
        }
    }
    impl ErrorCodes for DescribeUserScramCredentialsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
            self.results.iter().for_each(|r| each(r.error_code));
        }
    }
    impl ErrorCodes for AlterUserScramCredentialsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.results.iter().for_each(|r| each(r.error_code));
        }
    }
    impl ErrorCodes for CreateAclsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.results.iter().for_each(|r| each(r.error_code));
        }
    }
    impl ErrorCodes for DescribeAclsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            each(self.error_code);
        }
    }
    impl ErrorCodes for DeleteAclsResponse {
        fn error_codes(&self, each: &mut dyn FnMut(i16)) {
            self.filter_results.iter().for_each(|r| each(r.error_code));
        }
    }
}
