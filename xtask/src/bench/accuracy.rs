//! How closely the simulator honours its service time under concurrent load:
//! `Server-Timing: infer` (and the client's latency minus the queue wait)
//! against the model's value, from a loadgen log.
//!
//! This replaces an `#[ignore]`d measurement test: a measurement belongs in
//! the bench, not in `cargo test`.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use stats::{quantile, sorted_finite, QuantileMethod};

use super::TaskError;
use crate::process::{self, ServerProcess};

/// The placeholder profile's cost without jitter, for a batch of one item:
/// `base_ms + per_item_ms`, passed to the simulator explicitly.
const BASE_MS: f64 = 100.0;
const PER_ITEM_MS: f64 = 2.0;
/// `input.py`'s shape: 20 concurrent clients, 200 requests, 2 workers.
const CONCURRENCY: usize = 20;
const REQUESTS: usize = 200;

/// Overshoot quantiles, ms (observed minus requested).
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Overshoot {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// The result of the accuracy run.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Accuracy {
    /// What the model asks for, ms.
    pub requested_ms: f64,
    /// Requests measured.
    pub requests: usize,
    /// Concurrent clients.
    pub concurrency: usize,
    /// `Server-Timing: infer` minus requested.
    pub server_timing_overshoot: Overshoot,
    /// Client latency minus `Server-Timing: queue` minus requested: adds
    /// the HTTP round trip and the client's own scheduling.
    pub client_overshoot: Overshoot,
    /// The commands, for the record.
    pub commands: Vec<String>,
}

/// Starts a fresh simulator (placeholder shape, jitter 0) and loads it with
/// loadgen, writing the per-request log into `dir`.
pub(super) fn measure(
    server_bin: &Path,
    loadgen_bin: &Path,
    dir: &Path,
) -> Result<Accuracy, TaskError> {
    let server_args: Vec<String> = [
        "--profile",
        "placeholder",
        "--jitter",
        "0",
        "--base-ms",
        "100",
        "--per-item-ms",
        "2",
    ]
    .map(str::to_owned)
    .to_vec();
    let server = ServerProcess::start(server_bin, &server_args, &dir.join("accuracy-server.log"))?;
    let csv = dir.join("accuracy.csv");
    let mut cmd = Command::new(loadgen_bin);
    cmd.args(["--url", &server.infer_url(), "-q", "-c"])
        .arg(CONCURRENCY.to_string())
        .arg("-n")
        .arg(REQUESTS.to_string())
        .arg("-o")
        .arg(&csv)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let commands = vec![
        format!("stub-server --bind 127.0.0.1:0 {}", server_args.join(" ")),
        super::clients::describe(&cmd),
    ];
    let status = process::run_with_deadline(&mut cmd, Duration::from_secs(300))?;
    drop(server);
    if !status.success() {
        return Err(TaskError::Step(format!(
            "the accuracy run's loadgen exited with {status}; log in {}",
            csv.display()
        )));
    }
    let text = fs::read_to_string(&csv).map_err(|source| TaskError::Io {
        path: csv.clone(),
        source,
    })?;
    let requested_ms = BASE_MS + PER_ITEM_MS;
    let (server_side, client_side) = overshoots(&text, requested_ms)?;
    Ok(Accuracy {
        requested_ms,
        requests: server_side.len(),
        concurrency: CONCURRENCY,
        server_timing_overshoot: summarize(&server_side)?,
        client_overshoot: summarize(&client_side)?,
        commands,
    })
}

/// Per successful row: (`service_ms` - requested, `latency_ms` - `queue_ms`
/// - requested). The log's fields never contain commas.
fn overshoots(csv: &str, requested_ms: f64) -> Result<(Vec<f64>, Vec<f64>), TaskError> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| TaskError::Step(format!("the loadgen log has no `{name}` column")))
    };
    let (latency, queue, service, ok) = (
        column("latency_ms")?,
        column("queue_ms")?,
        column("service_ms")?,
        column("ok")?,
    );
    let mut server_side = Vec::new();
    let mut client_side = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let num = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        if fields.get(ok).is_some_and(|v| *v == "true") {
            if let (Some(l), Some(q), Some(s)) = (num(latency), num(queue), num(service)) {
                server_side.push(s - requested_ms);
                client_side.push(l - q - requested_ms);
            }
        }
    }
    if server_side.is_empty() {
        return Err(TaskError::Step(
            "the accuracy run logged no successful request with Server-Timing".into(),
        ));
    }
    Ok((server_side, client_side))
}

fn summarize(samples: &[f64]) -> Result<Overshoot, TaskError> {
    let sorted = sorted_finite(samples).map_err(|e| TaskError::Step(e.to_string()))?;
    let q = |level: f64| {
        quantile(&sorted, level, QuantileMethod::Linear).map_err(|e| TaskError::Step(e.to_string()))
    };
    Ok(Overshoot {
        p50_ms: q(0.5)?,
        p99_ms: q(0.99)?,
        max_ms: q(1.0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overshoot_comes_from_the_log_columns() {
        let csv = "request_id,timestamp_ms,latency_ms,status_code,error,ok,batch_id,batch_size,connect_ms,queue_ms,service_ms,output_digest\n\
                   0,1,110.5,200,,true,0,1,0.1,8.0,102.3,abc\n\
                   1,1,5.0,503,http_503,false,1,1,0.1,,,\n";
        let (server, client) = overshoots(csv, 102.0).unwrap();
        assert_eq!(server.len(), 1);
        assert!((server[0] - 0.3).abs() < 1e-9);
        assert!((client[0] - 0.5).abs() < 1e-9);
        assert!(overshoots("latency_ms\n", 102.0).is_err());
    }
}
