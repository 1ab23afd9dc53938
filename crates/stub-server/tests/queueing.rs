//! The simulated service honours its cost model: FIFO queueing over the
//! workers, batch cost and outputs, dynamic batching and its window, seeded
//! jitter, cancellation, and HTTP/2 cleartext.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::StatusCode;
use model::output::expected_output;
use stub_server::ServiceTimeModel;

/// Tolerance of completion times measured at the client, in ms.
const TOLERANCE_MS: f64 = 15.0;

/// Tolerance of one batch's reported execution time, in ms. The server
/// honours it to well under a ms (see `accuracy.rs`); this leaves room for a
/// debug build on a busy two-core machine.
const INFER_TOLERANCE_MS: f64 = 5.0;

/// Fires `n` single requests at once; returns (latency ms, reply), by latency.
async fn simultaneous(c: &HttpClient, url: &str, n: usize) -> Vec<(f64, Reply)> {
    // Open the connections first so connect time does not skew the start.
    let warm: Vec<_> = (0..n)
        .map(|_| {
            let (c, url) = (c.clone(), url.replace("/v1/infer", "/healthz"));
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    for w in warm {
        w.await.unwrap();
    }
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (c, url) = (c.clone(), url.to_owned());
            tokio::spawn(async move {
                let reply = post(&c, &url, single(&format!("request {i}"))).await;
                (t0.elapsed().as_secs_f64() * 1000.0, reply)
            })
        })
        .collect();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    done.sort_by(|a, b| a.0.total_cmp(&b.0));
    done
}

fn assert_near(what: &str, observed: &[f64], expected: &[f64], tolerance_ms: f64) {
    assert_eq!(observed.len(), expected.len());
    for (o, e) in observed.iter().zip(expected) {
        assert!(
            (o - e).abs() <= tolerance_ms,
            "{what}: observed {observed:?}, expected {expected:?} +- {tolerance_ms}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_serves_simultaneous_requests_in_fifo_order() {
    let _timing = timing_lock().await;
    let server = start(timed_config(1, 50.0, 0.0));
    let done = simultaneous(&client(), &server.url(), 5).await;
    let latencies: Vec<f64> = done.iter().map(|d| d.0).collect();
    assert_near(
        "completion",
        &latencies,
        &[50.0, 100.0, 150.0, 200.0, 250.0],
        TOLERANCE_MS,
    );
    // In completion order, each waited one more service time than the last.
    let queued: Vec<f64> = done.iter().map(|d| d.1.queue_ms()).collect();
    assert_near(
        "queue",
        &queued,
        &[0.0, 50.0, 100.0, 150.0, 200.0],
        TOLERANCE_MS,
    );
    for (_, reply) in &done {
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            (reply.infer_ms() - 50.0).abs() < INFER_TOLERANCE_MS,
            "infer {}",
            reply.infer_ms()
        );
        assert_eq!(reply.batch_size(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_serve_two_at_a_time() {
    let _timing = timing_lock().await;
    let server = start(timed_config(2, 50.0, 0.0));
    let done = simultaneous(&client(), &server.url(), 5).await;
    let latencies: Vec<f64> = done.iter().map(|d| d.0).collect();
    assert_near(
        "completion",
        &latencies,
        &[50.0, 50.0, 100.0, 100.0, 150.0],
        TOLERANCE_MS,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_returns_what_singles_would_at_batch_cost() {
    let _timing = timing_lock().await;
    let server = start(timed_config(1, 20.0, 3.0));
    let c = client();
    let inputs: Vec<String> = (0..7)
        .map(|i| format!("ticket {i}: app signs me out"))
        .collect();
    let reply = post(&c, &server.url(), batch(&inputs)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.batch_size(), 7);
    assert!(
        (reply.infer_ms() - (20.0 + 7.0 * 3.0)).abs() < INFER_TOLERANCE_MS,
        "infer {}",
        reply.infer_ms()
    );
    let body = reply.json();
    assert_eq!(body["model"], "example-model");
    let outputs = body["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), inputs.len());
    for (input, output) in inputs.iter().zip(outputs) {
        let one = post(&c, &server.url(), single(input)).await;
        assert_eq!(one.json()["output"], *output);
        assert_eq!(
            output.as_str().unwrap(),
            expected_output("example-model", input)
        );
        assert_eq!(one.batch_size(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_max_batch_runs_as_several_batches() {
    let _timing = timing_lock().await;
    let mut cfg = timed_config(1, 10.0, 1.0);
    cfg.max_batch = 4;
    let server = start(cfg);
    let inputs: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let reply = post(&client(), &server.url(), batch(&inputs)).await;
    assert_eq!(reply.status, StatusCode::OK);
    // Chunks of 4, 4 and 2 run one after another; the largest is reported.
    assert_eq!(reply.batch_size(), 4);
    assert!(
        (reply.queue_ms() - 28.0).abs() < 5.0,
        "queue {}",
        reply.queue_ms()
    );
    assert_eq!(reply.json()["outputs"].as_array().unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_batching_gathers_concurrent_requests() {
    let _timing = timing_lock().await;
    let mut cfg = timed_config(1, 50.0, 1.0);
    cfg.dynamic_batching = true;
    cfg.batch_window_ms = 20.0;
    let server = start(cfg);
    let c = client();
    let done = simultaneous(&c, &server.url(), 6).await;
    let largest = done.iter().map(|d| d.1.batch_size()).max().unwrap();
    assert!(largest > 1, "no request was batched with another");
    for (_, reply) in &done {
        let input = reply.json()["output"].as_str().unwrap().to_owned();
        assert!(input.starts_with("Summary:"));
    }
    let metrics = get(&c, &format!("{}/metrics", base_url(&server))).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let batches: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("stub_batches_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(batches < 6, "6 requests took {batches} batches\n{text}");
    assert!(text.contains("stub_items_total 6"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_request_waits_about_the_window_and_no_longer() {
    let _timing = timing_lock().await;
    let mut cfg = timed_config(1, 10.0, 0.0);
    cfg.dynamic_batching = true;
    cfg.batch_window_ms = 30.0;
    let server = start(cfg);
    let c = client();
    get(&c, &format!("{}/healthz", base_url(&server))).await;
    let t0 = Instant::now();
    let reply = post(&c, &server.url(), single("alone")).await;
    let latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(reply.batch_size(), 1);
    assert!(
        (reply.queue_ms() - 30.0).abs() < 3.0,
        "queue {}",
        reply.queue_ms()
    );
    assert!(
        (latency_ms - 40.0).abs() < TOLERANCE_MS,
        "latency {latency_ms}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jittered_service_times_follow_the_seed() {
    let _timing = timing_lock().await;
    let service = ServiceTimeModel {
        base_ms: 8.0,
        per_item_ms: 0.0,
        jitter: 0.5,
        seed: 7,
    };
    let expected = service.sampler().sequence(1, 8);
    let other = ServiceTimeModel { seed: 8, ..service }
        .sampler()
        .sequence(1, 8);
    assert_ne!(expected, other);
    let mut cfg = timed_config(1, 0.0, 0.0);
    cfg.service = service;
    let server = start(cfg);
    let c = client();
    let mut observed = Vec::new();
    for i in 0..expected.len() {
        observed.push(
            post(&c, &server.url(), single(&i.to_string()))
                .await
                .infer_ms(),
        );
    }
    // Each draw is honoured to well under a ms; a busy shared machine may
    // deschedule a timer thread now and then, hence the looser bound per draw.
    assert_near("infer", &observed, &expected, 5.0);
    let mut errors: Vec<f64> = observed
        .iter()
        .zip(&expected)
        .map(|(o, e)| (o - e).abs())
        .collect();
    errors.sort_by(f64::total_cmp);
    assert!(errors[errors.len() / 2] < 1.0, "median error {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_does_not_hold_a_worker() {
    use tokio::io::AsyncWriteExt;
    let _timing = timing_lock().await;
    let server = start(timed_config(1, 100.0, 0.0));
    let c = client();
    let url = server.url();
    let first = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move { post(&c, &url, single("first")).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Queue a request, then hang up before it runs.
    let body = single("abandoned");
    let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(raw);
    let t0 = Instant::now();
    let third = post(&c, &url, single("third")).await;
    let latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    assert_eq!(third.status, StatusCode::OK);
    // Without the skip it would wait for the abandoned request too (~260 ms).
    assert!(latency_ms < 200.0, "third request took {latency_ms} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_works_on_the_same_port() {
    let _timing = timing_lock().await;
    let server = start(timed_config(2, 5.0, 0.0));
    let c = h2c_client();
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (c, url) = (c.clone(), server.url());
            tokio::spawn(async move { post(&c, &url, single(&format!("h2 {i}"))).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let reply = t.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.json()["output"],
            expected_output("example-model", &format!("h2 {i}"))
        );
        assert_eq!(reply.batch_size(), 1);
        assert!(reply.infer_ms() >= 5.0);
    }
    // HTTP/1.1 still answers on the same port.
    let reply = get(&client(), &format!("{}/healthz", base_url(&server))).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_then_refuses_connections() {
    let _timing = timing_lock().await;
    let server = start(timed_config(1, 150.0, 0.0));
    let (c, url, addr) = (client(), server.url(), server.addr);
    let in_flight = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move { post(&c, &url, single("in flight")).await })
    };
    let metrics_url = format!("{}/metrics", base_url(&server));
    let mut started = false;
    for _ in 0..500 {
        let text = String::from_utf8_lossy(&get(&c, &metrics_url).await.body).into_owned();
        if text.contains("stub_queue_wait_seconds_count 1\n") {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(started, "the request never started");
    let t0 = Instant::now();
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        t0.elapsed()
    );
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}
