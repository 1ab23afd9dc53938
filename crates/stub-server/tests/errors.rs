//! Every way a request can be wrong gets its status and error code, and the
//! side endpoints answer.

mod common;

use common::*;
use hyper::{Method, StatusCode};

#[tokio::test]
async fn bad_bodies_get_400_with_their_code() {
    let server = start(config());
    let c = client();
    let too_many: Vec<String> = (0..=stub_server::MAX_ITEMS_PER_REQUEST)
        .map(|i| i.to_string())
        .collect();
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "malformed_json"),
        (
            r#"{"model":"example-model","input":5}"#.into(),
            "malformed_json",
        ),
        (r#"{"input":"a"}"#.into(), "missing_field"),
        (r#"{"model":"example-model"}"#.into(), "missing_field"),
        (
            r#"{"model":"example-model","input":"a","inputs":["b"]}"#.into(),
            "conflicting_fields",
        ),
        (
            r#"{"model":"example-model","inputs":[]}"#.into(),
            "empty_inputs",
        ),
        (batch(&too_many), "too_many_items"),
    ];
    for (body, code) in cases {
        let reply = post(&c, &server.url(), body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.error_code(), code, "{body}");
        assert!(!reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .is_empty());
    }
}

#[tokio::test]
async fn unknown_model_and_path_get_404() {
    let mut cfg = config();
    cfg.models = vec!["a".into(), "b".into()];
    let server = start(cfg);
    let c = client();
    let reply = post(
        &c,
        &server.url(),
        r#"{"model":"example-model","input":"x"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error_code(), "unknown_model");
    let reply = post(&c, &server.url(), r#"{"model":"b","input":"x"}"#).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json()["output"],
        model::output::expected_output("b", "x")
    );
    let reply = get(&c, &format!("{}/v3/infer", base_url(&server))).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error_code(), "not_found");
    // Under /v2 the KServe routes answer as Triton does: {"error": "..."}.
    let reply = get(&c, &format!("{}/v2/infer", base_url(&server))).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["error"], "Not Found: no route /v2/infer");
    let reply = get(
        &c,
        &format!("{}/v2/models/example-model", base_url(&server)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.json()["error"],
        "Request for unknown model: 'example-model' is not found"
    );
}

#[tokio::test]
async fn wrong_method_gets_405_with_allow() {
    let server = start(config());
    let c = client();
    let reply = get(&c, &server.url()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.error_code(), "method_not_allowed");
    assert_eq!(reply.headers["allow"], "POST");
    let reply = send(
        &c,
        Method::POST,
        &format!("{}/healthz", base_url(&server)),
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "GET");
}

#[tokio::test]
async fn body_over_the_limit_gets_413() {
    let mut cfg = config();
    cfg.max_body_bytes = 1000;
    let server = start(cfg);
    let c = client();
    let big = single(&"x".repeat(2000));
    let reply = post(&c, &server.url(), big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.error_code(), "body_too_large");
    // A body that fits still works on a fresh request.
    let reply = post(&c, &server.url(), single("small")).await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// A chunked body of `0` chunks of 100 bytes, with no Content-Length.
struct Chunks(u32);

impl hyper::body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(None);
        }
        self.0 -= 1;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(bytes::Bytes::from(
            vec![b' '; 100],
        )))))
    }
}

#[tokio::test]
async fn streamed_body_over_the_limit_gets_413() {
    // No Content-Length: the limit must hold while reading a chunked body.
    let mut cfg = config();
    cfg.max_body_bytes = 1000;
    let server = start(cfg);
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let request = hyper::Request::post(server.url())
        .body(Chunks(100))
        .unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), c.request(request))
        .await
        .expect("hung")
        .expect("response");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn full_queue_gets_503_with_retry_after() {
    let _timing = timing_lock().await;
    let mut cfg = timed_config(1, 300.0, 0.0);
    cfg.max_queue = 2;
    let server = start(cfg);
    let c = client();
    let url = server.url();
    // One request runs, two fill the queue, the fourth is refused.
    let mut running = Vec::new();
    for i in 0..3 {
        let (task_client, task_url) = (c.clone(), url.clone());
        running.push(tokio::spawn(async move {
            post(&task_client, &task_url, single(&i.to_string())).await
        }));
        // The first must be running (its batch started) before the others queue.
        let needle = if i == 0 {
            "stub_queue_wait_seconds_count 1\n".to_owned()
        } else {
            format!("stub_queue_depth_items {i}\n")
        };
        wait_for_metric(&c, &server, &needle).await;
    }
    let reply = post(&c, &url, single("one too many")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.error_code(), "queue_full");
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    // Also too many items for the queue at all: 400, since a retry cannot help.
    let reply = post(&c, &url, batch(&["a".into(), "b".into(), "c".into()])).await;
    assert_eq!(reply.error_code(), "too_many_items");
    for r in running {
        assert_eq!(r.await.unwrap().status, StatusCode::OK);
    }
    let metrics = get(&c, &format!("{}/metrics", base_url(&server))).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        text.contains("stub_requests_total{code=\"503\"} 1"),
        "{text}"
    );
}

/// Polls /metrics until it contains `line` (bounded).
async fn wait_for_metric(c: &HttpClient, server: &stub_server::RunningServer, line: &str) {
    let url = format!("{}/metrics", base_url(server));
    for _ in 0..500 {
        let reply = get(c, &url).await;
        if String::from_utf8_lossy(&reply.body).contains(line) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("/metrics never showed {line:?}");
}

#[tokio::test]
async fn healthz_and_metrics_answer() {
    let server = start(config());
    let c = client();
    let reply = get(&c, &format!("{}/healthz", base_url(&server))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), serde_json::json!({"status": "ok"}));
    post(&c, &server.url(), batch(&["a".into(), "b".into()])).await;
    let reply = get(&c, &format!("{}/metrics", base_url(&server))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    for needle in [
        "stub_requests_total{code=\"200\"} 2",
        "stub_items_total 2",
        "stub_batches_total 1",
        "stub_batch_size_items_bucket{le=\"2\"} 1",
        "stub_queue_depth_items 0",
        "stub_queue_wait_seconds_count 2",
        "stub_service_time_seconds_count 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}
