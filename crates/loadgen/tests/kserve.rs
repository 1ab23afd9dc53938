//! `--api kserve-v2` against the simulator's KServe v2 routes: single and
//! batched round trips with verified outputs, FP32 tensors, and the checks
//! made before any load. The Triton-style statistics whose deltas match
//! what the client saw are tested beside their code, in
//! `src/server_stats.rs`.

mod common;

use loadgen::{ApiChoice, KServeOptions, LoadConfig};
use model::kserve::{Datatype, ModelStatsResponse};
use model::output::{expected_output, output_digest};
use model::payload::baseline_input;

fn server(datatype: Datatype, base_ms: f64) -> stub_server::RunningServer {
    let mut config = stub_server::ServerConfig::profile("placeholder").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.service.base_ms = base_ms;
    config.service.per_item_ms = 0.1;
    config.service.jitter = 0.0;
    config.kserve_input_datatype = datatype;
    stub_server::spawn(config).unwrap()
}

fn kserve(
    server: &stub_server::RunningServer,
    dir: &std::path::Path,
    options: KServeOptions,
) -> LoadConfig {
    LoadConfig {
        api: ApiChoice::KServeV2(options),
        requests: Some(40),
        concurrency: 4,
        ..common::config(&format!("http://{}", server.addr), dir)
    }
}

/// `GET /v2/models/example-model/stats`, parsed.
fn stats(server: &stub_server::RunningServer) -> ModelStatsResponse {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(
            b"GET /v2/models/example-model/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_round_trips_single_and_batched_are_verified_when_asked() {
    let server = server(Datatype::Bytes, 2.0);
    // By default a KServe model is a user's, whose answers are not the
    // simulator's: digests only. --verify checks them against stub-server.
    for (batch_size, verify) in [(1, None), (1, Some(true)), (4, Some(true))] {
        let dir = common::temp_dir("kserve-bytes");
        let config = LoadConfig {
            batch_size,
            batch_wait_ms: 50,
            verify,
            ..kserve(&server, &dir, KServeOptions::default())
        };
        let summary = loadgen::run(config, std::future::pending()).await.unwrap();
        assert_eq!((summary.succeeded, summary.failed), (40, 0), "{summary:?}");
        let verified = verify == Some(true);
        assert_eq!(summary.verified, verified);
        assert_eq!(summary.verified_rows, if verified { 40 } else { 0 });
        assert_eq!(summary.api, "kserve-v2");
        assert_eq!(summary.http_requests, 40 / batch_size as u64);
        let rows = model::log::read_log_file(&dir.join("log.csv"))
            .unwrap()
            .rows;
        for row in rows {
            let expected = expected_output(model::DEFAULT_MODEL, &baseline_input(row.request_id));
            assert_eq!(row.output_digest, Some(output_digest(expected.as_bytes())));
            assert_eq!(row.batch_size, Some(batch_size as u32));
            assert_eq!(row.verified, verified);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fp32_tensors_are_sent_and_digested_not_verified() {
    let server = server(Datatype::Fp32, 1.0);
    let dir = common::temp_dir("kserve-fp32");
    let config = LoadConfig {
        batch_size: 5,
        batch_wait_ms: 50,
        ..kserve(&server, &dir, KServeOptions::default())
    };
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!(summary.succeeded, 40, "{summary:?}");
    assert!(!summary.verified, "numbers have no known outputs");
    let rows = model::log::read_log_file(&dir.join("log.csv"))
        .unwrap()
        .rows;
    assert!(rows.iter().all(|r| r.output_digest.is_some()));
    // The same request id sends the same tensor, so the digests repeat.
    let again = common::temp_dir("kserve-fp32-again");
    let config = kserve(&server, &again, KServeOptions::default());
    loadgen::run(config, std::future::pending()).await.unwrap();
    let digests = |d: &std::path::Path| {
        let mut rows = model::log::read_log_file(&d.join("log.csv")).unwrap().rows;
        rows.sort_by_key(|r| r.request_id);
        rows.into_iter()
            .map(|r| r.output_digest)
            .collect::<Vec<_>>()
    };
    assert_eq!(digests(&dir), digests(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_model_or_input_is_one_error_before_any_load() {
    let server = server(Datatype::Bytes, 1.0);
    let dir = common::temp_dir("kserve-errors");
    let err = |config: LoadConfig| async {
        loadgen::prepare(config)
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let unknown = LoadConfig {
        model: "no-such-model".into(),
        ..kserve(&server, &dir, KServeOptions::default())
    };
    let message = err(unknown).await;
    assert!(
        message.contains("GET /v2/models/no-such-model answered 404 Not Found: Request for unknown model: 'no-such-model' is not found"),
        "{message}"
    );
    let wrong_input = kserve(
        &server,
        &dir,
        KServeOptions {
            input_name: Some("text".into()),
            ..KServeOptions::default()
        },
    );
    assert!(err(wrong_input)
        .await
        .contains("has no input \"text\"; its inputs are input"));
    let wrong_type = kserve(
        &server,
        &dir,
        KServeOptions {
            input_datatype: Some(Datatype::Int64),
            ..KServeOptions::default()
        },
    );
    assert!(err(wrong_type).await.contains("is BYTES, not INT64"));
    let too_big = LoadConfig {
        batch_size: 64,
        ..kserve(&server, &dir, KServeOptions::default())
    };
    assert!(err(too_big)
        .await
        .contains("over model \"example-model\"'s max_batch_size 32"));
    let dead = LoadConfig {
        url: common::dead_url().trim_end_matches("/v1/infer").to_owned(),
        ..kserve(&server, &dir, KServeOptions::default())
    };
    assert!(err(dead)
        .await
        .contains("GET /v2/health/ready failed before any load: connect_refused"));
    assert_eq!(
        stats(&server).model_stats[0].inference_stats.success.count,
        0
    );
}
