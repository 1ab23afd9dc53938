//! Client paths the other suites do not reach: HTTP/2 cleartext (hyper's
//! client in `client.rs`), JSONL payloads (`payloads.rs`), and chunked
//! responses over the lean HTTP/1.1 exchange, each end to end over
//! loopback with every output verified.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use loadgen::{ConnectionMode, LoadConfig, PayloadSource};
use model::output::{expected_output, output_digest};
use model::wire::{to_json_bytes, BatchResponse, InferRequest, SingleResponse};

async fn run_logged(config: LoadConfig) -> (loadgen::RunSummary, Vec<model::log::LogRow>) {
    let log = config.log_path.clone().unwrap();
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    (summary, model::log::read_log_file(&log).unwrap().rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cleartext_multiplexes_pooled_requests_and_opens_one_per_request_otherwise() {
    let server = common::simulator("zero-cost");
    let url = format!("http://{}/v1/infer", server.addr);
    for (connection, batch_size) in [
        (ConnectionMode::Pooled, 1),
        (ConnectionMode::Pooled, 4),
        (ConnectionMode::PerRequest, 1),
    ] {
        let dir = common::temp_dir("h2c");
        let config = LoadConfig {
            http2: true,
            connection,
            batch_size,
            batch_wait_ms: 20,
            requests: Some(40),
            concurrency: 8,
            ..common::config(&url, &dir)
        };
        let (summary, rows) = run_logged(config).await;
        assert_eq!((summary.succeeded, summary.failed), (40, 0), "{summary:?}");
        assert!(summary.verified && summary.http2);
        assert_eq!(summary.protocol, "HTTP/2 cleartext (prior knowledge)");
        let opened: std::collections::HashSet<u64> = rows
            .iter()
            .filter(|r| r.connect_ms.unwrap_or(0.0) > 0.0)
            .filter_map(|r| r.batch_id)
            .collect();
        match connection {
            // One shared connection carries every request: HTTP/2 it is.
            ConnectionMode::Pooled => assert_eq!(opened.len(), 1, "{opened:?}"),
            ConnectionMode::PerRequest => {
                assert_eq!(opened.len() as u64, summary.http_requests)
            }
        }
        assert!(
            rows.iter().all(|r| r.service_ms.is_some()),
            "Server-Timing read over h2"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_payloads_are_cycled_with_their_own_models() {
    let mut config = stub_server::ServerConfig::profile("zero-cost").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.models = vec!["example-model".into(), "m2".into()];
    let server = stub_server::spawn(config).unwrap();
    let dir = common::temp_dir("jsonl");
    let file = dir.join("payloads.jsonl");
    std::fs::write(
        &file,
        "{\"input\": \"first\"}\n\n{\"input\": \"second \\\"quoted\\\"\", \"model\": \"m2\"}\n{\"input\": \"third\", \"model\": null}\n",
    )
    .unwrap();
    let lines = [
        ("example-model", "first"),
        ("m2", "second \"quoted\""),
        ("example-model", "third"),
    ];
    for batch_size in [1, 3] {
        let config = LoadConfig {
            payloads: PayloadSource::File(file.clone()),
            requests: Some(9),
            concurrency: 3,
            batch_size,
            batch_wait_ms: 20,
            ..common::config(&format!("http://{}/v1/infer", server.addr), &dir)
        };
        let (summary, rows) = run_logged(config).await;
        assert_eq!((summary.succeeded, summary.failed), (9, 0), "{summary:?}");
        for row in rows {
            let (model, input) = lines[(row.request_id % 3) as usize];
            let expected = output_digest(expected_output(model, input).as_bytes());
            assert_eq!(
                row.output_digest.as_deref(),
                Some(expected.as_str()),
                "{row:?}"
            );
        }
    }
    // A bad line fails the run before any request, naming the line.
    let served = common::served(server.addr);
    std::fs::write(&file, "{\"input\": \"ok\"}\n{\"text\": \"no input\"}\n").unwrap();
    let config = LoadConfig {
        payloads: PayloadSource::File(file.clone()),
        ..common::config(&format!("http://{}/v1/infer", server.addr), &dir)
    };
    let err = loadgen::prepare(config)
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2: no string field `input`"), "{err}");
    // Only the /metrics poll itself was answered since.
    assert_eq!(common::served(server.addr), served + 1, "nothing was sent");
}

/// A simulator-shaped server whose bodies go out chunked: no length, in
/// pieces of `piece` bytes, one frame each.
fn chunked_server(
    piece: usize,
) -> (
    std::net::SocketAddr,
    std::thread::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => return,
                };
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let json = match InferRequest::parse(&body) {
                            Ok(InferRequest::Single(r)) => to_json_bytes(&SingleResponse {
                                output: expected_output(&r.model, &r.input),
                                model: r.model,
                            }),
                            Ok(InferRequest::Batch(r)) => to_json_bytes(&BatchResponse {
                                outputs: r.inputs.iter().map(|i| expected_output(&r.model, i)).collect(),
                                model: r.model,
                            }),
                            Err(_) => b"{}".to_vec(),
                        };
                        let body = Pieces {
                            chunks: json.chunks(piece).map(Bytes::copy_from_slice).collect(),
                            paused: false,
                        };
                        Ok::<_, hyper::Error>(hyper::Response::new(body))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    (addr, thread, stop)
}

/// A body of known pieces and no declared length, so hyper frames each
/// piece as one chunk; it pauses (waking itself) between pieces so they
/// tend to leave in separate writes too.
struct Pieces {
    chunks: std::collections::VecDeque<Bytes>,
    paused: bool,
}

impl hyper::body::Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if !this.paused && !this.chunks.is_empty() {
            this.paused = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        this.paused = false;
        std::task::Poll::Ready(this.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_responses_are_read_whole_and_verified() {
    for piece in [1, 7, 4096] {
        let (addr, thread, stop) = chunked_server(piece);
        let dir = common::temp_dir("chunked");
        for (connection, batch_size) in
            [(ConnectionMode::Pooled, 1), (ConnectionMode::PerRequest, 3)]
        {
            let config = LoadConfig {
                connection,
                batch_size,
                batch_wait_ms: 20,
                requests: Some(12),
                concurrency: 3,
                ..common::config(&format!("http://{addr}/v1/infer"), &dir)
            };
            let (summary, _) = run_logged(config).await;
            assert_eq!(
                (summary.succeeded, summary.failed),
                (12, 0),
                "piece {piece}: {summary:?}"
            );
            assert!(summary.verified);
        }
        let _ = stop.send(());
        thread.join().unwrap();
    }
}
