//! `--api kserve-v2-grpc` end to end over loopback: against stub-server's
//! gRPC listener (unary and batched calls verified, tensors equal to the
//! HTTP API's request for request, statistics deltas equal to what the
//! client sent, a decoupled model's stream timed token by token), every
//! status kind from a fault provoked here (stub-server's injected faults,
//! its full queue, a scripted in-test server for the codes stub-server
//! never sends), the checks before any load, the warm-up's and the open
//! loop's columns in every row, and TLS (a terminator in
//! front of stub-server's listener: success, an unknown issuer, mutual
//! TLS).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use loadgen::{
    ApiChoice, Arrival, ConnectionMode, KServeGrpcOptions, KServeOptions, LoadConfig, OpenLoop,
    TlsOptions, Warmup,
};
use model::kserve::{Datatype, ServerStatsDelta};
use model::kserve_grpc::{
    self as pb, encode_bytes_elements, model_infer_response::InferOutputTensor,
    model_metadata_response::TensorMetadata, GrpcInferenceService, GrpcInferenceServiceServer,
    InferParameter, ModelInferRequest, ModelInferResponse, ModelStreamInferResponse,
};
use model::log::{LogRow, Phase};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use stub_server::{FaultConfig, RunningServer, ServerConfig};
use tonic::codegen::Service;
use tonic::{Code, Status};

const STREAM: &str = "llm-stream";

/// A quick simulator with gRPC on a free loopback port: `base_ms` per
/// batch, LLM steps of 2 ms.
fn stub_config(base_ms: f64) -> ServerConfig {
    let mut c = ServerConfig::profile("placeholder").unwrap();
    c.bind = "127.0.0.1:0".parse().unwrap();
    c.grpc_bind = Some("127.0.0.1:0".parse().unwrap());
    c.service.base_ms = base_ms;
    c.service.per_item_ms = 0.1;
    c.service.jitter = 0.0;
    c.kserve_input_datatype = Datatype::Bytes;
    c.llm.step_base_ms = 2.0;
    c
}

fn grpc_url(server: &RunningServer) -> String {
    format!("http://{}", server.grpc_addr.expect("a gRPC listener"))
}

/// Stops `server` off this runtime, so the client's connection tasks can
/// answer HTTP/2's shutdown handshake.
async fn stop(server: RunningServer) {
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap();
}

/// A run's configuration against `url` speaking gRPC, its log in `dir`.
fn grpc_config(url: &str, dir: &Path, options: KServeGrpcOptions) -> LoadConfig {
    LoadConfig {
        api: ApiChoice::KServeV2Grpc(options),
        ..common::config(url, dir)
    }
}

fn rows(dir: &Path) -> Vec<LogRow> {
    model::log::read_log_file(&dir.join("log.csv"))
        .unwrap()
        .rows
}

/// Rows by error (empty: succeeded), counted.
fn errors(rows: &[LogRow]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts.entry(row.error.clone()).or_default() += 1;
    }
    counts
}

fn stats(path: &Path) -> ServerStatsDelta {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_and_batched_calls_are_verified_and_the_statistics_count_them() {
    let server = stub_spawn(stub_config(2.0));
    let url = grpc_url(&server);
    for (batch_size, connection) in [(1, ConnectionMode::PerRequest), (3, ConnectionMode::Pooled)] {
        let dir = common::temp_dir("grpc-unary");
        let config = LoadConfig {
            requests: Some(30),
            concurrency: 6,
            batch_size,
            batch_wait_ms: if batch_size > 1 { 20 } else { 0 },
            connection,
            verify: Some(true),
            server_stats_path: Some(dir.join("stats.json")),
            ..grpc_config(&url, &dir, KServeGrpcOptions::default())
        };
        let summary = loadgen::run(config, std::future::pending()).await.unwrap();
        assert_eq!((summary.succeeded, summary.failed), (30, 0), "{summary:?}");
        assert_eq!(summary.verified_rows, 30);
        assert_eq!(summary.api, "kserve-v2-grpc");
        assert!(
            summary.protocol.starts_with("gRPC (ModelInfer)"),
            "{}",
            summary.protocol
        );
        assert_eq!(summary.http_requests, 30 / batch_size as u64);
        let text = loadgen::SummaryText(&summary).to_string();
        assert!(
            text.contains(&format!("({} gRPC calls)", summary.http_requests)),
            "{text}"
        );
        assert_eq!(summary.status_codes.get(&200), Some(&summary.http_requests));
        let opened = if connection == ConnectionMode::PerRequest {
            summary.http_requests
        } else {
            1
        };
        assert_eq!(summary.connections_opened, opened);
        assert_eq!(summary.server_stats_warning, None);
        // The simulator's own statistics, read by ModelStatistics around the
        // run, count exactly what the client sent.
        let delta = stats(&dir.join("stats.json")).delta;
        assert_eq!(delta.inference_stats.success.count, summary.http_requests);
        assert_eq!(delta.inference_count, 30);
        assert_eq!(delta.inference_stats.fail.count, 0);
        let executed: u64 = delta
            .batch_stats
            .iter()
            .map(|b| b.batch_size * b.compute_infer.count)
            .sum();
        assert_eq!(executed, 30);
        // Each row carries the call's batch and the server's timings (from
        // the response metadata); a fresh connection's set-up is timed.
        let rows = rows(&dir);
        assert!(rows
            .iter()
            .all(|r| r.ok && r.verified && r.status_code == 200));
        assert!(rows.iter().all(|r| r.batch_size == Some(batch_size as u32)));
        assert!(
            rows.iter()
                .all(|r| r.service_ms.is_some_and(|ms| ms >= 2.0)),
            "{rows:?}"
        );
        assert!(rows
            .iter()
            .all(|r| r.connect_ms.is_some() && r.tls_ms.is_none()));
        if connection == ConnectionMode::PerRequest {
            assert!(rows.iter().all(|r| r.connect_ms > Some(0.0)));
        }
    }
    stop(server).await;
}

/// gRPC rows carry the run's columns as HTTP rows do: the warm-up's
/// `phase`, the open loop's `send_lag_ms`; and the warm-up is in no number
/// of the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_and_open_loop_rows_carry_their_phase_and_send_lag() {
    let server = stub_spawn(stub_config(1.0));
    let url = grpc_url(&server);
    let dir = common::temp_dir("grpc-phase");
    let config = LoadConfig {
        requests: Some(12),
        concurrency: 2,
        warmup: Warmup::Requests(5),
        open_loop: Some(OpenLoop {
            rate_rps: 200.0,
            arrival: Arrival::Constant,
            seed: 1,
            max_in_flight: 64,
        }),
        ..grpc_config(&url, &dir, KServeGrpcOptions::default())
    };
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (12, 0), "{summary:?}");
    assert_eq!(summary.warmup_rows, 5);
    let all = model::log::read_log_all(std::fs::File::open(dir.join("log.csv")).unwrap())
        .unwrap()
        .rows;
    let warm: Vec<&LogRow> = all.iter().filter(|r| r.phase == Phase::Warmup).collect();
    let measured: Vec<&LogRow> = all.iter().filter(|r| r.phase == Phase::Measure).collect();
    assert_eq!((warm.len(), measured.len()), (5, 12), "{all:?}");
    assert!(all.iter().all(|r| r.ok && r.status_code == 200), "{all:?}");
    assert!(
        measured.iter().all(|r| r.send_lag_ms.is_some()),
        "{measured:?}"
    );
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_datatype_sends_the_tensors_the_http_api_sends() {
    // The same request ids over HTTP and gRPC, against the same model: the
    // simulator answers from the elements' text, so equal digests, request
    // for request, mean equal tensors.
    for datatype in [Datatype::Bytes, Datatype::Fp32, Datatype::Int64] {
        let mut c = stub_config(0.5);
        c.kserve_input_datatype = datatype;
        let server = stub_spawn(c);
        let digests = |dir: &Path| -> BTreeMap<u64, String> {
            rows(dir)
                .into_iter()
                .map(|r| (r.request_id, r.output_digest.unwrap()))
                .collect()
        };
        let http_dir = common::temp_dir("grpc-types-http");
        let config = LoadConfig {
            api: ApiChoice::KServeV2(KServeOptions {
                input_shape: Some(vec![1]),
                ..KServeOptions::default()
            }),
            requests: Some(12),
            concurrency: 3,
            ..common::config(&format!("http://{}", server.addr), &http_dir)
        };
        let http = loadgen::run(config, std::future::pending()).await.unwrap();
        assert_eq!(http.succeeded, 12, "{datatype:?}");
        let grpc_dir = common::temp_dir("grpc-types");
        let options = KServeGrpcOptions {
            tensors: KServeOptions {
                input_shape: Some(vec![1]),
                ..KServeOptions::default()
            },
            ..KServeGrpcOptions::default()
        };
        let config = LoadConfig {
            requests: Some(12),
            concurrency: 3,
            batch_size: 2,
            batch_wait_ms: 10,
            ..grpc_config(&grpc_url(&server), &grpc_dir, options)
        };
        let grpc = loadgen::run(config, std::future::pending()).await.unwrap();
        assert_eq!(grpc.succeeded, 12, "{datatype:?}");
        assert_eq!(digests(&grpc_dir), digests(&http_dir), "{datatype:?}");
        stop(server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoupled_models_stream_is_timed_token_by_token_and_verified() {
    let server = stub_spawn(stub_config(1.0));
    let dir = common::temp_dir("grpc-stream");
    let options = KServeGrpcOptions {
        streaming: true,
        max_tokens: Some(6),
        ..KServeGrpcOptions::default()
    };
    let config = LoadConfig {
        model: STREAM.into(),
        requests: Some(8),
        concurrency: 4,
        verify: Some(true),
        server_stats_path: Some(dir.join("stats.json")),
        ..grpc_config(&grpc_url(&server), &dir, options)
    };
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (8, 0), "{summary:?}");
    assert_eq!(
        summary.verified_rows, 8,
        "the tokens are the simulator's answer"
    );
    assert!(
        summary.protocol.starts_with("gRPC (ModelStreamInfer)"),
        "{}",
        summary.protocol
    );
    let rows = rows(&dir);
    for row in &rows {
        let llm = row.llm.as_ref().expect("LLM columns");
        assert_eq!(llm.output_tokens, Some(6), "{row:?}");
        assert_eq!(llm.itl_ms.len(), 5, "a gap between each two tokens");
        let ttft = llm.ttft_ms.unwrap();
        assert!(ttft > 0.0 && ttft <= row.latency_ms, "{row:?}");
        // The first token and the gaps after it end at the last token,
        // which came before the call ended (the log keeps 3 decimals).
        let last_token_ms = ttft + llm.itl_ms.iter().sum::<f64>();
        assert!(last_token_ms <= row.latency_ms + 0.01, "{row:?}");
        let tpot = llm.tpot_ms.unwrap();
        assert!(
            (tpot - (row.latency_ms - ttft) / 5.0).abs() < 0.002,
            "{row:?}"
        );
    }
    assert!(summary.llm.is_some(), "the LLM summaries");
    // The decoupled model counts each streamed request once.
    let delta = stats(&dir.join("stats.json")).delta;
    assert_eq!(delta.inference_stats.success.count, 8);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_are_rows_named_after_their_status() {
    // One seeded sequence of every fault stub-server injects on ModelInfer;
    // the plan says how many of each the run meets.
    let faults = FaultConfig {
        error_rate: 0.2,
        corrupt_rate: 0.1,
        truncate_rate: 0.1,
        reset_rate: 0.1,
        stall_rate: 0.1,
        stall_ms: 3_000,
        seed: 7,
    };
    let plan = faults.plan(60);
    let mut c = stub_config(0.5);
    c.faults = faults;
    let server = stub_spawn(c);
    let dir = common::temp_dir("grpc-faults");
    let config = LoadConfig {
        requests: Some(60),
        concurrency: 8,
        verify: Some(true),
        timeout: Duration::from_millis(500),
        ..grpc_config(&grpc_url(&server), &dir, KServeGrpcOptions::default())
    };
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!(summary.succeeded + summary.failed, 60);
    let counts = errors(&rows(&dir));
    let count = |error: &str| counts.get(error).copied().unwrap_or(0);
    let reset = "grpc_internal: the HTTP/2 stream was reset (INTERNAL_ERROR)";
    assert_eq!(count(""), plan.clean, "{counts:?}");
    assert_eq!(
        count("grpc_internal: fault injection: internal error on purpose"),
        plan.error_500,
        "{counts:?}"
    );
    assert_eq!(
        count("grpc_unavailable: fault injection: service unavailable on purpose"),
        plan.error_503,
        "{counts:?}"
    );
    // A reset stream, and one cut after half its message and then reset.
    assert_eq!(count(reset), plan.reset + plan.truncate, "{counts:?}");
    assert_eq!(count("grpc_deadline_exceeded"), plan.stall, "{counts:?}");
    assert_eq!(count("output_mismatch"), plan.corrupt, "{counts:?}");
    assert!(plan.reset > 0 && plan.truncate > 0 && plan.stall > 0 && plan.error_500 > 0);
    stop(server).await;

    // A full queue: Triton's status for it, UNAVAILABLE, with its words.
    let mut c = stub_config(50.0);
    c.workers = 1;
    c.max_queue = 2;
    let server = stub_spawn(c);
    let dir = common::temp_dir("grpc-full");
    let config = LoadConfig {
        requests: Some(12),
        concurrency: 12,
        ..grpc_config(&grpc_url(&server), &dir, KServeGrpcOptions::default())
    };
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert!(summary.failed > 0, "{summary:?}");
    assert!(
        rows(&dir)
            .iter()
            .filter(|r| !r.ok)
            .all(|r| r.status_code == 0
                && r.error
                    .starts_with("grpc_unavailable: Exceeds maximum queue size")),
        "{:?}",
        errors(&rows(&dir))
    );
    stop(server).await;
}

/// What the scripted server answers, and what it saw.
#[derive(Default)]
struct Script {
    /// ModelInfer's answers, in turn (cycled).
    unary: Vec<Status>,
    calls: AtomicU64,
    /// The `triton_grpc_error` header and the empty-final-response
    /// parameter of each stream's request.
    stream_asks: Mutex<Vec<(bool, bool)>>,
}

/// A KServe v2 server that serves a batching model `scripted` and a
/// decoupled `scripted-stream`, and answers as [`Script`] says: the
/// statuses stub-server never sends.
#[derive(Clone)]
struct Scripted(Arc<Script>);

fn tensor(name: &str, datatype: &str, shape: Vec<i64>) -> TensorMetadata {
    TensorMetadata {
        name: name.into(),
        datatype: datatype.into(),
        shape,
    }
}

#[tonic::codegen::async_trait]
impl GrpcInferenceService for Scripted {
    async fn server_live(
        &self,
        _: tonic::Request<pb::ServerLiveRequest>,
    ) -> Result<tonic::Response<pb::ServerLiveResponse>, Status> {
        Ok(tonic::Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: tonic::Request<pb::ServerReadyRequest>,
    ) -> Result<tonic::Response<pb::ServerReadyResponse>, Status> {
        Ok(tonic::Response::new(pb::ServerReadyResponse {
            ready: true,
        }))
    }

    async fn model_ready(
        &self,
        _: tonic::Request<pb::ModelReadyRequest>,
    ) -> Result<tonic::Response<pb::ModelReadyResponse>, Status> {
        Ok(tonic::Response::new(pb::ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: tonic::Request<pb::ServerMetadataRequest>,
    ) -> Result<tonic::Response<pb::ServerMetadataResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn model_metadata(
        &self,
        request: tonic::Request<pb::ModelMetadataRequest>,
    ) -> Result<tonic::Response<pb::ModelMetadataResponse>, Status> {
        let stream = request.get_ref().name.ends_with("-stream");
        let (inputs, outputs) = if stream {
            (
                vec![tensor("text_input", "BYTES", vec![1])],
                vec![tensor("text_output", "BYTES", vec![1])],
            )
        } else {
            (
                vec![tensor("input", "BYTES", vec![-1, 1])],
                vec![tensor("output", "BYTES", vec![-1, 1])],
            )
        };
        Ok(tonic::Response::new(pb::ModelMetadataResponse {
            name: request.get_ref().name.clone(),
            versions: vec!["1".into()],
            platform: "scripted".into(),
            inputs,
            outputs,
        }))
    }

    async fn model_infer(
        &self,
        _: tonic::Request<ModelInferRequest>,
    ) -> Result<tonic::Response<ModelInferResponse>, Status> {
        let turn = self.0.calls.fetch_add(1, Ordering::SeqCst) as usize;
        let status = &self.0.unary[turn % self.0.unary.len()];
        Err(Status::new(status.code(), status.message()))
    }

    type ModelStreamInferStream = tonic::codegen::tokio_stream::Iter<
        std::vec::IntoIter<Result<ModelStreamInferResponse, Status>>,
    >;

    async fn model_stream_infer(
        &self,
        request: tonic::Request<tonic::Streaming<ModelInferRequest>>,
    ) -> Result<tonic::Response<Self::ModelStreamInferStream>, Status> {
        let grpc_errors = request
            .metadata()
            .get("triton_grpc_error")
            .is_some_and(|v| v == "true");
        let mut incoming = request.into_inner();
        let first = incoming.message().await?.unwrap_or_default();
        let empty_final = first
            .parameters
            .get(pb::ENABLE_EMPTY_FINAL_RESPONSE_PARAMETER)
            .and_then(InferParameter::as_bool)
            == Some(true);
        self.0
            .stream_asks
            .lock()
            .unwrap()
            .push((grpc_errors, empty_final));
        let token = ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(ModelInferResponse {
                outputs: vec![InferOutputTensor {
                    name: "text_output".into(),
                    datatype: "BYTES".into(),
                    shape: vec![1],
                    ..Default::default()
                }],
                raw_output_contents: vec![Bytes::from(encode_bytes_elements(["tok"]))],
                ..Default::default()
            }),
        };
        // Even turns: a token, then an error in-band (what Triton sends
        // without the header); odd turns: a token, then the status that
        // ends the stream.
        let turn = self.0.calls.fetch_add(1, Ordering::SeqCst);
        let last = if turn.is_multiple_of(2) {
            Ok(ModelStreamInferResponse {
                error_message: "in-band: the model failed mid-answer".into(),
                infer_response: None,
            })
        } else {
            Err(Status::resource_exhausted("out of KV cache"))
        };
        Ok(tonic::Response::new(tonic::codegen::tokio_stream::iter(
            vec![Ok(token), last],
        )))
    }

    async fn model_config(
        &self,
        request: tonic::Request<pb::ModelConfigRequest>,
    ) -> Result<tonic::Response<pb::ModelConfigResponse>, Status> {
        let stream = request.get_ref().name.ends_with("-stream");
        Ok(tonic::Response::new(pb::ModelConfigResponse {
            config: Some(pb::ModelConfig {
                name: request.get_ref().name.clone(),
                max_batch_size: if stream { 0 } else { 8 },
                model_transaction_policy: Some(pb::ModelTransactionPolicy { decoupled: stream }),
                ..Default::default()
            }),
        }))
    }

    async fn model_statistics(
        &self,
        _: tonic::Request<pb::ModelStatisticsRequest>,
    ) -> Result<tonic::Response<pb::ModelStatisticsResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}

/// Serves `service` over HTTP/2 cleartext on a free loopback port, on
/// this runtime, until the test ends.
async fn serve_scripted(script: Arc<Script>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = GrpcInferenceServiceServer::new(Scripted(script));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let hyper_service = service_fn(move |request: http::Request<Incoming>| {
                    let mut service = service.clone();
                    async move { service.call(request).await }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper_service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_is_a_row_of_its_kind_with_the_servers_message() {
    let codes = [
        (Code::InvalidArgument, "grpc_invalid_argument"),
        (Code::NotFound, "grpc_not_found"),
        (Code::ResourceExhausted, "grpc_resource_exhausted"),
        (Code::Unknown, "grpc_unknown"),
        (Code::Unavailable, "grpc_unavailable"),
        (Code::Internal, "grpc_internal"),
        (Code::Unimplemented, "grpc_unimplemented"),
        (Code::PermissionDenied, "grpc_permission_denied"),
    ];
    let script = Arc::new(Script {
        unary: codes
            .iter()
            .map(|(code, _)| Status::new(*code, format!("scripted {code:?}\nsecond line")))
            .collect(),
        ..Script::default()
    });
    let addr = serve_scripted(script.clone()).await;
    let dir = common::temp_dir("grpc-statuses");
    let config = LoadConfig {
        model: "scripted".into(),
        requests: Some(codes.len() as u64),
        concurrency: 1,
        ..grpc_config(
            &format!("http://{addr}"),
            &dir,
            KServeGrpcOptions::default(),
        )
    };
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!(
        summary.failed,
        codes.len() as u64,
        "never a crash: every call is a row"
    );
    for (row, (code, kind)) in rows(&dir).iter().zip(codes) {
        // The kind first, then the server's message on one line.
        assert_eq!(row.error, format!("{kind}: scripted {code:?} second line"));
        assert_eq!(row.status_code, 0);
        assert!(!row.ok);
    }
    assert_eq!(summary.errors.len(), codes.len(), "{:?}", summary.errors);

    // Streams: an in-band error, and a status that ends the stream.
    let dir = common::temp_dir("grpc-stream-statuses");
    let options = KServeGrpcOptions {
        streaming: true,
        ..KServeGrpcOptions::default()
    };
    script.calls.store(0, Ordering::SeqCst);
    let config = LoadConfig {
        model: "scripted-stream".into(),
        requests: Some(2),
        concurrency: 1,
        ..grpc_config(&format!("http://{addr}"), &dir, options)
    };
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!(summary.failed, 2);
    let errors: Vec<String> = rows(&dir).into_iter().map(|r| r.error).collect();
    assert_eq!(
        errors,
        [
            "stream_error: in-band: the model failed mid-answer",
            "grpc_resource_exhausted: out of KV cache"
        ]
    );
    // Each stream asked for Triton's final flag and for errors as statuses.
    assert_eq!(
        *script.stream_asks.lock().unwrap(),
        [(true, true), (true, true)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checks_before_the_load_refuse_what_cannot_run() {
    let server = stub_spawn(stub_config(1.0));
    let url = grpc_url(&server);
    let dir = common::temp_dir("grpc-checks");
    let prepare = |config: LoadConfig| async move {
        loadgen::prepare(config)
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let cases: Vec<(LoadConfig, &str)> = vec![
        (
            LoadConfig {
                model: "nope".into(),
                ..grpc_config(&url, &dir, KServeGrpcOptions::default())
            },
            "model \"nope\" is not ready",
        ),
        (
            LoadConfig {
                model: STREAM.into(),
                ..grpc_config(&url, &dir, KServeGrpcOptions::default())
            },
            "is decoupled: it answers only on ModelStreamInfer; add --streaming",
        ),
        (
            grpc_config(
                &url,
                &dir,
                KServeGrpcOptions {
                    tensors: KServeOptions {
                        input_name: Some("text".into()),
                        ..KServeOptions::default()
                    },
                    ..KServeGrpcOptions::default()
                },
            ),
            "has no input \"text\"; its inputs are input",
        ),
        (
            grpc_config(
                &url,
                &dir,
                KServeGrpcOptions {
                    tensors: KServeOptions {
                        input_datatype: Some(Datatype::Fp32),
                        ..KServeOptions::default()
                    },
                    ..KServeGrpcOptions::default()
                },
            ),
            "is BYTES, not FP32",
        ),
        (
            LoadConfig {
                batch_size: 64,
                ..grpc_config(&url, &dir, KServeGrpcOptions::default())
            },
            "over model \"example-model\"'s max_batch_size 32",
        ),
        (
            LoadConfig {
                model: STREAM.into(),
                batch_size: 2,
                ..grpc_config(
                    &url,
                    &dir,
                    KServeGrpcOptions {
                        streaming: true,
                        ..KServeGrpcOptions::default()
                    },
                )
            },
            "--batch-size 2 must be 1",
        ),
        (
            grpc_config(&format!("{url}/v2"), &dir, KServeGrpcOptions::default()),
            "named by scheme, host and port only",
        ),
        (
            grpc_config(
                &common::dead_url().replace("/v1/infer", ""),
                &dir,
                KServeGrpcOptions::default(),
            ),
            "ServerReady failed before any load: connect_refused",
        ),
    ];
    for (config, needle) in cases {
        let err = prepare(config).await;
        assert!(err.starts_with("kserve-v2-grpc: "), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
    }
    stop(server).await;
}

/// A CA and what it signs.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    fn leaf(&self, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = CertificateParams::new(names).unwrap();
        (params.signed_by(&key, &self.cert, &self.key).unwrap(), key)
    }
}

fn key_der(key: &KeyPair) -> rustls::pki_types::PrivateKeyDer<'static> {
    rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into())
}

/// Terminates TLS (ALPN h2 only; a client certificate from `client_ca`
/// required when given) on a free loopback port and relays the bytes to
/// `backend`, on this runtime.
async fn tls_terminator(server: &Ca, client_ca: Option<&Ca>, backend: SocketAddr) -> SocketAddr {
    let (cert, key) = server.leaf(&["localhost", "127.0.0.1"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert.der().clone()).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(vec![cert.der().clone()], key_der(&key))
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls_carry_grpc_and_an_unknown_issuer_is_refused() {
    let server = stub_spawn(stub_config(1.0));
    let backend = server.grpc_addr.unwrap();
    let dir = common::temp_dir("grpc-tls");
    let server_ca = Ca::new("grpc test CA");
    let client_ca = Ca::new("grpc client CA");
    let ca_pem = dir.join("ca.pem");
    std::fs::write(&ca_pem, server_ca.cert.pem()).unwrap();
    let (client_cert, client_key) = client_ca.leaf(&["loadgen"]);
    let (cert_pem, key_pem) = (dir.join("client.pem"), dir.join("client.key"));
    std::fs::write(&cert_pem, client_cert.pem()).unwrap();
    std::fs::write(&key_pem, client_key.serialize_pem()).unwrap();
    let trusted = TlsOptions {
        cacert: Some(ca_pem.clone()),
        ..TlsOptions::default()
    };
    let run = |url: String, tls: TlsOptions, name: &str| {
        let dir = common::temp_dir(name);
        let config = LoadConfig {
            requests: Some(10),
            concurrency: 2,
            verify: Some(true),
            tls,
            ..grpc_config(&url, &dir, KServeGrpcOptions::default())
        };
        async move { (loadgen::run(config, std::future::pending()).await, dir) }
    };

    // Server TLS: verified against --cacert, ALPN h2.
    let plain_tls = tls_terminator(&server_ca, None, backend).await;
    let url = format!("https://localhost:{}", plain_tls.port());
    let (summary, dir) = run(url.clone(), trusted.clone(), "grpc-tls-ok").await;
    let summary = summary.unwrap();
    assert_eq!(
        (summary.succeeded, summary.verified_rows),
        (10, 10),
        "{summary:?}"
    );
    assert_eq!(
        summary.protocol,
        "gRPC (ModelInfer) over TLS (ALPN h2, required)"
    );
    let handshakes: Vec<f64> = rows(&dir).iter().filter_map(|r| r.tls_ms).collect();
    assert_eq!(handshakes.len(), 10, "every row says what TLS cost it");
    assert_eq!(
        handshakes.iter().filter(|&&ms| ms > 0.0).count(),
        1,
        "one pooled connection"
    );

    // An issuer nobody trusts: refused before any load, with its kind.
    let (outcome, _) = run(url, TlsOptions::default(), "grpc-tls-unknown").await;
    let err = outcome.unwrap_err().to_string();
    assert!(
        err.contains("ServerReady failed before any load: tls_unknown_issuer"),
        "{err}"
    );

    // Mutual TLS: the client's certificate is required and accepted.
    let mutual = tls_terminator(&server_ca, Some(&client_ca), backend).await;
    let url = format!("https://127.0.0.1:{}", mutual.port());
    let with_cert = TlsOptions {
        client_cert: Some(cert_pem),
        client_key: Some(key_pem),
        ..trusted.clone()
    };
    let (summary, _) = run(url.clone(), with_cert, "grpc-mtls").await;
    let summary = summary.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (10, 0), "{summary:?}");
    // Without one, the server's refusal ends the first call: no load. In
    // TLS 1.3 the client's handshake is over before the server has read
    // the (empty) certificate, so the client may already be writing its
    // first frames when the alert comes: then it sees the connection
    // closed under the write instead of the alert. Either way nothing is
    // loaded.
    let (outcome, _) = run(url, trusted, "grpc-mtls-none").await;
    let err = outcome.unwrap_err().to_string();
    assert!(
        err.contains("ServerReady failed before any load: ")
            && (err.contains("tls_handshake: received fatal alert: CertificateRequired")
                || err.contains("broken pipe")
                || err.contains("connection reset")),
        "{err}"
    );
    stop(server).await;
}

fn stub_spawn(config: ServerConfig) -> RunningServer {
    stub_server::spawn(config).unwrap()
}
