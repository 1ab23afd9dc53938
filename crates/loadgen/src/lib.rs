//! `loadgen`: an HTTP load generator for inference APIs that reproduces the
//! legacy `input.py` load test faithfully and measures the fixes for it,
//! against any endpoint.
//!
//! It loads any `http://` or `https://` URL (`target`; TLS through
//! rustls, HTTP/1.1 or h2 by ALPN, platform roots plus `--cacert`,
//! `--insecure`, mutual TLS: `tls`) in a closed loop (`c` workers, each
//! waiting for its answer) or an open loop (a target rate, constant or
//! Poisson, latency measured from each request's *intended* start so a
//! stalled server cannot hide: no coordinated omission). The request
//! format is a module behind one trait (`api`): the simulator's wire
//! format (outputs verified), any JSON body from a template, KServe v2,
//! OpenAI-compatible streams; KServe v2 over gRPC (`grpc`, unary or
//! streamed) travels on a link of its own under the same engine.
//! Connections are opened per request (what `input.py` does) or pooled
//! with keep-alive, over HTTP/1.1 or HTTP/2; logical requests can be
//! micro-batched on the client, and every logical request keeps its own
//! log row whose latency includes the wait for its batch.
//!
//! Its own cost stays out of the numbers: HTTP/1.1 goes through a lean
//! exchange (`http1`: one write per request, the response parsed in the
//! same task, one reusable deadline timer per connection), and the closed
//! loop runs on thread-per-core shards (`shards`, `--threads`), each with
//! its own runtime and connections, so a request never crosses threads.
//! Pinned to cores of its own, a shard can busy-poll its sockets between
//! responses (`busy_poll`, `--busy-poll-us`), so a fast server does not
//! pay for waking it.
//!
//! Failures are data: every request ends as exactly one
//! [`model::log::LogRow`], failed ones with an error kind (`connect_refused`,
//! `connect_error`, `timeout`, `connection_reset`, `truncated_body`,
//! `io_error`, `tls_unknown_issuer`, `tls_name_mismatch`, `tls_expired`,
//! `tls_handshake`, `http_<status>`, `grpc_<code>` (`grpc_unavailable`,
//! `grpc_deadline_exceeded`, ...), the API's own kinds such as `bad_json`,
//! `wrong_length`, `output_mismatch` or `missing_json_path`, `dropped`,
//! `interrupted`), so `succeeded + failed == total` always holds. Rows
//! stream to CSV and statistics live in a histogram, so memory stays
//! bounded on long runs.
//!
//! From the command line: `loadgen --url http://127.0.0.1:8000/v1/infer
//! --profile baseline -o before.csv --json before.json` (see `loadgen --help`).
//! `loadgen capacity --url ... --sla 'p95<=800' --json capacity.json`
//! searches for the highest open-loop rate that keeps every objective
//! ([`capacity`]: doubling, bisection, confirming repeats, a time bound).
//!
//! Several generators can share one load (`distributed`). Each runs the
//! same command line with `--shard INDEX/COUNT` (or `--shard COUNT`, INDEX
//! from `JOB_COMPLETION_INDEX` as a Kubernetes Indexed Job sets it) and
//! sends its part of exactly what one generator would: in the open loop the
//! arrivals `k % COUNT == INDEX` of the one schedule (ids and times
//! unchanged, Poisson from the one seeded process), in the closed loop its
//! share of `-c` with strided ids. `--start-at TIME` starts every shard at
//! one wall-clock instant; the open-loop schedule is anchored there, so a
//! late shard shows its lateness in latency and `start_skew_ms`. `--out-dir
//! DIR` writes `log.csv` and `summary.json`, whose `shard`, `plan` and
//! `latency_histogram` (HdrHistogram V2, base64) let `report merge`
//! combine the shards exactly.
//!
//! As a library:
//!
//! ```no_run
//! use loadgen::{run, LoadConfig, Profile};
//!
//! # async fn example() -> Result<(), loadgen::LoadError> {
//! let mut config = LoadConfig::from_profile(Profile::Optimized);
//! config.url = "http://127.0.0.1:8000/v1/infer".into();
//! config.log_path = Some("after.csv".into());
//! // Stop early on Ctrl-C; any future works (here: never).
//! let summary = run(config, std::future::pending::<()>()).await?;
//! println!("P95 {:?} ms, {} failed", summary.p95_ms, summary.failed);
//! # Ok(())
//! # }
//! ```

// Public by path: the binary names their items (`capacity::search`,
// `limits::CONCURRENCY`), whose names would be vague at the root. The rest
// of the crate is private; what a caller needs is re-exported below.
pub mod capacity;
pub mod limits;
pub mod metrics;
pub mod server_metrics;

mod api;
mod batcher;
mod busy_poll;
mod client;
mod collector;
mod config;
mod distributed;
mod dry_run;
mod engine;
mod error;
mod grpc;
mod http1;
mod payloads;
mod prepare;
mod progress;
mod race;
mod run;
mod schedule;
mod server_stats;
mod shards;
mod stream;
mod summary;
mod target;
mod tls;
mod verify;
mod workload;

pub use api::kserve::KServeOptions;
pub use api::openai::{parse_extra_body, OpenAiEndpoint, OpenAiOptions};
pub use api::{ApiChoice, ApiError};
pub use config::{
    parse_header, Arrival, ConfigError, ConnectionMode, LoadConfig, OpenLoop, PayloadSource,
    Profile, Warmup, DEFAULT_BUSY_POLL_US, DEFAULT_MAX_IN_FLIGHT, DEFAULT_SEED,
};
pub use distributed::{parse_shard, parse_start_at, OutDir, Shard, ShardArg, SHARD_INDEX_VAR};
pub use dry_run::{DryRun, GRPC_REFUSED as DRY_RUN_GRPC_REFUSED};
pub use error::LoadError;
pub use grpc::KServeGrpcOptions;
pub use model::summary::RunSummary;
pub use payloads::PayloadError;
pub use prepare::{prepare, Prepared};
pub use run::run;
pub use server_stats::StatsError;
pub use summary::SummaryText;
pub use target::{Scheme, Target, TargetError};
pub use tls::{TlsError, TlsOptions};
pub use workload::dataset::DatasetError;
pub use workload::prompt::PromptError;
pub use workload::trace::TraceError;
pub use workload::{
    LengthDist, SharedPrefix, Stage, Stages, TraceFormat, TraceOptions, Turns, WorkloadOptions,
    DEFAULT_BLOCK_TOKENS, MAX_TURNS,
};
