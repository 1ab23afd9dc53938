//! A body over the limit is refused with 413, and every client reads that
//! 413: also one that writes its whole body before reading anything (as
//! Python's http.client and requests do), which a server closing at once
//! would answer with a reset (BrokenPipeError) instead. The server reads
//! and discards what such a client still sends, within a bound in bytes
//! and time (a lingering close, as nginx does), then closes.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// What the client sends: 8 MiB, eight times the default limit.
const BODY_BYTES: usize = 8 << 20;

fn connect(server: &stub_server::RunningServer) -> TcpStream {
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Writes `head` and the whole 8 MiB `body` (in 64 KiB writes, framed
/// as chunks when `chunked`) before reading a byte, then reads the
/// response to the end. Panics if any write fails.
fn write_everything_then_read(
    server: &stub_server::RunningServer,
    head: &str,
    chunked: bool,
) -> String {
    let mut stream = connect(server);
    stream.write_all(head.as_bytes()).expect("head written");
    let block = vec![b'x'; 64 << 10];
    for i in 0..BODY_BYTES / block.len() {
        let result = if chunked {
            write!(stream, "{:x}\r\n", block.len())
                .and_then(|()| stream.write_all(&block))
                .and_then(|()| stream.write_all(b"\r\n"))
        } else {
            stream.write_all(&block)
        };
        result.unwrap_or_else(|e| {
            panic!(
                "write failed after {} KiB of the body: {e} ({:?})",
                i * 64,
                e.kind()
            )
        });
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n").expect("last chunk written");
    }
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("response read to the end");
    String::from_utf8(response).expect("UTF-8 response")
}

fn json_body(response: &str) -> serde_json::Value {
    let (_, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {response:?}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

#[test]
fn a_client_that_writes_the_whole_body_first_reads_the_413() {
    let server = start(config());
    let head = format!(
        "POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {BODY_BYTES}\r\n\r\n"
    );
    let response = write_everything_then_read(&server, &head, false);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{response}"
    );
    let error = &json_body(&response)["error"];
    assert_eq!(error["code"], "body_too_large");
    assert!(
        error["message"].as_str().unwrap().contains("1048576 bytes"),
        "{error}"
    );
    // The server is none the worse: a request that fits is answered.
    let reply = http_exchange(
        &server,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[test]
fn a_chunked_body_over_the_limit_written_first_gets_the_413_too() {
    // No Content-Length: the server reads up to the limit, then refuses.
    let server = start(config());
    let response = write_everything_then_read(
        &server,
        "POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        true,
    );
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert_eq!(json_body(&response)["error"]["code"], "body_too_large");
}

#[test]
fn the_kserve_route_lingers_the_same_way() {
    let server = start(config());
    let head = format!(
        "POST /v2/models/example-model/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {BODY_BYTES}\r\n\r\n"
    );
    let response = write_everything_then_read(&server, &head, false);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let error = json_body(&response)["error"].as_str().unwrap().to_owned();
    assert!(error.contains("over the limit"), "{error}");
}

#[test]
fn a_client_that_never_stops_sending_is_closed_after_the_bound() {
    let server = start(config());
    let mut stream = connect(&server);
    stream
        .write_all(b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1099511627776\r\n\r\n")
        .unwrap();
    let block = vec![0u8; 64 << 10];
    let started = Instant::now();
    let mut sent: u64 = 0;
    let error = loop {
        match stream.write(&block) {
            Ok(n) => sent += n as u64,
            Err(e) => break e,
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still sending after {sent} bytes and a minute"
        );
    };
    assert!(
        matches!(
            error.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        ),
        "{error} ({:?})",
        error.kind()
    );
    // It was drained, up to the bound, not closed at once; and the bound
    // held: what was sent beyond it is at most what the sockets buffer.
    let bound = stub_server::LINGER_MAX_BYTES;
    assert!(
        sent >= bound,
        "closed after {sent} bytes, before the bound {bound}"
    );
    assert!(
        sent <= bound + (64 << 20),
        "{sent} bytes accepted, far past the bound {bound}"
    );
    assert!(
        started.elapsed() < stub_server::LINGER_MAX_TIME + Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn shutdown_does_not_wait_for_a_lingering_client() {
    let server = start(config());
    let mut stream = connect(&server);
    stream
        .write_all(b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1099511627776\r\n\r\n")
        .unwrap();
    stream.write_all(&[b'x'; 64 << 10]).unwrap();
    // The 413 and then the server's end of the stream: it now lingers.
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    // A byte every 50 ms: never idle long enough, never enough bytes, to
    // end the lingering; only the shutdown (or the time bound) can.
    let trickle = std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if stream.write_all(b"x").is_err() {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    });
    std::thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    server.shutdown();
    assert!(
        stopping.elapsed() < Duration::from_millis(1500),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    let closed_at = trickle
        .join()
        .unwrap()
        .expect("the connection was never closed");
    assert!(
        closed_at > stopping,
        "closed {:?} before the shutdown: it did not linger",
        stopping - closed_at
    );
}

/// One exchange on a fresh connection; the whole response.
fn http_exchange(server: &stub_server::RunningServer, request: &str) -> String {
    let mut stream = connect(server);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
