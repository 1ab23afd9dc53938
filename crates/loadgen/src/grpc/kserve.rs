//! KServe v2's calls over gRPC: the checks before the load, `ModelInfer`,
//! `ModelStreamInfer` and `ModelStatistics`.
//!
//! Before any load ([`KServeGrpc::connect`]), on a connection of its own:
//! `ServerReady`, `ModelReady`, `ModelMetadata` and `ModelConfig`
//! (`max_batch_size`, and whether the model is decoupled). The tensors are
//! settled exactly as over HTTP ([`crate::api::kserve::settle`]): the same
//! input and output defaults, datatype and shape checks and batch limits,
//! in the same words.
//!
//! `ModelInfer` stacks a batch's items along dimension 0 and sends them in
//! `raw_input_contents`, as Triton's own clients do: a `BYTES` element is
//! a 4-byte little-endian length and the text; `FP32` and `INT64` elements
//! come from the generator seeded by the request id that the HTTP API
//! draws from. The output is split back per item, verified (`BYTES`, with
//! `--verify`) against `model::output::expected_output` and digested as
//! over HTTP: a text's bytes, or the compact JSON of an item's numbers.
//!
//! `--streaming` sends each logical request on a `ModelStreamInfer` stream
//! of its own, for a decoupled model (an LLM backend): every response with
//! an output element is a token, stamped as it arrives, which gives TTFT,
//! the inter-token gaps and the token count of the LLM columns. The prompt
//! is the input `text_input` (or `--input-name`, or the model's only
//! `BYTES` input); `--max-tokens N` goes in its input `max_tokens`. The
//! request asks for Triton's empty final response
//! (`triton_enable_empty_final_response`), so the last response says the
//! answer is complete, and the header `triton_grpc_error: true` makes a
//! failed request end its stream with its status. With `--verify` the
//! tokens' text must be `model::output::answer_text` (the simulator's
//! streamed answer).
//!
//! `--timeout` is the call's deadline: sent as `grpc-timeout`, and kept by
//! the client (connection set-up included), whose row then says
//! `grpc_deadline_exceeded`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use model::kserve::{Datatype, ModelMetadata, ModelStats, TensorMetadata};
use model::kserve_grpc::{
    self as pb, encode_bytes_elements, encode_fp32, encode_int64,
    model_infer_request::{InferInputTensor, InferRequestedOutputTensor},
    GrpcInferenceServiceClient, InferParameter, ModelInferRequest, ModelInferResponse,
    ENABLE_EMPTY_FINAL_RESPONSE_PARAMETER,
};
use model::log::TokensFrom;
use model::output::{answer_text, expected_output, output_digest};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::{Code, Status};

use super::channel::{self, Channel, H2Service, SetUp};
use crate::api::kserve::{
    item_numbers, next_fp32_micros, next_int64, settle, KServeOptions, Tensors,
};
use crate::api::{all_failed, ApiError};
use crate::client::{ServerFacts, TransportError};
use crate::config::{ConnectionMode, LoadConfig};
use crate::engine::{Answer, Failure, LogicalRequest};
use crate::target::Target;
use crate::tls::Tls;
use crate::verify::{Checks, ItemVerdict, StreamedItem};

/// The largest message a call reads: the HTTP client's body limit.
const MAX_MESSAGE_BYTES: usize = crate::http1::MAX_BODY_BYTES;

/// The input a decoupled LLM model takes its prompt from (Triton's
/// TensorRT-LLM and vLLM backends, and stub-server's `llm-stream`).
const PROMPT_INPUT: &str = "text_input";

/// The input that bounds an LLM model's answer.
const MAX_TOKENS_INPUT: &str = "max_tokens";

/// The request header with which a failed request ends its stream with
/// its status instead of an in-band `error_message` (Triton's).
const GRPC_ERROR_HEADER: &str = "triton_grpc_error";

/// What the command line says of a `--api kserve-v2-grpc` run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KServeGrpcOptions {
    /// The tensors, as for `--api kserve-v2`.
    pub tensors: KServeOptions,
    /// Call `ModelStreamInfer` (a decoupled model: every response is a
    /// token) instead of `ModelInfer`.
    pub streaming: bool,
    /// With `streaming`: the value of the model's `max_tokens` input.
    pub max_tokens: Option<u32>,
}

/// The `max_tokens` input of a streamed request.
#[derive(Debug, Clone)]
struct MaxTokens {
    /// Its raw contents: one INT32 or INT64 element.
    raw: Bytes,
    datatype: &'static str,
    value: u32,
}

/// KServe v2 over gRPC, once the server and the model are checked.
pub(crate) struct KServeGrpc {
    /// The load's connections.
    channel: Channel,
    /// The checks' and the statistics' connection, apart from the load's.
    probe: Channel,
    model: String,
    tensors: Tensors,
    /// `Some` with `--streaming`: the `max_tokens` input, if sent.
    stream: Option<Option<MaxTokens>>,
    /// `-H` headers, sent as metadata on every call.
    headers: MetadataMap,
    timeout: Duration,
}

/// Why a call failed before it had a status of its own.
enum CallError {
    /// No stream: the connection could not be opened.
    Transport(TransportError),
    /// The call ended with this status.
    Status(Status),
    /// A streamed request's in-band `error_message`.
    InBand(String),
}

impl From<Status> for CallError {
    fn from(status: Status) -> Self {
        Self::Status(status)
    }
}

fn api_error(reason: String) -> ApiError {
    ApiError::KServeGrpc(reason)
}

/// What a failed check before the load says: the transport's kind, or the
/// status's kind and message.
fn check_failed(rpc: &str, error: CallError) -> String {
    let why = match error {
        CallError::Transport(kind) => kind.kind().to_owned(),
        CallError::Status(status) => channel::call_error(&status),
        CallError::InBand(message) => message,
    };
    format!("{rpc} failed before any load: {why}")
}

impl KServeGrpc {
    /// Checks the server and the model and settles the tensors; nothing
    /// is sent to the model before these pass.
    pub(crate) async fn connect(
        options: &KServeGrpcOptions,
        config: &LoadConfig,
        target: &Target,
        addrs: Vec<std::net::SocketAddr>,
        tls: Option<Tls>,
    ) -> Result<Self, ApiError> {
        let path = target.path_and_query.split('?').next().unwrap_or("");
        if !path.is_empty() && path != "/" {
            return Err(api_error(format!(
                "--url {}: a gRPC server is named by scheme, host and port only (its methods' paths are fixed); drop {path:?}",
                config.url
            )));
        }
        if options.max_tokens.is_some() && !options.streaming {
            return Err(api_error(
                "--max-tokens applies to --streaming (the input of a decoupled LLM model)".into(),
            ));
        }
        if options.streaming && config.batch_size > 1 {
            return Err(api_error(format!(
                "--streaming sends each logical request on a stream of its own; --batch-size {} must be 1",
                config.batch_size
            )));
        }
        let probe = Channel::new(target, addrs.clone(), tls.clone(), ConnectionMode::Pooled);
        let channel = Channel::new(target, addrs, tls, config.connection);
        let mut headers = MetadataMap::new();
        for (name, value) in &config.headers {
            let key = MetadataKey::from_bytes(name.as_str().as_bytes());
            let value = MetadataValue::try_from(value.as_bytes());
            match (key, value) {
                (Ok(key), Ok(value)) => {
                    headers.append(key, value);
                }
                _ => {
                    return Err(api_error(format!(
                        "-H {name}: not usable as gRPC metadata (ASCII names and values only)"
                    )))
                }
            }
        }
        let model = config.model.clone();
        let timeout = config.timeout;
        let mut client = Probe {
            channel: &probe,
            timeout,
        };
        let ready = client
            .call(
                |mut c, r| async move { c.server_ready(r).await },
                pb::ServerReadyRequest {},
            )
            .await
            .map_err(|e| api_error(check_failed("ServerReady", e)))?;
        if !ready.ready {
            return Err(api_error(
                "the server is not ready: ServerReady answered ready: false".into(),
            ));
        }
        let named = || pb::ModelReadyRequest {
            name: model.clone(),
            version: String::new(),
        };
        let ready = client
            .call(|mut c, r| async move { c.model_ready(r).await }, named())
            .await
            .map_err(|e| api_error(check_failed("ModelReady", e)))?;
        if !ready.ready {
            return Err(api_error(format!(
                "model {model:?} is not ready (ModelReady answered false): the server does not serve it, or has not loaded it yet"
            )));
        }
        let metadata = client
            .call(
                |mut c, r| async move { c.model_metadata(r).await },
                pb::ModelMetadataRequest {
                    name: model.clone(),
                    version: String::new(),
                },
            )
            .await
            .map_err(|e| {
                api_error(format!(
                    "model {model:?}: {}",
                    check_failed("ModelMetadata", e)
                ))
            })?;
        // `max_batch_size` and the transaction policy are Triton's; a
        // server without ModelConfig is taken at its metadata's word.
        let config_answer = client
            .call(
                |mut c, r| async move { c.model_config(r).await },
                pb::ModelConfigRequest {
                    name: model.clone(),
                    version: String::new(),
                },
            )
            .await
            .ok()
            .and_then(|answer| answer.config);
        let max_batch = config_answer
            .as_ref()
            .map(|c| u64::try_from(c.max_batch_size).unwrap_or(0));
        let decoupled = config_answer
            .as_ref()
            .and_then(|c| c.model_transaction_policy)
            .is_some_and(|p| p.decoupled);
        if decoupled && !options.streaming {
            return Err(api_error(format!(
                "model {model:?} is decoupled: it answers only on ModelStreamInfer; add --streaming"
            )));
        }
        let metadata = json_metadata(metadata);
        let mut tensor_options = options.tensors.clone();
        if options.streaming && tensor_options.input_name.is_none() {
            tensor_options.input_name = Some(prompt_input(&model, &metadata)?);
        }
        let tensors = settle(
            &tensor_options,
            &model,
            config.batch_size,
            &metadata,
            max_batch,
        )
        .map_err(|e| match e {
            ApiError::KServe(reason) => ApiError::KServeGrpc(reason),
            other => other,
        })?;
        let stream = if options.streaming {
            if tensors.datatype != Datatype::Bytes {
                return Err(api_error(format!(
                    "--streaming sends a text prompt; input {:?} of model {model:?} is {}",
                    tensors.input_name,
                    tensors.datatype.name()
                )));
            }
            Some(match options.max_tokens {
                None => None,
                Some(value) => Some(max_tokens_input(&model, &metadata, value)?),
            })
        } else {
            None
        };
        Ok(Self {
            channel,
            probe,
            model,
            tensors,
            stream,
            headers,
            timeout,
        })
    }

    /// Whether rows carry the LLM columns: streamed calls.
    pub(crate) fn token_metrics(&self) -> bool {
        self.stream.is_some()
    }

    /// Whether outputs can be checked: a `BYTES` text has the simulator's
    /// expected outputs (and a stream the simulator's answers).
    pub(crate) fn can_verify(&self) -> bool {
        self.tensors.datatype == Datatype::Bytes
    }

    /// Why outputs cannot be checked, for messages.
    pub(crate) fn why_unverifiable(&self) -> String {
        format!(
            "model {}'s input is {}, and only BYTES text has the simulator's expected outputs",
            self.model,
            self.tensors.datatype.name()
        )
    }

    /// The protocol line of the start and the summary.
    pub(crate) fn protocol(&self) -> String {
        let method = if self.stream.is_some() {
            "ModelStreamInfer"
        } else {
            "ModelInfer"
        };
        if self.channel.is_tls() {
            format!("gRPC ({method}) over TLS (ALPN h2, required)")
        } else {
            format!("gRPC ({method}) over HTTP/2 cleartext (prior knowledge)")
        }
    }

    /// TCP connections the load has opened.
    pub(crate) fn connections_opened(&self) -> u64 {
        self.channel.connections_opened()
    }

    /// Restarts the connection count (after the warm-up).
    pub(crate) fn reset_connections_opened(&self) {
        self.channel.reset_connections_opened();
    }

    /// Where the statistics come from, for the statistics file.
    pub(crate) fn stats_origin(&self) -> String {
        format!(
            "{} inference.GRPCInferenceService/ModelStatistics (model {:?})",
            self.probe.origin(),
            self.model
        )
    }

    /// The model's statistics (its first version's entry), by
    /// `ModelStatistics`, on the checks' connection.
    pub(crate) async fn statistics(&self) -> Result<ModelStats, String> {
        let mut client = Probe {
            channel: &self.probe,
            timeout: self.timeout,
        };
        let answer = client
            .call(
                |mut c, r| async move { c.model_statistics(r).await },
                pb::ModelStatisticsRequest {
                    name: self.model.clone(),
                    version: String::new(),
                },
            )
            .await
            .map_err(|e| check_failed("ModelStatistics", e))?;
        answer
            .model_stats
            .first()
            .map(ModelStats::from)
            .ok_or_else(|| "ModelStatistics answered no model_stats entry".to_owned())
    }

    /// One call carrying `items`: the answer and a verdict per item, or
    /// the failure every item's row gets.
    pub(crate) async fn call(
        &self,
        items: &[LogicalRequest],
        checks: Checks,
    ) -> Result<(Answer, Vec<ItemVerdict>), Failure> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut setup = SetUp::default();
        let exchange = async {
            let service = self
                .channel
                .service(&mut setup)
                .await
                .map_err(CallError::Transport)?;
            let client =
                GrpcInferenceServiceClient::with_origin(service, self.channel.origin().clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES);
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match &self.stream {
                None => self.infer(client, items, checks, remaining).await,
                Some(max_tokens) => {
                    self.stream_infer(client, items, max_tokens.as_ref(), checks, remaining)
                        .await
                }
            }
        };
        let outcome = tokio::time::timeout_at(deadline, exchange).await;
        let finished_at = Instant::now();
        let failure = |error: String| Failure {
            error,
            finished_at,
            connect_ms: setup.connect_ms,
            tls_ms: setup.tls_ms,
            retries: 0,
        };
        match outcome {
            Ok(Ok((facts, answered_at, verdicts))) => Ok((
                Answer {
                    status_code: 200,
                    facts,
                    finished_at: answered_at,
                    connect_ms: setup.connect_ms.unwrap_or(0.0),
                    tls_ms: self.channel.is_tls().then(|| setup.tls_ms.unwrap_or(0.0)),
                    retries: 0,
                },
                verdicts,
            )),
            Err(_) => Err(failure(
                channel::code_kind(Code::DeadlineExceeded).to_owned(),
            )),
            Ok(Err(CallError::Transport(kind))) => Err(failure(kind.kind().to_owned())),
            Ok(Err(CallError::Status(status))) => Err(failure(channel::call_error(&status))),
            Ok(Err(CallError::InBand(message))) => {
                Err(failure(channel::with_message("stream_error", &message)))
            }
        }
    }

    /// The request for `items`: one input, stacked along dimension 0.
    fn request(&self, items: &[LogicalRequest]) -> ModelInferRequest {
        let tensors = &self.tensors;
        let elements = items.len() * tensors.item_elements;
        let raw = match tensors.datatype {
            Datatype::Bytes => encode_bytes_elements(items.iter().flat_map(|item| {
                std::iter::repeat_n(item.input.as_bytes(), tensors.item_elements)
            })),
            Datatype::Fp32 => {
                let mut values = Vec::with_capacity(elements);
                for item in items {
                    let mut numbers = item_numbers(item.request_id);
                    for _ in 0..tensors.item_elements {
                        // The nearest f32 to the decimal the HTTP API sends.
                        values.push((next_fp32_micros(&mut numbers) as f64 / 1e6) as f32);
                    }
                }
                encode_fp32(&values)
            }
            Datatype::Int64 => {
                let mut values = Vec::with_capacity(elements);
                for item in items {
                    let mut numbers = item_numbers(item.request_id);
                    for _ in 0..tensors.item_elements {
                        values.push(next_int64(&mut numbers) as i64);
                    }
                }
                encode_int64(&values)
            }
        };
        ModelInferRequest {
            model_name: self.model.clone(),
            inputs: vec![InferInputTensor {
                name: tensors.input_name.clone(),
                datatype: tensors.datatype.name().to_owned(),
                shape: tensors
                    .shape(items.len())
                    .into_iter()
                    .map(|d| i64::try_from(d).unwrap_or(i64::MAX))
                    .collect(),
                ..Default::default()
            }],
            outputs: vec![InferRequestedOutputTensor {
                name: tensors.output_name.clone(),
                ..Default::default()
            }],
            raw_input_contents: vec![Bytes::from(raw)],
            ..Default::default()
        }
    }

    /// `ModelInfer`.
    async fn infer(
        &self,
        mut client: GrpcInferenceServiceClient<H2Service>,
        items: &[LogicalRequest],
        checks: Checks,
        remaining: Duration,
    ) -> Result<(ServerFacts, Instant, Vec<ItemVerdict>), CallError> {
        let mut request = tonic::Request::new(self.request(items));
        *request.metadata_mut() = self.headers.clone();
        request.set_timeout(remaining);
        let response = client.model_infer(request).await?;
        let answered_at = Instant::now();
        let facts = facts(response.metadata());
        Ok((
            facts,
            answered_at,
            self.judge(response.get_ref(), items, checks),
        ))
    }

    /// One verdict per item from a `ModelInfer` response.
    fn judge(
        &self,
        response: &ModelInferResponse,
        items: &[LogicalRequest],
        checks: Checks,
    ) -> Vec<ItemVerdict> {
        let n = items.len();
        let Some(index) = response
            .outputs
            .iter()
            .position(|t| t.name == self.tensors.output_name)
        else {
            return all_failed(n, "missing_output");
        };
        let output = &response.outputs[index];
        let Some(values) = Values::of(response, index) else {
            return all_failed(n, "missing_output");
        };
        let count = values.len();
        if count == 0 || !count.is_multiple_of(n) {
            return all_failed(n, "wrong_length");
        }
        if self.tensors.batches && output.shape.first().is_some_and(|&d| d != n as i64) {
            return all_failed(n, "wrong_length");
        }
        let per_item = count / n;
        let verify = checks.verify && self.can_verify() && matches!(values, Values::Bytes(_));
        items
            .iter()
            .enumerate()
            .map(|(k, item)| {
                let range = k * per_item..(k + 1) * per_item;
                let text = values.text(range.clone());
                let error = if verify
                    && text != Some(expected_output(&self.model, &item.input).as_bytes())
                {
                    "output_mismatch".to_owned()
                } else {
                    String::new()
                };
                let output_digest = checks.digests.then(|| match text {
                    Some(text) => output_digest(text),
                    None => output_digest(values.json(range).as_bytes()),
                });
                ItemVerdict {
                    verified: verify && error.is_empty(),
                    error,
                    output_digest,
                    stream: None,
                }
            })
            .collect()
    }

    /// `ModelStreamInfer` for one logical request: its tokens, timed.
    async fn stream_infer(
        &self,
        mut client: GrpcInferenceServiceClient<H2Service>,
        items: &[LogicalRequest],
        max_tokens: Option<&MaxTokens>,
        checks: Checks,
        remaining: Duration,
    ) -> Result<(ServerFacts, Instant, Vec<ItemVerdict>), CallError> {
        let Some(item) = items.first() else {
            return Ok((ServerFacts::default(), Instant::now(), Vec::new()));
        };
        let mut message = self.request(items);
        message.id = item.request_id.to_string();
        message.parameters.insert(
            ENABLE_EMPTY_FINAL_RESPONSE_PARAMETER.to_owned(),
            InferParameter::from_bool(true),
        );
        if let Some(max_tokens) = max_tokens {
            message.inputs.push(InferInputTensor {
                name: MAX_TOKENS_INPUT.to_owned(),
                datatype: max_tokens.datatype.to_owned(),
                shape: vec![1],
                ..Default::default()
            });
            message.raw_input_contents.push(max_tokens.raw.clone());
        }
        let mut request = tonic::Request::new(tonic::codegen::tokio_stream::once(message));
        *request.metadata_mut() = self.headers.clone();
        request
            .metadata_mut()
            .insert(GRPC_ERROR_HEADER, MetadataValue::from_static("true"));
        request.set_timeout(remaining);
        let response = client.model_stream_infer(request).await?;
        let facts = facts(response.metadata());
        let mut responses = response.into_inner();
        let mut tokens = Tokens::default();
        let mut finished_at = None;
        while let Some(message) = responses.message().await? {
            let at = Instant::now();
            if !message.error_message.is_empty() {
                return Err(CallError::InBand(message.error_message));
            }
            let Some(response) = message.infer_response else {
                continue;
            };
            tokens.take(&response, &self.tensors.output_name, at);
            if response.is_final_response() == Some(true) {
                // The stream's trailers follow; the answer is complete now.
                finished_at.get_or_insert(at);
            }
        }
        let finished_at = finished_at.unwrap_or_else(Instant::now);
        let verify = checks.verify && self.can_verify();
        let matches = !verify
            || tokens.text
                == answer_text(
                    &self.model,
                    &item.input,
                    max_tokens.map(|m| m.value as usize),
                    false,
                )
                .0
                .as_bytes();
        let verdict = ItemVerdict {
            error: if matches {
                String::new()
            } else {
                "output_mismatch".to_owned()
            },
            verified: verify && matches,
            output_digest: checks.digests.then(|| output_digest(&tokens.text)),
            stream: Some(StreamedItem {
                first_token_at: tokens.first_at,
                itl_ms: tokens.itl_ms,
                output_tokens: Some(tokens.count),
                tokens_from: Some(TokensFrom::Counted),
                // KServe v2 reports no prompt length, and conversations
                // (which need the answer back) are OpenAI chat's only.
                prompt_tokens: None,
                answer: None,
            }),
        };
        Ok((facts, finished_at, vec![verdict]))
    }
}

/// The tokens of one streamed answer, as they arrived.
#[derive(Debug, Default)]
struct Tokens {
    text: Vec<u8>,
    count: u64,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    itl_ms: Vec<f64>,
}

impl Tokens {
    /// Takes the token a response carries, if it carries one: an element
    /// of the output (an empty final response carries none).
    fn take(&mut self, response: &ModelInferResponse, output_name: &str, at: Instant) {
        let Some(index) = response.outputs.iter().position(|t| t.name == output_name) else {
            return;
        };
        let Some(values) = Values::of(response, index) else {
            return;
        };
        if values.len() == 0 {
            return;
        }
        match values.text(0..values.len()) {
            Some(text) => self.text.extend_from_slice(text),
            None => self
                .text
                .extend_from_slice(values.json(0..values.len()).as_bytes()),
        }
        match self.last_at {
            None => self.first_at = Some(at),
            Some(last) => self.itl_ms.push(crate::engine::ms_between(last, at)),
        }
        self.last_at = Some(at);
        self.count += 1;
    }
}

/// An output tensor's elements, from its raw contents or typed contents.
enum Values<'a> {
    Bytes(Vec<&'a [u8]>),
    Fp32(Vec<f32>),
    Int64(Vec<i64>),
    /// Any other fixed-width datatype, as raw bytes of `width` each.
    Raw {
        bytes: &'a [u8],
        width: usize,
    },
}

impl<'a> Values<'a> {
    /// Output `index` of `response`; `None` when its contents cannot be
    /// read.
    fn of(response: &'a ModelInferResponse, index: usize) -> Option<Self> {
        let output = response.outputs.get(index)?;
        match response.raw_output_contents.get(index) {
            Some(raw) => Self::from_raw(&output.datatype, raw),
            None => {
                let contents = output.contents.as_ref()?;
                Some(match output.datatype.as_str() {
                    "BYTES" => {
                        Self::Bytes(contents.bytes_contents.iter().map(|b| b.as_ref()).collect())
                    }
                    "FP32" => Self::Fp32(contents.fp32_contents.clone()),
                    "INT64" => Self::Int64(contents.int64_contents.clone()),
                    _ => return None,
                })
            }
        }
    }

    fn from_raw(datatype: &str, raw: &'a [u8]) -> Option<Self> {
        Some(match datatype {
            "BYTES" => Self::Bytes(pb::decode_bytes_elements(raw).ok()?),
            "FP32" => Self::Fp32(pb::decode_fp32(raw).ok()?),
            "INT64" => Self::Int64(pb::decode_int64(raw).ok()?),
            other => {
                let width = match other {
                    "BOOL" | "INT8" | "UINT8" => 1,
                    "INT16" | "UINT16" | "FP16" | "BF16" => 2,
                    "INT32" | "UINT32" => 4,
                    "UINT64" | "FP64" => 8,
                    _ => return None,
                };
                if !raw.len().is_multiple_of(width) {
                    return None;
                }
                Self::Raw { bytes: raw, width }
            }
        })
    }

    fn len(&self) -> usize {
        match self {
            Self::Bytes(v) => v.len(),
            Self::Fp32(v) => v.len(),
            Self::Int64(v) => v.len(),
            Self::Raw { bytes, width } => bytes.len() / width,
        }
    }

    /// The text of elements `range`, when they are one `BYTES` element.
    fn text(&self, range: std::ops::Range<usize>) -> Option<&'a [u8]> {
        match self {
            Self::Bytes(v) if range.len() == 1 => v.get(range.start).copied(),
            _ => None,
        }
    }

    /// Elements `range` as compact JSON (raw widths as their bytes in hex).
    fn json(&self, range: std::ops::Range<usize>) -> String {
        let value = match self {
            Self::Bytes(v) => serde_json::to_value(
                v.get(range)
                    .unwrap_or_default()
                    .iter()
                    .map(|b| String::from_utf8_lossy(b))
                    .collect::<Vec<_>>(),
            ),
            Self::Fp32(v) => serde_json::to_value(v.get(range).unwrap_or_default()),
            Self::Int64(v) => serde_json::to_value(v.get(range).unwrap_or_default()),
            Self::Raw { bytes, width } => {
                let hex: String = bytes
                    .get(range.start * width..range.end * width)
                    .unwrap_or_default()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                Ok(serde_json::Value::String(hex))
            }
        };
        value.map(|v| v.to_string()).unwrap_or_default()
    }
}

/// What the server said of its queue, execution and batch, in the
/// response's metadata (stub-server sends `server-timing` and
/// `x-batch-size` as its HTTP routes send the headers; Triton neither).
fn facts(metadata: &MetadataMap) -> ServerFacts {
    let value = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok());
    ServerFacts::from_values(
        value(model::wire::SERVER_TIMING_HEADER),
        value(model::wire::BATCH_SIZE_HEADER),
    )
}

/// The gRPC metadata as the HTTP API's JSON metadata, for the shared
/// checks.
fn json_metadata(metadata: pb::ModelMetadataResponse) -> ModelMetadata {
    let tensors = |list: Vec<pb::model_metadata_response::TensorMetadata>| {
        list.into_iter()
            .map(|t| TensorMetadata {
                name: t.name,
                datatype: t.datatype,
                shape: t.shape,
            })
            .collect()
    };
    ModelMetadata {
        name: metadata.name,
        versions: metadata.versions,
        platform: metadata.platform,
        inputs: tensors(metadata.inputs),
        outputs: tensors(metadata.outputs),
    }
}

/// The input a streamed request's prompt goes in: `text_input`, else the
/// model's only `BYTES` input.
fn prompt_input(model: &str, metadata: &ModelMetadata) -> Result<String, ApiError> {
    if metadata.inputs.iter().any(|t| t.name == PROMPT_INPUT) {
        return Ok(PROMPT_INPUT.to_owned());
    }
    let texts: Vec<&TensorMetadata> = metadata
        .inputs
        .iter()
        .filter(|t| t.datatype == "BYTES")
        .collect();
    match texts.as_slice() {
        [only] => Ok(only.name.clone()),
        _ => Err(api_error(format!(
            "model {model:?} has no input {PROMPT_INPUT:?} and not exactly one BYTES input (its inputs: {}); name the prompt's with --input-name",
            metadata
                .inputs
                .iter()
                .map(|t| format!("{} {}", t.name, t.datatype))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The `max_tokens` input of `model`, holding `value`.
fn max_tokens_input(
    model: &str,
    metadata: &ModelMetadata,
    value: u32,
) -> Result<MaxTokens, ApiError> {
    let input = metadata
        .inputs
        .iter()
        .find(|t| t.name == MAX_TOKENS_INPUT)
        .ok_or_else(|| {
            api_error(format!(
                "--max-tokens: model {model:?} has no input {MAX_TOKENS_INPUT:?}"
            ))
        })?;
    let (raw, datatype) = match input.datatype.as_str() {
        "INT32" => (
            Bytes::copy_from_slice(&i32::try_from(value).unwrap_or(i32::MAX).to_le_bytes()),
            "INT32",
        ),
        "INT64" => (Bytes::from(encode_int64(&[i64::from(value)])), "INT64"),
        other => {
            return Err(api_error(format!(
                "--max-tokens: input {MAX_TOKENS_INPUT:?} of model {model:?} is {other}; this client sends INT32 or INT64"
            )))
        }
    };
    Ok(MaxTokens {
        raw,
        datatype,
        value,
    })
}

/// The checks' calls: one at a time, each within the run's timeout.
struct Probe<'a> {
    channel: &'a Channel,
    timeout: Duration,
}

impl Probe<'_> {
    /// Calls `rpc` with `message`, within the timeout.
    async fn call<M, R, F, Fut>(&mut self, rpc: F, message: M) -> Result<R, CallError>
    where
        F: FnOnce(GrpcInferenceServiceClient<H2Service>, tonic::Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let exchange = async {
            let mut setup = SetUp::default();
            let service = self
                .channel
                .service(&mut setup)
                .await
                .map_err(CallError::Transport)?;
            let client =
                GrpcInferenceServiceClient::with_origin(service, self.channel.origin().clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES);
            let mut request = tonic::Request::new(message);
            request.set_timeout(self.timeout);
            let response = rpc(client, request).await?;
            Ok(response.into_inner())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(CallError::Status(Status::deadline_exceeded(format!(
                    "no answer within --timeout {} ms",
                    self.timeout.as_millis()
                ))))
            })
    }
}
