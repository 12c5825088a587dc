//! AlterUserScramCredentials (KIP-554): set or delete users' SCRAM
//! credentials. The client sends a salted password; the broker derives the
//! stored and server keys here, so neither the password nor the salted
//! password reaches the metadata log. Checks and errors follow Kafka's
//! controller: one result per user, a user named twice in one request is
//! DUPLICATE_RESOURCE, iterations within [4096, 16384].

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorized::Caller;
use super::errors;
use crate::controller::plan::ScramChange;
use crate::node::broker::Broker;
use crate::node::control::{ControlReply, ControlRequest};
use crate::security::acl::Operation;
use crate::security::scram::{ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

pub const VERSIONS: (i16, i16) = (0, 0);

type Refusal = (i16, &'static str);

fn check_user_and_mechanism(user: &str, mechanism: i8) -> Result<ScramMechanism, Refusal> {
    if user.is_empty() {
        return Err((errors::UNACCEPTABLE_CREDENTIAL, "Username must not be empty"));
    }
    ScramMechanism::from_type(mechanism).ok_or((errors::UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"))
}

pub async fn handle(
    b: &Rc<Broker>,
    req: AlterUserScramCredentialsRequest,
    _version: i16,
    caller: &Caller<'_>,
) -> AlterUserScramCredentialsResponse {
    let allowed = caller.may_cluster(Operation::Alter);
    // Per user: the change, or why it is refused.
    let mut users: BTreeMap<String, Result<ScramChange, Refusal>> = BTreeMap::new();
    const TWICE: Refusal = (
        errors::DUPLICATE_RESOURCE,
        "A user credential cannot be altered twice in the same request",
    );
    let mut add = |user: String, change: &dyn Fn(&str) -> Result<ScramChange, Refusal>| match users.entry(user) {
        Entry::Occupied(mut twice) => {
            *twice.get_mut() = Err(TWICE);
        }
        Entry::Vacant(first) => {
            let c = change(first.key());
            first.insert(c);
        }
    };
    for d in &req.deletions {
        add(d.name.to_string(), &|user| {
            check_user_and_mechanism(user, d.mechanism).map(|mechanism| ScramChange::Delete {
                user: user.to_string(),
                mechanism,
            })
        });
    }
    for u in &req.upsertions {
        add(u.name.to_string(), &|user| {
            let mechanism = check_user_and_mechanism(user, u.mechanism)?;
            if u.iterations < MIN_ITERATIONS {
                return Err((errors::UNACCEPTABLE_CREDENTIAL, "Too few iterations"));
            }
            if u.iterations > MAX_ITERATIONS {
                return Err((errors::UNACCEPTABLE_CREDENTIAL, "Too many iterations"));
            }
            Ok(ScramChange::Set {
                user: user.to_string(),
                mechanism,
                credential: mechanism.credential(&u.salt, &u.salted_password, u.iterations),
            })
        });
    }
    let mut results = Vec::with_capacity(users.len());
    let mut changes = Vec::new();
    let mut slots = Vec::new();
    for (user, change) in users {
        let change = if allowed {
            change
        } else {
            Err((errors::CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."))
        };
        // Kafka's controller answers a success with a null message.
        let mut r = AlterUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user))
            .with_error_message(None);
        match change {
            Ok(c) => {
                changes.push(c);
                slots.push(results.len());
            }
            Err((code, why)) => {
                r.error_code = code;
                r.error_message = Some(StrBytes::from_static_str(why));
            }
        }
        results.push(r);
    }
    if !changes.is_empty() {
        let ControlReply::ScramAltered(outcomes) = b.control(ControlRequest::AlterScramCredentials { changes }).await
        else {
            unreachable!("AlterScramCredentials gets a ScramAltered reply")
        };
        for (i, outcome) in slots.into_iter().zip(outcomes) {
            if let Err(e) = outcome {
                results[i].error_code = errors::control(&e);
                results[i].error_message = Some(errors::message(e.to_string()));
            }
        }
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}
