//! Faults injected by the real simulator (`stub-server` with seeded fault
//! injection) and a server killed and restarted mid-run: every request is
//! accounted for, each failure carries the kind its fault predicts, the
//! CSV and JSON are complete and parse, and the verdict fails on corrupted
//! outputs even when P95 is fine.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use loadgen::{run, ConnectionMode, LoadConfig, RunSummary};
use model::log::LogRow;
use stub_server::{FaultConfig, ServerConfig};

fn server_config(faults: FaultConfig) -> ServerConfig {
    let mut config = ServerConfig::profile("zero-cost").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.workers = 8;
    config.faults = faults;
    config
}

/// Runs `config` against `url`, checks the accounting invariants on the
/// summary, the CSV and the JSON, and returns the summary and the rows.
async fn run_checked(url: &str, mut config: LoadConfig, name: &str) -> (RunSummary, Vec<LogRow>) {
    let dir = common::temp_dir(name);
    let requested = config.requests.unwrap();
    config.url = url.to_owned();
    config.log_path = Some(dir.join("log.csv"));
    let summary = run(config, std::future::pending::<()>()).await.unwrap();
    assert_eq!(summary.total, requested, "{summary:?}");
    assert_eq!(summary.succeeded + summary.failed, requested);
    let counted: u64 = summary.errors.values().sum();
    assert_eq!(counted, summary.failed, "errors by kind add up to failed");
    let log = model::log::read_log_file(&dir.join("log.csv")).unwrap();
    assert_eq!(log.rows.len() as u64, requested, "one row per request");
    let ids: BTreeSet<u64> = log.rows.iter().map(|r| r.request_id).collect();
    assert_eq!(ids.len() as u64, requested, "every id exactly once");
    for row in &log.rows {
        assert_eq!(row.ok, row.error.is_empty(), "{row:?}");
    }
    let json_path = dir.join("summary.json");
    summary.write_json(&json_path).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(json["total"], requested);
    assert_eq!(json["failed"], summary.failed);
    (summary, log.rows)
}

fn kinds(rows: &[LogRow]) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    for row in rows.iter().filter(|r| !r.ok) {
        *kinds.entry(row.error.clone()).or_insert(0) += 1;
    }
    kinds
}

fn load(requests: u64, connection: ConnectionMode, batch_size: usize) -> LoadConfig {
    LoadConfig {
        requests: Some(requests),
        concurrency: 8,
        connection,
        batch_size,
        batch_wait_ms: 2,
        timeout: Duration::from_millis(400),
        ..LoadConfig::default()
    }
}

fn mixed_faults(seed: u64) -> FaultConfig {
    FaultConfig {
        error_rate: 0.1,
        corrupt_rate: 0.1,
        truncate_rate: 0.1,
        reset_rate: 0.1,
        stall_rate: 0.04,
        stall_ms: 5_000,
        seed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_injected_fault_is_a_row_with_its_predicted_kind() {
    for (seed, connection) in [(1, ConnectionMode::Pooled), (2, ConnectionMode::PerRequest)] {
        let faults = mixed_faults(seed);
        let server = stub_server::spawn(server_config(faults.clone())).unwrap();
        let (summary, rows) = run_checked(&server.url(), load(200, connection, 1), "mixed").await;
        // A reset on a reused pooled connection, before any byte of an
        // answer, looks like a kept-alive connection the server had closed:
        // the request goes out once more, and the server draws its next
        // fault for it. So the server saw 200 + retries requests, and each
        // retried reset is not a failed row. A new connection per request
        // is never reused, so never retried.
        let retries = summary.retries;
        assert_eq!(
            retries,
            rows.iter().map(|r| u64::from(r.retries)).sum::<u64>()
        );
        if connection == ConnectionMode::PerRequest {
            assert_eq!(retries, 0);
        }
        let plan = faults.plan(200 + retries);
        let got = kinds(&rows);
        let want: BTreeMap<String, u64> = [
            ("http_500", plan.error_500),
            ("http_503", plan.error_503),
            ("output_mismatch", plan.corrupt),
            ("truncated_body", plan.truncate),
            ("connection_reset", plan.reset - retries),
            ("timeout", plan.stall),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
        assert_eq!(got, want, "{connection:?}: {summary:?}");
        assert_eq!(summary.succeeded, plan.clean);
        for row in rows.iter().filter(|r| !r.ok) {
            let status = match row.error.as_str() {
                "http_500" => 500,
                "http_503" => 503,
                "output_mismatch" => 200,
                _ => 0,
            };
            assert_eq!(row.status_code, status, "{row:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_batch_fails_only_its_wrong_item() {
    let faults = FaultConfig {
        corrupt_rate: 0.3,
        seed: 3,
        ..FaultConfig::default()
    };
    let server = stub_server::spawn(server_config(faults.clone())).unwrap();
    let (summary, rows) = run_checked(
        &server.url(),
        load(120, ConnectionMode::Pooled, 4),
        "corrupt-batch",
    )
    .await;
    let plan = faults.plan(summary.http_requests);
    assert!(plan.corrupt > 0);
    assert_eq!(kinds(&rows).get("output_mismatch"), Some(&plan.corrupt));
    assert_eq!(
        summary.failed, plan.corrupt,
        "the other items of a batch pass"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_outputs_fail_the_verdict_even_when_p95_is_fine() {
    let dir = common::temp_dir("verdict");
    let clean = stub_server::spawn(server_config(FaultConfig::default())).unwrap();
    let corrupting = stub_server::spawn(server_config(FaultConfig {
        corrupt_rate: 0.05,
        seed: 4,
        ..FaultConfig::default()
    }))
    .unwrap();
    let mut before = load(100, ConnectionMode::Pooled, 1);
    before.url = clean.url();
    before.log_path = Some(dir.join("before.csv"));
    run(before, std::future::pending::<()>()).await.unwrap();
    let mut after = load(100, ConnectionMode::Pooled, 1);
    after.url = corrupting.url();
    after.log_path = Some(dir.join("after.csv"));
    let summary = run(after, std::future::pending::<()>()).await.unwrap();
    assert!(summary.failed > 0);

    let before = report::RunLog::read("Before", &dir.join("before.csv")).unwrap();
    let after = report::RunLog::read("After", &dir.join("after.csv")).unwrap();
    let options = report::CompareOptions {
        sla_p95_ms: 800.0,
        ..report::CompareOptions::default()
    };
    let comparison = report::compare(&before, &after, None, &options).unwrap();
    assert!(comparison.after.p95_ms.unwrap() < 800.0);
    assert!(comparison.sla.met, "P95 is within the SLA");
    assert_eq!(comparison.quality.after_mismatches, summary.failed);
    assert!(!comparison.verdict.met, "{:?}", comparison.verdict);
    report::write_reports(&comparison, &before, &after, &dir.join("out")).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/comparison.json")).unwrap())
            .unwrap();
    assert_eq!(json["sla"]["met"], true);
    assert_eq!(json["quality"]["mismatches"], summary.failed);
}

/// A server on its own runtime that can be killed: shutting the runtime
/// down drops every connection at once, like a killed process.
struct Killable {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Killable {
    fn start(addr: SocketAddr, config: ServerConfig) -> Killable {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Tokio's listener sets SO_REUSEADDR, so a restart can take the
        // port back from the killed server's lingering sockets.
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(stub_server::serve(
            config,
            listener,
            std::future::pending::<()>(),
        ));
        Killable {
            addr,
            runtime: Some(runtime),
        }
    }

    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Drops every task (listener and connections) without letting
            // any in-flight request finish; returns once they are gone.
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn server_killed_mid_run_then_restarted_every_request_is_a_row() {
    let mut config = ServerConfig::profile("placeholder").unwrap();
    config.workers = 4;
    config.service.base_ms = 20.0;
    config.service.per_item_ms = 0.0;
    let mut server = Killable::start("127.0.0.1:0".parse().unwrap(), config.clone());
    let addr = server.addr;
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("http://{addr}/v1/infer");
    // An open loop spreads the sends over time, so refusals during the
    // restart cannot burn through the remaining requests at once.
    let mut load_config = load(160, ConnectionMode::PerRequest, 1);
    load_config.open_loop = Some(loadgen::OpenLoop {
        rate_rps: 200.0,
        arrival: loadgen::Arrival::Constant,
        seed: 1,
        max_in_flight: 64,
    });
    load_config.timeout = Duration::from_secs(5);
    let run_task = client.spawn(async move { run_checked(&url, load_config, "kill").await });
    // Kill once the server is clearly mid-run (requests in service), then
    // restart it on the same port.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while common::served(server.addr) < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run served fewer than 20 requests in 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill();
    let _restarted = Killable::start(addr, config);
    let (summary, rows) = client.block_on(run_task).unwrap();
    let got = kinds(&rows);
    assert!(summary.failed >= 1, "requests in flight at the kill fail");
    assert!(
        got.keys()
            .all(|k| ["connection_reset", "connect_refused"].contains(&k.as_str())),
        "{got:?}"
    );
    let last_failure = rows
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.timestamp_ms)
        .fold(f64::MIN, f64::max);
    assert!(
        rows.iter().any(|r| r.ok && r.timestamp_ms > last_failure),
        "the run recovered after the restart: {got:?}"
    );
    assert!(summary.succeeded >= 40, "{summary:?}");
}
