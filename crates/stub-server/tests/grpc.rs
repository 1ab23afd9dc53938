//! KServe v2 over gRPC (`--grpc-bind`), checked with a tonic client built
//! from `model::kserve_grpc`: health, metadata and configuration; unary
//! inference with typed and raw contents, answering what the HTTP route
//! answers; statistics shared with the HTTP route; the decoupled streaming
//! model against the OpenAI route's tokens; every error as a gRPC status;
//! and the binary's second listener and graceful stop.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use hyper::StatusCode;
use model::kserve::Datatype;
use model::kserve_grpc::{
    decode_bytes_elements, encode_bytes_elements, encode_fp32, encode_int64,
    model_infer_request::InferInputTensor, DataType, GrpcInferenceServiceClient, InferParameter,
    InferTensorContents, ModelConfigRequest, ModelInferRequest, ModelInferResponse,
    ModelMetadataRequest, ModelReadyRequest, ModelStatistics, ModelStatisticsRequest,
    ModelStreamInferResponse, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
    ENABLE_EMPTY_FINAL_RESPONSE_PARAMETER,
};
use model::output::expected_output;
use serde_json::{json, Value};
use stub_server::{FaultConfig, RunningServer, ServerConfig};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

const MODEL: &str = "example-model";
const STREAM: &str = "llm-stream";

type Client = GrpcInferenceServiceClient<Channel>;

/// Kills the binary if a test fails before it exits.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // Only a child not yet reaped: its id is still its own.
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A zero-cost server with gRPC on a free loopback port.
fn grpc_config() -> ServerConfig {
    let mut c = config();
    c.grpc_bind = Some("127.0.0.1:0".parse().unwrap());
    // Quick LLM steps: a token every 2 ms.
    c.llm.step_base_ms = 2.0;
    c
}

/// Stops `server` without blocking this runtime, so the clients' connection
/// tasks can answer the HTTP/2 shutdown handshake.
async fn stop(server: RunningServer) {
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap();
}

async fn connect(server: &RunningServer) -> Client {
    let addr = server.grpc_addr.expect("a gRPC address");
    connect_to(&addr.to_string()).await
}

async fn connect_to(addr: &str) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("gRPC connects");
    GrpcInferenceServiceClient::new(channel)
}

/// A request for the batching model with `input`'s BYTES elements in
/// typed contents.
fn bytes_request(inputs: &[&str]) -> ModelInferRequest {
    ModelInferRequest {
        model_name: MODEL.into(),
        id: "r1".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "BYTES".into(),
            shape: vec![inputs.len() as i64, 1],
            contents: Some(InferTensorContents {
                bytes_contents: inputs.iter().map(|s| Bytes::from(s.to_string())).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The same request with its elements as raw contents.
fn raw(mut request: ModelInferRequest, raw: Vec<u8>) -> ModelInferRequest {
    request.inputs[0].contents = None;
    request.raw_input_contents = vec![Bytes::from(raw)];
    request
}

/// The BYTES elements of a response's first output, as text.
fn outputs(response: &ModelInferResponse) -> Vec<String> {
    assert_eq!(response.outputs.len(), 1);
    assert_eq!(response.outputs[0].datatype, "BYTES");
    decode_bytes_elements(&response.raw_output_contents[0])
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.to_vec()).unwrap())
        .collect()
}

/// What the HTTP route answers for the same elements.
async fn http_outputs(server: &RunningServer, datatype: &str, data: Value) -> Vec<String> {
    let n = data.as_array().unwrap().len();
    let body =
        json!({"inputs": [{"name": "input", "shape": [n, 1], "datatype": datatype, "data": data}]});
    let url = format!("{}/v2/models/{MODEL}/infer", base_url(server));
    let reply = post(&client(), &url, body.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    serde_json::from_value(reply.json()["outputs"][0]["data"].clone()).unwrap()
}

async fn infer(
    client: &mut Client,
    request: ModelInferRequest,
) -> Result<ModelInferResponse, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(20), client.model_infer(request))
        .await
        .expect("ModelInfer hung")
        .map(tonic::Response::into_inner)
}

async fn statistics(client: &mut Client, model: &str) -> ModelStatistics {
    let mut stats = client
        .model_statistics(ModelStatisticsRequest {
            name: model.into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .model_stats;
    assert_eq!(stats.len(), 1);
    stats.remove(0)
}

#[tokio::test]
async fn readiness_metadata_and_configuration_rpcs_answer_as_triton() {
    let mut cfg = grpc_config();
    cfg.dynamic_batching = true;
    cfg.batch_window_ms = 2.0;
    cfg.preferred_batch_sizes = vec![4, 8];
    cfg.workers = 3;
    let server = start(cfg);
    let mut c = connect(&server).await;
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        c.server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    for (name, ready) in [(MODEL, true), (STREAM, true), ("other", false)] {
        let answer = c
            .model_ready(ModelReadyRequest {
                name: name.into(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.ready, ready, "{name}");
    }
    let server_meta = c
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(server_meta.name, "stub-server");
    assert!(server_meta.extensions.contains(&"statistics".to_owned()));

    let meta = |name: &str| ModelMetadataRequest {
        name: name.into(),
        version: String::new(),
    };
    let batching = c.model_metadata(meta(MODEL)).await.unwrap().into_inner();
    assert_eq!(batching.versions, ["1"]);
    assert_eq!(
        (
            batching.inputs[0].name.as_str(),
            batching.inputs[0].datatype.as_str()
        ),
        ("input", "BYTES")
    );
    assert_eq!(batching.inputs[0].shape, [-1, 1]);
    assert_eq!(batching.outputs[0].name, "output");
    // The same as the HTTP route's metadata.
    let http_meta = get(
        &client(),
        &format!("{}/v2/models/{MODEL}", base_url(&server)),
    )
    .await
    .json();
    assert_eq!(
        http_meta["inputs"][0]["shape"],
        json!(batching.inputs[0].shape)
    );
    let streaming = c.model_metadata(meta(STREAM)).await.unwrap().into_inner();
    assert_eq!(streaming.inputs[0].name, "text_input");
    assert_eq!(streaming.outputs[0].name, "text_output");
    let unknown = c.model_metadata(meta("other")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(
        unknown.message(),
        "Request for unknown model: 'other' is not found"
    );

    let config_of = |name: &str| ModelConfigRequest {
        name: name.into(),
        version: String::new(),
    };
    let config = c
        .model_config(config_of(MODEL))
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(config.name, MODEL);
    assert_eq!(config.max_batch_size, 32);
    let batcher = config.dynamic_batching.unwrap();
    assert_eq!(batcher.preferred_batch_size, [4, 8]);
    assert_eq!(batcher.max_queue_delay_microseconds, 2000);
    assert_eq!(config.input[0].data_type, DataType::TypeString as i32);
    assert_eq!(config.instance_group[0].count, 3);
    assert!(!config.model_transaction_policy.unwrap().decoupled);
    let config = c
        .model_config(config_of(STREAM))
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert!(config.model_transaction_policy.unwrap().decoupled);
    assert_eq!(config.max_batch_size, 0);
    assert_eq!(config.input[0].name, "text_input");
    assert_eq!(config.input[1].data_type, DataType::TypeInt32 as i32);
    assert_eq!(
        c.model_config(config_of("other")).await.unwrap_err().code(),
        Code::NotFound
    );
    stop(server).await;
}

#[tokio::test]
async fn bytes_inference_answers_what_the_http_route_answers_typed_or_raw() {
    let server = start(grpc_config());
    let mut c = connect(&server).await;
    let inputs = ["Request 0: hello", "b\"c", "ünï côdé", ""];
    let typed = infer(&mut c, bytes_request(&inputs)).await.unwrap();
    assert_eq!(typed.model_name, MODEL);
    assert_eq!(typed.model_version, "1");
    assert_eq!(typed.id, "r1");
    assert_eq!(typed.outputs[0].name, "output");
    assert_eq!(typed.outputs[0].shape, [4, 1]);
    let expected: Vec<String> = inputs.iter().map(|i| expected_output(MODEL, i)).collect();
    assert_eq!(outputs(&typed), expected);
    assert_eq!(
        http_outputs(&server, "BYTES", json!(inputs)).await,
        expected
    );
    // Raw contents, as Triton's clients send by default.
    let raw_request = raw(bytes_request(&inputs), encode_bytes_elements(inputs));
    let from_raw = infer(&mut c, raw_request).await.unwrap();
    assert_eq!(outputs(&from_raw), expected);
    // The batch's timing and size travel as metadata, as the HTTP route's
    // headers.
    let response = c.model_infer(bytes_request(&["x"])).await.unwrap();
    let timing = response
        .metadata()
        .get("server-timing")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(timing.starts_with("queue;dur="), "{timing}");
    assert_eq!(response.metadata().get("x-batch-size").unwrap(), "1");
    stop(server).await;
}

#[tokio::test]
async fn fp32_and_int64_inputs_typed_or_raw_answer_what_the_http_route_answers() {
    for datatype in [Datatype::Fp32, Datatype::Int64] {
        let mut cfg = grpc_config();
        cfg.kserve_input_datatype = datatype;
        let server = start(cfg);
        let mut c = connect(&server).await;
        let (typed, raw_bytes, texts, json_data) = match datatype {
            Datatype::Fp32 => {
                let values = [0.25f32, 0.123456, 3.5, -1e-7];
                (
                    InferTensorContents {
                        fp32_contents: values.to_vec(),
                        ..Default::default()
                    },
                    encode_fp32(&values),
                    vec!["0.25", "0.123456", "3.5", "-1e-7"],
                    json!([0.25, 0.123456, 3.5, -1e-7]),
                )
            }
            _ => {
                let values = [7i64, -3, 1_000_000, i64::MAX];
                (
                    InferTensorContents {
                        int64_contents: values.to_vec(),
                        ..Default::default()
                    },
                    encode_int64(&values),
                    vec!["7", "-3", "1000000", "9223372036854775807"],
                    json!(values),
                )
            }
        };
        let mut request = bytes_request(&["", "", "", ""]);
        request.inputs[0].datatype = datatype.name().into();
        request.inputs[0].contents = Some(typed);
        let expected: Vec<String> = texts.iter().map(|t| expected_output(MODEL, t)).collect();
        let answer = infer(&mut c, request.clone()).await.unwrap();
        assert_eq!(outputs(&answer), expected, "{datatype:?} typed");
        let answer = infer(&mut c, raw(request, raw_bytes)).await.unwrap();
        assert_eq!(outputs(&answer), expected, "{datatype:?} raw");
        assert_eq!(
            http_outputs(&server, datatype.name(), json_data).await,
            expected,
            "{datatype:?} over HTTP"
        );
        stop(server).await;
    }
}

/// Executions by batch size, from a statistics snapshot.
fn batches(stats: &ModelStatistics) -> Vec<(u64, u64)> {
    stats
        .batch_stats
        .iter()
        .map(|b| (b.batch_size, b.compute_infer.unwrap_or_default().count))
        .collect()
}

fn successes(stats: &ModelStatistics) -> u64 {
    stats
        .inference_stats
        .unwrap_or_default()
        .success
        .unwrap_or_default()
        .count
}

#[tokio::test]
async fn statistics_count_grpc_and_http_requests_alike_and_together() {
    // No dynamic batching and 64 workers: each request is one batch of its
    // own size.
    let server = start(grpc_config());
    let mut c = connect(&server).await;
    let http = client();
    let url = format!("{}/v2/models/{MODEL}/infer", base_url(&server));
    let before = statistics(&mut c, MODEL).await;
    assert_eq!(successes(&before), 0);
    for n in [1usize, 2, 3] {
        let inputs: Vec<String> = (0..n).map(|k| format!("g{k}")).collect();
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        infer(&mut c, bytes_request(&inputs)).await.unwrap();
    }
    for n in [2usize, 4] {
        let data: Vec<String> = (0..n).map(|k| format!("h{k}")).collect();
        let body = json!({"inputs": [{"name": "input", "shape": [n, 1], "datatype": "BYTES", "data": data}]});
        assert_eq!(
            post(&http, &url, body.to_string()).await.status,
            StatusCode::OK
        );
    }
    // Refused requests count nowhere, over either protocol.
    let mut bad = bytes_request(&["x"]);
    bad.inputs[0].name = "nope".into();
    assert_eq!(
        infer(&mut c, bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let after = statistics(&mut c, MODEL).await;
    assert_eq!(successes(&after), 5);
    assert_eq!(after.inference_count, 1 + 2 + 3 + 2 + 4);
    assert_eq!(after.execution_count, 5);
    assert_eq!(batches(&after), [(1, 1), (2, 2), (3, 1), (4, 1)]);
    let stats = after.inference_stats.unwrap();
    for d in [
        stats.queue,
        stats.compute_input,
        stats.compute_infer,
        stats.compute_output,
    ] {
        assert_eq!(d.unwrap().count, 5);
    }
    assert_eq!(stats.fail.unwrap().count, 0);
    // The HTTP statistics say the same.
    let json_stats = get(
        &http,
        &format!("{}/v2/models/{MODEL}/stats", base_url(&server)),
    )
    .await
    .json();
    let json_stats: model::kserve::ModelStatsResponse = serde_json::from_value(json_stats).unwrap();
    let from_grpc = model::kserve::ModelStats::from(&after);
    assert_eq!(
        json_stats.model_stats[0].inference_count,
        from_grpc.inference_count
    );
    assert_eq!(json_stats.model_stats[0].batch_stats, from_grpc.batch_stats);
    assert_eq!(
        json_stats.model_stats[0].inference_stats.success.count,
        from_grpc.inference_stats.success.count
    );
    // An empty name: every model, the streaming one included.
    let all = c
        .model_statistics(ModelStatisticsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .model_stats;
    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, [MODEL, STREAM]);
    stop(server).await;
}

#[tokio::test]
async fn the_dynamic_batcher_gathers_grpc_and_http_requests_into_one_batch() {
    // A batch leaves when it reaches the preferred size 4, and not before
    // (the window is a minute): two HTTP and two gRPC requests of one item
    // each can only run as one batch of 4.
    let mut cfg = grpc_config();
    cfg.dynamic_batching = true;
    cfg.batch_window_ms = 60_000.0;
    cfg.preferred_batch_sizes = vec![4];
    cfg.max_batch = 8;
    let server = start(cfg);
    let c = connect(&server).await;
    let url = format!("{}/v2/models/{MODEL}/infer", base_url(&server));
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..2 {
        let mut c = c.clone();
        tasks.spawn(async move {
            let response = c
                .model_infer(bytes_request(&[&format!("g{k}")]))
                .await
                .unwrap();
            response
                .metadata()
                .get("x-batch-size")
                .unwrap()
                .to_str()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        });
        let url = url.clone();
        tasks.spawn(async move {
            let body = json!({"inputs": [{"name": "input", "shape": [1, 1], "datatype": "BYTES", "data": [format!("h{k}")]}]});
            let reply = post(&client(), &url, body.to_string()).await;
            assert_eq!(reply.status, StatusCode::OK);
            reply.batch_size()
        });
    }
    let sizes: Vec<usize> = tasks.join_all().await;
    assert_eq!(sizes, [4, 4, 4, 4]);
    let mut c = c.clone();
    let stats = statistics(&mut c, MODEL).await;
    assert_eq!(successes(&stats), 4);
    assert_eq!(stats.execution_count, 1);
    assert_eq!(batches(&stats), [(4, 1)]);
    stop(server).await;
}

/// One stream request for the streaming model.
fn prompt_request(
    id: &str,
    prompt: &str,
    max_tokens: Option<i32>,
    empty_final: bool,
) -> ModelInferRequest {
    let mut inputs = vec![InferInputTensor {
        name: "text_input".into(),
        datatype: "BYTES".into(),
        shape: vec![1],
        contents: Some(InferTensorContents {
            bytes_contents: vec![Bytes::from(prompt.to_owned())],
            ..Default::default()
        }),
        ..Default::default()
    }];
    if let Some(n) = max_tokens {
        inputs.push(InferInputTensor {
            name: "max_tokens".into(),
            datatype: "INT32".into(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                int_contents: vec![n],
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let mut request = ModelInferRequest {
        model_name: STREAM.into(),
        id: id.into(),
        inputs,
        ..Default::default()
    };
    if empty_final {
        request.parameters.insert(
            ENABLE_EMPTY_FINAL_RESPONSE_PARAMETER.into(),
            InferParameter::from_bool(true),
        );
    }
    request
}

/// Sends `requests` on one stream, closes the sending side, and returns
/// every response until the server ends the stream.
async fn stream_all(
    client: &mut Client,
    requests: Vec<ModelInferRequest>,
) -> Vec<ModelStreamInferResponse> {
    let exchange = async {
        let mut responses = client
            .model_stream_infer(tokio_stream::iter(requests))
            .await
            .expect("the stream opens")
            .into_inner();
        let mut out = Vec::new();
        while let Some(response) = responses.next().await {
            out.push(response.expect("no stream error"));
        }
        out
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .expect("stream hung")
}

/// The token of a streamed response.
fn token(response: &ModelStreamInferResponse) -> String {
    let answer = response.infer_response.as_ref().unwrap();
    assert_eq!(answer.outputs[0].name, "text_output");
    let elements = decode_bytes_elements(&answer.raw_output_contents[0]).unwrap();
    assert_eq!(elements.len(), 1);
    String::from_utf8(elements[0].to_vec()).unwrap()
}

/// The tokens `/v1/completions` streams for `prompt` from the streaming
/// model (the OpenAI routes serve its name too).
async fn openai_tokens(server: &RunningServer, prompt: &str, max_tokens: u32) -> Vec<String> {
    let body = json!({"model": STREAM, "prompt": prompt, "max_tokens": max_tokens, "stream": true});
    let reply = post(
        &client(),
        &format!("{}/v1/completions", base_url(server)),
        body.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    std::str::from_utf8(&reply.body)
        .unwrap()
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str::<Value>(data).unwrap())
        .filter(|chunk| chunk["choices"][0]["finish_reason"].is_null())
        .map(|chunk| chunk["choices"][0]["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_decoupled_model_streams_one_response_per_token_then_the_final_flag() {
    let server = start(grpc_config());
    let mut c = connect(&server).await;
    let prompt = "Request 3: the quick brown fox jumps over the lazy dog";
    let expected = openai_tokens(&server, prompt, 5).await;
    assert_eq!(expected.len(), 5);
    let responses = stream_all(&mut c, vec![prompt_request("s1", prompt, Some(5), true)]).await;
    // One response per token, each saying it is not the last, then the
    // empty last one the request asked for.
    assert_eq!(responses.len(), 6);
    let (last, tokens) = responses.split_last().unwrap();
    for response in tokens {
        assert_eq!(response.error_message, "");
        let answer = response.infer_response.as_ref().unwrap();
        assert_eq!(
            (answer.id.as_str(), answer.model_name.as_str()),
            ("s1", STREAM)
        );
        assert_eq!(answer.is_final_response(), Some(false));
    }
    let tokens: Vec<String> = tokens.iter().map(token).collect();
    assert_eq!(tokens, expected);
    let last = last.infer_response.as_ref().unwrap();
    assert_eq!(last.is_final_response(), Some(true));
    assert!(last.outputs.is_empty() && last.raw_output_contents.is_empty());
    assert_eq!(last.id, "s1");

    // Without the request parameter no empty response comes, as in Triton;
    // with the prompt in raw contents and no max_tokens, the whole answer.
    let whole = openai_tokens(&server, prompt, 65_536).await;
    let mut request = prompt_request("s2", "", None, false);
    request.inputs[0].contents = None;
    request.raw_input_contents = vec![Bytes::from(encode_bytes_elements([prompt]))];
    let responses = stream_all(&mut c, vec![request]).await;
    assert!(responses
        .iter()
        .all(|r| r.infer_response.as_ref().unwrap().is_final_response() == Some(false)));
    assert_eq!(responses.iter().map(token).collect::<Vec<_>>(), whole);

    // Two requests on one stream run together; each response names its
    // request.
    let responses = stream_all(
        &mut c,
        vec![
            prompt_request("a", "Request 1: alpha beta", Some(3), true),
            prompt_request("b", "Request 2: gamma delta", Some(4), true),
        ],
    )
    .await;
    for (id, prompt, n) in [
        ("a", "Request 1: alpha beta", 3),
        ("b", "Request 2: gamma delta", 4),
    ] {
        let mine: Vec<&ModelStreamInferResponse> = responses
            .iter()
            .filter(|r| r.infer_response.as_ref().unwrap().id == id)
            .collect();
        assert_eq!(mine.len(), n + 1, "{id}");
        let tokens: Vec<String> = mine[..n].iter().map(|r| token(r)).collect();
        assert_eq!(
            tokens,
            openai_tokens(&server, prompt, n as u32).await,
            "{id}"
        );
    }
    let stats = statistics(&mut c, STREAM).await;
    assert_eq!(successes(&stats), 4);
    assert_eq!(stats.inference_count, 4);
    assert_eq!(stats.inference_stats.unwrap().fail.unwrap().count, 0);

    // The batching model answers on a stream too: one response per
    // request, final, in the order of the requests.
    let mut requests: Vec<ModelInferRequest> = (0..3)
        .map(|k| {
            let mut r = bytes_request(&[&format!("x{k}")]);
            r.id = format!("m{k}");
            r
        })
        .collect();
    requests.insert(1, prompt_request("t", "Request 9: one two", Some(2), true));
    let responses = stream_all(&mut c, requests).await;
    let batched: Vec<&ModelInferResponse> = responses
        .iter()
        .map(|r| r.infer_response.as_ref().unwrap())
        .filter(|r| r.model_name == MODEL)
        .collect();
    assert_eq!(
        batched.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["m0", "m1", "m2"]
    );
    for (k, r) in batched.iter().enumerate() {
        assert_eq!(r.is_final_response(), Some(true));
        assert_eq!(outputs(r), [expected_output(MODEL, &format!("x{k}"))]);
    }
    stop(server).await;
}

#[tokio::test]
async fn every_refusal_is_a_grpc_status_with_tritons_words() {
    let server = start(grpc_config());
    let mut c = connect(&server).await;
    let unknown = infer(
        &mut c,
        ModelInferRequest {
            model_name: "other".into(),
            ..bytes_request(&["x"])
        },
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(
        unknown.message(),
        "Request for unknown model: 'other' is not found"
    );
    let stats = c
        .model_statistics(ModelStatisticsRequest {
            name: "other".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(stats.code(), Code::InvalidArgument);
    assert_eq!(stats.message(), "requested model 'other' is not available");
    let decoupled = infer(&mut c, prompt_request("x", "hi", None, false))
        .await
        .unwrap_err();
    assert_eq!(decoupled.code(), Code::Unimplemented);

    let with = |edit: fn(&mut ModelInferRequest)| {
        let mut request = bytes_request(&["x"]);
        edit(&mut request);
        request
    };
    let cases: Vec<(ModelInferRequest, &str)> = vec![
        (
            with(|r| r.inputs[0].name = "text".into()),
            "unexpected inference input 'text' for model 'example-model'",
        ),
        (
            with(|r| r.inputs[0].datatype = "FP32".into()),
            "inference input 'input' data-type is 'FP32', but model 'example-model' expects 'BYTES'",
        ),
        (
            with(|r| r.inputs[0].shape = vec![1]),
            "unexpected shape for input 'input' for model 'example-model'. Expected [-1,1], got [1]",
        ),
        (
            with(|r| r.inputs[0].shape = vec![33, 1]),
            "inference request batch-size must be <= 32 for 'example-model'",
        ),
        (
            with(|r| r.inputs[0].shape = vec![2, 1]),
            "unexpected number of elements 1 for inference input 'input', expecting 2",
        ),
        (
            with(|r| r.inputs.clear()),
            "expected 1 inputs but got 0 inputs for model 'example-model'",
        ),
        (
            with(|r| r.raw_input_contents = vec![Bytes::from(encode_bytes_elements(["x"]))]),
            "contents field must not be specified when using raw_input_contents for 'input' for model 'example-model'",
        ),
        (
            raw(bytes_request(&["x"]), vec![9, 0, 0, 0, b'x']),
            "inference input 'input': raw BYTES contents end inside element 0 (each element is a 4-byte little-endian length, then that many bytes)",
        ),
        (
            raw(bytes_request(&["x"]), encode_bytes_elements([[0xff, 0xfe]])),
            "inference input 'input': a BYTES element is not UTF-8 text",
        ),
        (
            {
                let mut r = raw(bytes_request(&["x"]), encode_bytes_elements(["x"]));
                r.raw_input_contents.push(Bytes::new());
                r
            },
            "expected 1 raw input contents (one per input) but got 2 for model 'example-model'",
        ),
    ];
    for (request, message) in cases {
        let status = infer(&mut c, request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{message}");
        assert_eq!(status.message(), message);
    }
    // A message over --max-body-bytes is refused by the gRPC layer.
    let large = "x".repeat(2 << 20);
    let status = infer(&mut c, bytes_request(&[&large])).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    // None of them counted.
    let stats = statistics(&mut c, MODEL).await;
    assert_eq!(successes(&stats), 0);
    assert_eq!(stats.inference_stats.unwrap().fail.unwrap().count, 0);

    // On a stream an error is a response that says it, and the stream
    // goes on.
    let mut missing_prompt = prompt_request("p", "x", Some(2), true);
    missing_prompt.inputs.remove(0);
    let responses = stream_all(
        &mut c,
        vec![
            ModelInferRequest {
                model_name: "other".into(),
                id: "u".into(),
                ..Default::default()
            },
            missing_prompt,
            prompt_request("z", "hi", Some(0), true),
            prompt_request("ok", "Request 1: fine", Some(1), true),
        ],
    )
    .await;
    let error_of = |id: &str| {
        responses
            .iter()
            .find(|r| r.infer_response.as_ref().unwrap().id == id)
            .unwrap()
            .error_message
            .clone()
    };
    assert_eq!(
        error_of("u"),
        "Request for unknown model: 'other' is not found"
    );
    assert_eq!(
        error_of("p"),
        "expected input 'text_input' (BYTES, the prompt) for model 'llm-stream'"
    );
    assert_eq!(error_of("z"), "max_tokens is 0; allowed: 1 to 65536");
    let ok: Vec<_> = responses
        .iter()
        .filter(|r| r.infer_response.as_ref().unwrap().id == "ok")
        .collect();
    assert_eq!(ok.len(), 2);
    assert!(ok.iter().all(|r| r.error_message.is_empty()));

    // With Triton's `triton_grpc_error` header, the first error ends the
    // stream with its status.
    let (tx, rx) = mpsc::channel(4);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("triton_grpc_error", "true".parse().unwrap());
    let mut responses = c.model_stream_infer(request).await.unwrap().into_inner();
    tx.send(ModelInferRequest {
        model_name: "other".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), responses.next())
        .await
        .expect("an answer")
        .expect("an item");
    let status = ended.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status.message(),
        "Request for unknown model: 'other' is not found"
    );
    stop(server).await;
}

#[tokio::test]
async fn a_full_queue_is_unavailable_over_grpc_and_503_over_http() {
    // Nothing runs before a batch of 4 forms (a minute's window), and at
    // most 2 items may wait, so no batch ever forms: a request of 2 and one
    // of 1 cannot both be queued. Whichever comes second is refused at
    // once; the other waits.
    let mut cfg = grpc_config();
    cfg.dynamic_batching = true;
    cfg.batch_window_ms = 60_000.0;
    cfg.max_batch = 4;
    cfg.max_queue = 2;
    let server = start(cfg);
    let mut c = connect(&server).await;
    let (mut one, mut two) = (c.clone(), c.clone());
    let mut pair = tokio::spawn(async move { two.model_infer(bytes_request(&["a", "b"])).await });
    let mut single = tokio::spawn(async move { one.model_infer(bytes_request(&["c"])).await });
    let (refused, waiting) = tokio::select! {
        refused = &mut pair => (refused, single),
        refused = &mut single => (refused, pair),
    };
    let status = refused.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status
            .message()
            .starts_with("Exceeds maximum queue size: the queue holds "),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("(limit 2)"),
        "{}",
        status.message()
    );
    // The same queue refuses the HTTP route's request of 2.
    let body = json!({"inputs": [{"name": "input", "shape": [2, 1], "datatype": "BYTES", "data": ["h", "i"]}]});
    let url = format!("{}/v2/models/{MODEL}/infer", base_url(&server));
    let reply = post(&client(), &url, body.to_string()).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    // Refusals count nowhere.
    let stats = statistics(&mut c, MODEL).await;
    assert_eq!(successes(&stats), 0);
    assert_eq!(stats.inference_stats.unwrap().fail.unwrap().count, 0);
    waiting.abort();
    stop(server).await;
}

#[tokio::test]
async fn injected_faults_are_grpc_statuses() {
    let faulty = |faults: FaultConfig| {
        let mut cfg = grpc_config();
        cfg.faults = faults;
        start(cfg)
    };
    // Injected 500s and 503s: INTERNAL and UNAVAILABLE, in the seeded
    // sequence the plan predicts.
    let errors = FaultConfig {
        error_rate: 1.0,
        seed: 11,
        ..FaultConfig::default()
    };
    let plan = errors.plan(20);
    let server = faulty(errors);
    let mut c = connect(&server).await;
    let (mut internal, mut unavailable) = (0, 0);
    for _ in 0..20 {
        let status = infer(&mut c, bytes_request(&["x"])).await.unwrap_err();
        match status.code() {
            Code::Internal => internal += 1,
            Code::Unavailable => unavailable += 1,
            other => panic!("{other:?}: {}", status.message()),
        }
        assert!(
            status.message().starts_with("fault injection: "),
            "{}",
            status.message()
        );
    }
    assert_eq!((internal, unavailable), (plan.error_500, plan.error_503));
    assert!(internal > 0 && unavailable > 0);
    // Invalid requests draw no fault: they get their own error.
    let mut bad = bytes_request(&["x"]);
    bad.inputs[0].shape = vec![1];
    assert_eq!(
        infer(&mut c, bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    stop(server).await;

    // A reset, and a response cut short: the stream breaks with an error
    // status, and the connection goes on serving.
    for faults in [
        FaultConfig {
            reset_rate: 1.0,
            ..FaultConfig::default()
        },
        FaultConfig {
            truncate_rate: 1.0,
            ..FaultConfig::default()
        },
    ] {
        let server = faulty(faults.clone());
        let mut c = connect(&server).await;
        let status = infer(&mut c, bytes_request(&["x"])).await.unwrap_err();
        // tonic's client reports a stream reset as a transport error.
        assert_eq!(status.code(), Code::Unknown, "{faults:?}: {status:?}");
        assert!(
            format!("{status:?}").contains("INTERNAL_ERROR"),
            "{status:?}"
        );
        assert!(
            c.server_live(ServerLiveRequest {})
                .await
                .unwrap()
                .into_inner()
                .live
        );
        stop(server).await;
    }

    // A corruption: one output of the batch is wrong, at the same length.
    let server = faulty(FaultConfig {
        corrupt_rate: 1.0,
        ..FaultConfig::default()
    });
    let mut c = connect(&server).await;
    let inputs = ["a", "b", "c"];
    let answer = infer(&mut c, bytes_request(&inputs)).await.unwrap();
    let got = outputs(&answer);
    let wrong: Vec<usize> = (0..3)
        .filter(|&k| got[k] != expected_output(MODEL, inputs[k]))
        .collect();
    assert_eq!(wrong.len(), 1, "{got:?}");
    assert_eq!(
        got[wrong[0]].len(),
        expected_output(MODEL, inputs[wrong[0]]).len()
    );
    stop(server).await;

    // A stall: held, then served right.
    let server = faulty(FaultConfig {
        stall_rate: 1.0,
        stall_ms: 5,
        ..FaultConfig::default()
    });
    let mut c = connect(&server).await;
    let answer = infer(&mut c, bytes_request(&["a"])).await.unwrap();
    assert_eq!(outputs(&answer), [expected_output(MODEL, "a")]);
    stop(server).await;
}

#[tokio::test]
async fn the_binary_announces_grpc_second_and_stops_both_listeners_on_sigterm() {
    let child = Command::new(env!("CARGO_BIN_EXE_stub-server"))
        .args([
            "--profile",
            "zero-cost",
            "--bind",
            "127.0.0.1:0",
            "--grpc-bind",
            "127.0.0.1:0",
            "--step-base-ms",
            "20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    // Killed if the test fails before it exits.
    let child = std::sync::Arc::new(std::sync::Mutex::new(Guard(child)));
    let stdout = child.lock().unwrap().0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().take(2) {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a first line");
    assert!(
        first.starts_with("listening on http://127.0.0.1:"),
        "{first}"
    );
    let second = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a second line");
    let addr = second
        .strip_prefix("grpc listening on ")
        .unwrap_or_else(|| panic!("{second}"))
        .to_owned();
    let mut c = connect_to(&addr).await;
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    // An answer streaming when SIGTERM comes is finished, then the stream
    // ends cleanly and the process exits 0.
    let prompt = "Request 5: one two three four five six";
    let mut responses = c
        .model_stream_infer(tokio_stream::iter(vec![prompt_request(
            "s",
            prompt,
            Some(6),
            true,
        )]))
        .await
        .unwrap()
        .into_inner();
    let first_token = responses.next().await.unwrap().unwrap();
    assert_eq!(first_token.error_message, "");
    let pid = child.lock().unwrap().0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut rest = Vec::new();
    while let Some(response) = responses.next().await {
        rest.push(response.expect("the stream ends cleanly"));
    }
    assert_eq!(rest.len(), 6, "five more tokens and the final response");
    assert_eq!(
        rest.last()
            .unwrap()
            .infer_response
            .as_ref()
            .unwrap()
            .is_final_response(),
        Some(true)
    );
    let waiting = child.clone();
    let status = tokio::task::spawn_blocking(move || {
        let mut guard = waiting.lock().unwrap();
        for _ in 0..2000 {
            if let Some(status) = guard.0.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    })
    .await
    .unwrap()
    .expect("exits within 20 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    // Both listeners are gone.
    assert!(std::net::TcpStream::connect(&addr).is_err());
}
