//! Request formats, one module each behind the [`Api`] trait: how the
//! logical requests of one HTTP request become its body, and how its
//! response becomes one verdict per logical request.
//!
//! The API is chosen once at start ([`build`]); the engine, the client
//! and the batcher only ever see `dyn Api`, so a new protocol is a new
//! module here, not a `match` in each of them.
//!
//! - [`simulator`]: the simulator's wire format (`model` crate), outputs
//!   verified against `model::output::expected_output`.
//! - [`template`]: any JSON body, from a template with placeholders; a
//!   response is judged by its status and, optionally, a JSON path.
//! - [`kserve`]: KServe v2 (NVIDIA Triton): JSON tensors, batching along
//!   dimension 0, readiness and metadata checked before the load.
//! - [`openai`]: OpenAI-compatible LLM servers, chat and completions,
//!   streamed: time to first token, inter-token gaps, output tokens.
//!
//! [`sse`] parses server-sent events incrementally, for streamed answers;
//! [`stamps`] measures the client's delay against a server's write stamps.

pub(crate) mod kserve;
pub(crate) mod openai;
pub(crate) mod simulator;
pub(crate) mod sse;
pub(crate) mod stamps;
pub(crate) mod template;

use std::path::PathBuf;
use std::sync::Arc;

use crate::client::{HttpResponse, Transport, TransportError};
use crate::engine::LogicalRequest;
use crate::http1::BodyReader;
use crate::verify::{Checks, ItemVerdict};

/// Which request format a run speaks.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiChoice {
    /// The simulator's wire format (`{"model", "input"}` / `{"model", "inputs"}`).
    Simulator,
    /// A JSON body template with placeholders.
    Template {
        /// The template file.
        body_template: PathBuf,
        /// A JSON path the response must hold (`outputs`, `data.0.embedding`).
        expect_json_path: Option<String>,
    },
    /// KServe v2 (Triton); the URL is the server's base URL and the model
    /// is the run's `--model`.
    KServeV2(kserve::KServeOptions),
    /// An OpenAI-compatible LLM server; the URL is its base URL.
    OpenAi(openai::OpenAiOptions),
    /// KServe v2 over gRPC (Triton's port 8001); the URL is the server's
    /// `http://host:port` (`https://` for TLS) and the model is the run's
    /// `--model`. Not an HTTP body format: the `grpc` module speaks it.
    KServeV2Grpc(crate::grpc::KServeGrpcOptions),
}

impl ApiChoice {
    /// The name used on the command line and in summaries.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Simulator => "simulator",
            Self::Template { .. } => "template",
            Self::KServeV2(_) => "kserve-v2",
            Self::OpenAi(options) => options.name(),
            Self::KServeV2Grpc(_) => "kserve-v2-grpc",
        }
    }

    /// The URL a run of this API loads when none is given.
    pub fn default_url(&self) -> &'static str {
        match self {
            Self::KServeV2(_) | Self::OpenAi(_) => "http://127.0.0.1:8000",
            Self::KServeV2Grpc(_) => "http://127.0.0.1:8001",
            _ => model::DEFAULT_URL,
        }
    }
}

/// Why an API cannot be set up; said before any request is sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The template file cannot be read.
    #[error("cannot read the body template {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The template is unusable; the message says why and what is allowed.
    #[error("body template {path}: {reason}")]
    Template {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The KServe v2 server or model is not as the run needs it.
    #[error("kserve-v2: {0}")]
    KServe(String),
    /// The same, over gRPC.
    #[error("kserve-v2-grpc: {0}")]
    KServeGrpc(String),
    /// The OpenAI-compatible options do not fit together.
    #[error("{0}")]
    OpenAi(String),
    /// The expected JSON path is malformed.
    #[error("--expect-json-path {path:?}: {reason}")]
    JsonPath {
        /// The path as given.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The request shape that was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One logical request.
    Single,
    /// Several, as one batch.
    Batch,
}

/// A request format.
pub(crate) trait Api: Send + Sync {
    /// The name used on the command line and in summaries.
    fn name(&self) -> &'static str;

    /// Whether this format can check outputs against the simulator's
    /// expected outputs (`--verify`), for servers known to give them.
    fn can_verify(&self) -> bool;

    /// Whether outputs are checked when the user says nothing: only where
    /// the endpoint is known to give the simulator's answers (a real model
    /// gives its own, so checking them would fail every row).
    fn verifies_by_default(&self) -> bool {
        false
    }

    /// Why outputs cannot be checked here, for messages.
    fn why_unverifiable(&self) -> String {
        format!("--api {} knows no expected outputs", self.name())
    }

    /// The body of an HTTP request carrying one logical request.
    fn single_body(&self, item: &LogicalRequest) -> Vec<u8>;

    /// The body of an HTTP request carrying `items` (at least two).
    fn batch_body(&self, items: &[LogicalRequest]) -> Vec<u8>;

    /// Whether the response body must be read to judge a response to a
    /// request of `shape` under `checks`. When it need not, the transport
    /// skips copying it.
    fn needs_body(&self, shape: Shape, checks: Checks) -> bool;

    /// The verdict on the response to a single-item request.
    fn judge_single(
        &self,
        response: &mut HttpResponse,
        item: &LogicalRequest,
        checks: Checks,
    ) -> ItemVerdict;

    /// One verdict per item of a batch request, in order.
    fn judge_batch(
        &self,
        response: &mut HttpResponse,
        items: &[LogicalRequest],
        checks: Checks,
    ) -> Vec<ItemVerdict>;

    /// Whether rows carry the LLM columns (TTFT, tokens, inter-token
    /// gaps; see `model::log::LLM_COLUMNS`).
    fn token_metrics(&self) -> bool {
        false
    }

    /// A reader for the body of a successful response to a request of
    /// `items` logical requests, for answers that stream: fed as the body
    /// arrives, each read timed, and handed back to the judge in
    /// [`HttpResponse::reader`]. `None` (the default): the body is read
    /// whole.
    fn body_reader(&self, _items: usize) -> Option<Box<dyn BodyReader>> {
        None
    }

    /// The row's error kind for a transport failure (a streamed format
    /// calls a cut body a `truncated_stream`).
    fn failure_kind(&self, error: TransportError) -> &'static str {
        error.kind()
    }

    /// The request path, when the format fixes it (KServe v2's
    /// `/v2/models/{m}/infer`); `None`: the URL's own path.
    fn request_path(&self) -> Option<&str> {
        None
    }

    /// The client delays and server gaps measured against the server's
    /// write stamps, for a format that reads them (streamed OpenAI).
    fn stamps(&self) -> Option<&stamps::StampStats> {
        None
    }

    /// Where the server reports its own statistics in Triton's format
    /// (`/v2/models/{m}/stats`), if this format has such an endpoint.
    fn stats_path(&self) -> Option<String> {
        None
    }
}

/// What [`build`] needs to know of the run.
pub(crate) struct BuildContext<'a> {
    /// The client batch size, which a format may need to support (a
    /// template needs `{{inputs}}` for it, a KServe model a batch dimension).
    pub batch_size: usize,
    /// The run's model name.
    pub model: &'a str,
    /// The URL's path (a base path for KServe v2).
    pub url_path: &'a str,
    /// A transport to the target, for what a format checks before the load.
    pub probe: &'a Transport,
}

/// Sets up the chosen API: the one place that knows every format.
pub(crate) async fn build(
    choice: &ApiChoice,
    context: BuildContext<'_>,
) -> Result<Arc<dyn Api>, ApiError> {
    Ok(match choice {
        ApiChoice::Simulator => Arc::new(simulator::Simulator),
        ApiChoice::Template {
            body_template,
            expect_json_path,
        } => Arc::new(template::TemplateApi::load(
            body_template,
            expect_json_path.as_deref(),
            context.batch_size,
        )?),
        ApiChoice::KServeV2(options) => {
            // The URL's path is a prefix; `/` is none.
            let base = context.url_path.split('?').next().unwrap_or("");
            Arc::new(
                kserve::KServeApi::connect(
                    options,
                    context.model,
                    if base == "/" { "" } else { base },
                    context.batch_size,
                    context.probe,
                )
                .await?,
            )
        }
        ApiChoice::OpenAi(options) => openai::build(options, context.url_path, context.batch_size)?,
        // Not an HTTP body: `prepare` sets up the gRPC client instead.
        ApiChoice::KServeV2Grpc(_) => {
            return Err(ApiError::KServeGrpc(
                "gRPC is not an HTTP body format".into(),
            ))
        }
    })
}

/// `http_<status>` for a non-2xx response.
pub(crate) fn status_error(response: &HttpResponse) -> Option<String> {
    (!response.status.is_success()).then(|| format!("http_{}", response.status.as_u16()))
}

/// What a single item gets when a judge returned no verdict for it (it
/// never does: every judge returns one per item, this keeps a row anyway).
pub(crate) fn no_verdict() -> ItemVerdict {
    ItemVerdict::without_digest("bad_json".into())
}

/// The same failed verdict for each of `n` items.
pub(crate) fn all_failed(n: usize, error: &str) -> Vec<ItemVerdict> {
    (0..n)
        .map(|_| ItemVerdict::without_digest(error.to_owned()))
        .collect()
}
