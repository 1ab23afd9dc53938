//! Coordinated omission: a one-second server pause shows in the open loop's
//! P99 (latency from intended start) while a closed loop at concurrency 1
//! lets it touch a single sample.

mod common;

use std::time::Duration;

use common::{spawn, Behavior};
use loadgen::{run, Arrival, LoadConfig, OpenLoop};

fn pausing_server() -> common::FaultServer {
    spawn(Behavior::StallOnce {
        at: 50,
        stall: Duration::from_secs(1),
        service: Duration::from_millis(2),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sees_the_stall_closed_loop_hides_it() {
    let server = pausing_server();
    let dir = common::temp_dir("closed");
    let closed = LoadConfig {
        requests: Some(200),
        concurrency: 1,
        ..common::config(&server.url(), &dir)
    };
    let closed = run(closed, std::future::pending::<()>()).await.unwrap();
    drop(server);

    let server = pausing_server();
    let dir = common::temp_dir("open");
    let open = LoadConfig {
        requests: Some(300),
        open_loop: Some(OpenLoop {
            rate_rps: 100.0,
            arrival: Arrival::Poisson,
            seed: 7,
            max_in_flight: 1000,
        }),
        ..common::config(&server.url(), &dir)
    };
    let open = run(open, std::future::pending::<()>()).await.unwrap();
    println!(
        "closed: p50 {:?} p99 {:?} max {:?}",
        closed.p50_ms, closed.p99_ms, closed.max_ms
    );
    println!(
        "open: p50 {:?} p99 {:?} max {:?} achieved {:?} late {:?}",
        open.p50_ms, open.p99_ms, open.max_ms, open.achieved_rate_rps, open.late_sends
    );

    assert_eq!((closed.failed, open.failed), (0, 0));
    // Closed loop: the pause is one sample out of 200, seen only in max.
    assert!(closed.max_ms.unwrap() >= 1000.0);
    assert!(closed.p99_ms.unwrap() < 100.0, "{closed:?}");
    // Open loop: ~100 sends fell due during the pause and queued behind it.
    assert!(open.p99_ms.unwrap() >= 500.0, "{open:?}");
    let log = model::log::read_log_file(&dir.join("log.csv")).unwrap();
    let slow = log.rows.iter().filter(|r| r.latency_ms > 100.0).count();
    assert!(slow >= 30, "only {slow} open-loop samples saw the pause");
    assert_eq!(open.target_rate_rps, Some(100.0));
    let achieved = open.achieved_rate_rps.unwrap();
    assert!(achieved > 70.0 && achieved < 130.0, "achieved {achieved}");
    assert_eq!(open.dropped, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_over_the_in_flight_bound_are_dropped_rows() {
    let server = spawn(Behavior::Stall);
    let dir = common::temp_dir("dropped");
    let config = LoadConfig {
        requests: Some(20),
        timeout: Duration::from_millis(500),
        open_loop: Some(OpenLoop {
            rate_rps: 200.0,
            arrival: Arrival::Constant,
            seed: 1,
            max_in_flight: 5,
        }),
        ..common::config(&server.url(), &dir)
    };
    let summary = run(config, std::future::pending::<()>()).await.unwrap();
    assert_eq!(summary.total, 20);
    assert_eq!(summary.dropped, Some(15));
    assert_eq!(summary.errors.get("dropped"), Some(&15));
    assert_eq!(summary.errors.get("timeout"), Some(&5));
    assert!(summary.rate_warning.is_some());
}
