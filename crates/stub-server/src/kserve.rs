//! The KServe v2 routes (`/v2/...`), as NVIDIA Triton answers them, over
//! the same scheduler and cost model as `/v1/infer`.
//!
//! The model has one input `input` (`BYTES` unless
//! `--kserve-input-datatype` says `FP32` or `INT64`) and one `BYTES` output
//! `output`, each of shape `[-1, 1]` (a batching model: dimension 0 is the
//! batch), so an infer request stacks `B <= max_batch` items and the answer
//! holds `expected_output(model, item)` for each. Errors are Triton's
//! `{"error": "..."}` with Triton 2.51's statuses: 400 for a bad request,
//! 404 for an unknown model (400 from `/stats`) or route; a malformed JSON
//! body is a 400 here where Triton answers 500, since this server never
//! answers bad input with a 500. `/v2/models/{m}/stats` keeps Triton's statistics
//! meaning: per request (each request counted once) `success`, `fail`,
//! `queue`, `compute_input` (parsing the request), `compute_infer` (the
//! whole execution of the batch the request ran in) and `compute_output`
//! (writing the answer), all cumulative counts and nanoseconds;
//! `inference_count` counts items, `execution_count` executions, and
//! `batch_stats` executions by batch size.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use model::kserve::{
    BatchStats, Datatype, DynamicBatching, ErrorResponse, InferRequest, InferResponse,
    InferenceStats, ModelConfig, ModelMetadata, ModelStats, ModelStatsResponse, Tensor,
    TensorMetadata,
};
use model::output::expected_output;
use model::wire::{to_json_bytes, ServerTiming, BATCH_SIZE_HEADER, SERVER_TIMING_HEADER};

use crate::http::{json, App, ResponseBody};
use crate::scheduler::SubmitError;

/// The input and output tensor names of the simulated model.
pub(crate) const INPUT_NAME: &str = "input";
/// See [`INPUT_NAME`].
pub(crate) const OUTPUT_NAME: &str = "output";

/// Per-model statistics since start.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    models: Mutex<HashMap<String, (InferenceStats, u64)>>,
}

impl Stats {
    pub(crate) fn record(&self, model: &str, update: impl FnOnce(&mut InferenceStats, &mut u64)) {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let (stats, items) = models.entry(model.to_owned()).or_default();
        update(stats, items);
    }

    pub(crate) fn get(&self, model: &str) -> (InferenceStats, u64) {
        let models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        models.get(model).copied().unwrap_or_default()
    }
}

fn error(status: StatusCode, message: String) -> Response<ResponseBody> {
    json(status, to_json_bytes(&ErrorResponse { error: message }))
}

fn ns_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn ms_to_ns(ms: f64) -> u64 {
    (ms * 1e6) as u64
}

impl App {
    /// Answers a request whose path starts with `/v2`.
    pub(crate) async fn kserve<B>(&self, request: Request<B>) -> Response<ResponseBody>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let path = request.uri().path().to_owned();
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let (allowed, route) = match parts.as_slice() {
            ["v2"] => (Method::GET, Route::Server),
            ["v2", "health", "ready" | "live"] => (Method::GET, Route::Health),
            ["v2", "models", m] => (Method::GET, Route::Metadata(m)),
            ["v2", "models", m, "ready"] => (Method::GET, Route::Ready(m)),
            ["v2", "models", m, "config"] => (Method::GET, Route::Config(m)),
            ["v2", "models", m, "stats"] => (Method::GET, Route::Stats(m)),
            ["v2", "models", m, "infer"] => (Method::POST, Route::Infer(m)),
            _ => return error(StatusCode::NOT_FOUND, format!("Not Found: no route {path}")),
        };
        if request.method() != allowed {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{path} accepts {allowed} only, not {}", request.method()),
            );
            if let Ok(value) = HeaderValue::from_str(allowed.as_str()) {
                response.headers_mut().insert(ALLOW, value);
            }
            return response;
        }
        let model = match route {
            Route::Server => {
                return json(
                    StatusCode::OK,
                    br#"{"name":"stub-server","version":"kserve-v2","extensions":["model_configuration","statistics"]}"#
                        .to_vec(),
                )
            }
            Route::Health => return json(StatusCode::OK, Vec::new()),
            Route::Metadata(m)
            | Route::Ready(m)
            | Route::Config(m)
            | Route::Stats(m)
            | Route::Infer(m) => m,
        };
        if !self.config.models.iter().any(|known| known == model) {
            // Triton 2.51's words and statuses: 404, but 400 from /stats.
            return match route {
                Route::Stats(_) => error(
                    StatusCode::BAD_REQUEST,
                    format!("requested model '{model}' is not available"),
                ),
                _ => error(
                    StatusCode::NOT_FOUND,
                    format!("Request for unknown model: '{model}' is not found"),
                ),
            };
        }
        match route {
            Route::Metadata(m) => json(StatusCode::OK, to_json_bytes(&self.metadata(m))),
            Route::Ready(_) => json(StatusCode::OK, Vec::new()),
            Route::Config(m) => json(StatusCode::OK, to_json_bytes(&self.model_config(m))),
            Route::Stats(m) => json(StatusCode::OK, to_json_bytes(&self.stats_of(m))),
            Route::Infer(m) => {
                let model = m.to_owned();
                self.kserve_infer(&model, request).await
            }
            Route::Server | Route::Health => json(StatusCode::OK, Vec::new()),
        }
    }

    pub(crate) fn metadata(&self, model: &str) -> ModelMetadata {
        let tensor = |name: &str, datatype: &str| TensorMetadata {
            name: name.to_owned(),
            datatype: datatype.to_owned(),
            shape: vec![-1, 1],
        };
        ModelMetadata {
            name: model.to_owned(),
            versions: vec!["1".to_owned()],
            platform: "stub-server".to_owned(),
            inputs: vec![tensor(INPUT_NAME, self.config.kserve_input_datatype.name())],
            outputs: vec![tensor(OUTPUT_NAME, "BYTES")],
        }
    }

    pub(crate) fn model_config(&self, model: &str) -> ModelConfig {
        ModelConfig {
            name: model.to_owned(),
            max_batch_size: self.config.max_batch as u64,
            dynamic_batching: self.config.dynamic_batching.then(|| DynamicBatching {
                preferred_batch_size: self
                    .config
                    .preferred_batch_sizes
                    .iter()
                    .map(|&p| p as u64)
                    .collect(),
                max_queue_delay_microseconds: (self.config.batch_window_ms * 1000.0) as u64,
            }),
        }
    }

    pub(crate) fn stats_of(&self, model: &str) -> ModelStatsResponse {
        let (inference_stats, items) = self.kserve_stats.get(model);
        let executions = self.scheduler.executions();
        ModelStatsResponse {
            model_stats: vec![ModelStats {
                name: model.to_owned(),
                version: "1".to_owned(),
                inference_count: items,
                execution_count: executions.iter().map(|(_, e)| e.count).sum(),
                inference_stats,
                batch_stats: executions
                    .iter()
                    .map(|&(size, e)| BatchStats {
                        batch_size: size as u64,
                        compute_infer: model::kserve::Duration {
                            count: e.count,
                            ns: e.ns,
                        },
                        ..BatchStats::default()
                    })
                    .collect(),
            }],
        }
    }

    async fn kserve_infer<B>(&self, model: &str, request: Request<B>) -> Response<ResponseBody>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let arrived = Instant::now();
        // A request refused before it reaches the model (a bad body, a full
        // queue) is in no statistic, as in Triton; only one that fails after
        // admission counts as `fail`.
        let refused = error;
        let limit = self.config.max_body_bytes;
        let body = match Limited::new(request.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return refused(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body is over the limit of {limit} bytes"),
                )
            }
            Err(e) => {
                return refused(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {e}"),
                )
            }
        };
        let parse_started = Instant::now();
        let inputs = match self.parse_inputs(model, &body) {
            Ok(inputs) => inputs,
            Err(message) => return refused(StatusCode::BAD_REQUEST, message),
        };
        let compute_input_ns = ns_since(parse_started);
        let items = inputs.len();
        let executed = self
            .kserve_execute(model, &inputs, arrived, compute_input_ns, |outputs| {
                let answer = InferResponse {
                    model_name: model.to_owned(),
                    model_version: Some("1".to_owned()),
                    id: None,
                    outputs: vec![Tensor {
                        name: OUTPUT_NAME.to_owned(),
                        shape: vec![items as i64, 1],
                        datatype: "BYTES".to_owned(),
                        data: outputs.into_iter().map(serde_json::Value::String).collect(),
                    }],
                };
                json(StatusCode::OK, to_json_bytes(&answer))
            })
            .await;
        let done = match executed {
            Ok(done) => done,
            Err(NotExecuted::QueueFull { queued_items }) => {
                return refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the queue holds {queued_items} items; retry later"),
                )
            }
            Err(NotExecuted::ShuttingDown) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is shutting down".into(),
                )
            }
        };
        let mut response = done.answer;
        let headers = response.headers_mut();
        if let Ok(value) =
            HeaderValue::from_str(&ServerTiming::header_value(done.queue_ms, done.infer_ms))
        {
            headers.insert(SERVER_TIMING_HEADER, value);
        }
        headers.insert(BATCH_SIZE_HEADER, HeaderValue::from(done.batch_items));
        response
    }

    /// Runs the checked `inputs` (one per item) of a KServe request for
    /// `model`, arrived at `arrived` and parsed in `compute_input_ns`, on
    /// the scheduler, and counts it in the statistics: the part of an
    /// inference the HTTP and gRPC routes share, so both queue, batch and
    /// count alike. `encode` turns the outputs into the protocol's answer;
    /// its time is `compute_output`.
    pub(crate) async fn kserve_execute<T>(
        &self,
        model: &str,
        inputs: &[String],
        arrived: Instant,
        compute_input_ns: u64,
        encode: impl FnOnce(Vec<String>) -> T,
    ) -> Result<Executed<T>, NotExecuted> {
        let failed = || {
            self.kserve_stats.record(model, |s, _| {
                s.fail.count += 1;
                s.fail.ns += ns_since(arrived);
            });
            NotExecuted::ShuttingDown
        };
        let items = inputs.len();
        let receivers = match self.scheduler.submit(items) {
            Ok(receivers) => receivers,
            Err(SubmitError::QueueFull { queued_items }) => {
                return Err(NotExecuted::QueueFull { queued_items })
            }
            Err(SubmitError::Closed) => return Err(failed()),
        };
        let (mut queue_ms, mut infer_ms, mut batch_items) = (0.0_f64, 0.0_f64, 0);
        for receiver in receivers {
            let Ok(outcome) = receiver.await else {
                return Err(failed());
            };
            queue_ms = queue_ms.max(outcome.queue_ms);
            infer_ms = infer_ms.max(outcome.infer_ms);
            batch_items = batch_items.max(outcome.batch_items);
        }
        let output_started = Instant::now();
        let outputs = inputs
            .iter()
            .map(|input| expected_output(model, input))
            .collect();
        let answer = encode(outputs);
        let compute_output_ns = ns_since(output_started);
        self.kserve_stats.record(model, |s, counted_items| {
            *counted_items += items as u64;
            s.success.count += 1;
            s.success.ns += ns_since(arrived);
            s.queue.count += 1;
            s.queue.ns += ms_to_ns(queue_ms);
            s.compute_input.count += 1;
            s.compute_input.ns += compute_input_ns;
            s.compute_infer.count += 1;
            s.compute_infer.ns += ms_to_ns(infer_ms);
            s.compute_output.count += 1;
            s.compute_output.ns += compute_output_ns;
        });
        Ok(Executed {
            answer,
            queue_ms,
            infer_ms,
            batch_items,
        })
    }

    /// The checks every KServe request's inputs pass, whatever the
    /// protocol, in Triton's words: one tensor, named [`INPUT_NAME`], of
    /// the model's datatype, of shape `[B, 1]` with `1 <= B <=` the most
    /// one request may carry. Returns `B`; the caller then checks that
    /// `B` elements came.
    pub(crate) fn check_inputs(
        &self,
        model: &str,
        inputs: &[TensorHead<'_>],
    ) -> Result<usize, String> {
        let [input] = inputs else {
            return Err(format!(
                "expected 1 inputs but got {} inputs for model '{model}'",
                inputs.len()
            ));
        };
        if input.name != INPUT_NAME {
            return Err(format!(
                "unexpected inference input '{}' for model '{model}'",
                input.name
            ));
        }
        let expected = self.config.kserve_input_datatype;
        if input.datatype != expected.name() {
            return Err(format!(
                "inference input '{}' data-type is '{}', but model '{model}' expects '{}'",
                input.name,
                input.datatype,
                expected.name()
            ));
        }
        let max = self
            .config
            .max_batch
            .min(self.config.max_items_per_request());
        let batch = match input.shape {
            // Triton takes `[B, 1]` only (`[B]` is refused), so does this.
            [b, 1] if *b >= 1 => *b as usize,
            other => {
                return Err(format!(
                    "unexpected shape for input '{}' for model '{model}'. Expected [-1,1], got {other:?}",
                    input.name
                ))
            }
        };
        if batch > max {
            return Err(format!(
                "inference request batch-size must be <= {max} for '{model}'"
            ));
        }
        Ok(batch)
    }

    /// The request's strings, or Triton's words for what is wrong.
    fn parse_inputs(&self, model: &str, body: &[u8]) -> Result<Vec<String>, String> {
        let request: InferRequest = serde_json::from_slice(body)
            .map_err(|e| format!("failed to parse the request JSON buffer: {e}"))?;
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
        let Some(input) = request.inputs.first() else {
            return Err(format!(
                "expected 1 inputs but got 0 inputs for model '{model}'"
            ));
        };
        let expected = self.config.kserve_input_datatype;
        if input.data.len() != batch {
            return Err(format!(
                "unexpected number of string elements {} for inference input '{}', expecting {batch}",
                input.data.len(),
                input.name
            ));
        }
        // A text item's output is `expected_output` of its text; a numeric
        // item's, of the number as JSON writes it.
        input
            .data
            .iter()
            .map(|v| match (expected, v) {
                (Datatype::Bytes, serde_json::Value::String(s)) => Ok(s.clone()),
                (Datatype::Fp32, serde_json::Value::Number(n)) => Ok(n.to_string()),
                (Datatype::Int64, serde_json::Value::Number(n)) if n.is_i64() => Ok(n.to_string()),
                _ => Err(format!(
                    "inference input '{}': elements must be JSON {}",
                    input.name,
                    if expected == Datatype::Bytes {
                        "strings"
                    } else {
                        "numbers"
                    }
                )),
            })
            .collect()
    }
}

/// An input tensor's name, datatype and shape, as either protocol
/// carries them.
pub(crate) struct TensorHead<'a> {
    pub(crate) name: &'a str,
    pub(crate) datatype: &'a str,
    pub(crate) shape: &'a [i64],
}

/// A request the scheduler ran: the caller's answer, and the batch it ran
/// in.
pub(crate) struct Executed<T> {
    /// What `encode` made of the outputs.
    pub(crate) answer: T,
    /// Time in the queue, ms.
    pub(crate) queue_ms: f64,
    /// Execution time of its batch, ms.
    pub(crate) infer_ms: f64,
    /// Items in its batch.
    pub(crate) batch_items: usize,
}

/// Why a request was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotExecuted {
    /// The queue is full: refused, and in no statistic (as in Triton).
    QueueFull {
        /// Items waiting.
        queued_items: usize,
    },
    /// The server is shutting down: counted as `fail`.
    ShuttingDown,
}

/// What a `/v2` path asks for.
enum Route<'a> {
    Server,
    Health,
    Metadata(&'a str),
    Ready(&'a str),
    Config(&'a str),
    Stats(&'a str),
    Infer(&'a str),
}
