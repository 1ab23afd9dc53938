//! The server's own statistics around a run (`--server-stats FILE`): a
//! snapshot of Triton's statistics extension (`/v2/models/{m}/stats`)
//! before the load and one after, and their difference, which is what the
//! run itself cost the server: requests, executions by batch size, queue
//! and compute time. The report turns it into the same findings as the
//! simulator's per-request `Server-Timing` (queueing share, parallelism,
//! the batch-cost line).

use std::path::Path;

pub use model::kserve::ServerStatsDelta;
use model::kserve::{BatchStats, Duration, InferenceStats, ModelStats, ModelStatsResponse};

use crate::client::Transport;

/// Why the statistics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The request failed or was refused.
    #[error("server statistics: GET {path}: {reason}")]
    Fetch {
        /// The endpoint.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The file could not be written.
    #[error("server statistics: cannot write {path}: {source}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One snapshot of the model's statistics (its first version's entry).
pub async fn snapshot(probe: &Transport, path: &str) -> Result<ModelStats, StatsError> {
    let failed = |reason: String| StatsError::Fetch {
        path: path.to_owned(),
        reason,
    };
    let (status, body) = probe.get(path).await.map_err(|e| failed(e.kind().into()))?;
    if !status.is_success() {
        return Err(failed(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    let stats: ModelStatsResponse = serde_json::from_slice(&body)
        .map_err(|e| failed(format!("not Triton's statistics format ({e})")))?;
    stats
        .model_stats
        .into_iter()
        .next()
        .ok_or_else(|| failed("no model_stats entry".into()))
}

/// `after - before`, counter by counter (a counter that went down, as after
/// a server restart, counts from zero).
pub fn difference(before: &ModelStats, after: &ModelStats) -> ModelStats {
    let d = |a: Duration, b: Duration| Duration {
        count: a.count.saturating_sub(b.count),
        ns: a.ns.saturating_sub(b.ns),
    };
    let (a, b) = (&after.inference_stats, &before.inference_stats);
    let batch_stats = after
        .batch_stats
        .iter()
        .map(|later| {
            let earlier = before
                .batch_stats
                .iter()
                .find(|e| e.batch_size == later.batch_size)
                .copied()
                .unwrap_or_default();
            BatchStats {
                batch_size: later.batch_size,
                compute_input: d(later.compute_input, earlier.compute_input),
                compute_infer: d(later.compute_infer, earlier.compute_infer),
                compute_output: d(later.compute_output, earlier.compute_output),
            }
        })
        .filter(|b| b.compute_infer.count > 0)
        .collect();
    ModelStats {
        name: after.name.clone(),
        version: after.version.clone(),
        inference_count: after.inference_count.saturating_sub(before.inference_count),
        execution_count: after.execution_count.saturating_sub(before.execution_count),
        inference_stats: InferenceStats {
            success: d(a.success, b.success),
            fail: d(a.fail, b.fail),
            queue: d(a.queue, b.queue),
            compute_input: d(a.compute_input, b.compute_input),
            compute_infer: d(a.compute_infer, b.compute_infer),
            compute_output: d(a.compute_output, b.compute_output),
        },
        batch_stats,
    }
}

/// Writes the snapshots and their difference as pretty JSON.
pub fn write(stats: &ServerStatsDelta, path: &Path) -> Result<(), StatsError> {
    let text = serde_json::to_string_pretty(stats).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|source| StatsError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: u64, queue_ns: u64, batches: &[(u64, u64)]) -> ModelStats {
        ModelStats {
            name: "m".into(),
            version: "1".into(),
            inference_count: requests,
            execution_count: batches.iter().map(|b| b.1).sum(),
            inference_stats: InferenceStats {
                success: Duration {
                    count: requests,
                    ns: queue_ns * 2,
                },
                queue: Duration {
                    count: requests,
                    ns: queue_ns,
                },
                ..InferenceStats::default()
            },
            batch_stats: batches
                .iter()
                .map(|&(size, count)| BatchStats {
                    batch_size: size,
                    compute_infer: Duration {
                        count,
                        ns: count * 10,
                    },
                    ..BatchStats::default()
                })
                .collect(),
        }
    }

    #[test]
    fn the_difference_is_what_the_run_added() {
        let before = stats(10, 100, &[(1, 10)]);
        let after = stats(25, 400, &[(1, 12), (4, 3)]);
        let d = difference(&before, &after);
        assert_eq!((d.inference_count, d.execution_count), (15, 5));
        assert_eq!(d.inference_stats.queue, Duration { count: 15, ns: 300 });
        assert_eq!(d.batch_stats.len(), 2);
        assert_eq!(
            d.batch_stats[0].compute_infer,
            Duration { count: 2, ns: 20 }
        );
        assert_eq!(
            d.batch_stats[1].compute_infer,
            Duration { count: 3, ns: 30 }
        );
        // Unchanged batch sizes are dropped; a restart does not underflow.
        let d = difference(&after, &before);
        assert_eq!(d.inference_count, 0);
        assert!(d.batch_stats.is_empty());
    }
}
