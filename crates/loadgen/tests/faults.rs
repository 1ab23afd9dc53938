//! Every fault becomes failed rows with the right error kind, never a crash,
//! and the log stays complete: succeeded + failed == requested.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{spawn, Behavior};
use loadgen::{run, ConnectionMode, LoadConfig};

async fn run_against(
    url: &str,
    mut config: LoadConfig,
    name: &str,
) -> (loadgen::RunSummary, Vec<model::log::LogRow>) {
    let dir = common::temp_dir(name);
    let base = common::config(url, &dir);
    config.url = base.url;
    config.log_path = base.log_path.clone();
    let summary = run(config, std::future::pending::<()>()).await.unwrap();
    let log = model::log::read_log_file(&base.log_path.unwrap()).unwrap();
    assert_eq!(summary.succeeded + summary.failed, summary.total);
    assert_eq!(log.rows.len() as u64, summary.total);
    let ids: BTreeSet<u64> = log.rows.iter().map(|r| r.request_id).collect();
    assert_eq!(
        ids.len() as u64,
        summary.total,
        "every request id exactly once"
    );
    (summary, log.rows)
}

fn small(requests: u64, connection: ConnectionMode, batch_size: usize) -> LoadConfig {
    LoadConfig {
        requests: Some(requests),
        concurrency: 4,
        connection,
        batch_size,
        batch_wait_ms: 2,
        timeout: Duration::from_secs(5),
        ..LoadConfig::default()
    }
}

fn assert_all_failed(rows: &[model::log::LogRow], kind: &str, status: u16) {
    for row in rows {
        assert!(!row.ok, "{row:?}");
        assert_eq!(row.error, kind, "{row:?}");
        assert_eq!(row.status_code, status, "{row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_rows() {
    let url = common::dead_url();
    let (summary, rows) =
        run_against(&url, small(12, ConnectionMode::PerRequest, 1), "refused").await;
    assert_eq!(summary.failed, 12);
    assert_eq!(summary.errors.get("connect_refused"), Some(&12));
    assert_all_failed(&rows, "connect_refused", 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_are_rows() {
    let server = spawn(Behavior::Reset);
    let (summary, rows) =
        run_against(&server.url(), small(10, ConnectionMode::Pooled, 1), "reset").await;
    assert_eq!(summary.failed, 10);
    assert_all_failed(&rows, "connection_reset", 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_time_out() {
    let server = spawn(Behavior::Stall);
    let mut config = small(4, ConnectionMode::Pooled, 1);
    config.timeout = Duration::from_millis(300);
    let (summary, rows) = run_against(&server.url(), config, "stall").await;
    assert_eq!(summary.errors.get("timeout"), Some(&4));
    assert_all_failed(&rows, "timeout", 0);
    for row in &rows {
        assert!(
            row.latency_ms >= 299.0 && row.latency_ms < 2000.0,
            "{row:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_rows() {
    let server = spawn(Behavior::Status(503));
    let (summary, rows) =
        run_against(&server.url(), small(9, ConnectionMode::Pooled, 1), "503").await;
    assert_eq!(summary.errors.get("http_503"), Some(&9));
    assert_all_failed(&rows, "http_503", 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_bodies_are_rows() {
    let server = spawn(Behavior::NotJson);
    let (_, rows) = run_against(
        &server.url(),
        small(6, ConnectionMode::PerRequest, 1),
        "notjson",
    )
    .await;
    assert_all_failed(&rows, "bad_json", 200);
    let (_, rows) = run_against(
        &server.url(),
        small(6, ConnectionMode::Pooled, 3),
        "notjson-batch",
    )
    .await;
    assert_all_failed(&rows, "bad_json", 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_batches_are_rows() {
    let server = spawn(Behavior::WrongLength);
    let (summary, rows) =
        run_against(&server.url(), small(8, ConnectionMode::Pooled, 4), "short").await;
    assert_eq!(summary.errors.get("wrong_length"), Some(&8));
    assert_all_failed(&rows, "wrong_length", 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_outputs_are_caught_unless_verification_is_off() {
    let server = spawn(Behavior::WrongOutput);
    let (_, rows) = run_against(
        &server.url(),
        small(8, ConnectionMode::Pooled, 2),
        "mismatch",
    )
    .await;
    assert_all_failed(&rows, "output_mismatch", 200);
    assert!(rows.iter().all(|r| r.output_digest.is_some()));
    let mut config = small(8, ConnectionMode::Pooled, 2);
    config.verify = Some(false);
    let (summary, _) = run_against(&server.url(), config, "noverify").await;
    assert_eq!(summary.succeeded, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_server_rows_carry_server_facts() {
    let server = spawn(Behavior::Ok {
        service: Duration::from_millis(1),
    });
    for (connection, http2) in [
        (ConnectionMode::PerRequest, false),
        (ConnectionMode::Pooled, false),
        (ConnectionMode::PerRequest, true),
        (ConnectionMode::Pooled, true),
    ] {
        let mut config = small(20, connection, 1);
        config.http2 = http2;
        let (summary, rows) = run_against(&server.url(), config, "healthy").await;
        assert_eq!(summary.succeeded, 20, "{summary:?}");
        for row in &rows {
            assert_eq!((row.queue_ms, row.service_ms), (Some(1.5), Some(2.0)));
            assert_eq!(row.batch_size, Some(1));
            assert!(row.connect_ms.is_some());
            let digest = model::output::output_digest(
                model::output::expected_output(
                    model::DEFAULT_MODEL,
                    &model::payload::baseline_input(row.request_id),
                )
                .as_bytes(),
            );
            assert_eq!(row.output_digest.as_deref(), Some(digest.as_str()));
        }
        if connection == ConnectionMode::Pooled {
            // At most one connection per worker was opened; the rest reused.
            let opened = rows
                .iter()
                .filter(|r| r.connect_ms.unwrap_or(0.0) > 0.0)
                .count();
            // HTTP/2 multiplexes all of them on one.
            let most = if http2 { 1 } else { 4 };
            assert!(
                opened <= most,
                "{opened} connections opened (HTTP/2: {http2})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interruption_returns_a_partial_summary() {
    let server = spawn(Behavior::Stall);
    let dir = common::temp_dir("interrupt");
    let mut config = common::config(&server.url(), &dir);
    config.requests = Some(100);
    config.concurrency = 3;
    config.shutdown_grace = Duration::from_millis(100);
    let summary = run(config, tokio::time::sleep(Duration::from_millis(200)))
        .await
        .unwrap();
    assert!(summary.interrupted);
    assert_eq!(summary.total, 3);
    assert_eq!(summary.errors.get("interrupted"), Some(&3));
    let log = model::log::read_log_file(&dir.join("log.csv")).unwrap();
    assert_eq!(log.rows.len(), 3);
}
