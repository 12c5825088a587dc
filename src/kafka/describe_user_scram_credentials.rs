//! DescribeUserScramCredentials (KIP-554): which SCRAM mechanisms each user
//! has credentials for, with their iterations; never a salt or a key.
//! Answered from this shard's copy of the metadata.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorized::Caller;
use super::errors;
use crate::node::broker::Broker;
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (0, 0);

pub async fn handle(
    b: &Broker,
    req: DescribeUserScramCredentialsRequest,
    _version: i16,
    caller: &Caller<'_>,
) -> DescribeUserScramCredentialsResponse {
    if !caller.may_cluster(Operation::Describe) {
        // As Kafka's getErrorResponse: the error at the top and once per
        // user asked, with no user name (librdkafka counts on one result
        // per user asked).
        let message = Some(StrBytes::from_static_str("Cluster authorization failed."));
        let results = req
            .users
            .iter()
            .flatten()
            .map(|_| {
                DescribeUserScramCredentialsResult::default()
                    .with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED)
                    .with_error_message(message.clone())
            })
            .collect();
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED)
            .with_error_message(message)
            .with_results(results);
    }
    let meta = b.meta.borrow();
    // Each user asked, and whether it was asked twice; null or empty: all.
    let mut asked: BTreeMap<String, bool> = BTreeMap::new();
    match req.users.filter(|u| !u.is_empty()) {
        None => asked.extend(meta.users.keys().map(|u| (u.clone(), false))),
        Some(users) => {
            for u in users {
                match asked.get_mut(u.name.as_str()) {
                    Some(twice) => *twice = true,
                    None => {
                        asked.insert(u.name.to_string(), false);
                    }
                }
            }
        }
    }
    let results = asked
        .into_iter()
        .map(|(user, twice)| {
            let r = DescribeUserScramCredentialsResult::default().with_user(StrBytes::from_string(user.clone()));
            if twice {
                return r
                    .with_error_code(errors::DUPLICATE_RESOURCE)
                    .with_error_message(Some(errors::message(format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                    ))));
            }
            match meta.users.get(&user) {
                Some(creds) => r.with_credential_infos(
                    creds
                        .iter()
                        .map(|(m, c)| {
                            CredentialInfo::default()
                                .with_mechanism(m.type_code())
                                .with_iterations(c.iterations)
                        })
                        .collect(),
                ),
                None => r
                    .with_error_code(errors::RESOURCE_NOT_FOUND)
                    .with_error_message(Some(errors::message(format!(
                        "Attempt to describe a user credential that does not exist: {user}"
                    )))),
            }
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
