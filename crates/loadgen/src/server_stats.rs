//! The server's own statistics around a run (`--server-stats FILE`): a
//! snapshot of Triton's statistics extension (`/v2/models/{m}/stats`, or
//! the `ModelStatistics` RPC over gRPC, in the same JSON) before the load
//! and one after, and their difference, which is what the
//! run itself cost the server: requests, executions by batch size, queue
//! and compute time. The report turns it into the same findings as the
//! simulator's per-request `Server-Timing` (queueing share, parallelism,
//! the batch-cost line).

use std::path::{Path, PathBuf};

pub(crate) use model::kserve::ServerStatsDelta;
use model::kserve::{BatchStats, Duration, InferenceStats, ModelStats, ModelStatsResponse};

use crate::client::Transport;
use crate::grpc::KServeGrpc;

/// Where the statistics come from.
// One per run: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Source {
    /// `GET path` over HTTP, through the probe that checked the API.
    Http {
        /// The API's probe.
        probe: Transport,
        /// `/v2/models/{m}/stats`.
        path: String,
    },
    /// The `ModelStatistics` RPC.
    Grpc(std::sync::Arc<KServeGrpc>),
}

/// Why the statistics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The request failed or was refused.
    #[error("server statistics: {path}: {reason}")]
    Fetch {
        /// The endpoint (`GET /v2/...`, or the RPC).
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
pub(crate) async fn snapshot(probe: &Transport, path: &str) -> Result<ModelStats, StatsError> {
    let failed = |reason: String| StatsError::Fetch {
        path: format!("GET {path}"),
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

/// Triton's Prometheus counters for `model` (`nv_inference_*`, on its
/// metrics port) as statistics, summed over the model's versions: the
/// fallback where the statistics endpoint is closed. The counters hold no
/// executions by batch size, so `batch_stats` stays empty; times are in
/// microseconds there and nanoseconds here.
pub(crate) fn from_prometheus(text: &str, model: &str) -> Option<ModelStats> {
    let mut stats = ModelStats {
        name: model.to_owned(),
        ..ModelStats::default()
    };
    let mut seen = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name_and_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match name_and_labels.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (name_and_labels, ""),
        };
        let for_model = labels
            .split(',')
            .any(|l| l.trim() == format!("model=\"{model}\""));
        if !for_model {
            continue;
        }
        let count = value.max(0.0) as u64;
        let ns = (value.max(0.0) * 1000.0) as u64;
        let s = &mut stats.inference_stats;
        match name {
            "nv_inference_request_success" => s.success.count += count,
            "nv_inference_request_duration_us" => s.success.ns += ns,
            "nv_inference_request_failure" => s.fail.count += count,
            "nv_inference_count" => stats.inference_count += count,
            "nv_inference_exec_count" => stats.execution_count += count,
            "nv_inference_queue_duration_us" => s.queue.ns += ns,
            "nv_inference_compute_input_duration_us" => s.compute_input.ns += ns,
            "nv_inference_compute_infer_duration_us" => s.compute_infer.ns += ns,
            "nv_inference_compute_output_duration_us" => s.compute_output.ns += ns,
            _ => continue,
        }
        seen = true;
    }
    // Each duration is counted once per successful request, as in the
    // statistics extension.
    let s = &mut stats.inference_stats;
    let requests = s.success.count;
    for d in [
        &mut s.queue,
        &mut s.compute_input,
        &mut s.compute_infer,
        &mut s.compute_output,
    ] {
        d.count = requests;
    }
    seen.then_some(stats)
}

/// The statistics around one run: the snapshot before the load, and where
/// the one after it goes.
pub(crate) struct Watch {
    source: Source,
    /// Triton's metrics port and path, for when the statistics endpoint is
    /// closed, and the model whose counters to read.
    metrics: Option<(Transport, String)>,
    model: String,
    before: ModelStats,
    before_from: String,
    file: PathBuf,
}

impl Watch {
    /// Takes the snapshot before the load: an error here stops the run
    /// before anything is sent.
    pub(crate) async fn start(
        source: Source,
        metrics: Option<(Transport, String)>,
        model: &str,
        file: PathBuf,
    ) -> Result<Self, StatsError> {
        let mut watch = Self {
            source,
            metrics,
            model: model.to_owned(),
            before: ModelStats::default(),
            before_from: String::new(),
            file,
        };
        let (before, from) = watch.snapshot().await?;
        watch.before = before;
        watch.before_from = from;
        Ok(watch)
    }

    /// Takes the snapshot after the load and writes both and their
    /// difference to the file.
    pub(crate) async fn finish(self) -> Result<(), StatsError> {
        let (after, after_from) = self.snapshot().await?;
        let path = if after_from == self.before_from {
            after_from
        } else {
            format!("{} (before), {after_from} (after)", self.before_from)
        };
        let stats = ServerStatsDelta {
            path,
            delta: difference(&self.before, &after),
            before: self.before,
            after,
        };
        write(&stats, &self.file)
    }

    /// One snapshot and the endpoint it came from: the statistics
    /// extension, or Triton's Prometheus counters when it is closed.
    async fn snapshot(&self) -> Result<(ModelStats, String), StatsError> {
        let primary = match &self.source {
            Source::Http { probe, path } => match snapshot(probe, path).await {
                Ok(stats) => return Ok((stats, path.clone())),
                Err(e) => e,
            },
            Source::Grpc(grpc) => match grpc.statistics().await {
                Ok(stats) => return Ok((stats, grpc.stats_origin())),
                Err(reason) => StatsError::Fetch {
                    path: grpc.stats_origin(),
                    reason,
                },
            },
        };
        let Some((metrics, metrics_path)) = &self.metrics else {
            return Err(primary);
        };
        let failed = |reason: String| StatsError::Fetch {
            path: format!("GET {metrics_path}"),
            reason: format!("{reason} (the fallback, after {primary})"),
        };
        let (status, body) = metrics
            .get(metrics_path)
            .await
            .map_err(|e| failed(e.kind().into()))?;
        if !status.is_success() {
            return Err(failed(format!("answered {status}")));
        }
        let stats =
            from_prometheus(&String::from_utf8_lossy(&body), &self.model).ok_or_else(|| {
                failed(format!(
                    "no nv_inference_* counters for model {:?}",
                    self.model
                ))
            })?;
        Ok((stats, metrics_path.clone()))
    }
}

/// `after - before`, counter by counter (a counter that went down, as after
/// a server restart, counts from zero).
pub(crate) fn difference(before: &ModelStats, after: &ModelStats) -> ModelStats {
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
pub(crate) fn write(stats: &ServerStatsDelta, path: &Path) -> Result<(), StatsError> {
    let text = serde_json::to_string_pretty(stats).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|source| StatsError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kserve::KServeOptions;
    use crate::{ApiChoice, LoadConfig};

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
    fn prometheus_counters_become_statistics() {
        // Triton 2.51's /metrics lines (two models, one of them ours).
        let text = "# HELP nv_inference_request_success Number of successful inference requests, all batch sizes\n\
# TYPE nv_inference_request_success counter\n\
nv_inference_request_success{model=\"example-model\",version=\"1\"} 40\n\
nv_inference_request_success{model=\"other\",version=\"1\"} 7\n\
nv_inference_request_failure{model=\"example-model\",reason=\"REJECTED\",version=\"1\"} 2\n\
nv_inference_request_failure{model=\"example-model\",reason=\"BACKEND\",version=\"1\"} 1\n\
nv_inference_count{model=\"example-model\",version=\"1\"} 400\n\
nv_inference_exec_count{model=\"example-model\",version=\"1\"} 40\n\
nv_inference_request_duration_us{model=\"example-model\",version=\"1\"} 4900000\n\
nv_inference_queue_duration_us{model=\"example-model\",version=\"1\"} 120.5\n\
nv_inference_compute_infer_duration_us{model=\"example-model\",version=\"1\"} 4892000\n\
nv_cpu_utilization 0.5\n";
        let stats = from_prometheus(text, "example-model").unwrap();
        assert_eq!(
            stats.inference_stats.success,
            Duration {
                count: 40,
                ns: 4_900_000_000
            }
        );
        assert_eq!(stats.inference_stats.fail.count, 3);
        assert_eq!((stats.inference_count, stats.execution_count), (400, 40));
        assert_eq!(
            stats.inference_stats.queue,
            Duration {
                count: 40,
                ns: 120_500
            }
        );
        assert_eq!(stats.inference_stats.compute_infer.ns, 4_892_000_000);
        assert!(stats.batch_stats.is_empty());
        assert!(from_prometheus(text, "absent").is_none());
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

    /// A simulator answering KServe v2 (BYTES input) on a free loopback
    /// port, `base_ms` per request.
    fn kserve_server(base_ms: f64) -> stub_server::RunningServer {
        let mut config = stub_server::ServerConfig::profile("placeholder").unwrap();
        config.bind = "127.0.0.1:0".parse().unwrap();
        config.service.base_ms = base_ms;
        config.service.per_item_ms = 0.1;
        config.service.jitter = 0.0;
        config.kserve_input_datatype = model::kserve::Datatype::Bytes;
        stub_server::spawn(config).unwrap()
    }

    /// `GET /v2/models/example-model/stats`, parsed.
    fn served_stats(server: &stub_server::RunningServer) -> ModelStatsResponse {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        stream
            .write_all(
                b"GET /v2/models/example-model/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str(body).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn statistics_deltas_match_what_the_client_saw() {
        let server = kserve_server(5.0);
        let dir = tempfile::Builder::new()
            .prefix("loadgen-test-kserve-stats-")
            .tempdir()
            .unwrap();
        let dir = dir.path();
        let before = served_stats(&server).model_stats[0].clone();
        let config = LoadConfig {
            api: ApiChoice::KServeV2(KServeOptions::default()),
            url: format!("http://{}", server.addr),
            log_path: Some(dir.join("log.csv")),
            timeout: std::time::Duration::from_secs(5),
            requests: Some(60),
            concurrency: 6,
            batch_size: 3,
            batch_wait_ms: 20,
            server_stats_path: Some(dir.join("server-stats.json")),
            ..LoadConfig::default()
        };
        let summary = crate::run(config, std::future::pending()).await.unwrap();
        assert_eq!(summary.succeeded, 60);
        assert_eq!(summary.server_stats_warning, None);
        let after = served_stats(&server).model_stats[0].clone();
        // loadgen's own snapshots agree with ours, and so does their difference.
        let written: ServerStatsDelta =
            serde_json::from_str(&std::fs::read_to_string(dir.join("server-stats.json")).unwrap())
                .unwrap();
        assert_eq!(written.before, before);
        assert_eq!(written.after, after);
        assert_eq!(written.delta, difference(&before, &after));
        let requests = after.inference_stats.success.count - before.inference_stats.success.count;
        assert_eq!(
            requests, summary.http_requests,
            "one success per HTTP request"
        );
        assert_eq!(after.inference_count - before.inference_count, 60, "items");
        let executed: u64 = after
            .batch_stats
            .iter()
            .map(|b| b.batch_size * b.compute_infer.count)
            .sum();
        assert_eq!(executed, 60, "every item executed once");
        assert_eq!(
            after.execution_count,
            after
                .batch_stats
                .iter()
                .map(|b| b.compute_infer.count)
                .sum::<u64>()
        );
        // Mean queue and execution per request from the statistics against the
        // Server-Timing the client logged for the same requests: each HTTP
        // request logs its batch's timings on every item row, so the mean over
        // rows equals the mean over requests.
        let rows = model::log::read_log_file(&dir.join("log.csv"))
            .unwrap()
            .rows;
        let mean =
            |f: fn(&model::log::LogRow) -> f64| rows.iter().map(f).sum::<f64>() / rows.len() as f64;
        let per_request_ms = |d: model::kserve::Duration| d.ns as f64 / 1e6 / d.count as f64;
        let infer_stats = per_request_ms(after.inference_stats.compute_infer);
        let queue_stats = per_request_ms(after.inference_stats.queue);
        let infer_client = mean(|r| r.service_ms.unwrap_or(f64::NAN));
        let queue_client = mean(|r| r.queue_ms.unwrap_or(f64::NAN));
        // Server-Timing is written with 3 decimals; 0.01 ms covers the rounding.
        assert!(
            (infer_stats - infer_client).abs() < 0.01,
            "{infer_stats} vs {infer_client}"
        );
        assert!(
            (queue_stats - queue_client).abs() < 0.01,
            "{queue_stats} vs {queue_client}"
        );
        // And the server's time per request is within what the client measured.
        let success_ms = per_request_ms(after.inference_stats.success);
        assert!(
            success_ms <= summary.mean_ms.unwrap(),
            "{success_ms} vs {:?}",
            summary.mean_ms
        );
    }
}
