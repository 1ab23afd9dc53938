//! `-H` through the binary: a header that frames the message or manages
//! the connection is refused before any request, with the reason and what
//! is allowed; the request a server reads carries exactly one `Host` and
//! one `Content-Length`, whatever `-H` said.

mod common;

use common::loadgen;
use common::raw_http::{Close, Conduct, RawServer};

fn server() -> RawServer {
    RawServer::start(Conduct {
        keep_alive: "",
        close: Close::Never,
    })
}

/// The lines of a request head whose header name is `name`.
fn lines_named<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
        .collect()
}

#[test]
fn framing_headers_are_refused_before_any_request() {
    let server = server();
    let url = server.url();
    for (header, why) in [
        (
            "Content-Length: 5",
            "sets Content-Length from the size of each body",
        ),
        ("Transfer-Encoding: chunked", "never chunked"),
        ("Connection: close", "--connection pooled|per-request"),
        ("Keep-Alive: timeout=5", "--connection pooled|per-request"),
        ("Upgrade: websocket", "use --http2"),
        ("TE: trailers", "no transfer coding"),
    ] {
        let out = loadgen(&["--url", &url, "-n", "3", "-H", header]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{header}: {stderr}");
        assert!(stderr.contains(why), "{header}: {stderr}");
        assert!(
            stderr.contains("-H may set any other header"),
            "{header}: {stderr}"
        );
    }
    let out = loadgen(&[
        "--url",
        &url,
        "-n",
        "3",
        "--http2",
        "-H",
        "Host: example.test",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("with --http2 the host is the URL's"),
        "{stderr}"
    );
    assert_eq!(
        server.connections(),
        0,
        "a refused command line sent something"
    );
}

#[test]
fn a_request_carries_one_host_and_one_content_length() {
    let server = server();
    let url = server.url();
    // Host over HTTP/1.1 replaces the URL's; a default header (here
    // Content-Type) is replaced, not doubled.
    let out = loadgen(&[
        "--url",
        &url,
        "-n",
        "4",
        "-c",
        "2",
        "-H",
        "Host: example.test",
        "-H",
        "Content-Type: application/json; charset=utf-8",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heads = server.heads();
    assert_eq!(heads.len(), 4);
    for head in &heads {
        assert_eq!(lines_named(head, "host"), ["host: example.test"], "{head}");
        assert_eq!(lines_named(head, "content-length").len(), 1, "{head}");
        assert_eq!(
            lines_named(head, "content-type"),
            ["content-type: application/json; charset=utf-8"],
            "{head}"
        );
        assert!(lines_named(head, "transfer-encoding").is_empty(), "{head}");
    }
    // Without -H, the URL's host and port.
    let out = loadgen(&["--url", &url, "-n", "1"]);
    assert_eq!(out.status.code(), Some(0));
    let heads = server.heads();
    let host = format!("host: {}", server.addr);
    assert_eq!(lines_named(&heads[4], "host"), [host.as_str()]);
}
