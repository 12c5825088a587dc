//! Declarative workloads: a TOML file of steps run in order against one
//! bootstrap address. Step kinds: `produce`, `consume`, `e2e` (the same
//! workloads as the subcommands, same option names) and `seed` (many
//! topics, a message per partition, consume all). See bench/scenarios/.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::consume::ConsumeConfig;
use crate::produce::ProduceConfig;
use crate::seed::SeedConfig;
use crate::{on_executor, parse_acks, parse_duration, run_workload};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    step: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum Step {
    Produce(Workload),
    Consume(Workload),
    E2e(Workload),
    Seed(SeedConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Workload {
    topic: String,
    #[serde(default = "eight")]
    partitions: i32,
    #[serde(default = "hundred")]
    message_bytes: usize,
    #[serde(default = "ten_seconds")]
    duration: String,
    rate: Option<f64>,
    #[serde(default = "ack_one")]
    acks: String,
    #[serde(default = "no_compression")]
    compression: crate::batch::Codec,
    #[serde(default = "thousand")]
    batch_messages: usize,
    #[serde(default = "five_ms")]
    linger: String,
    #[serde(default = "eight_usize")]
    in_flight: usize,
    #[serde(default = "two")]
    connections: usize,
    /// consume: stop at the end of each partition as it was at start.
    #[serde(default)]
    until_end: bool,
    /// consume: read as members of this consumer group.
    group: Option<String>,
}

fn eight() -> i32 {
    8
}
fn eight_usize() -> usize {
    8
}
fn hundred() -> usize {
    100
}
fn thousand() -> usize {
    1000
}
fn two() -> usize {
    2
}
fn ten_seconds() -> String {
    "10s".into()
}
fn five_ms() -> String {
    "5ms".into()
}
fn no_compression() -> crate::batch::Codec {
    crate::batch::Codec::None
}
fn ack_one() -> String {
    "1".into()
}

impl Workload {
    fn produce(&self) -> anyhow::Result<ProduceConfig> {
        Ok(ProduceConfig {
            topic: self.topic.clone(),
            message_bytes: self.message_bytes,
            batch_messages: self.batch_messages.max(1),
            linger: parse_duration(&self.linger).map_err(anyhow::Error::msg)?,
            in_flight: self.in_flight.max(1),
            connections: self.connections.max(1),
            acks: parse_acks(&self.acks).map_err(anyhow::Error::msg)?,
            codec: self.compression,
            duration: parse_duration(&self.duration).map_err(anyhow::Error::msg)?,
            rate: self.rate,
            executors: 1,
        })
    }

    fn consume(&self, from_end: bool, e2e: bool) -> anyhow::Result<ConsumeConfig> {
        let duration = parse_duration(&self.duration).map_err(anyhow::Error::msg)?;
        Ok(ConsumeConfig {
            topic: self.topic.clone(),
            duration: if self.until_end {
                Duration::from_secs(3600)
            } else {
                duration
            },
            until_end: self.until_end,
            from_end,
            max_bytes: 64 << 20,
            partition_max_bytes: 8 << 20,
            e2e,
            group: self.group.clone(),
        })
    }
}

pub fn run(file: &Path, bootstrap: &str, cores: Option<usize>, json: Option<&Path>, check: bool) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let scenario: Scenario = toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    if scenario.step.is_empty() {
        bail!("{} has no [[step]]", file.display());
    }
    println!("scenario {}: {}", file.display(), scenario.description);
    // Every option is checked before any step runs, so a typo in step 3
    // does not cost the run of steps 1 and 2.
    for (i, step) in scenario.step.iter().enumerate() {
        if let Step::Produce(w) | Step::Consume(w) | Step::E2e(w) = step {
            w.produce()
                .and(w.consume(false, false))
                .with_context(|| format!("step {}", i + 1))?;
        }
    }
    if check {
        for (i, step) in scenario.step.iter().enumerate() {
            println!("step {}: {step:?}", i + 1);
        }
        return Ok(());
    }
    let mut results = Vec::new();
    for (i, step) in scenario.step.iter().enumerate() {
        println!("== step {}: {step:?}", i + 1);
        match step {
            Step::Produce(w) => {
                for (s, _) in run_workload(bootstrap, &w.topic, w.partitions, cores, Some(w.produce()?), None)? {
                    results.push(serde_json::to_value(s)?);
                }
            }
            Step::Consume(w) => {
                for (s, _) in run_workload(
                    bootstrap,
                    &w.topic,
                    w.partitions,
                    cores,
                    None,
                    Some(w.consume(false, false)?),
                )? {
                    results.push(serde_json::to_value(s)?);
                }
            }
            Step::E2e(w) => {
                if w.rate.is_none() {
                    bail!("step {}: e2e needs a rate", i + 1);
                }
                let mut c = w.consume(true, true)?;
                c.duration += Duration::from_secs(2);
                for (s, _) in run_workload(bootstrap, &w.topic, w.partitions, cores, Some(w.produce()?), Some(c))? {
                    results.push(serde_json::to_value(s)?);
                }
            }
            Step::Seed(cfg) => {
                let addr = crate::cluster::resolve_bootstrap(bootstrap)?;
                let cfg = cfg.clone();
                let summary = on_executor(move || async move { crate::seed::run(addr, cfg).await })??;
                println!(
                    "seed: {} topics, {} partitions: produced {}, delivered {}/{} (create {:.2} s, produce {:.2} s, consume {:.2} s), errors {:?}",
                    summary.topics,
                    summary.partitions,
                    summary.produced,
                    summary.delivered,
                    summary.expected,
                    summary.create_seconds,
                    summary.produce_seconds,
                    summary.consume_seconds,
                    summary.errors
                );
                results.push(serde_json::to_value(summary)?);
            }
        }
    }
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
