//! SIGINT and SIGTERM to the `loadgen` binary mid-run: it stops issuing,
//! lets in-flight requests finish, and leaves a complete CSV and JSON of
//! what was measured (exit 1: the run did not finish).
#![cfg(unix)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stub_server::ServerConfig;

fn interrupt_mid_run(signal: libc::c_int, name: &str) {
    let mut config = ServerConfig::profile("placeholder").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.service.base_ms = 20.0;
    config.service.per_item_ms = 0.0;
    config.workers = 4;
    let server = stub_server::spawn(config).unwrap();
    let dir = common::temp_dir(name);
    let (csv, json) = (dir.join("log.csv"), dir.join("summary.json"));
    let child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", &server.url(), "-n", "100000", "-c", "4", "-q"])
        .arg("-o")
        .arg(&csv)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-run: the server has answered some requests (not a sleep for
    // readiness: a poll of a condition, with a deadline).
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::served(server.addr) < 20 {
        assert!(Instant::now() < deadline, "loadgen never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{name}: {stdout}\n{stderr}");
    assert!(stderr.contains("signal received"), "{stderr}");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], true, "{summary}");
    let total = summary["total"].as_u64().unwrap();
    assert!((1..100_000).contains(&total), "{summary}");
    assert_eq!(
        summary["succeeded"].as_u64().unwrap() + summary["failed"].as_u64().unwrap(),
        total
    );
    // Everything measured is in the log, and the log parses to the end.
    let log = model::log::read_log_file(&csv).unwrap();
    assert_eq!(log.rows.len() as u64, total);
    let succeeded = log.rows.iter().filter(|r| r.ok).count() as u64;
    assert_eq!(succeeded, summary["succeeded"].as_u64().unwrap());
    // In-flight requests were let finish within the grace period.
    assert!(
        log.rows.iter().all(|r| r.ok || r.error == "interrupted"),
        "{:?}",
        log.rows.iter().find(|r| !r.ok)
    );
}

#[test]
fn sigterm_flushes_the_log_and_the_partial_summary() {
    interrupt_mid_run(libc::SIGTERM, "sigterm");
}

#[test]
fn sigint_flushes_the_log_and_the_partial_summary() {
    interrupt_mid_run(libc::SIGINT, "sigint");
}
