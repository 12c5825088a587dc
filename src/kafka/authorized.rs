//! Authorization of requests. `Caller` is who sent one — the principal
//! and host of its connection — and answers the handlers' checks from this
//! shard's own copy of the replicated ACLs (`security::acl`): no check
//! crosses cores or waits. With the authorizer off (the default) every
//! check passes, as in Kafka without an authorizer.
//!
//! Handlers ask `may_*` where a refusal becomes an error code the client
//! sees (counted in `corestream_authorization_denials_total`), and `sees`
//! where it only filters a listing (Metadata of all topics, ListGroups),
//! as Kafka logs only the former. `operations` fills the
//! `authorized_operations` bit fields (KIP-430).

use crate::kafka::connection::ConnectionInfo;
use crate::kafka::errors;
use crate::node::broker::Broker;
use crate::security::acl::{Operation, ResourceType, Subject, CLUSTER_NAME};

/// Runs `run` on the items the caller may act on (`allowed`, one flag per
/// item) and answers the others with `denied()`, in request order: how
/// admin requests refuse some of their topics and carry out the rest.
pub async fn only_allowed<T, R, Fut>(
    items: Vec<T>,
    allowed: &[bool],
    run: impl FnOnce(Vec<T>) -> Fut,
    denied: impl Fn() -> R,
) -> Vec<R>
where
    Fut: std::future::Future<Output = Vec<R>>,
{
    let sent: Vec<T> = items
        .into_iter()
        .zip(allowed)
        .filter(|(_, &ok)| ok)
        .map(|(t, _)| t)
        .collect();
    let mut results = if sent.is_empty() { Vec::new() } else { run(sent).await }.into_iter();
    allowed
        .iter()
        .map(|&ok| {
            if ok {
                results.next().expect("one result per item sent")
            } else {
                denied()
            }
        })
        .collect()
}

/// What a response carries when the client did not ask.
pub const NOT_ASKED: i32 = i32::MIN;

/// The sender of one request.
pub struct Caller<'a> {
    broker: &'a Broker,
    pub info: &'a ConnectionInfo,
}

impl<'a> Caller<'a> {
    pub fn new(broker: &'a Broker, info: &'a ConnectionInfo) -> Self {
        Self { broker, info }
    }

    pub fn principal(&self) -> &str {
        self.info.principal()
    }

    fn subject(&self) -> Subject<'_> {
        Subject {
            principal: self.info.principal(),
            host: &self.info.host,
        }
    }

    fn check(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        let config = &self.broker.config.authorizer;
        !config.enabled || config.authorize(&self.broker.meta.borrow().acls, self.subject(), op, rt, name)
    }

    fn refused(&self, op: Operation, rt: ResourceType, name: &str) {
        self.broker.metrics.denied(rt.name());
        tracing::trace!(
            principal = self.info.principal(),
            host = %self.info.host,
            operation = op.name(),
            resource_type = rt.name(),
            resource = name,
            "denied"
        );
    }

    /// Whether the caller may do `op` on the resource; a refusal is counted.
    pub fn may(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        let ok = self.check(op, rt, name);
        if !ok {
            self.refused(op, rt, name);
        }
        ok
    }

    pub fn may_topic(&self, op: Operation, topic: &str) -> bool {
        self.may(op, ResourceType::Topic, topic)
    }

    pub fn may_group(&self, op: Operation, group: &str) -> bool {
        self.may(op, ResourceType::Group, group)
    }

    pub fn may_cluster(&self, op: Operation) -> bool {
        self.may(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Why an ACL API (CreateAcls, DescribeAcls, DeleteAcls) is refused
    /// whole, if it is: Kafka checks the cluster permission first, then
    /// whether an authorizer is configured (each API has its own message).
    pub fn acl_api_refusal(&self, op: Operation, disabled: &'static str) -> Option<(i16, &'static str)> {
        if !self.may_cluster(op) {
            Some((errors::CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."))
        } else if !self.broker.config.authorizer.enabled {
            Some((errors::SECURITY_DISABLED, disabled))
        } else {
            None
        }
    }

    /// Whether the caller may do `op` on at least one resource of type
    /// `rt` (Kafka's authorizeByResourceType).
    pub fn may_some(&self, op: Operation, rt: ResourceType) -> bool {
        let config = &self.broker.config.authorizer;
        let ok = !config.enabled || config.authorize_any(&self.broker.meta.borrow().acls, self.subject(), op, rt);
        if !ok {
            self.refused(op, rt, "*");
        }
        ok
    }

    /// Whether a listing shows the resource to the caller; not a denial.
    pub fn sees(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        self.check(op, rt, name)
    }

    /// The `authorized_operations` field for a resource: the operations
    /// the caller may do on it when the client asked, else `NOT_ASKED`.
    pub fn operations(&self, asked: bool, rt: ResourceType, name: &str) -> i32 {
        if !asked {
            return NOT_ASKED;
        }
        let config = &self.broker.config.authorizer;
        config.operations(&self.broker.meta.borrow().acls, self.subject(), rt, name)
    }

    /// The cluster's `authorized_operations`: 0 without DESCRIBE on it, as
    /// Kafka answers (Metadata v8-10, DescribeCluster).
    pub fn cluster_operations(&self, asked: bool) -> i32 {
        if asked && !self.sees(Operation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
            return 0;
        }
        self.operations(asked, ResourceType::Cluster, CLUSTER_NAME)
    }
}
