//! Pooled HTTP/1.1 connections against servers that close kept-alive
//! connections: right after a response that said keep-alive, on the next
//! request without answering it, or after the `Keep-Alive: max` they
//! announced. No request may be lost to a connection the server closed,
//! none may be processed twice, and every re-send is in the log.

mod common;

use common::raw_http::{Close, Conduct, RawServer};
use loadgen::{ConnectionMode, LoadConfig};
use model::log::LogRow;

/// `requests` requests at `concurrency` over pooled connections.
fn config(url: &str, dir: &std::path::Path, requests: u64, concurrency: usize) -> LoadConfig {
    LoadConfig {
        requests: Some(requests),
        concurrency,
        connection: ConnectionMode::Pooled,
        ..common::config(url, dir)
    }
}

async fn run(config: LoadConfig) -> (loadgen::RunSummary, Vec<LogRow>) {
    let log = config.log_path.clone().unwrap();
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    (summary, model::log::read_log_file(&log).unwrap().rows)
}

/// Every row succeeded, each re-sent at most once, and the summary's
/// `retries` is the log's.
fn all_succeeded(summary: &loadgen::RunSummary, rows: &[LogRow], requests: u64) -> u64 {
    assert_eq!(
        (summary.succeeded, summary.failed),
        (requests, 0),
        "{:?}",
        summary.errors
    );
    assert!(rows.iter().all(|r| r.ok && r.retries <= 1), "{rows:?}");
    let retries: u64 = rows.iter().map(|r| u64::from(r.retries)).sum();
    assert_eq!(summary.retries, retries);
    retries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_after_each_response_loses_no_request() {
    for concurrency in [2, 6] {
        let server = RawServer::start(Conduct {
            keep_alive: "timeout=5, max=100",
            close: Close::AfterResponse,
        });
        let dir = common::temp_dir("keep-alive-close");
        let (summary, rows) = run(config(&server.url(), &dir, 30, concurrency)).await;
        all_succeeded(&summary, &rows, 30);
        // Each request was read once: a close seen in time sent it on a new
        // connection, a close seen late sent it again there; either way
        // each request opened exactly one connection.
        assert_eq!(server.heads().len(), 30, "-c {concurrency}");
        assert_eq!(summary.connections_opened, 30, "-c {concurrency}");
        assert_eq!(server.connections(), 30, "-c {concurrency}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_server_closed_on_unanswered_goes_out_again() {
    for concurrency in [2, 6] {
        let server = RawServer::start(Conduct {
            keep_alive: "timeout=5, max=100",
            close: Close::OnNextRequest,
        });
        let dir = common::temp_dir("keep-alive-next");
        let (summary, rows) = run(config(&server.url(), &dir, 30, concurrency)).await;
        let retries = all_succeeded(&summary, &rows, 30);
        // A connection looks alive until the server reads the next request
        // on it and closes it: every reuse is re-sent.
        assert!(retries > 0, "-c {concurrency}: no retries");
        assert_eq!(server.heads().len() as u64, 30 + retries);
        for row in rows.iter().filter(|r| r.retries > 0) {
            // The re-send paid for a new connection, and its latency runs
            // from the request's start, over both attempts.
            assert!(row.connect_ms.is_some_and(|ms| ms > 0.0), "{row:?}");
            assert!(row.latency_ms >= row.connect_ms.unwrap(), "{row:?}");
        }
        assert_eq!(summary.connections_opened, 30);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_max_is_honoured() {
    // cpp-httplib's way: the same `max` on every response, the connection
    // closed once that many requests came.
    let server = RawServer::start(Conduct {
        keep_alive: "timeout=5, max=3",
        close: Close::AfterRequests(3),
    });
    let dir = common::temp_dir("keep-alive-max");
    let (summary, rows) = run(config(&server.url(), &dir, 10, 1)).await;
    let retries = all_succeeded(&summary, &rows, 10);
    assert_eq!((server.over_limit(), retries), (0, 0));
    // 3 + 3 + 3 + 1 requests.
    assert_eq!(summary.connections_opened, 4);
}

/// An HTTP/2 server (prior knowledge) that answers one request per
/// connection correctly, then sends GOAWAY and closes once that stream is
/// done: the pooled HTTP/2 connection goes away under the client.
struct GoAwayServer {
    addr: std::net::SocketAddr,
    connections: std::sync::Arc<std::sync::atomic::AtomicU64>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn go_away_server() -> GoAwayServer {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let counted = connections.clone();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    _ = &mut stopped => return,
                };
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let answered = Arc::new(tokio::sync::Notify::new());
                    let notify = answered.clone();
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let notify = notify.clone();
                            async move {
                                let body = req.into_body().collect().await?.to_bytes();
                                let request = model::wire::InferRequest::parse(&body).unwrap();
                                let model::wire::InferRequest::Single(single) = request else {
                                    panic!("a batch");
                                };
                                let output =
                                    model::output::expected_output(&single.model, &single.input);
                                let json =
                                    model::wire::to_json_bytes(&model::wire::SingleResponse {
                                        model: single.model,
                                        output,
                                    });
                                notify.notify_one();
                                Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(
                                    json,
                                ))))
                            }
                        },
                    );
                    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => return,
                        () = answered.notified() => {}
                    }
                    // GOAWAY: streams already open finish, no new one starts.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                });
            }
        });
    });
    GoAwayServer {
        addr,
        connections,
        _stop: stop,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_http2_connection_that_goes_away_loses_no_request() {
    let server = go_away_server();
    let dir = common::temp_dir("keep-alive-goaway");
    let url = format!("http://{}/v1/infer", server.addr);
    let config = LoadConfig {
        http2: true,
        ..config(&url, &dir, 20, 1)
    };
    let (summary, rows) = run(config).await;
    all_succeeded(&summary, &rows, 20);
    // The shared connection really went away and was replaced (a graceful
    // GOAWAY lets the streams opened before it finish, so a connection may
    // carry more than one request).
    let connections = server.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(connections > 1, "{connections} connections");
    assert_eq!(summary.connections_opened, connections);
}
