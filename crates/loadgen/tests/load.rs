//! Load: `loadgen` drives 5,000 concurrent requests over 5,000 pooled
//! connections that `stub-server` holds at once, without an error and
//! with bounded memory (the process's peak RSS is checked and printed).

mod common;

use std::time::Duration;

use loadgen::{run, ConnectionMode, LoadConfig};
use stub_server::ServerConfig;

const CONNECTIONS: usize = 5_000;

/// Raises the soft open-files limit to the hard one (both sides of 5,000
/// connections live in this process), as the binaries do at start-up;
/// returns the limit now in force (0 when it cannot be read).
#[cfg(unix)]
fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// Peak resident set size of this process, in KiB (Linux `VmHWM`).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(unix)]
#[test]
fn five_thousand_concurrent_requests_on_five_thousand_connections() {
    let fds = raise_fd_limit();
    if fds < 2 * CONNECTIONS as u64 + 200 {
        common::skip(&format!(
            "this test needs {} open files (client and server sides); the hard limit is {fds}",
            2 * CONNECTIONS + 200
        ));
        return;
    }
    // A batch runs only once all 5,000 items are queued (or after 20 s), so
    // every request is in flight at once, each on its own connection; then
    // one cheap batch answers them all.
    let mut config = ServerConfig::profile("placeholder").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.workers = 8;
    config.service.base_ms = 1.0;
    config.service.per_item_ms = 0.0;
    config.service.jitter = 0.0;
    config.dynamic_batching = true;
    config.max_batch = CONNECTIONS;
    config.batch_window_ms = 20_000.0;
    config.max_queue = 2 * CONNECTIONS;
    let server = stub_server::spawn(config).unwrap();
    let dir = common::temp_dir("load");
    let load = LoadConfig {
        url: server.url(),
        requests: Some(CONNECTIONS as u64),
        concurrency: CONNECTIONS,
        connection: ConnectionMode::Pooled,
        timeout: Duration::from_secs(30),
        log_path: Some(dir.join("log.csv")),
        progress: false,
        ..LoadConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let summary = runtime
        .block_on(run(load, std::future::pending::<()>()))
        .unwrap();
    assert_eq!(summary.total, CONNECTIONS as u64);
    assert_eq!(summary.failed, 0, "{:?}", summary.errors);
    let log = model::log::read_log_file(&dir.join("log.csv")).unwrap();
    assert_eq!(log.rows.len(), CONNECTIONS);
    // Every worker opened its own connection (none was idle to reuse) and
    // all were answered by one batch: 5,000 connections held at once.
    let opened = log
        .rows
        .iter()
        .filter(|r| r.connect_ms.unwrap_or(0.0) > 0.0)
        .count();
    assert_eq!(opened, CONNECTIONS);
    assert_eq!(summary.server_batch_size_mean, Some(CONNECTIONS as f64));
    if let Some(kib) = peak_rss_kib() {
        eprintln!(
            "peak RSS of the test process (client and server, 5,000 connections each side): {} MiB",
            kib / 1024
        );
        assert!(kib < 1024 * 1024, "peak RSS {kib} KiB");
    }
}
