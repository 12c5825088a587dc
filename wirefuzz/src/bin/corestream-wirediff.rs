//! corestream-wirediff: sends one corpus of requests and scenarios to
//! corestream and to Apache Kafka and compares the answers field by field.
//! Every difference must be listed in the allowlist with its reason; any
//! other fails the run (exit 1). The report lists each difference, allowed
//! or not, and allowlist lines that matched nothing.
//!
//!   corestream-wirediff --corestream 127.0.0.1:9092 --kafka 127.0.0.1:29092 \
//!       --allowlist tests/differential/allowlist.txt

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use corestream_wirefuzz::diff::{acls, corpus, parse_allowlist, Session, SIDES};

#[derive(Parser)]
#[command(about = "Differential test of corestream against Apache Kafka, field by field")]
struct Args {
    /// corestream's client address.
    #[arg(long)]
    corestream: SocketAddr,
    /// The reference broker's client address (scripts/kafka-ref).
    #[arg(long)]
    kafka: SocketAddr,
    /// Allowed differences: `STEP | PATH | reason` per line.
    #[arg(long)]
    allowlist: std::path::PathBuf,
    /// Suffix of this run's topic and group names (default: the process id).
    #[arg(long)]
    tag: Option<String>,
    /// Fail when an allowlist line matched nothing.
    #[arg(long)]
    strict: bool,
    /// Print both answers of the steps matching this pattern
    /// (`scenario/step (Api vN)`, `*` for any run of characters).
    #[arg(long)]
    show: Option<String>,
    /// Run the ACL scenarios only, against brokers that both authorize
    /// (Kafka's StandardAuthorizer with allow.everyone.if.no.acl.found).
    #[arg(long)]
    authorizer: bool,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("corestream-wirediff: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let text =
        std::fs::read_to_string(&args.allowlist).with_context(|| format!("reading {}", args.allowlist.display()))?;
    let allowlist = parse_allowlist(&text)?;
    let tag = args.tag.clone().unwrap_or_else(|| std::process::id().to_string());
    let mut x = Session::new(
        [args.corestream, args.kafka],
        Duration::from_secs(args.timeout),
        &allowlist,
    )?;
    x.show = args.show.clone();
    if args.authorizer {
        acls::run_authorized(&mut x, &tag)?;
    } else {
        corpus::run(&mut x, &tag)?;
    }

    let mut by_step: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for d in &x.differences {
        by_step.entry(d.step.as_str()).or_default().push(d);
    }
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
    for (step, diffs) in &by_step {
        println!("{step}");
        for d in diffs {
            let verdict = match d.allowed_by {
                Some(line) => format!("allowed (line {line})"),
                None => "NOT ALLOWED".to_string(),
            };
            println!(
                "    {}: {} {} | {} {}   {verdict}",
                d.path,
                SIDES[0],
                show(&d.values[0]),
                SIDES[1],
                show(&d.values[1])
            );
        }
    }
    let failed = x.differences.iter().filter(|d| d.allowed_by.is_none()).count();
    let unused: Vec<_> = allowlist.iter().filter(|a| !x.used.contains(&a.line)).collect();
    for a in &unused {
        println!(
            "allowlist line {} matched nothing: {} | {} | {}",
            a.line, a.step, a.path, a.reason
        );
    }
    println!(
        "{} steps compared; {} fields differ: {} allowed, {failed} not allowed; {} of {} allowlist lines used",
        x.steps,
        x.differences.len(),
        x.differences.len() - failed,
        allowlist.len() - unused.len(),
        allowlist.len()
    );
    Ok(failed == 0 && (unused.is_empty() || !args.strict))
}
