//! Safety defaults: loopback binding, bounded bodies, headers and queues.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use stub_server::{ServerConfig, PROFILES};

#[test]
fn every_profile_binds_loopback_and_bounds_body_and_queue() {
    for name in PROFILES {
        let c = ServerConfig::profile(name).unwrap();
        assert!(c.bind.ip().is_loopback(), "{name} binds {}", c.bind);
        assert!(
            c.max_body_bytes <= 1024 * 1024,
            "{name} body limit {}",
            c.max_body_bytes
        );
        assert!(c.max_queue <= 100_000, "{name} queue bound {}", c.max_queue);
    }
}

/// Sends raw bytes and returns the status line of the answer, or "" when the
/// server closed the connection without one.
fn raw_status_line(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The server may close while we are still writing; that is a refusal too.
    let _ = stream.write_all(request);
    // Read only up to the end of the status line: the verdict is all we need.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n") && matches!(stream.read(&mut byte), Ok(1)) {
        answer.push(byte[0]);
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_and_the_server_keeps_serving() {
    let server = start(config());
    let addr = server.addr;
    let mut request = b"POST /v1/infer HTTP/1.1\r\nHost: localhost\r\nX-Padding: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 256 * 1024));
    request.extend(b"\r\nContent-Length: 2\r\n\r\n{}");
    let status = tokio::task::spawn_blocking(move || raw_status_line(addr, &request))
        .await
        .unwrap();
    assert!(
        status.starts_with("HTTP/1.1 431"),
        "256 KiB of headers got {status:?}"
    );
    let reply = post(&client(), &server.url(), single("still serving?")).await;
    assert_eq!(
        reply.status, 200,
        "the server must keep serving after refusing a hostile request"
    );
}
