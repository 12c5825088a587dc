//! The `authorized_operations` bit fields (KIP-430) that Metadata,
//! DescribeGroups and DescribeCluster return when a client asks for them.
//! corestream has no authorizer yet, and Kafka without one answers every
//! operation the resource type supports; a client that did not ask gets
//! the schema's default, `i32::MIN`. ACLs will decide here.

/// What a response carries when the client did not ask.
pub const NOT_ASKED: i32 = i32::MIN;

// Kafka's AclOperation codes; bit `code` of the field is set when allowed.
const READ: u32 = 3;
const WRITE: u32 = 4;
const CREATE: u32 = 5;
const DELETE: u32 = 6;
const ALTER: u32 = 7;
const DESCRIBE: u32 = 8;
const CLUSTER_ACTION: u32 = 9;
const DESCRIBE_CONFIGS: u32 = 10;
const ALTER_CONFIGS: u32 = 11;
const IDEMPOTENT_WRITE: u32 = 12;

const fn field(ops: &[u32]) -> i32 {
    let mut bits = 0i32;
    let mut i = 0;
    while i < ops.len() {
        bits |= 1 << ops[i];
        i += 1;
    }
    bits
}

/// Every operation on the cluster resource.
pub const CLUSTER: i32 = field(&[
    CREATE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
    ALTER,
    DESCRIBE,
]);
/// Every operation on a topic.
pub const TOPIC: i32 = field(&[
    READ,
    WRITE,
    CREATE,
    DESCRIBE,
    DELETE,
    ALTER,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
]);
/// Every operation on a group (its configs too since KIP-848).
pub const GROUP: i32 = field(&[READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);

/// The field for a resource: all of `ops` when asked, else `NOT_ASKED`.
pub fn when_asked(asked: bool, ops: i32) -> i32 {
    if asked {
        ops
    } else {
        NOT_ASKED
    }
}
