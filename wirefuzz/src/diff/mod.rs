//! Differential testing: the same requests sent to corestream and to Apache
//! Kafka, their answers compared field by field. Each difference is either
//! listed in the allowlist, with its reason, or a failure.
//!
//! - `tree.rs`: a response as a flat map of field paths to values.
//! - `acls.rs`: the ACL scenarios, with and without an authorizer.
//! - `corpus.rs`: the scenarios (ApiVersions ranges, error codes for bad
//!   configs, unknown topics, invalid partition counts, oversized records,
//!   offsets out of range, group errors, and the edge cases of tests/).

pub mod acls;
pub mod corpus;
pub mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::wire;

/// The two brokers: index 0 is corestream, index 1 the reference.
pub const SIDES: [&str; 2] = ["corestream", "kafka"];

/// One allowed difference: where (the step, as `scenario/step (Api vN)`,
/// and the field path; `*` stands for any run of characters) and why.
#[derive(Debug)]
pub struct Allowed {
    pub step: String,
    pub path: String,
    pub reason: String,
    pub line: usize,
}

/// Reads the allowlist: `STEP | PATH | reason` per line, `#` lines are
/// comments; a reason is required.
pub fn parse_allowlist(text: &str) -> anyhow::Result<Vec<Allowed>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.splitn(3, " | ").map(str::trim).collect();
        let [step, path, reason] = parts[..] else {
            bail!("allowlist line {}: want `STEP | PATH | reason`", i + 1);
        };
        if step.is_empty() || path.is_empty() || reason.is_empty() {
            bail!("allowlist line {}: a step, a path and a reason are all needed", i + 1);
        }
        out.push(Allowed {
            step: step.to_string(),
            path: path.to_string(),
            reason: reason.to_string(),
            line: i + 1,
        });
    }
    Ok(out)
}

/// One field that differs.
#[derive(Debug)]
pub struct Difference {
    pub step: String,
    pub path: String,
    pub values: [Option<String>; 2],
    /// The allowlist line that allows it, if one does.
    pub allowed_by: Option<usize>,
}

/// A run of the corpus against both brokers.
pub struct Session<'a> {
    conns: [TcpStream; 2],
    addrs: [SocketAddr; 2],
    timeout: Duration,
    allowlist: &'a [Allowed],
    /// The versions each side serves, by API key.
    versions: [BTreeMap<i16, (i16, i16)>; 2],
    scenario: String,
    pub differences: Vec<Difference>,
    pub steps: usize,
    pub used: BTreeSet<usize>,
    /// Steps (`scenario/step`, `*` for any run of characters) whose two
    /// answers are printed whole.
    pub show: Option<String>,
}

impl<'a> Session<'a> {
    pub fn new(addrs: [SocketAddr; 2], timeout: Duration, allowlist: &'a [Allowed]) -> anyhow::Result<Self> {
        let conns = [wire::connect(addrs[0], timeout)?, wire::connect(addrs[1], timeout)?];
        let served = |addr| -> anyhow::Result<BTreeMap<i16, (i16, i16)>> {
            Ok(wire::api_versions(addr, timeout)?
                .into_iter()
                .map(|(k, lo, hi)| (k, (lo, hi)))
                .collect())
        };
        let versions = [served(addrs[0])?, served(addrs[1])?];
        Ok(Session {
            conns,
            addrs,
            timeout,
            allowlist,
            versions,
            scenario: String::new(),
            differences: Vec::new(),
            steps: 0,
            used: BTreeSet::new(),
            show: None,
        })
    }

    pub fn scenario(&mut self, name: &str) {
        self.scenario = name.to_string();
    }

    /// The highest version of `api` both brokers serve, capped at `cap`.
    pub fn version(&self, api: ApiKey, cap: i16) -> anyhow::Result<i16> {
        let hi = |side: usize| self.versions[side].get(&(api as i16)).map(|&(_, hi)| hi);
        match (hi(0), hi(1)) {
            (Some(a), Some(b)) => Ok(a.min(b).min(cap)),
            _ => bail!("{api:?} is not served by both brokers"),
        }
    }

    /// Sends `make(side)` to each broker and returns both answers, not compared.
    pub fn each<Req, Resp>(
        &mut self,
        api: ApiKey,
        version: i16,
        make: impl Fn(usize) -> Req,
    ) -> anyhow::Result<[Resp; 2]>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let a = self.one(0, api, version, &make(0))?;
        let b = self.one(1, api, version, &make(1))?;
        Ok([a, b])
    }

    /// One request to one side, on a fresh connection if the last one closed.
    pub fn one<Req, Resp>(&mut self, side: usize, api: ApiKey, version: i16, req: &Req) -> anyhow::Result<Resp>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        match wire::call(&mut self.conns[side], api, version, req, self.timeout) {
            Ok(r) => Ok(r),
            Err(first) => {
                // A broker may close a connection after an error it treats
                // as fatal to it; the step is retried once on a new one.
                self.conns[side] = wire::connect(self.addrs[side], self.timeout)?;
                wire::call(&mut self.conns[side], api, version, req, self.timeout)
                    .with_context(|| format!("{} ({first:#})", SIDES[side]))
            }
        }
    }

    /// Sends `make(side)` to each broker and compares the answers field by field.
    pub fn compare<Req, Resp>(
        &mut self,
        step: &str,
        api: ApiKey,
        version: i16,
        make: impl Fn(usize) -> Req,
    ) -> anyhow::Result<[Resp; 2]>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion + std::fmt::Debug,
    {
        let answers: [Resp; 2] = self
            .each(api, version, make)
            .with_context(|| format!("{} / {step}", self.scenario))?;
        self.record(step, &format!("{api:?} v{version}"), &answers[0], &answers[1]);
        Ok(answers)
    }

    /// Compares two values already in hand (a decoded record, a derived figure).
    pub fn record<T: std::fmt::Debug>(&mut self, step: &str, what: &str, a: &T, b: &T) {
        self.steps += 1;
        let step = format!("{}/{step} ({what})", self.scenario);
        if self.show.as_deref().is_some_and(|pattern| tree::glob(pattern, &step)) {
            println!("== {step}\n{}: {a:#?}\n{}: {b:#?}", SIDES[0], SIDES[1]);
        }
        let flat = [tree::flatten(a), tree::flatten(b)];
        let paths: BTreeSet<&String> = flat[0].keys().chain(flat[1].keys()).collect();
        for path in paths {
            let values = [flat[0].get(path).cloned(), flat[1].get(path).cloned()];
            if values[0] == values[1] {
                continue;
            }
            let allowed_by = self
                .allowlist
                .iter()
                .find(|al| tree::glob(&al.step, &step) && tree::glob(&al.path, path))
                .map(|al| al.line);
            if let Some(line) = allowed_by {
                self.used.insert(line);
            }
            self.differences.push(Difference {
                step: step.clone(),
                path: path.clone(),
                values,
                allowed_by,
            });
        }
    }
}
