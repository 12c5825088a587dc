//! corestream-bench: the Kafka load generator (produce, consume, e2e,
//! scenarios, hdrhistogram latencies) is being built in its own issue.
//! Until then, `bench/kcat-1m.sh` measures the broker with kcat.

use clap::Parser;

#[derive(Parser)]
#[command(name = "corestream-bench", version, about = "Kafka load generator (in progress)")]
struct Cli {}

fn main() -> std::process::ExitCode {
    let _ = Cli::parse();
    eprintln!("corestream-bench: the load generator is not built yet; use bench/kcat-1m.sh meanwhile");
    std::process::ExitCode::from(2)
}
