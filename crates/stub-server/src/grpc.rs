//! KServe v2 over gRPC (`--grpc-bind`), as NVIDIA Triton serves it on its
//! port 8001: service `inference.GRPCInferenceService` over HTTP/2
//! cleartext, on the same scheduler, statistics and LLM step loop as the
//! HTTP routes.
//!
//! # Models
//!
//! - Every `--models` name is the batching model of the `/v2` HTTP routes:
//!   one input `input` (`BYTES`, or `--kserve-input-datatype`) and one
//!   `BYTES` output `output`, shape `[B, 1]`. A `ModelInfer` goes through
//!   the very code of `POST /v2/models/{m}/infer` after its inputs are
//!   read ([`App::kserve_execute`]): it is queued, batched (dynamically if
//!   on) and counted in `ModelStatistics` alike, and answers the same
//!   outputs. Inputs come in `InferTensorContents`' typed fields or in
//!   `raw_input_contents` (little-endian numbers; a `BYTES` element is a
//!   4-byte little-endian length and its bytes); an `FP32` element's text
//!   is its shortest round-trip decimal (`0.5`, `1.0`). Outputs go out in
//!   `raw_output_contents`, as Triton sends them, and the response's
//!   metadata carries `server-timing` and `x-batch-size` as the HTTP
//!   route's headers do.
//! - `--grpc-stream-model` (`llm-stream`) is a decoupled model
//!   (`model_transaction_policy.decoupled = true`) that streams an LLM's
//!   answer on the step loop of the OpenAI routes: input `text_input`
//!   (`BYTES`, one element, the prompt) and optional `max_tokens` (`INT32`
//!   or `INT64`, one element), output `text_output` (`BYTES`, one element).
//!   Each generated token is one `ModelStreamInferResponse`, the same
//!   tokens as `/v1/completions` gives for that prompt and `max_tokens`.
//!   As in Triton, every response carries the parameter
//!   `triton_final_response` (false on tokens), and a request that sets
//!   `triton_enable_empty_final_response` gets a last, empty response with
//!   it true. It counts requests in `ModelStatistics` (`success`, `fail`,
//!   `inference_count`); its steps are in `/metrics`.
//!
//! # Errors
//!
//! gRPC statuses with Triton's codes and words: an unknown model is
//! `NOT_FOUND` (`INVALID_ARGUMENT` from `ModelStatistics`, and `ModelReady`
//! answers `ready: false`), a bad input `INVALID_ARGUMENT`, a full queue
//! `UNAVAILABLE` ("Exceeds maximum queue size", Triton's status for its
//! own full queues), shutting down `UNAVAILABLE`, `ModelInfer` on the
//! decoupled model `UNIMPLEMENTED`. On `ModelStreamInfer` a request's
//! error is a response whose `error_message` says it, and the stream goes
//! on, unless the client sent the header `triton_grpc_error: true`: then
//! the first error ends the stream with its status, as Triton does.
//!
//! Fault injection (`--fault-*`) draws for each valid unary `ModelInfer`,
//! in the same seeded sequence as `/v1/infer`: an injected 500 is
//! `INTERNAL`, a 503 `UNAVAILABLE`; a reset resets the HTTP/2 stream
//! unanswered (`RST_STREAM` with `INTERNAL_ERROR`: tonic's client reports
//! `UNKNOWN`, a transport error); a truncation cuts the response message
//! after half of its bytes and resets the stream; a
//! corruption changes one output; a stall holds the request. Streams draw
//! no faults (neither do the HTTP LLM routes).
//!
//! Requests larger than `--max-body-bytes` are refused by the gRPC layer
//! (`OUT_OF_RANGE`). On shutdown the listener stops accepting, open
//! streams stop reading new requests and end once their in-flight ones are
//! answered, and connections close gracefully.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use model::kserve_grpc::{
    self as pb, decode_bytes_elements, decode_fp32, decode_int64, encode_bytes_elements,
    model_infer_request::InferInputTensor, model_infer_response::InferOutputTensor,
    model_metadata_response::TensorMetadata, DataType, GrpcInferenceService,
    GrpcInferenceServiceServer, InferParameter, ModelInferRequest, ModelInferResponse,
    ModelStreamInferResponse, ENABLE_EMPTY_FINAL_RESPONSE_PARAMETER, FINAL_RESPONSE_PARAMETER,
};
use model::wire::{ServerTiming, BATCH_SIZE_HEADER, SERVER_TIMING_HEADER};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::faults::{self, Fault, InjectedAbort};
use crate::http::App;
use crate::kserve::{Executed, NotExecuted, TensorHead, INPUT_NAME, OUTPUT_NAME};

/// The streaming model's prompt input (`BYTES`, one element).
pub const STREAM_PROMPT_INPUT: &str = "text_input";
/// The streaming model's optional answer-length input (`INT32` or
/// `INT64`, one element).
pub const STREAM_MAX_TOKENS_INPUT: &str = "max_tokens";
/// The streaming model's output (`BYTES`, one element: a token).
pub const STREAM_TEXT_OUTPUT: &str = "text_output";

/// The request header with which a client asks that a stream's first
/// error end it with a gRPC status, rather than an in-band
/// `error_message` (Triton's `triton_grpc_error`).
const GRPC_ERROR_HEADER: &str = "triton_grpc_error";

/// Responses of one stream that may wait to be written.
const STREAM_BUFFER: usize = 64;

/// The gRPC service of one server; cheap to clone.
#[derive(Clone)]
pub(crate) struct GrpcService {
    app: Arc<App>,
    /// Changes when the server stops: open streams stop reading.
    stop: watch::Receiver<()>,
}

/// How a response's stream is cut on purpose (a fault), set by a handler
/// in the response's extensions and carried out by the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Reset the stream before any answer.
    Reset,
    /// Send half of the message's bytes, then reset the stream.
    Truncate,
}

/// Accepts gRPC connections on `listener` until `stop` changes, each
/// served over HTTP/2 by [`GrpcService`]; connections then finish their
/// in-flight requests and close.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: Arc<App>,
    mut stop: watch::Receiver<()>,
) {
    // A message as large as the HTTP routes' largest body, and no larger.
    let max_message_bytes = app.config.max_body_bytes;
    let service = GrpcInferenceServiceServer::new(GrpcService {
        app,
        stop: stop.clone(),
    })
    .max_decoding_message_size(max_message_bytes);
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(4096)
        .max_header_list_size(crate::server::MAX_HEADER_BYTES as u32);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    tokio::spawn(serve_connection(stream, builder.clone(), service.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    builder: hyper::server::conn::http2::Builder<TokioExecutor>,
    service: GrpcInferenceServiceServer<GrpcService>,
    mut stop: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let hyper_service = service_fn(move |request: Request<Incoming>| {
        let mut service = service.clone();
        async move {
            use tower_service::Service;
            std::future::poll_fn(|cx| Service::<Request<Incoming>>::poll_ready(&mut service, cx))
                .await
                .map_err(|never: Infallible| match never {})?;
            let response = service
                .call(request)
                .await
                .map_err(|never: Infallible| match never {})?;
            match response.extensions().get::<Cut>() {
                // hyper resets a stream whose service fails.
                Some(Cut::Reset) => Err(InjectedAbort),
                Some(Cut::Truncate) => Ok(response.map(|body| GrpcBody::Truncated {
                    inner: body,
                    sent_half: false,
                })),
                None => Ok(response.map(GrpcBody::Whole)),
            }
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), hyper_service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "gRPC connection ended with an error");
            }
        }
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "gRPC connection ended with an error during shutdown");
            }
        }
    }
}

/// A response body: whole, or cut after half of its first frame.
enum GrpcBody {
    Whole(tonic::body::Body),
    Truncated {
        inner: tonic::body::Body,
        sent_half: bool,
    },
}

impl hyper::body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match self.get_mut() {
            GrpcBody::Whole(inner) => Pin::new(inner).poll_frame(cx),
            GrpcBody::Truncated { inner, sent_half } => {
                if *sent_half {
                    // hyper resets a stream whose body fails.
                    return Poll::Ready(Some(Err(Status::internal(
                        "injected fault: response cut short on purpose",
                    ))));
                }
                match Pin::new(inner).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        *sent_half = true;
                        let half = frame
                            .into_data()
                            .map(|data| data.slice(..data.len() / 2))
                            .unwrap_or_default();
                        Poll::Ready(Some(Ok(Frame::data(half))))
                    }
                    other => other,
                }
            }
        }
    }
}

/// The words of Triton for a model it does not serve.
fn unknown_model(model: &str) -> Status {
    Status::not_found(format!("Request for unknown model: '{model}' is not found"))
}

fn ns_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A parameter map holding `triton_final_response = last`.
fn final_flag(last: bool) -> HashMap<String, InferParameter> {
    HashMap::from([(
        FINAL_RESPONSE_PARAMETER.to_owned(),
        InferParameter::from_bool(last),
    )])
}

/// A tensor's elements, from its typed contents or its raw bytes.
enum Elements<'a> {
    Bytes(Vec<&'a [u8]>),
    Fp32(Vec<f32>),
    Int64(Vec<i64>),
    Int32(Vec<i32>),
}

impl Elements<'_> {
    fn len(&self) -> usize {
        match self {
            Elements::Bytes(v) => v.len(),
            Elements::Fp32(v) => v.len(),
            Elements::Int64(v) => v.len(),
            Elements::Int32(v) => v.len(),
        }
    }
}

/// Each input's raw contents, in the order of the inputs, or `None` for
/// all when the request sends typed contents; Triton's rules: one raw
/// entry per input, and then no typed contents.
fn raw_contents<'a>(
    model: &str,
    request: &'a ModelInferRequest,
) -> Result<Vec<Option<&'a [u8]>>, String> {
    let raw = &request.raw_input_contents;
    if raw.is_empty() {
        return Ok(vec![None; request.inputs.len()]);
    }
    if raw.len() != request.inputs.len() {
        return Err(format!(
            "expected {} raw input contents (one per input) but got {} for model '{model}'",
            request.inputs.len(),
            raw.len()
        ));
    }
    if let Some(input) = request.inputs.iter().find(|i| i.contents.is_some()) {
        return Err(format!(
            "contents field must not be specified when using raw_input_contents for '{}' for model '{model}'",
            input.name
        ));
    }
    Ok(raw.iter().map(|r| Some(r.as_ref())).collect())
}

/// The elements of `tensor` by its datatype, from `raw` or its typed
/// contents.
fn read_elements<'a>(
    tensor: &'a InferInputTensor,
    raw: Option<&'a [u8]>,
) -> Result<Elements<'a>, String> {
    let named = |e: pb::RawContentsError| format!("inference input '{}': {e}", tensor.name);
    let contents = tensor.contents.as_ref();
    Ok(match (tensor.datatype.as_str(), raw) {
        ("BYTES", Some(raw)) => Elements::Bytes(decode_bytes_elements(raw).map_err(named)?),
        ("BYTES", None) => Elements::Bytes(
            contents
                .map(|c| c.bytes_contents.iter().map(|b| b.as_ref()).collect())
                .unwrap_or_default(),
        ),
        ("FP32", Some(raw)) => Elements::Fp32(decode_fp32(raw).map_err(named)?),
        ("FP32", None) => Elements::Fp32(contents.map(|c| c.fp32_contents.clone()).unwrap_or_default()),
        ("INT64", Some(raw)) => Elements::Int64(decode_int64(raw).map_err(named)?),
        ("INT64", None) => {
            Elements::Int64(contents.map(|c| c.int64_contents.clone()).unwrap_or_default())
        }
        ("INT32", Some(raw)) => {
            let (chunks, rest) = raw.as_chunks::<4>();
            if !rest.is_empty() {
                return Err(named(pb::RawContentsError::Ragged {
                    datatype: "INT32",
                    bytes: raw.len(),
                    width: 4,
                }));
            }
            Elements::Int32(chunks.iter().map(|c| i32::from_le_bytes(*c)).collect())
        }
        ("INT32", None) => Elements::Int32(contents.map(|c| c.int_contents.clone()).unwrap_or_default()),
        (other, _) => {
            return Err(format!(
                "inference input '{}' has data-type '{other}'; this server takes BYTES, FP32, INT64 and INT32",
                tensor.name
            ))
        }
    })
}

/// A `BYTES` element as text.
fn text(tensor: &InferInputTensor, element: &[u8]) -> Result<String, String> {
    std::str::from_utf8(element)
        .map(str::to_owned)
        .map_err(|_| {
            format!(
                "inference input '{}': a BYTES element is not UTF-8 text",
                tensor.name
            )
        })
}

impl App {
    fn is_batching_model(&self, model: &str) -> bool {
        self.config.models.iter().any(|m| m == model)
    }

    fn is_stream_model(&self, model: &str) -> bool {
        self.config.grpc_stream_model == model
    }

    /// The items of a batching model's request, as the HTTP route reads
    /// its JSON: the same checks ([`App::check_inputs`]), then one text
    /// per element.
    fn grpc_items(&self, model: &str, request: &ModelInferRequest) -> Result<Vec<String>, String> {
        let heads: Vec<TensorHead<'_>> = request
            .inputs
            .iter()
            .map(|t| TensorHead {
                name: &t.name,
                datatype: &t.datatype,
                shape: &t.shape,
            })
            .collect();
        let batch = self.check_inputs(model, &heads)?;
        let raws = raw_contents(model, request)?;
        let (Some(input), Some(raw)) = (request.inputs.first(), raws.first()) else {
            return Err(format!(
                "expected 1 inputs but got 0 inputs for model '{model}'"
            ));
        };
        let elements = read_elements(input, *raw)?;
        if elements.len() != batch {
            return Err(format!(
                "unexpected number of elements {} for inference input '{}', expecting {batch}",
                elements.len(),
                input.name
            ));
        }
        // An FP32 element's text is its shortest round-trip decimal, which
        // is what JSON gives the HTTP route for the same number.
        match elements {
            Elements::Bytes(v) => v.into_iter().map(|e| text(input, e)).collect(),
            Elements::Fp32(v) => Ok(v.iter().map(|x| format!("{x:?}")).collect()),
            Elements::Int64(v) => Ok(v.iter().map(ToString::to_string).collect()),
            Elements::Int32(v) => Ok(v.iter().map(ToString::to_string).collect()),
        }
    }

    /// Checks and reads a batching model's request: its items and the
    /// time reading them took, ns.
    fn grpc_parse(&self, request: &ModelInferRequest) -> Result<(Vec<String>, u64), Status> {
        let model = request.model_name.as_str();
        if !self.is_batching_model(model) {
            return Err(unknown_model(model));
        }
        let parse_started = Instant::now();
        let inputs = self
            .grpc_items(model, request)
            .map_err(Status::invalid_argument)?;
        Ok((inputs, ns_since(parse_started)))
    }

    /// Runs a batching model's read request through the HTTP route's code
    /// and answers it as Triton does (outputs in `raw_output_contents`);
    /// `corrupt` picks an output to get wrong on purpose.
    async fn grpc_batched(
        &self,
        request: &ModelInferRequest,
        (inputs, compute_input_ns): (Vec<String>, u64),
        arrived: Instant,
        corrupt: Option<u64>,
    ) -> Result<Executed<ModelInferResponse>, Status> {
        let model = request.model_name.as_str();
        let items = inputs.len();
        let executed = self
            .kserve_execute(model, &inputs, arrived, compute_input_ns, |mut outputs| {
                if let Some(pick) = corrupt {
                    if let Some(output) = outputs.get_mut(pick as usize % items.max(1)) {
                        faults::corrupt(output);
                    }
                }
                ModelInferResponse {
                    model_name: model.to_owned(),
                    model_version: "1".to_owned(),
                    id: request.id.clone(),
                    outputs: vec![InferOutputTensor {
                        name: OUTPUT_NAME.to_owned(),
                        datatype: "BYTES".to_owned(),
                        shape: vec![items as i64, 1],
                        ..Default::default()
                    }],
                    raw_output_contents: vec![Bytes::from(encode_bytes_elements(&outputs))],
                    ..Default::default()
                }
            })
            .await;
        executed.map_err(|why| match why {
            NotExecuted::QueueFull { queued_items } => Status::unavailable(format!(
                "Exceeds maximum queue size: the queue holds {queued_items} items (limit {}); retry later",
                self.config.max_queue
            )),
            NotExecuted::ShuttingDown => Status::unavailable("the server is shutting down"),
        })
    }

    /// The prompt and `max_tokens` of a request for the streaming model.
    fn stream_inputs(
        &self,
        model: &str,
        request: &ModelInferRequest,
    ) -> Result<(String, Option<usize>), String> {
        let raws = raw_contents(model, request)?;
        let mut prompt = None;
        let mut max_tokens = None;
        for (tensor, raw) in request.inputs.iter().zip(raws) {
            let name = tensor.name.as_str();
            if name != STREAM_PROMPT_INPUT && name != STREAM_MAX_TOKENS_INPUT {
                return Err(format!(
                    "unexpected inference input '{name}' for model '{model}'"
                ));
            }
            let elements = read_elements(tensor, raw)?;
            let count = elements.len();
            if count != 1 || tensor.shape.iter().product::<i64>() != 1 {
                return Err(format!(
                    "inference input '{name}' for model '{model}' must hold one element (shape [1]), got {count} in shape {:?}",
                    tensor.shape
                ));
            }
            let wrong_type = |expected: &str| {
                format!(
                    "inference input '{name}' data-type is '{}', but model '{model}' expects {expected}",
                    tensor.datatype
                )
            };
            let whole = |n: i64| {
                usize::try_from(n).map_err(|_| {
                    format!("inference input '{name}' is {n}; give a whole number from 1")
                })
            };
            match (name, elements) {
                (STREAM_PROMPT_INPUT, Elements::Bytes(v)) => {
                    prompt = v.first().map(|e| text(tensor, e)).transpose()?;
                }
                (STREAM_PROMPT_INPUT, _) => return Err(wrong_type("'BYTES'")),
                (_, Elements::Int32(v)) => {
                    max_tokens = v.first().map(|&n| whole(n.into())).transpose()?
                }
                (_, Elements::Int64(v)) => max_tokens = v.first().map(|&n| whole(n)).transpose()?,
                (_, _) => return Err(wrong_type("'INT32' or 'INT64'")),
            }
        }
        let prompt = prompt.ok_or_else(|| {
            format!(
                "expected input '{STREAM_PROMPT_INPUT}' (BYTES, the prompt) for model '{model}'"
            )
        })?;
        Ok((prompt, max_tokens))
    }

    /// Streams the answer to one request for the streaming model into
    /// `tx`, one response per token; `Err` is the request's error (no
    /// response was sent for it, or the step loop stopped mid-answer).
    async fn grpc_generate(
        &self,
        request: &ModelInferRequest,
        tx: &mpsc::Sender<Result<ModelStreamInferResponse, Status>>,
    ) -> Result<(), Status> {
        let arrived = Instant::now();
        let model = request.model_name.as_str();
        let (prompt, max_tokens) = self
            .stream_inputs(model, request)
            .map_err(Status::invalid_argument)?;
        let mut tokens = self
            .llm
            .generate(model, &prompt, max_tokens)
            .map_err(Status::invalid_argument)?;
        let respond = |token: Option<&str>| {
            let mut response = ModelInferResponse {
                model_name: model.to_owned(),
                model_version: "1".to_owned(),
                id: request.id.clone(),
                parameters: final_flag(token.is_none()),
                ..Default::default()
            };
            if let Some(token) = token {
                response.outputs.push(InferOutputTensor {
                    name: STREAM_TEXT_OUTPUT.to_owned(),
                    datatype: "BYTES".to_owned(),
                    shape: vec![1],
                    ..Default::default()
                });
                response
                    .raw_output_contents
                    .push(Bytes::from(encode_bytes_elements([token])));
            }
            Ok(ModelStreamInferResponse {
                error_message: String::new(),
                infer_response: Some(response),
            })
        };
        loop {
            match tokens.next().await {
                Ok(Some(token)) => {
                    if tx.send(respond(Some(&token))).await.is_err() {
                        // The client went away; dropping `tokens` frees
                        // the sequence's slot.
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(crate::llm::Interrupted) => {
                    self.kserve_stats.record(model, |s, _| {
                        s.fail.count += 1;
                        s.fail.ns += ns_since(arrived);
                    });
                    return Err(Status::unavailable("the server is shutting down"));
                }
            }
        }
        let empty_final = request
            .parameters
            .get(ENABLE_EMPTY_FINAL_RESPONSE_PARAMETER)
            .and_then(InferParameter::as_bool)
            == Some(true);
        if empty_final {
            let _ = tx.send(respond(None)).await;
        }
        self.kserve_stats.record(model, |s, requests| {
            *requests += 1;
            s.success.count += 1;
            s.success.ns += ns_since(arrived);
        });
        Ok(())
    }

    fn grpc_metadata(&self, model: &str) -> Result<pb::ModelMetadataResponse, Status> {
        let tensor = |name: &str, datatype: &str, shape: Vec<i64>| TensorMetadata {
            name: name.to_owned(),
            datatype: datatype.to_owned(),
            shape,
        };
        if self.is_stream_model(model) {
            return Ok(pb::ModelMetadataResponse {
                name: model.to_owned(),
                versions: vec!["1".to_owned()],
                platform: "stub-server".to_owned(),
                inputs: vec![
                    tensor(STREAM_PROMPT_INPUT, "BYTES", vec![1]),
                    tensor(STREAM_MAX_TOKENS_INPUT, "INT32", vec![1]),
                ],
                outputs: vec![tensor(STREAM_TEXT_OUTPUT, "BYTES", vec![1])],
            });
        }
        if !self.is_batching_model(model) {
            return Err(unknown_model(model));
        }
        let metadata = self.metadata(model);
        let tensors = |list: Vec<model::kserve::TensorMetadata>| {
            list.into_iter()
                .map(|t| tensor(&t.name, &t.datatype, t.shape))
                .collect()
        };
        Ok(pb::ModelMetadataResponse {
            name: metadata.name,
            versions: metadata.versions,
            platform: metadata.platform,
            inputs: tensors(metadata.inputs),
            outputs: tensors(metadata.outputs),
        })
    }

    fn grpc_config(&self, model: &str) -> Result<pb::ModelConfig, Status> {
        let input = |name: &str, data_type: DataType| pb::ModelInput {
            name: name.to_owned(),
            data_type: data_type as i32,
            dims: vec![1],
        };
        let output = |name: &str| pb::ModelOutput {
            name: name.to_owned(),
            data_type: DataType::TypeString as i32,
            dims: vec![1],
        };
        let group = |count: usize| pb::ModelInstanceGroup {
            name: format!("{model}_0"),
            count: i32::try_from(count).unwrap_or(i32::MAX),
            kind: pb::model_instance_group::Kind::Cpu as i32,
        };
        if self.is_stream_model(model) {
            return Ok(pb::ModelConfig {
                name: model.to_owned(),
                backend: "stub-server".to_owned(),
                max_batch_size: 0,
                input: vec![
                    input(STREAM_PROMPT_INPUT, DataType::TypeString),
                    input(STREAM_MAX_TOKENS_INPUT, DataType::TypeInt32),
                ],
                output: vec![output(STREAM_TEXT_OUTPUT)],
                instance_group: vec![group(1)],
                model_transaction_policy: Some(pb::ModelTransactionPolicy { decoupled: true }),
                ..Default::default()
            });
        }
        if !self.is_batching_model(model) {
            return Err(unknown_model(model));
        }
        let config = self.model_config(model);
        Ok(pb::ModelConfig {
            name: config.name,
            backend: "stub-server".to_owned(),
            max_batch_size: i32::try_from(config.max_batch_size).unwrap_or(i32::MAX),
            input: vec![input(INPUT_NAME, self.config.kserve_input_datatype.into())],
            output: vec![output(OUTPUT_NAME)],
            dynamic_batching: config.dynamic_batching.map(|d| pb::ModelDynamicBatching {
                preferred_batch_size: d
                    .preferred_batch_size
                    .iter()
                    .map(|&p| i32::try_from(p).unwrap_or(i32::MAX))
                    .collect(),
                max_queue_delay_microseconds: d.max_queue_delay_microseconds,
            }),
            instance_group: vec![group(self.config.workers)],
            model_transaction_policy: Some(pb::ModelTransactionPolicy { decoupled: false }),
            ..Default::default()
        })
    }

    fn grpc_statistics(&self, model: &str) -> Result<Vec<pb::ModelStatistics>, Status> {
        let one = |model: &str| {
            if self.is_stream_model(model) {
                let (inference_stats, requests) = self.kserve_stats.get(model);
                pb::ModelStatistics::from(&model::kserve::ModelStats {
                    name: model.to_owned(),
                    version: "1".to_owned(),
                    inference_count: requests,
                    inference_stats,
                    ..Default::default()
                })
            } else {
                let stats = self.stats_of(model);
                stats
                    .model_stats
                    .first()
                    .map(pb::ModelStatistics::from)
                    .unwrap_or_default()
            }
        };
        if model.is_empty() {
            // Every model, as Triton answers an empty name.
            let mut all: Vec<pb::ModelStatistics> =
                self.config.models.iter().map(|m| one(m)).collect();
            all.push(one(&self.config.grpc_stream_model));
            return Ok(all);
        }
        if !self.is_batching_model(model) && !self.is_stream_model(model) {
            // Triton's words and status (its HTTP route answers 400).
            return Err(Status::invalid_argument(format!(
                "requested model '{model}' is not available"
            )));
        }
        Ok(vec![one(model)])
    }
}

/// A stream's error for one request as a response, as Triton sends it:
/// `error_message`, and the request's id.
fn error_response(id: &str, status: &Status) -> ModelStreamInferResponse {
    ModelStreamInferResponse {
        error_message: status.message().to_owned(),
        infer_response: Some(ModelInferResponse {
            id: id.to_owned(),
            ..Default::default()
        }),
    }
}

/// Sends one request's outcome on a stream: an error in-band, or (with
/// `grpc_errors`) as the status that ends the stream.
async fn deliver(
    tx: &mpsc::Sender<Result<ModelStreamInferResponse, Status>>,
    id: &str,
    outcome: Result<ModelStreamInferResponse, Status>,
    grpc_errors: bool,
) {
    let item = match outcome {
        Err(status) if !grpc_errors => Ok(error_response(id, &status)),
        other => other,
    };
    // A send that fails is a client gone: nothing to tell.
    let _ = tx.send(item).await;
}

#[tonic::async_trait]
impl GrpcInferenceService for GrpcService {
    async fn server_live(
        &self,
        _request: tonic::Request<pb::ServerLiveRequest>,
    ) -> Result<tonic::Response<pb::ServerLiveResponse>, Status> {
        Ok(tonic::Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _request: tonic::Request<pb::ServerReadyRequest>,
    ) -> Result<tonic::Response<pb::ServerReadyResponse>, Status> {
        Ok(tonic::Response::new(pb::ServerReadyResponse {
            ready: true,
        }))
    }

    async fn model_ready(
        &self,
        request: tonic::Request<pb::ModelReadyRequest>,
    ) -> Result<tonic::Response<pb::ModelReadyResponse>, Status> {
        // Triton answers `false` for a model it does not serve, no error.
        let name = request.get_ref().name.as_str();
        let ready = self.app.is_batching_model(name) || self.app.is_stream_model(name);
        Ok(tonic::Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _request: tonic::Request<pb::ServerMetadataRequest>,
    ) -> Result<tonic::Response<pb::ServerMetadataResponse>, Status> {
        Ok(tonic::Response::new(pb::ServerMetadataResponse {
            name: "stub-server".to_owned(),
            version: "kserve-v2".to_owned(),
            extensions: vec!["model_configuration".to_owned(), "statistics".to_owned()],
        }))
    }

    async fn model_metadata(
        &self,
        request: tonic::Request<pb::ModelMetadataRequest>,
    ) -> Result<tonic::Response<pb::ModelMetadataResponse>, Status> {
        self.app
            .grpc_metadata(&request.get_ref().name)
            .map(tonic::Response::new)
    }

    async fn model_infer(
        &self,
        request: tonic::Request<ModelInferRequest>,
    ) -> Result<tonic::Response<ModelInferResponse>, Status> {
        let arrived = Instant::now();
        let request = request.into_inner();
        let model = request.model_name.as_str();
        if self.app.is_stream_model(model) {
            return Err(Status::unimplemented(
                "ModelInfer RPC doesn't support models with decoupled transaction policy",
            ));
        }
        // Faults hit valid requests only, as on /v1/infer: check first.
        let parsed = self.app.grpc_parse(&request)?;
        let fault = self.app.faults.draw();
        let corrupt = match fault {
            Fault::Error { unavailable: true } => {
                return Err(Status::unavailable(
                    "fault injection: service unavailable on purpose",
                ))
            }
            Fault::Error { unavailable: false } => {
                return Err(Status::internal(
                    "fault injection: internal error on purpose",
                ))
            }
            Fault::Reset => {
                let mut response = tonic::Response::new(ModelInferResponse::default());
                response.extensions_mut().insert(Cut::Reset);
                return Ok(response);
            }
            Fault::Stall(hold) => {
                tokio::time::sleep(hold).await;
                None
            }
            Fault::Corrupt { pick } => Some(pick),
            Fault::None | Fault::Truncate => None,
        };
        let done = self
            .app
            .grpc_batched(&request, parsed, arrived, corrupt)
            .await?;
        let mut response = tonic::Response::new(done.answer);
        let metadata = response.metadata_mut();
        if let Ok(value) = ServerTiming::header_value(done.queue_ms, done.infer_ms).parse() {
            metadata.insert(SERVER_TIMING_HEADER, value);
        }
        if let Ok(value) = done.batch_items.to_string().parse() {
            metadata.insert(BATCH_SIZE_HEADER, value);
        }
        if fault == Fault::Truncate {
            response.extensions_mut().insert(Cut::Truncate);
        }
        Ok(response)
    }

    type ModelStreamInferStream = ReceiverStream<Result<ModelStreamInferResponse, Status>>;

    async fn model_stream_infer(
        &self,
        request: tonic::Request<Streaming<ModelInferRequest>>,
    ) -> Result<tonic::Response<Self::ModelStreamInferStream>, Status> {
        let grpc_errors = request
            .metadata()
            .get(GRPC_ERROR_HEADER)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let app = self.app.clone();
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            let mut in_flight = JoinSet::new();
            // A batching model's responses leave in the order of their
            // requests, as Triton keeps them for a model that is not
            // decoupled: each waits for the one before.
            let mut previous: Option<oneshot::Receiver<()>> = None;
            loop {
                let next = tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    next = incoming.message() => next,
                };
                let request = match next {
                    Ok(Some(request)) => request,
                    // The client is done sending, or went away.
                    Ok(None) | Err(_) => break,
                };
                let arrived = Instant::now();
                let app = app.clone();
                let tx = tx.clone();
                if app.is_stream_model(&request.model_name) {
                    in_flight.spawn(async move {
                        if let Err(status) = app.grpc_generate(&request, &tx).await {
                            deliver(&tx, &request.id, Err(status), grpc_errors).await;
                        }
                    });
                } else {
                    let (done_tx, done_rx) = oneshot::channel();
                    let before = previous.replace(done_rx);
                    in_flight.spawn(async move {
                        let outcome = match app.grpc_parse(&request) {
                            Ok(parsed) => app.grpc_batched(&request, parsed, arrived, None).await,
                            Err(status) => Err(status),
                        };
                        if let Some(before) = before {
                            let _ = before.await;
                        }
                        let outcome = outcome.map(|done| {
                            let mut response = done.answer;
                            response.parameters = final_flag(true);
                            ModelStreamInferResponse {
                                error_message: String::new(),
                                infer_response: Some(response),
                            }
                        });
                        deliver(&tx, &request.id, outcome, grpc_errors).await;
                        let _ = done_tx.send(());
                    });
                }
            }
            // The stream ends (status OK) once every request read is
            // answered and `tx`'s last clone goes.
            while in_flight.join_next().await.is_some() {}
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }

    async fn model_config(
        &self,
        request: tonic::Request<pb::ModelConfigRequest>,
    ) -> Result<tonic::Response<pb::ModelConfigResponse>, Status> {
        let config = self.app.grpc_config(&request.get_ref().name)?;
        Ok(tonic::Response::new(pb::ModelConfigResponse {
            config: Some(config),
        }))
    }

    async fn model_statistics(
        &self,
        request: tonic::Request<pb::ModelStatisticsRequest>,
    ) -> Result<tonic::Response<pb::ModelStatisticsResponse>, Status> {
        let model_stats = self.app.grpc_statistics(&request.get_ref().name)?;
        Ok(tonic::Response::new(pb::ModelStatisticsResponse {
            model_stats,
        }))
    }
}
