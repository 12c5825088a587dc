//! `corestream-bench authz`: what one authorization decision costs, timed
//! in this process on the broker's own code (`security::acl`), with as
//! many ACLs as a large deployment holds. Every Produce or Fetch pays one
//! decision per topic it names; the end-to-end effect is bench/acl.sh's.
//!
//! The ACLs: per principal, a prefixed ALLOW on its own topic prefix and
//! literal ALLOWs on some topics, spread over `--prefix-lengths` prefix
//! lengths (a check looks up one prefix per distinct length), plus a
//! literal DENY now and then. Each check asks for a random principal and
//! topic, allowed or not.

use std::hint::black_box;
use std::time::Instant;

use corestream::security::acl::{
    AclBinding, Acls, AuthorizerConfig, Operation, PatternType, Permission, ResourceType, Subject,
};

#[derive(clap::Args)]
pub struct AuthzArgs {
    /// ACLs in the index.
    #[arg(long, default_value_t = 100_000)]
    acls: usize,
    /// Distinct lengths of prefixed patterns.
    #[arg(long, default_value_t = 8)]
    prefix_lengths: usize,
    /// Decisions to time.
    #[arg(long, default_value_t = 5_000_000)]
    checks: usize,
}

pub fn run(a: &AuthzArgs) -> anyhow::Result<()> {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n.max(1) as u64) as usize
    };
    let principals = (a.acls / 10).max(1);
    let prefix = |p: usize| {
        // Team prefixes of several lengths: "t7." .. "t7-eu-west-..".
        let len = 3 + p % a.prefix_lengths.max(1);
        let mut s = format!("t{p}.");
        while s.len() < len + 6 {
            s.push('x');
        }
        s
    };
    let mut acls = Acls::default();
    let mut n = 0;
    'fill: for round in 0.. {
        for p in 0..principals {
            let acl = if round == 0 {
                AclBinding {
                    resource_type: ResourceType::Topic,
                    resource_name: prefix(p),
                    pattern: PatternType::Prefixed,
                    principal: format!("User:app{p}"),
                    host: "*".into(),
                    operation: Operation::Write,
                    permission: Permission::Allow,
                }
            } else {
                AclBinding {
                    resource_type: ResourceType::Topic,
                    resource_name: format!("shared-{round}-{p}"),
                    pattern: PatternType::Literal,
                    principal: format!("User:app{p}"),
                    host: "*".into(),
                    operation: if round % 3 == 0 {
                        Operation::Read
                    } else {
                        Operation::Describe
                    },
                    permission: if round % 7 == 0 {
                        Permission::Deny
                    } else {
                        Permission::Allow
                    },
                }
            };
            acls.insert(acl);
            n += 1;
            if n >= a.acls {
                break 'fill;
            }
        }
    }
    let config = AuthorizerConfig {
        enabled: true,
        super_users: vec!["User:admin".into()],
        allow_everyone_if_no_acl_found: false,
    };
    // The requests: a principal and one of its topics, or someone else's.
    let requests: Vec<(String, String)> = (0..4096)
        .map(|_| {
            let p = next(principals);
            let owner = if next(4) == 0 { next(principals) } else { p };
            (format!("User:app{p}"), format!("{}orders-{}", prefix(owner), next(100)))
        })
        .collect();
    let started = Instant::now();
    let mut allowed = 0usize;
    for i in 0..a.checks {
        let (principal, topic) = &requests[i % requests.len()];
        let who = Subject {
            principal,
            host: "10.1.2.3",
        };
        if config.authorize(
            black_box(&acls),
            who,
            Operation::Write,
            ResourceType::Topic,
            black_box(topic),
        ) {
            allowed += 1;
        }
    }
    let took = started.elapsed();
    println!(
        "{} ACLs ({} principals, {} prefix lengths): {} decisions in {:.2} s, {:.0} ns each ({:.0}% allowed)",
        acls.len(),
        principals,
        a.prefix_lengths,
        a.checks,
        took.as_secs_f64(),
        took.as_nanos() as f64 / a.checks as f64,
        100.0 * allowed as f64 / a.checks as f64
    );
    Ok(())
}
