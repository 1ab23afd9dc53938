//! `stub-server`: an inference-service simulator to reproduce and fix tail
//! latency without a GPU.
//!
//! It answers `POST /v1/infer` exactly as the wire format of the `model`
//! crate says (single `input` or batched `inputs`, outputs from
//! [`model::output::expected_output`]) and makes every answer cost what a
//! real accelerator would: requests join one FIFO queue, `workers` executors
//! take batches from it, and a batch of `b` items takes
//! `(base_ms + per_item_ms * b) * exp(N(0, jitter^2))` ms from a seeded RNG
//! ([`ServiceTimeModel`]), honoured to a fraction of a millisecond by a
//! dedicated timer thread. Optional dynamic batching gathers queued items
//! across requests, like Triton's dynamic batcher. Every 200 tells the
//! client what happened: `Server-Timing: queue;dur=.., infer;dur=..` and
//! `X-Batch-Size`. `GET /healthz` and `GET /metrics` (Prometheus text) are
//! there for tooling. It also speaks KServe v2, the protocol of NVIDIA
//! Triton, over the same queue and cost model: `/v2/health/ready|live`,
//! `/v2/models/{m}` (metadata), `/config` (`max_batch_size`,
//! `dynamic_batching`), `/infer` (a `BYTES` tensor batched along dimension
//! 0) and `/stats` (Triton's statistics extension). Its dynamic batcher
//! follows Triton's rules: requests stay whole, a full batch or one of a
//! preferred size leaves at once, otherwise the batch waits for more until
//! its oldest request has waited `--batch-window-ms` (`max_queue_delay`).
//! HTTP/1.1 keep-alive and HTTP/2 cleartext (prior knowledge) share one
//! port. With `--grpc-bind ADDR` it also speaks KServe v2 over gRPC, as
//! Triton does on its port 8001 (details in `src/grpc.rs`):
//! the same models on the same queue and statistics, and a decoupled model
//! (`--grpc-stream-model`, `llm-stream`) that streams an LLM's tokens on
//! `ModelStreamInfer` from the step loop of the OpenAI routes.
//!
//! Errors are JSON `{"error": {"code", "message"}}`: 400 `malformed_json`,
//! `missing_field`, `conflicting_fields`, `empty_inputs`, `too_many_items`
//! (more than [`MAX_ITEMS_PER_REQUEST`] inputs, or more than `max_queue`);
//! 404 `not_found` and `unknown_model`; 405 `method_not_allowed` with
//! `Allow`; 413 `body_too_large`; 503 `queue_full` and `shutting_down`
//! with `Retry-After`. A connection that answers before reading the whole
//! body (a 413) closes lingering: it reads and discards what the client
//! still sends, up to [`LINGER_MAX_BYTES`] and [`LINGER_MAX_TIME`], so a
//! client that writes its whole body before reading (Python's http.client,
//! requests) reads the 413 instead of a broken pipe.
//!
//! For reliability tests, [`FaultConfig`] (flags `--fault-error-rate`,
//! `--fault-corrupt-rate`, `--fault-truncate-rate`, `--fault-reset-rate`,
//! `--fault-stall-rate` with `--fault-stall-ms`, seeded by `--fault-seed`)
//! makes valid requests fail on purpose: 500/503, wrong outputs, cut-short
//! bodies, dropped connections, stalls. All off by default.
//!
//! # Binary
//!
//! ```text
//! stub-server --profile placeholder --bind 127.0.0.1:0
//! listening on http://127.0.0.1:41234
//! ```
//!
//! The first line on stdout is always `listening on http://ADDR`; with
//! `--grpc-bind`, the second is `grpc listening on ADDR`. Every knob
//! of [`ServerConfig`] has a flag that overrides the profile (`--help`).
//! SIGINT/SIGTERM finish in-flight requests and exit 0; bad flags exit 2.
//!
//! # Library
//!
//! ```no_run
//! use stub_server::{spawn, ServerConfig};
//!
//! let mut config = ServerConfig::profile("zero-cost").expect("built-in profile");
//! config.bind = "127.0.0.1:0".parse().expect("address");
//! let server = spawn(config).expect("server starts");
//! println!("POST to {}", server.url());
//! server.shutdown();
//! ```
//!
//! [`spawn`] runs the server on its own runtime and thread; [`serve`] runs it
//! on the caller's runtime with a listener and a shutdown future.

mod config;
mod cost;
mod faults;
mod grpc;
mod http;
mod kserve;
mod linger;
mod llm;
mod metrics;
mod scheduler;
mod server;
mod timer;

pub use config::{
    ConfigError, ServerConfig, DEFAULT_PROFILE, DEFAULT_STREAM_MODEL, MAX_ITEMS_PER_REQUEST,
    PROFILES,
};
pub use cost::{ServiceTimeModel, ServiceTimeSampler};
pub use faults::{FaultConfig, FaultPlan};
pub use grpc::{STREAM_MAX_TOKENS_INPUT, STREAM_PROMPT_INPUT, STREAM_TEXT_OUTPUT};
pub use llm::{LlmConfig, PromptTokenizer};
pub use server::{
    bind, serve, serve_with_grpc, spawn, RunningServer, ServerError, LINGER_MAX_BYTES,
    LINGER_MAX_TIME, LISTEN_BACKLOG,
};
