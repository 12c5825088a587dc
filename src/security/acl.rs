//! Authorization, Kafka's model: an ACL binds a resource pattern (type,
//! name, literal or prefixed) to an entry (principal, host, operation,
//! allow or deny). ACLs live in the replicated metadata; every shard keeps
//! its own `Acls` index, built as it applies metadata changes, so a check
//! is a few hash lookups on the connection's own core.
//!
//! A decision follows Kafka's StandardAuthorizer: a matching DENY wins;
//! else a matching ALLOW grants; else a resource that has ACLs (for anyone)
//! is denied, and one without any gets `allow_everyone_if_no_acl_found`.
//! ALLOW for READ, WRITE, DELETE or ALTER implies DESCRIBE, and ALLOW for
//! ALTER_CONFIGS implies DESCRIBE_CONFIGS; a DENY implies nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The one name of the cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal resource name, principal or host that matches any.
pub const WILDCARD: &str = "*";
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// Who a client is when nothing authenticated it.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:expr, $text:expr;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $($variant,)* }

        impl $name {
            pub const ALL_VALUES: &'static [$name] = &[$($name::$variant,)*];

            /// Kafka's wire code.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code,)* }
            }

            pub fn from_code(code: i8) -> Option<Self> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }

            /// Kafka's name, as its tools print and take it.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                let upper = name.to_ascii_uppercase().replace('-', "_");
                Self::ALL_VALUES.iter().copied().find(|v| v.name() == upper)
            }
        }
    };
}

wire_enum!(
    /// A kind of resource an ACL protects.
    ResourceType {
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
);

wire_enum!(
    /// How an ACL's resource name matches.
    PatternType {
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
);

wire_enum!(
    Operation {
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
        TwoPhaseCommit = 15, "TWO_PHASE_COMMIT";
    }
);

wire_enum!(
    Permission {
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
);

/// Wire codes that filters use for "any" and "match".
pub const CODE_ANY: i8 = 1;
pub const CODE_MATCH: i8 = 2;

impl ResourceType {
    /// Dense index, 0-5.
    fn slot(self) -> usize {
        self as usize
    }

    /// The operations an ACL on this resource type can be about (Kafka's
    /// AclEntry.supportedOperations); `authorized_operations` reports these.
    pub fn operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write, TwoPhaseCommit],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
        }
    }
}

/// One ACL: who may (or may not) do what to which resources, from where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern: PatternType,
    /// `Type:name`, e.g. `User:alice`; `User:*` is anyone.
    pub principal: String,
    /// A client IP address, or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Kafka's checks on a new ACL (AclApis and AclControlManager), with
    /// their messages.
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        if self.resource_name.is_empty() {
            return Err("Invalid empty resource name".into());
        }
        if !self.principal.contains(':') {
            return Err(format!(
                "Could not parse principal from `{}` (no colon is present separating the principal type from the principal name)",
                self.principal
            ));
        }
        Ok(())
    }
}

/// Which ACLs a DescribeAcls or DeleteAcls filter selects (Kafka's
/// AclBindingFilter); `None` is ANY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternFilter {
    Any,
    /// Every ACL that would apply to the named resource: the literal one,
    /// the wildcard, and prefixes of the name.
    Match,
    Exactly(PatternType),
}

impl AclFilter {
    /// A filter from its wire codes; UNKNOWN or out-of-range codes are an
    /// invalid request, as in Kafka.
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        resource_name: Option<String>,
        pattern: i8,
        principal: Option<String>,
        host: Option<String>,
        operation: i8,
        permission: i8,
    ) -> Result<Self, String> {
        fn any_or<T>(code: i8, parse: fn(i8) -> Option<T>, what: &str) -> Result<Option<T>, String> {
            if code == CODE_ANY {
                return Ok(None);
            }
            parse(code)
                .map(Some)
                .ok_or_else(|| format!("Unknown {what} code {code} in the filter"))
        }
        let pattern = match pattern {
            CODE_ANY => PatternFilter::Any,
            CODE_MATCH => PatternFilter::Match,
            code => PatternFilter::Exactly(
                PatternType::from_code(code)
                    .ok_or_else(|| format!("Unknown pattern type code {code} in the filter"))?,
            ),
        };
        Ok(Self {
            resource_type: any_or(resource_type, ResourceType::from_code, "resource type")?,
            resource_name,
            pattern,
            principal,
            host,
            operation: any_or(operation, Operation::from_code, "operation")?,
            permission: any_or(permission, Permission::from_code, "permission type")?,
        })
    }

    /// Kafka's ResourcePatternFilter.matches and AccessControlEntryFilter.matches.
    pub fn matches(&self, acl: &AclBinding) -> bool {
        if self.resource_type.is_some_and(|t| t != acl.resource_type) {
            return false;
        }
        let name_ok = match (&self.resource_name, self.pattern) {
            (_, PatternFilter::Exactly(p)) if p != acl.pattern => false,
            (None, _) => true,
            (Some(n), PatternFilter::Any | PatternFilter::Exactly(_)) => *n == acl.resource_name,
            (Some(n), PatternFilter::Match) => match acl.pattern {
                PatternType::Literal => *n == acl.resource_name || acl.resource_name == WILDCARD,
                PatternType::Prefixed => n.starts_with(&acl.resource_name),
            },
        };
        name_ok
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }
}

/// Who asks, from where.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// The entry part of an ACL, kept under its resource pattern. Principals
/// and hosts repeat across ACLs: each shard keeps one copy of each.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    principal: Arc<str>,
    host: Arc<str>,
    operation: Operation,
    permission: Permission,
}

impl Entry {
    /// Kafka's StandardAuthorizerData.findResult: `None` when the entry
    /// says nothing about this request.
    fn decides(&self, who: Subject<'_>, op: Operation) -> Option<Permission> {
        if *self.principal != *who.principal && *self.principal != *WILDCARD_PRINCIPAL {
            return None;
        }
        if *self.host != *WILDCARD && *self.host != *who.host {
            return None;
        }
        let applies = self.operation == Operation::All
            || self.operation == op
            || (self.permission == Permission::Allow && implies(self.operation, op));
        applies.then_some(self.permission)
    }

    fn is(&self, acl: &AclBinding) -> bool {
        *self.principal == *acl.principal
            && *self.host == *acl.host
            && self.operation == acl.operation
            && self.permission == acl.permission
    }
}

/// Whether an ALLOW for `granted` also allows `asked`.
fn implies(granted: Operation, asked: Operation) -> bool {
    use Operation::*;
    match asked {
        Describe => matches!(granted, Read | Write | Delete | Alter),
        DescribeConfigs => granted == AlterConfigs,
        _ => false,
    }
}

/// Seeded per process (HashDoS), and several times faster than SipHash on
/// the short names a check hashes.
type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// ACLs of one resource type, indexed for checks.
#[derive(Debug, Clone, Default)]
struct TypeIndex {
    literal: Map<Vec<Entry>>,
    prefixed: Map<Vec<Entry>>,
    /// How many prefixed patterns have each length (in bytes): a check
    /// looks up the name's prefix of each length present, so its cost
    /// grows with the number of distinct lengths, not of ACLs.
    prefix_lengths: std::collections::BTreeMap<usize, usize>,
}

impl TypeIndex {
    fn map(&self, pattern: PatternType) -> &Map<Vec<Entry>> {
        match pattern {
            PatternType::Literal => &self.literal,
            PatternType::Prefixed => &self.prefixed,
        }
    }
}

/// Every ACL, held only as the index that checks use (a shard keeps its
/// own copy: 100,000 ACLs cost each shard tens of MiB as whole bindings,
/// a fraction of that here). Built by applying metadata changes.
#[derive(Debug, Clone, Default)]
pub struct Acls {
    /// By `ResourceType::slot`.
    by_type: [TypeIndex; 6],
    len: usize,
    /// One copy of each principal and host in use.
    strings: HashSet<Arc<str>, foldhash::fast::RandomState>,
}

/// What a check found, before the no-ACL default applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
    /// The resource has no ACL at all (for anyone).
    NoAcls,
}

impl Acls {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, acl: &AclBinding) -> bool {
        self.by_type[acl.resource_type.slot()]
            .map(acl.pattern)
            .get(&acl.resource_name)
            .is_some_and(|entries| entries.iter().any(|e| e.is(acl)))
    }

    /// Every ACL, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = AclBinding> + '_ {
        ResourceType::ALL_VALUES.iter().flat_map(move |&rt| {
            let index = &self.by_type[rt.slot()];
            [PatternType::Literal, PatternType::Prefixed]
                .into_iter()
                .flat_map(move |pattern| {
                    index.map(pattern).iter().flat_map(move |(name, entries)| {
                        entries.iter().map(move |e| AclBinding {
                            resource_type: rt,
                            resource_name: name.clone(),
                            pattern,
                            principal: e.principal.to_string(),
                            host: e.host.to_string(),
                            operation: e.operation,
                            permission: e.permission,
                        })
                    })
                })
        })
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        match self.strings.get(s) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = Arc::from(s);
                self.strings.insert(shared.clone());
                shared
            }
        }
    }

    /// Drops a principal or host no entry uses any more.
    fn release(&mut self, s: Arc<str>) {
        // This one and the set's: the last entry that used it is gone.
        if Arc::strong_count(&s) == 2 {
            self.strings.remove(&*s);
        }
    }

    /// Adds an ACL; false if it was there already.
    pub fn insert(&mut self, acl: AclBinding) -> bool {
        if self.contains(&acl) {
            return false;
        }
        let entry = Entry {
            principal: self.intern(&acl.principal),
            host: self.intern(&acl.host),
            operation: acl.operation,
            permission: acl.permission,
        };
        let index = &mut self.by_type[acl.resource_type.slot()];
        match acl.pattern {
            PatternType::Literal => index.literal.entry(acl.resource_name).or_default().push(entry),
            PatternType::Prefixed => {
                *index.prefix_lengths.entry(acl.resource_name.len()).or_default() += 1;
                index.prefixed.entry(acl.resource_name).or_default().push(entry);
            }
        }
        self.len += 1;
        true
    }

    /// Removes an ACL; false if it was not there.
    pub fn remove(&mut self, acl: &AclBinding) -> bool {
        if !self.contains(acl) {
            return false;
        }
        let index = &mut self.by_type[acl.resource_type.slot()];
        let map = match acl.pattern {
            PatternType::Literal => &mut index.literal,
            PatternType::Prefixed => {
                let n = index
                    .prefix_lengths
                    .get_mut(&acl.resource_name.len())
                    .expect("an indexed prefix has its length counted");
                *n -= 1;
                if *n == 0 {
                    index.prefix_lengths.remove(&acl.resource_name.len());
                }
                &mut index.prefixed
            }
        };
        let entries = map.get_mut(&acl.resource_name).expect("contains() found its entries");
        let at = entries
            .iter()
            .position(|e| e.is(acl))
            .expect("contains() found its entry");
        let gone = entries.swap_remove(at);
        if entries.is_empty() {
            map.remove(&acl.resource_name);
        }
        self.len -= 1;
        self.release(gone.principal);
        self.release(gone.host);
        true
    }

    /// What the ACLs say about `who` doing `op` on resource `name` of type `rt`.
    pub fn decide(&self, who: Subject<'_>, op: Operation, rt: ResourceType, name: &str) -> Decision {
        let index = &self.by_type[rt.slot()];
        let mut found_any = false;
        let mut allowed = false;
        let mut consider = |entries: Option<&Vec<Entry>>| -> bool {
            for e in entries.into_iter().flatten() {
                found_any = true;
                match e.decides(who, op) {
                    Some(Permission::Deny) => return true,
                    Some(Permission::Allow) => allowed = true,
                    None => {}
                }
            }
            false
        };
        if consider(index.literal.get(name)) || consider(index.literal.get(WILDCARD)) {
            return Decision::Denied;
        }
        for &len in index.prefix_lengths.keys() {
            if len > name.len() {
                break;
            }
            if let Some(prefix) = name.get(..len) {
                if consider(index.prefixed.get(prefix)) {
                    return Decision::Denied;
                }
            }
        }
        match (allowed, found_any) {
            (true, _) => Decision::Allowed,
            (false, true) => Decision::Denied,
            (false, false) => Decision::NoAcls,
        }
    }

    /// Whether `who` may do `op` on some resource of type `rt` (Kafka's
    /// authorizeByResourceType, which InitProducerId uses: an idempotent
    /// producer needs WRITE on at least one topic): some ALLOW pattern
    /// that no DENY pattern for the same subject covers entirely.
    pub fn allows_some(&self, who: Subject<'_>, op: Operation, rt: ResourceType, none_found_allows: bool) -> bool {
        let index = &self.by_type[rt.slot()];
        if index.literal.is_empty() && index.prefixed.is_empty() {
            return none_found_allows;
        }
        let says = |entries: &Vec<Entry>, want: Permission| entries.iter().any(|e| e.decides(who, op) == Some(want));
        let denied_all = index.literal.get(WILDCARD).is_some_and(|e| says(e, Permission::Deny));
        if denied_all {
            return false;
        }
        let deny_prefixes: Vec<&str> = index
            .prefixed
            .iter()
            .filter(|(_, e)| says(e, Permission::Deny))
            .map(|(p, _)| p.as_str())
            .collect();
        let covered = |name: &str| deny_prefixes.iter().any(|p| name.starts_with(p));
        let literal = index.literal.iter().any(|(name, e)| {
            says(e, Permission::Allow)
                && !covered(name)
                && (name == WILDCARD || !index.literal.get(name).is_some_and(|e| says(e, Permission::Deny)))
        });
        literal
            || index
                .prefixed
                .iter()
                .any(|(name, e)| says(e, Permission::Allow) && !covered(name))
    }
}

/// Turns on authorization (Kafka's authorizer.class.name,
/// super.users, allow.everyone.if.no.acl.found).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizerConfig {
    /// Check every request against the ACLs. Off: every client may do
    /// everything, and the ACL APIs answer SECURITY_DISABLED, as Kafka
    /// without an authorizer.
    pub enabled: bool,
    /// Principals allowed everything, e.g. `User:admin` or, for a client
    /// certificate, `User:CN=admin,O=example`.
    pub super_users: Vec<String>,
    /// Allow a request on a resource that has no ACL at all. Off by
    /// default, as in Kafka: a new topic is closed until an ACL opens it.
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// The decision for one request.
    pub fn authorize(&self, acls: &Acls, who: Subject<'_>, op: Operation, rt: ResourceType, name: &str) -> bool {
        if !self.enabled || self.super_users.iter().any(|s| s == who.principal) {
            return true;
        }
        match acls.decide(who, op, rt, name) {
            Decision::Allowed => true,
            Decision::Denied => false,
            Decision::NoAcls => self.allow_everyone_if_no_acl_found,
        }
    }

    /// Whether `who` may do `op` on any resource of type `rt`.
    pub fn authorize_any(&self, acls: &Acls, who: Subject<'_>, op: Operation, rt: ResourceType) -> bool {
        !self.enabled
            || self.super_users.iter().any(|s| s == who.principal)
            || acls.allows_some(who, op, rt, self.allow_everyone_if_no_acl_found)
    }

    /// Kafka's `authorized_operations` bit field for one resource.
    pub fn operations(&self, acls: &Acls, who: Subject<'_>, rt: ResourceType, name: &str) -> i32 {
        rt.operations()
            .iter()
            .filter(|&&op| self.authorize(acls, who, op, rt, name))
            .fold(0, |bits, op| bits | 1 << op.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        rt: ResourceType,
        name: &str,
        pattern: PatternType,
        who: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern,
            principal: who.into(),
            host: WILDCARD.into(),
            operation: op,
            permission: perm,
        }
    }

    const ALICE: Subject = Subject {
        principal: "User:alice",
        host: "10.0.0.1",
    };
    const BOB: Subject = Subject {
        principal: "User:bob",
        host: "10.0.0.2",
    };

    fn on(allow_if_none: bool) -> AuthorizerConfig {
        AuthorizerConfig {
            enabled: true,
            super_users: vec!["User:admin".into()],
            allow_everyone_if_no_acl_found: allow_if_none,
        }
    }

    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;

    #[test]
    fn literal_prefixed_wildcard_and_the_default() {
        let mut acls = Acls::default();
        acls.insert(acl(Topic, "orders", Literal, "User:alice", Read, Allow));
        acls.insert(acl(Topic, "pay.", Prefixed, "User:alice", Write, Allow));
        acls.insert(acl(Group, WILDCARD, Literal, "User:*", Read, Allow));
        let c = on(false);
        assert!(c.authorize(&acls, ALICE, Read, Topic, "orders"));
        assert!(!c.authorize(&acls, ALICE, Write, Topic, "orders"), "no WRITE ACL");
        assert!(
            !c.authorize(&acls, BOB, Read, Topic, "orders"),
            "the topic has ACLs, none for bob"
        );
        assert!(c.authorize(&acls, ALICE, Write, Topic, "pay.eu"));
        assert!(c.authorize(&acls, ALICE, Write, Topic, "pay."));
        assert!(
            !c.authorize(&acls, ALICE, Write, Topic, "pay"),
            "shorter than the prefix"
        );
        assert!(
            !c.authorize(&acls, ALICE, Write, Topic, "orders2"),
            "a literal ACL is no prefix"
        );
        assert!(
            c.authorize(&acls, BOB, Read, Group, "anything"),
            "wildcard resource and principal"
        );
        // No ACL at all on the resource: the default decides.
        assert!(!c.authorize(&acls, ALICE, Read, Topic, "other"));
        assert!(on(true).authorize(&acls, ALICE, Read, Topic, "other"));
        assert!(
            !on(true).authorize(&acls, BOB, Read, Topic, "orders"),
            "ACLs exist: no default"
        );
        // Super users and a disabled authorizer allow everything.
        let admin = Subject {
            principal: "User:admin",
            host: "1.2.3.4",
        };
        assert!(c.authorize(&acls, admin, Delete, Cluster, CLUSTER_NAME));
        assert!(AuthorizerConfig::default().authorize(&acls, BOB, Alter, Cluster, CLUSTER_NAME));
    }

    #[test]
    fn deny_wins_and_implications_are_allow_only() {
        let mut acls = Acls::default();
        acls.insert(acl(Topic, "t", Literal, "User:*", All, Allow));
        acls.insert(acl(Topic, "t", Prefixed, "User:bob", Write, Deny));
        let c = on(false);
        assert!(c.authorize(&acls, ALICE, Write, Topic, "t"));
        assert!(!c.authorize(&acls, BOB, Write, Topic, "t"), "DENY beats ALLOW ALL");
        assert!(
            c.authorize(&acls, BOB, Describe, Topic, "t"),
            "a DENY WRITE does not deny DESCRIBE"
        );
        assert!(
            !c.authorize(&acls, BOB, Write, Topic, "tx"),
            "the prefixed deny covers tx"
        );

        let mut acls = Acls::default();
        acls.insert(acl(Topic, "t", Literal, "User:alice", Write, Allow));
        acls.insert(acl(Topic, "t", Literal, "User:alice", AlterConfigs, Allow));
        assert!(
            c.authorize(&acls, ALICE, Describe, Topic, "t"),
            "WRITE implies DESCRIBE"
        );
        assert!(c.authorize(&acls, ALICE, DescribeConfigs, Topic, "t"));
        assert!(!c.authorize(&acls, ALICE, Read, Topic, "t"));
        assert_eq!(
            c.operations(&acls, ALICE, Topic, "t"),
            (1 << 4) | (1 << 8) | (1 << 10) | (1 << 11),
            "WRITE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS"
        );
    }

    #[test]
    fn hosts_must_match() {
        let mut acls = Acls::default();
        let mut a = acl(Topic, "t", Literal, "User:alice", Read, Allow);
        a.host = "10.0.0.9".into();
        acls.insert(a);
        assert!(!on(false).authorize(&acls, ALICE, Read, Topic, "t"));
        let there = Subject {
            principal: "User:alice",
            host: "10.0.0.9",
        };
        assert!(on(false).authorize(&acls, there, Read, Topic, "t"));
    }

    #[test]
    fn removal_restores_the_index() {
        let mut acls = Acls::default();
        let a = acl(Topic, "p", Prefixed, "User:alice", Read, Allow);
        let b = acl(Topic, "p", Prefixed, "User:bob", Read, Allow);
        assert!(acls.insert(a.clone()));
        assert!(!acls.insert(a.clone()), "an ACL is a set member");
        acls.insert(b.clone());
        assert!(acls.remove(&a));
        assert!(!acls.remove(&a));
        assert!(!on(false).authorize(&acls, ALICE, Read, Topic, "px"));
        assert!(on(false).authorize(&acls, BOB, Read, Topic, "px"));
        acls.remove(&b);
        assert!(acls.is_empty());
        assert!(acls.strings.is_empty(), "principals and hosts no ACL uses are dropped");
        assert_eq!(acls.decide(ALICE, Read, Topic, "px"), Decision::NoAcls);
    }

    #[test]
    fn filters_match_as_kafka() {
        let lit = acl(Topic, "orders", Literal, "User:alice", Read, Allow);
        let wild = acl(Topic, WILDCARD, Literal, "User:alice", Read, Allow);
        let pre = acl(Topic, "ord", Prefixed, "User:alice", Read, Allow);
        let f = |pattern: i8, name: Option<&str>| {
            AclFilter::from_wire(2, name.map(String::from), pattern, None, None, CODE_ANY, CODE_ANY).unwrap()
        };
        let matched = |f: &AclFilter| [&lit, &wild, &pre].iter().filter(|a| f.matches(a)).count();
        assert_eq!(matched(&f(CODE_MATCH, Some("orders"))), 3);
        assert_eq!(matched(&f(CODE_ANY, Some("orders"))), 1);
        assert_eq!(matched(&f(CODE_ANY, None)), 3);
        assert_eq!(matched(&f(3, None)), 2, "LITERAL only");
        assert_eq!(matched(&f(4, Some("ord"))), 1);
        assert!(
            AclFilter::from_wire(0, None, 1, None, None, 1, 1).is_err(),
            "UNKNOWN type"
        );
        assert!(AclFilter::from_wire(2, None, 1, None, None, 99, 1).is_err());
        let by_who = AclFilter::from_wire(1, None, 1, Some("User:bob".into()), None, 1, 1).unwrap();
        assert_eq!(matched(&by_who), 0);
    }

    #[test]
    fn idempotent_write_needs_some_topic() {
        let c = on(false);
        let mut acls = Acls::default();
        assert!(!c.authorize_any(&acls, ALICE, Write, Topic));
        assert!(on(true).authorize_any(&acls, ALICE, Write, Topic));
        acls.insert(acl(Topic, "a.", Prefixed, "User:alice", Write, Allow));
        assert!(c.authorize_any(&acls, ALICE, Write, Topic));
        assert!(!c.authorize_any(&acls, BOB, Write, Topic));
        acls.insert(acl(Topic, "a", Prefixed, "User:alice", Write, Deny));
        assert!(
            !c.authorize_any(&acls, ALICE, Write, Topic),
            "the deny covers every name the allow does"
        );
    }

    /// Kafka's rule written out plainly, over every ACL: the index must
    /// decide the same.
    fn naive(acls: &[AclBinding], who: Subject<'_>, op: Operation, rt: ResourceType, name: &str) -> Decision {
        let on_resource: Vec<&AclBinding> = acls
            .iter()
            .filter(|a| {
                a.resource_type == rt
                    && match a.pattern {
                        PatternType::Literal => a.resource_name == name || a.resource_name == WILDCARD,
                        PatternType::Prefixed => name.starts_with(&a.resource_name),
                    }
            })
            .collect();
        let says = |a: &AclBinding| {
            Entry {
                principal: a.principal.as_str().into(),
                host: a.host.as_str().into(),
                operation: a.operation,
                permission: a.permission,
            }
            .decides(who, op)
        };
        if on_resource.iter().any(|a| says(a) == Some(Deny)) {
            Decision::Denied
        } else if on_resource.iter().any(|a| says(a) == Some(Allow)) {
            Decision::Allowed
        } else if on_resource.is_empty() {
            Decision::NoAcls
        } else {
            Decision::Denied
        }
    }

    #[test]
    fn the_index_decides_as_kafkas_rule_over_random_acls() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let names = ["", "a", "ab", "abc", "b", "ba", "*"];
        let principals = ["User:alice", "User:bob", WILDCARD_PRINCIPAL];
        let hosts = ["*", "10.0.0.1", "10.0.0.2"];
        let types = [Topic, Group];
        for _round in 0..200 {
            let mut acls = Acls::default();
            let mut plain: Vec<AclBinding> = Vec::new();
            for _ in 0..next(12) {
                let a = AclBinding {
                    resource_type: types[next(2)],
                    resource_name: names[1 + next(names.len() - 1)].to_string(),
                    pattern: if next(2) == 0 { Literal } else { Prefixed },
                    principal: principals[next(3)].to_string(),
                    host: hosts[next(3)].to_string(),
                    operation: Operation::ALL_VALUES[next(Operation::ALL_VALUES.len())],
                    permission: if next(3) == 0 { Deny } else { Allow },
                };
                if acls.insert(a.clone()) {
                    plain.push(a);
                }
            }
            // Remove some again: the index must forget them exactly.
            for _ in 0..next(4) {
                if !plain.is_empty() {
                    let a = plain.swap_remove(next(plain.len()));
                    assert!(acls.remove(&a));
                }
            }
            assert_eq!(acls.len(), plain.len());
            let mut listed: Vec<AclBinding> = acls.iter().collect();
            listed.sort();
            let mut expected = plain.clone();
            expected.sort();
            assert_eq!(listed, expected, "iter() lists exactly what is held");
            for _ in 0..50 {
                let who = Subject {
                    principal: principals[next(2)],
                    host: hosts[1 + next(2)],
                };
                let op = Operation::ALL_VALUES[1 + next(Operation::ALL_VALUES.len() - 1)];
                let rt = types[next(2)];
                let name = ["a", "ab", "abc", "abd", "b", "ba", "c"][next(7)];
                assert_eq!(
                    acls.decide(who, op, rt, name),
                    naive(&plain, who, op, rt, name),
                    "{who:?} {op:?} {rt:?} {name} over {plain:#?}"
                );
            }
        }
    }

    #[test]
    fn validation_messages() {
        let mut a = acl(Cluster, "other", Literal, "User:alice", Alter, Allow);
        assert!(a.validate().unwrap_err().contains("kafka-cluster"));
        a.resource_name = CLUSTER_NAME.into();
        assert!(a.validate().is_ok());
        a.principal = "alice".into();
        assert!(a.validate().unwrap_err().contains("no colon"));
        assert_eq!(Operation::from_name("describe-configs"), Some(DescribeConfigs));
        assert_eq!(ResourceType::from_code(5), Some(TransactionalId));
    }
}
