//! Client micro-batching against the stub-server: the batch wait is part of
//! each logical request's latency, outputs are verified, ids appear once and
//! batch ids and sizes agree.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use loadgen::{run, LoadConfig, Profile};

fn stub(base_ms: f64, per_item_ms: f64, workers: usize) -> stub_server::RunningServer {
    let mut config = stub_server::ServerConfig::profile("placeholder").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.workers = workers;
    config.service.base_ms = base_ms;
    config.service.per_item_ms = per_item_ms;
    stub_server::spawn(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_request_waits_for_its_batch_and_that_wait_is_counted() {
    let server = stub(1.0, 0.0, 1);
    let dir = common::temp_dir("lone");
    let config = LoadConfig {
        requests: Some(3),
        concurrency: 1,
        batch_size: 4,
        batch_wait_ms: 50,
        ..common::config(&server.url(), &dir)
    };
    let summary = run(config, std::future::pending::<()>()).await.unwrap();
    assert_eq!(summary.succeeded, 3, "{summary:?}");
    let log = model::log::read_log_file(&dir.join("log.csv")).unwrap();
    for row in &log.rows {
        assert!(row.latency_ms >= 50.0, "batch wait hidden: {row:?}");
        assert_eq!(row.batch_size, Some(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimized_profile_batches_twenty_workers_into_tens() {
    let server = stub(5.0, 0.1, 2);
    let dir = common::temp_dir("optimized");
    let config = LoadConfig {
        url: server.url(),
        log_path: Some(dir.join("log.csv")),
        requests: Some(200),
        ..LoadConfig::from_profile(Profile::Optimized)
    };
    let summary = run(config, std::future::pending::<()>()).await.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (200, 0), "{summary:?}");
    let log = model::log::read_log_file(&dir.join("log.csv")).unwrap();
    let ids: BTreeSet<u64> = log.rows.iter().map(|r| r.request_id).collect();
    assert_eq!(ids, (0..200).collect());
    let mut batches: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    for row in &log.rows {
        let entry = batches
            .entry(row.batch_id.unwrap())
            .or_insert((row.batch_size.unwrap(), 0));
        assert_eq!(entry.0, row.batch_size.unwrap(), "one size per batch");
        entry.1 += 1;
        assert!(row.ok && row.output_digest.is_some());
    }
    for (id, (size, rows)) in &batches {
        assert_eq!(
            size, rows,
            "batch {id} claims {size} items but has {rows} rows"
        );
        assert!(*size <= 10);
    }
    // Twenty closed-loop workers fill batches of ten most of the time.
    let full = batches.values().filter(|(s, _)| *s == 10).count();
    assert!(full * 2 >= batches.len(), "{batches:?}");
    assert_eq!(summary.http_requests, batches.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_and_optimized_send_the_same_inputs() {
    let server = stub(1.0, 0.0, 2);
    let mut digests = Vec::new();
    for profile in [Profile::Baseline, Profile::Optimized] {
        let dir = common::temp_dir(profile.name());
        let config = LoadConfig {
            url: server.url(),
            log_path: Some(dir.join("log.csv")),
            requests: Some(60),
            timeout: Duration::from_secs(10),
            ..LoadConfig::from_profile(profile)
        };
        let summary = run(config, std::future::pending::<()>()).await.unwrap();
        assert_eq!(summary.succeeded, 60, "{summary:?}");
        let log = model::log::read_log_file(&dir.join("log.csv")).unwrap();
        let by_id: BTreeMap<u64, String> = log
            .rows
            .into_iter()
            .map(|r| (r.request_id, r.output_digest.unwrap()))
            .collect();
        digests.push(by_id);
    }
    assert_eq!(digests[0], digests[1], "outputs agree request by request");
}
