//! The KServe v2 routes: Triton's messages and errors, statistics, and its
//! dynamic batcher's rules (requests stay whole; a full or preferred-size
//! batch leaves at once; otherwise it waits up to `max_queue_delay`).

mod common;

use std::time::Instant;

use common::*;
use hyper::StatusCode;
use model::output::expected_output;
use serde_json::{json, Value};

fn infer_url(server: &stub_server::RunningServer) -> String {
    format!("{}/v2/models/example-model/infer", base_url(server))
}

fn tensor(inputs: &[&str]) -> String {
    json!({"inputs": [{"name": "input", "shape": [inputs.len(), 1], "datatype": "BYTES", "data": inputs}]}).to_string()
}

#[tokio::test]
async fn health_metadata_config_and_infer_speak_kserve_v2() {
    let mut cfg = config();
    cfg.dynamic_batching = true;
    cfg.batch_window_ms = 2.0;
    cfg.preferred_batch_sizes = vec![4, 8];
    let server = start(cfg);
    let c = client();
    let base = base_url(&server);
    for path in [
        "/v2/health/ready",
        "/v2/health/live",
        "/v2/models/example-model/ready",
    ] {
        assert_eq!(
            get(&c, &format!("{base}{path}")).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    let meta = get(&c, &format!("{base}/v2/models/example-model"))
        .await
        .json();
    assert_eq!(
        meta["inputs"],
        json!([{"name": "input", "datatype": "BYTES", "shape": [-1, 1]}])
    );
    assert_eq!(meta["outputs"][0]["name"], "output");
    let config = get(&c, &format!("{base}/v2/models/example-model/config"))
        .await
        .json();
    assert_eq!(config["max_batch_size"], 32);
    assert_eq!(
        config["dynamic_batching"],
        json!({"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 2000})
    );
    let reply = post(&c, &infer_url(&server), tensor(&["a", "b\"c", "d"])).await;
    assert_eq!(reply.status, StatusCode::OK);
    let answer = reply.json();
    assert_eq!(answer["model_name"], "example-model");
    assert_eq!(answer["outputs"][0]["shape"], json!([3, 1]));
    let outputs: Vec<String> = ["a", "b\"c", "d"]
        .iter()
        .map(|i| expected_output("example-model", i))
        .collect();
    assert_eq!(answer["outputs"][0]["data"], json!(outputs));
}

#[tokio::test]
async fn bad_requests_get_tritons_errors() {
    let server = start(config());
    let c = client();
    let url = infer_url(&server);
    let cases: [(Value, &str); 6] = [
        (
            json!({"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]}),
            "unexpected inference input 'text' for model 'example-model'",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}),
            "inference input 'input' data-type is 'FP32', but model 'example-model' expects 'BYTES'",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]}]}),
            "unexpected shape for input 'input' for model 'example-model'. Expected [-1,1], got [2]",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [33, 1], "datatype": "BYTES", "data": vec!["x"; 33]}]}),
            "inference request batch-size must be <= 32 for 'example-model'",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [2, 1], "datatype": "BYTES", "data": ["x"]}]}),
            "unexpected number of string elements 1 for inference input 'input', expecting 2",
        ),
        (json!({"inputs": []}), "expected 1 inputs but got 0 inputs for model 'example-model'"),
    ];
    for (body, message) in cases {
        let reply = post(&c, &url, body.to_string()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.json()["error"], message, "{body}");
    }
    let reply = post(&c, &url, "{not json").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("failed to parse the request JSON"));
    let unknown = format!("{}/v2/models/other/infer", base_url(&server));
    let reply = post(&c, &unknown, tensor(&["x"])).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.json()["error"],
        "Request for unknown model: 'other' is not found"
    );
    let reply = get(&c, &format!("{}/v2/models/other/stats", base_url(&server))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json()["error"],
        "requested model 'other' is not available"
    );
    let reply = get(&c, &url).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    // Requests refused before the model are in no statistic, as in Triton.
    let stats = get(
        &c,
        &format!("{}/v2/models/example-model/stats", base_url(&server)),
    )
    .await
    .json();
    assert_eq!(
        stats["model_stats"][0]["inference_stats"]["fail"]["count"],
        0
    );
    assert_eq!(
        stats["model_stats"][0]["inference_stats"]["success"]["count"],
        0
    );
}

/// Sends `requests` (each a list of inputs) at once; returns each reply's
/// (latency ms, queue ms, executed batch size), in request order.
async fn at_once(
    server: &stub_server::RunningServer,
    requests: &[Vec<String>],
) -> Vec<(f64, f64, usize)> {
    let c = client();
    get(&c, &format!("{}/v2/health/ready", base_url(server))).await;
    let t0 = Instant::now();
    let tasks: Vec<_> = requests
        .iter()
        .map(|inputs| {
            let (c, url) = (c.clone(), infer_url(server));
            let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let body = tensor(&refs);
            tokio::spawn(async move {
                let reply = post(&c, &url, body).await;
                assert_eq!(reply.status, StatusCode::OK);
                (
                    t0.elapsed().as_secs_f64() * 1000.0,
                    reply.queue_ms(),
                    reply.batch_size(),
                )
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn singles(n: usize) -> Vec<Vec<String>> {
    (0..n).map(|i| vec![format!("item {i}")]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preferred_size_or_a_full_batch_leaves_without_waiting_the_delay() {
    let _timing = timing_lock().await;
    // One instance, a long delay (300 ms): only the rules can make a batch
    // leave early.
    let mut cfg = timed_config(1, 20.0, 0.0);
    cfg.dynamic_batching = true;
    cfg.batch_window_ms = 300.0;
    cfg.preferred_batch_sizes = vec![4];
    let server = start(cfg.clone());
    for (_, queue_ms, batch) in at_once(&server, &singles(4)).await {
        assert_eq!(batch, 4);
        assert!(queue_ms < 100.0, "a preferred batch waited {queue_ms} ms");
    }
    drop(server);
    cfg.preferred_batch_sizes = Vec::new();
    cfg.max_batch = 4;
    let server = start(cfg);
    for (_, queue_ms, batch) in at_once(&server, &singles(4)).await {
        assert_eq!(batch, 4);
        assert!(queue_ms < 100.0, "a full batch waited {queue_ms} ms");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_stay_whole_a_batch_that_cannot_grow_leaves_and_a_partial_one_waits() {
    let _timing = timing_lock().await;
    let mut cfg = timed_config(1, 10.0, 0.0);
    cfg.dynamic_batching = true;
    cfg.batch_window_ms = 60.0;
    cfg.max_batch = 4;
    let server = start(cfg);
    // Two requests of 3: together over max_batch 4, so neither is split to
    // fill a batch; each runs as a batch of 3.
    let three = |tag: &str| (0..3).map(|i| format!("{tag} {i}")).collect::<Vec<_>>();
    let replies = at_once(&server, &[three("a"), three("b")]).await;
    assert!(
        replies.iter().all(|&(_, _, batch)| batch == 3),
        "{replies:?}"
    );
    // The first batch is as full as it can get (the next request does not
    // fit), so it leaves at once; the second is alone and partial, so it
    // waits the delay, counted from its own arrival.
    let mut queues: Vec<f64> = replies.iter().map(|r| r.1).collect();
    queues.sort_by(f64::total_cmp);
    assert!(queues[0] < 15.0, "{replies:?}");
    assert!((queues[1] - 60.0).abs() < 15.0, "{replies:?}");
}
