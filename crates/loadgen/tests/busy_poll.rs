//! Busy-polling client threads against the stub-server: every request is
//! still sent once, answered and verified, and the summary says which
//! window ran (none where no client threads run).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use loadgen::{run, Arrival, OpenLoop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_polling_threads_send_every_request_once_and_verify_it() {
    let server = common::simulator("zero-cost");
    let dir = common::temp_dir("busy-poll");
    let config = loadgen::LoadConfig {
        requests: Some(2_000),
        concurrency: 8,
        threads: Some(2),
        warmup: loadgen::Warmup::Requests(50),
        busy_poll: Duration::from_micros(50),
        ..common::config(&server.url(), &dir)
    };
    let summary = run(config, std::future::pending::<()>()).await.unwrap();
    assert_eq!(
        (summary.succeeded, summary.failed),
        (2_000, 0),
        "{summary:?}"
    );
    assert_eq!((summary.client_threads, summary.busy_poll_us), (2, 50));
    let log = model::log::read_log_file(&dir.join("log.csv")).unwrap();
    let ids: BTreeSet<u64> = log.rows.iter().map(|r| r.request_id).collect();
    assert_eq!(ids, (0..2_000).collect());
    assert!(log.rows.iter().all(|r| r.ok && r.output_digest.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_loop_runs_no_busy_poller_and_says_so() {
    let server = common::simulator("zero-cost");
    let dir = common::temp_dir("busy-poll-open");
    let config = loadgen::LoadConfig {
        requests: Some(50),
        open_loop: Some(OpenLoop {
            rate_rps: 500.0,
            arrival: Arrival::Constant,
            seed: 1,
            max_in_flight: 100,
        }),
        busy_poll: Duration::from_micros(50),
        ..common::config(&server.url(), &dir)
    };
    let summary = run(config, std::future::pending::<()>()).await.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (50, 0), "{summary:?}");
    assert_eq!((summary.client_threads, summary.busy_poll_us), (0, 0));
}
