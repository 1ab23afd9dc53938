//! Real steps: each an open-loop run through [`crate::prepare`], its rows
//! logged to a temporary file that is read back and removed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::error::CapacityError;
use super::search::{StepPlan, StepRows, StepRunner};
use crate::config::{Arrival, LoadConfig, OpenLoop, Warmup};

/// Runs real steps: each an open-loop run of `warmup + duration` at the
/// step's rate through [`crate::prepare`], its rows logged to a temporary
/// CSV file that is read back and removed.
pub struct LoadgenRunner {
    /// The run settings every step starts from (target, API, connections,
    /// batching, timeout, ...); the rate, length, log and warm-up are the
    /// step's.
    pub base: LoadConfig,
    /// Spacing of sends.
    pub arrival: Arrival,
    /// Open-loop bound on requests in flight.
    pub max_in_flight: usize,
    /// Becomes `true` on a shutdown signal: the step in progress stops.
    pub stop: watch::Receiver<bool>,
    /// Print the target and protocol lines (on stderr) before the first step.
    pub announce: bool,
}

/// Tells temporary log files of one process apart.
static STEP_LOGS: AtomicU64 = AtomicU64::new(0);

/// Removes a step's temporary log when dropped, whatever happened.
struct TempLog(PathBuf);

impl Drop for TempLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl LoadgenRunner {
    /// A runner over `base`, stopped when `stop` turns `true`.
    pub fn new(
        base: LoadConfig,
        arrival: Arrival,
        max_in_flight: usize,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            base,
            arrival,
            max_in_flight,
            stop,
            announce: false,
        }
    }

    /// The configuration of one step.
    pub(crate) fn step_config(&self, plan: &StepPlan, log_path: PathBuf) -> LoadConfig {
        LoadConfig {
            open_loop: Some(OpenLoop {
                rate_rps: plan.offered_rps,
                arrival: self.arrival,
                seed: plan.seed,
                max_in_flight: self.max_in_flight,
            }),
            // The step is bounded by time only: its warm-up is sent at its
            // own rate and told apart by intended start when judged.
            requests: None,
            duration: Some(plan.warmup + plan.duration),
            warmup: Warmup::NONE,
            log_path: Some(log_path),
            progress: false,
            metrics: self
                .base
                .metrics
                .as_ref()
                .map(|metrics| metrics.for_step(plan.index, plan.offered_rps)),
            ..self.base.clone()
        }
    }
}

impl StepRunner for LoadgenRunner {
    async fn run_step(&mut self, plan: &StepPlan) -> Result<StepRows, CapacityError> {
        let n = STEP_LOGS.fetch_add(1, Ordering::Relaxed);
        let log = TempLog(
            std::env::temp_dir().join(format!("loadgen-capacity-{}-{n}.csv", std::process::id())),
        );
        let config = self.step_config(plan, log.0.clone());
        let prepared = crate::prepare(config).await?;
        if std::mem::take(&mut self.announce) {
            for line in prepared.start_lines() {
                eprintln!("loadgen: {line}");
            }
        }
        let mut stop = self.stop.clone();
        let shutdown = async move {
            // A dropped sender means no signal can come: never stop.
            if stop.wait_for(|stopped| *stopped).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let summary = prepared.run(shutdown).await?;
        let rows = model::log::read_log_file(&log.0)?.rows;
        Ok(StepRows {
            rows,
            interrupted: summary.interrupted,
        })
    }
}
