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

pub mod simulator;
pub mod template;

use std::path::PathBuf;
use std::sync::Arc;

use crate::client::HttpResponse;
use crate::engine::LogicalRequest;
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
}

impl ApiChoice {
    /// The name used on the command line and in summaries.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Simulator => "simulator",
            Self::Template { .. } => "template",
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
pub enum Shape {
    /// One logical request.
    Single,
    /// Several, as one batch.
    Batch,
}

/// A request format.
pub trait Api: Send + Sync {
    /// The name used on the command line and in summaries.
    fn name(&self) -> &'static str;

    /// Whether this format knows every expected output, so that
    /// verification can be on (it is by default where it can be).
    fn can_verify(&self) -> bool;

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
        response: &HttpResponse,
        item: &LogicalRequest,
        checks: Checks,
    ) -> ItemVerdict;

    /// One verdict per item of a batch request, in order.
    fn judge_batch(
        &self,
        response: &HttpResponse,
        items: &[LogicalRequest],
        checks: Checks,
    ) -> Vec<ItemVerdict>;

    /// The error kinds its judging can give, besides the transport's and
    /// `http_<status>` (for documentation and `--help`).
    fn failure_kinds(&self) -> &'static [&'static str];
}

/// Sets up the chosen API; `batch_size` is the client batch size, which a
/// format may need to support (a template needs `{{inputs}}` for it).
pub fn build(choice: &ApiChoice, batch_size: usize) -> Result<Arc<dyn Api>, ApiError> {
    Ok(match choice {
        ApiChoice::Simulator => Arc::new(simulator::Simulator),
        ApiChoice::Template {
            body_template,
            expect_json_path,
        } => Arc::new(template::TemplateApi::load(
            body_template,
            expect_json_path.as_deref(),
            batch_size,
        )?),
    })
}

/// `http_<status>` for a non-2xx response.
pub fn status_error(response: &HttpResponse) -> Option<String> {
    (!response.status.is_success()).then(|| format!("http_{}", response.status.as_u16()))
}

/// The same failed verdict for each of `n` items.
pub fn all_failed(n: usize, error: &str) -> Vec<ItemVerdict> {
    (0..n)
        .map(|_| ItemVerdict::without_digest(error.to_owned()))
        .collect()
}
