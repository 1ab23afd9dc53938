//! Shared vocabulary of the toolkit: what goes over the wire, what a log row
//! holds, which payloads the baseline sends and what the right answer is.
//!
//! Every other tool speaks through these types, so a client, the simulator
//! and the report agree by construction:
//!
//! - [`wire`]: the JSON bodies of `POST /v1/infer` (single and batch) and the
//!   error body, plus [`wire::InferRequest::parse`], which turns raw bytes into
//!   a request or a precise [`wire::RequestError`].
//! - [`payload`]: the inputs `input.py` sends, byte for byte.
//! - [`output`]: [`output::expected_output`], the deterministic answer the
//!   simulator gives and every client verifies, and [`output::output_digest`].
//! - [`kserve`]: the KServe v2 / Triton messages (infer, metadata, config,
//!   statistics, errors), for the `kserve-v2` API of client and simulator;
//!   [`kserve_grpc`] (feature `grpc`): the same protocol over gRPC, as
//!   Triton serves it on port 8001 (messages, client, server stub).
//! - [`log`]: [`log::LogRow`], read from and written to CSV in both the
//!   five-column `input.py` format and the richer `loadgen` format.
//! - [`args`]: option values every binary parses alike (whole numbers and
//!   numbers in a named range, durations), with messages that say what is
//!   allowed.
//! - [`summary`]: loadgen's run summary (`--json`, `--out-dir`), also the
//!   merged one `report merge` writes; [`capacity`]: `loadgen capacity
//!   --json`; [`contract`]: reading them back, version first.
//! - The JSON files one tool writes and another reads, each with its
//!   `SCHEMA_VERSION`: [`whatif`] (`whatif.json`: the analysis's decisions
//!   and the what-if engine's prediction), [`comparison`]
//!   (`comparison.json`), [`conditions`] (`conditions.json`) and
//!   [`server_metrics`] (a server's Prometheus samples through a run).
//!
//! ```
//! use model::{output::expected_output, payload::baseline_input, DEFAULT_MODEL};
//!
//! let input = baseline_input(7);
//! assert!(input.starts_with("Request 7:"));
//! // The same model and input always give the same output, so any client
//! // can check any response.
//! assert_eq!(expected_output(DEFAULT_MODEL, &input), expected_output(DEFAULT_MODEL, &input));
//! ```

pub mod args;
pub mod capacity;
pub mod comparison;
pub mod conditions;
pub mod contract;
pub mod kserve;
#[cfg(feature = "grpc")]
pub mod kserve_grpc;
pub mod log;
pub mod output;
pub mod payload;
pub mod server_metrics;
pub mod summary;
pub mod whatif;
pub mod wire;

/// The model name `input.py` sends.
pub const DEFAULT_MODEL: &str = "example-model";

/// The endpoint `input.py` targets when `API_URL` is not set.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8000/v1/infer";

/// The load shape of `input.py`: requests in flight at once.
pub const BASELINE_CONCURRENCY: usize = 20;

/// The load shape of `input.py`: requests sent in all.
pub const BASELINE_REQUESTS: u64 = 400;

/// The per-request timeout of `input.py`, in seconds.
pub const BASELINE_TIMEOUT_S: u64 = 30;
