//! The `stub-server` binary: announces its address, serves, stops cleanly
//! on SIGTERM, and refuses bad flags with exit code 2.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_stub-server");

/// Kills the child if a test fails before it exits.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns it with the first stdout line (bounded wait).
fn start(args: &[&str]) -> (Guard, String) {
    let mut child = Command::new(BINARY)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let guard = Guard(child);
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a first line within 10 s");
    (guard, line.trim_end().to_owned())
}

/// One HTTP/1.1 exchange over a plain socket; returns the whole response.
fn http(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn announces_serves_and_exits_zero_on_sigterm() {
    let (mut guard, line) = start(&["--bind", "127.0.0.1:0", "--base-ms", "5", "--jitter", "0"]);
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line {line:?}"));
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{line}"
    );
    let health = http(
        addr,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with(r#"{"status":"ok"}"#), "{health}");
    let body = r#"{"model":"example-model","input":"hi"}"#;
    let infer = http(
        addr,
        &format!(
            "POST /v1/infer HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(infer.starts_with("HTTP/1.1 200"), "{infer}");
    assert!(
        infer.to_ascii_lowercase().contains("x-batch-size: 1"),
        "{infer}"
    );
    let pid = guard.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = wait_exit(&mut guard.0, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn bad_flags_exit_2_saying_what_is_allowed() {
    let cases: [(&[&str], &str); 6] = [
        (&["--workers", "0"], "workers"),
        (&["--jitter", "3"], "jitter"),
        (&["--profile", "nope"], "placeholder"),
        (&["--workers", "many"], "workers"),
        (
            &["--tokenizer", "/nonexistent/tokenizer.json"],
            "--tokenizer /nonexistent/tokenizer.json: no such file",
        ),
        (&["--kv-cache-tokens", "3"], "kv-cache-tokens"),
    ];
    for (args, needle) in cases {
        let output = Command::new(BINARY)
            .args(args)
            .output()
            .expect("binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let output = Command::new(BINARY)
        .args(["--workers", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("from 1"), "{stderr}");
}

#[test]
fn help_lists_every_flag() {
    let output = Command::new(BINARY)
        .arg("--help")
        .output()
        .expect("binary runs");
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--profile",
        "--workers",
        "--base-ms",
        "--per-item-ms",
        "--jitter",
        "--seed",
        "--max-batch",
        "--dynamic-batching",
        "--batch-window-ms",
        "--max-queue",
        "--max-body-bytes",
        "--models",
        "--bind",
        "--tokenizer",
        "--kv-block-tokens",
        "--prefix-cache-blocks",
        "--kv-cache-tokens",
        "--sse-stamps",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let (mut guard, line) = start(&[
        "--bind",
        "127.0.0.1:0",
        "--base-ms",
        "300",
        "--jitter",
        "0",
        "--workers",
        "1",
    ]);
    let addr = line
        .strip_prefix("listening on http://")
        .expect("address line")
        .to_owned();
    let body = r#"{"model":"example-model","input":"slow"}"#;
    let request = format!(
        "POST /v1/infer HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let client_addr = addr.clone();
    let in_flight = std::thread::spawn(move || http(&client_addr, &request));
    // Wait (bounded) until the batch has started, then ask the server to stop.
    let mut started = false;
    for _ in 0..500 {
        let metrics = http(
            &addr,
            "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        );
        if metrics.contains("stub_queue_wait_seconds_count 1\n") {
            started = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(started, "the request never started");
    let pid = guard.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let response = in_flight.join().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let status = wait_exit(&mut guard.0, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
}
