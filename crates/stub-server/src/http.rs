//! HTTP routing and the `/v1/infer`, `/healthz` and `/metrics` handlers.
//!
//! Every failure a client can cause maps to a JSON [`ErrorBody`] with a 4xx
//! or 503; nothing a client sends can produce a 500 or a panic.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use model::output::expected_output;
use model::wire::{
    to_json_bytes, BatchResponse, ErrorBody, InferRequest, ServerTiming, SingleResponse,
    BATCH_SIZE_HEADER, SERVER_TIMING_HEADER,
};

use crate::config::ServerConfig;
use crate::faults::{self, Fault, FaultBody, FaultInjector};
use crate::metrics::Metrics;
use crate::scheduler::{Scheduler, SubmitError};

/// The body type of every response.
pub(crate) type ResponseBody = FaultBody;

/// What every connection's handlers share.
pub(crate) struct App {
    pub(crate) config: ServerConfig,
    pub(crate) scheduler: Scheduler,
    pub(crate) metrics: Arc<Metrics>,
    /// Injected faults (inert unless configured).
    pub(crate) faults: FaultInjector,
    /// KServe v2 statistics per model.
    pub(crate) kserve_stats: crate::kserve::Stats,
    /// The LLM routes' step loop.
    pub(crate) llm: crate::llm::LlmEngine,
}

impl App {
    /// Answers one request and counts the response by status.
    pub(crate) async fn handle<B>(&self, request: Request<B>) -> Response<ResponseBody>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let response = self.route(request).await;
        self.metrics.observe_response(response.status().as_u16());
        response
    }

    async fn route<B>(&self, request: Request<B>) -> Response<ResponseBody>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let path = request.uri().path();
        if path == "/v2" || path.starts_with("/v2/") {
            return self.kserve(request).await;
        }
        let allowed = match path {
            "/v1/infer" | "/v1/chat/completions" | "/v1/completions" => Method::POST,
            "/healthz" | "/metrics" => Method::GET,
            _ => {
                return error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!(
                        "no resource at {path}; try POST /v1/infer, POST /v1/chat/completions, POST /v1/completions, GET /healthz, GET /metrics or the KServe v2 routes under /v2"
                    ),
                )
            }
        };
        if request.method() != allowed {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{path} accepts {allowed} only, not {}", request.method()),
            );
            if let Ok(value) = HeaderValue::from_str(allowed.as_str()) {
                response.headers_mut().insert(ALLOW, value);
            }
            return response;
        }
        match path {
            "/healthz" => json(StatusCode::OK, br#"{"status":"ok"}"#.to_vec()),
            "/metrics" => {
                let mut text = self.metrics.render(self.scheduler.queued_items());
                self.llm.metrics.render(&mut text);
                let mut response = Response::new(ResponseBody::new(Bytes::from(text)));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/v1/chat/completions" => self.llm(crate::llm::Endpoint::Chat, request).await,
            "/v1/completions" => self.llm(crate::llm::Endpoint::Completions, request).await,
            _ => self.infer(request).await,
        }
    }

    async fn llm<B>(
        &self,
        endpoint: crate::llm::Endpoint,
        request: Request<B>,
    ) -> Response<ResponseBody>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let limit = self.config.max_body_bytes;
        match Limited::new(request.into_body(), limit).collect().await {
            Ok(body) => {
                let (models, stream_model) = (&self.config.models, &self.config.grpc_stream_model);
                crate::llm::handle(&self.llm, models, stream_model, endpoint, &body.to_bytes())
                    .await
            }
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body is over the limit of {limit} bytes"),
            ),
            Err(e) => error(
                StatusCode::BAD_REQUEST,
                "body_read_error",
                format!("could not read the request body: {e}"),
            ),
        }
    }

    async fn infer<B>(&self, request: Request<B>) -> Response<ResponseBody>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let limit = self.config.max_body_bytes;
        let too_large = || {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body is over the limit of {limit} bytes"),
            )
        };
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return too_large();
        }
        let body = match Limited::new(request.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "body_read_error",
                    format!("could not read the request body: {e}"),
                )
            }
        };
        let parsed = match InferRequest::parse(&body) {
            Ok(parsed) => parsed,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.code(), e.to_string()),
        };
        let model = parsed.model();
        if !self.config.models.iter().any(|m| m == model) {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_model",
                format!(
                    "unknown model {model:?}; this server serves {}",
                    self.config.models.join(", ")
                ),
            );
        }
        let items = parsed.inputs().len();
        let max_items = self.config.max_items_per_request();
        if items > max_items {
            return error(
                StatusCode::BAD_REQUEST,
                "too_many_items",
                format!("{items} inputs in one request; at most {max_items} are allowed"),
            );
        }
        let fault = self.faults.draw();
        match fault {
            Fault::Error { unavailable } => return injected_error(unavailable),
            Fault::Reset => return Response::new(FaultBody::Reset),
            Fault::Stall(hold) => tokio::time::sleep(hold).await,
            Fault::None | Fault::Corrupt { .. } | Fault::Truncate => {}
        }
        let receivers = match self.scheduler.submit(items) {
            Ok(receivers) => receivers,
            Err(SubmitError::QueueFull { queued_items }) => {
                let retry_after_s = (self.scheduler.drain_estimate_ms(queued_items) / 1000.0)
                    .ceil()
                    .clamp(1.0, 60.0);
                let mut response = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "queue_full",
                    format!(
                        "the queue holds {queued_items} items (limit {}); retry after {retry_after_s} s",
                        self.config.max_queue
                    ),
                );
                if let Ok(value) = HeaderValue::from_str(&format!("{retry_after_s}")) {
                    response.headers_mut().insert(RETRY_AFTER, value);
                }
                return response;
            }
            Err(SubmitError::Closed) => return shutting_down(),
        };
        let (mut queue_ms, mut infer_ms, mut batch_items) = (0.0_f64, 0.0_f64, 0);
        for receiver in receivers {
            let Ok(outcome) = receiver.await else {
                return shutting_down();
            };
            queue_ms = queue_ms.max(outcome.queue_ms);
            if outcome.batch_items > batch_items
                || (outcome.batch_items == batch_items && outcome.infer_ms > infer_ms)
            {
                infer_ms = outcome.infer_ms;
                batch_items = outcome.batch_items;
            }
        }
        let model = model.to_owned();
        let corrupt_index = match fault {
            Fault::Corrupt { pick } => Some(pick as usize % items.max(1)),
            _ => None,
        };
        let output = |index: usize, input: &str| {
            let mut output = expected_output(&model, input);
            if corrupt_index == Some(index) {
                faults::corrupt(&mut output);
            }
            output
        };
        let body = match &parsed {
            InferRequest::Single(r) => to_json_bytes(&SingleResponse {
                output: output(0, &r.input),
                model: model.clone(),
            }),
            InferRequest::Batch(r) => to_json_bytes(&BatchResponse {
                outputs: r
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(index, input)| output(index, input))
                    .collect(),
                model: model.clone(),
            }),
        };
        let mut response = json(StatusCode::OK, body);
        if fault == Fault::Truncate {
            response = response.map(FaultBody::truncate);
        }
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&ServerTiming::header_value(queue_ms, infer_ms)) {
            headers.insert(SERVER_TIMING_HEADER, value);
        }
        headers.insert(BATCH_SIZE_HEADER, HeaderValue::from(batch_items));
        response
    }
}

pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, code: &str, message: String) -> Response<ResponseBody> {
    json(status, to_json_bytes(&ErrorBody::new(code, message)))
}

/// An injected 500 `injected_error` or 503 `injected_unavailable`.
fn injected_error(unavailable: bool) -> Response<ResponseBody> {
    if unavailable {
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "injected_unavailable",
            "fault injection: service unavailable on purpose".to_owned(),
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        response
    } else {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected_error",
            "fault injection: internal error on purpose".to_owned(),
        )
    }
}

fn shutting_down() -> Response<ResponseBody> {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the server is shutting down; retry against a running one".to_owned(),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
