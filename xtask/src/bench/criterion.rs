//! The `stats` bars and the what-if engine's speed: runs `cargo bench -p
//! stats --bench histogram` and `cargo bench -p report --bench whatif`
//! (criterion benchmarks in release mode; xtask itself is a debug build, so
//! it must not time anything CPU-bound itself) and reads criterion's
//! estimates.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use super::TaskError;
use crate::{json, process, workspace};

/// Mean time per benchmark iteration, ms, as criterion estimated it.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct StatsBench {
    /// Record 10 M nanosecond values into the `hdrhistogram` crate directly
    /// and read 5 quantiles.
    pub hdrhistogram_record_10m_ms: f64,
    /// The same through `stats::LatencyHistogram::record_ns`.
    pub stats_record_ns_10m_ms: f64,
    /// The same from f64 milliseconds through `record_ms` (what loadgen does).
    pub stats_record_ms_10m_ms: f64,
    /// `stats_record_ns_10m_ms / hdrhistogram_record_10m_ms` (<= ~1 is the bar).
    pub stats_vs_hdrhistogram: f64,
    /// Copy, check and sort 1 M samples, then 5 exact quantiles.
    pub exact_quantiles_1m_ms: f64,
    /// `Summary::from_samples` of 1 M samples.
    pub summary_1m_ms: f64,
    /// The command.
    pub command: String,
}

const BENCHES: [(&str, &str); 5] = [
    ("record_10m", "hdrhistogram_record"),
    ("record_10m", "stats_record_ns"),
    ("record_10m", "stats_record_ms"),
    ("exact_1m", "sort_and_quantiles"),
    ("exact_1m", "summary"),
];

/// The what-if engine's simulation of 100,000 closed-loop requests, ms per
/// run, as criterion estimated it (the bar: well under 1,000 ms).
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct WhatifBench {
    /// Placeholder server, unbatched client.
    pub simulate_100k_unbatched_ms: f64,
    /// Placeholder server, batches of 10 with a 10 ms wait.
    pub simulate_100k_batches_of_10_ms: f64,
    /// Placeholder server with dynamic batching (2 ms window).
    pub simulate_100k_dynamic_batching_ms: f64,
    /// The command.
    pub command: String,
}

/// Runs `cargo bench -p PACKAGE --bench BENCH` with its output to
/// `log_dir/PACKAGE-bench.out`; returns the command as run.
fn cargo_bench(log_dir: &Path, package: &str, bench: &str) -> Result<String, TaskError> {
    let log = log_dir.join(format!("{package}-bench.out"));
    let file = std::fs::File::create(&log).map_err(|source| TaskError::Io {
        path: log.clone(),
        source,
    })?;
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace::root()?)
        .args(["bench", "--quiet", "-p", package, "--bench", bench])
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::inherit());
    let command = super::clients::describe(&cmd);
    let status = process::run_with_deadline(&mut cmd, Duration::from_secs(900))?;
    if !status.success() {
        return Err(TaskError::Step(format!(
            "`{command}` failed ({status}); output in {}",
            log.display()
        )));
    }
    Ok(command)
}

/// Runs the what-if engine's benchmark and collects its estimates.
pub(super) fn run_whatif(log_dir: &Path) -> Result<WhatifBench, TaskError> {
    let command = cargo_bench(log_dir, "report", "whatif")?;
    let group = "whatif_simulate_100k";
    Ok(WhatifBench {
        simulate_100k_unbatched_ms: mean_ms(group, "unbatched")?,
        simulate_100k_batches_of_10_ms: mean_ms(group, "batches_of_10")?,
        simulate_100k_dynamic_batching_ms: mean_ms(group, "dynamic_batching")?,
        command,
    })
}

/// Runs the benchmark and collects its estimates.
pub(super) fn run(log_dir: &Path) -> Result<StatsBench, TaskError> {
    let command = cargo_bench(log_dir, "stats", "histogram")?;
    let mut ms = [0.0; BENCHES.len()];
    for (slot, (group, name)) in ms.iter_mut().zip(BENCHES) {
        *slot = mean_ms(group, name)?;
    }
    let [hdr, ns, from_ms, exact, summary] = ms;
    Ok(StatsBench {
        hdrhistogram_record_10m_ms: hdr,
        stats_record_ns_10m_ms: ns,
        stats_record_ms_10m_ms: from_ms,
        stats_vs_hdrhistogram: ns / hdr,
        exact_quantiles_1m_ms: exact,
        summary_1m_ms: summary,
        command,
    })
}

/// What is read of criterion's `estimates.json`.
#[derive(Debug, Deserialize)]
struct Estimates {
    mean: Estimate,
}

#[derive(Debug, Deserialize)]
struct Estimate {
    /// Nanoseconds per iteration.
    point_estimate: f64,
}

/// `target/criterion/GROUP/NAME/new/estimates.json`: `mean.point_estimate`, ns.
fn mean_ms(group: &str, name: &str) -> Result<f64, TaskError> {
    let path = workspace::target_dir()?
        .join("criterion")
        .join(group)
        .join(name)
        .join("new/estimates.json");
    let estimates: Estimates = json::read(&path)?;
    Ok(estimates.mean.point_estimate / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_point_estimate_is_read_or_named_as_missing() {
        let text = r#"{"mean": {"confidence_interval": {"confidence_level": 0.95}, "point_estimate": 2500000.0, "standard_error": 1.0}, "median": {"point_estimate": 1.0}}"#;
        let e: Estimates = json::parse(text, Path::new("estimates.json")).unwrap();
        assert_eq!(e.mean.point_estimate / 1e6, 2.5);
        let err = json::parse::<Estimates>(
            &text.replace("\"point_estimate\": 2500000.0", "\"estimate\": 2500000.0"),
            Path::new("/t/criterion/g/n/new/estimates.json"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/t/criterion/g/n/new/estimates.json: missing field `mean.point_estimate`"
        );
    }
}
