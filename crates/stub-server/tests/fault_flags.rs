//! The fault-injection flags of the `stub-server` binary: out-of-range
//! values exit 2 saying what is allowed; valid ones inject the faults.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

#[test]
fn bad_fault_flags_exit_2_with_what_is_allowed() {
    let cases: [(&[&str], &str); 6] = [
        (&["--fault-error-rate", "1.5"], "probability from 0 to 1"),
        (&["--fault-corrupt-rate", "-0.1"], "probability from 0 to 1"),
        (&["--fault-reset-rate", "NaN"], "--fault-reset-rate"),
        (
            &["--fault-truncate-rate", "0.7", "--fault-reset-rate", "0.7"],
            "add up to at most 1",
        ),
        (&["--fault-stall-rate", "0.1"], "at least 1 ms"),
        (&["--fault-stall-ms", "9999999"], "0 to 600000"),
    ];
    for (args, needle) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_stub-server"))
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn every_request_gets_the_injected_error() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stub-server"))
        .args(["--profile", "zero-cost", "--bind", "127.0.0.1:0"])
        .args(["--fault-error-rate", "1", "--fault-seed", "9"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap()
        .to_owned();
    let body = br#"{"model":"example-model","input":"hi"}"#;
    for _ in 0..4 {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            stream,
            "POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(body).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            (response.starts_with("HTTP/1.1 500") && response.contains("\"injected_error\""))
                || (response.starts_with("HTTP/1.1 503")
                    && response.contains("\"injected_unavailable\"")
                    && response.to_ascii_lowercase().contains("retry-after")),
            "{response}"
        );
    }
    // Health checks never draw a fault.
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let _ = child.kill();
    let _ = child.wait();
}
