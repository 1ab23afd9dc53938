//! `loadgen`: an HTTP load generator for inference APIs that reproduces the
//! legacy `input.py` load test faithfully and measures the fixes for it,
//! against any endpoint.
//!
//! It loads any `http://` or `https://` URL ([`target`]; TLS through
//! rustls, HTTP/1.1 or h2 by ALPN, platform roots plus `--cacert`,
//! `--insecure`, mutual TLS: [`tls`]) in a closed loop (`c` workers, each
//! waiting for its answer) or an open loop (a target rate, constant or
//! Poisson, latency measured from each request's *intended* start so a
//! stalled server cannot hide: no coordinated omission). The request
//! format is a module behind one trait ([`api`]): the simulator's wire
//! format (outputs verified) or any JSON body from a template.
//! Connections are opened per request (what `input.py` does) or pooled
//! with keep-alive, over HTTP/1.1 or HTTP/2; logical requests can be
//! micro-batched on the client, and every logical request keeps its own
//! log row whose latency includes the wait for its batch.
//!
//! Its own cost stays out of the numbers: HTTP/1.1 goes through a lean
//! exchange ([`http1`]: one write per request, the response parsed in the
//! same task, one reusable deadline timer per connection), and the closed
//! loop runs on thread-per-core shards ([`shards`], `--threads`), each with
//! its own runtime and connections, so a request never crosses threads.
//! Pinned to cores of its own, a shard can busy-poll its sockets between
//! responses ([`busy_poll`], `--busy-poll-us`), so a fast server does not
//! pay for waking it.
//!
//! Failures are data: every request ends as exactly one
//! [`model::log::LogRow`], failed ones with an error kind (`connect_refused`,
//! `connect_error`, `timeout`, `connection_reset`, `truncated_body`,
//! `io_error`, `tls_unknown_issuer`, `tls_name_mismatch`, `tls_expired`,
//! `tls_handshake`, `http_<status>`, the API's own kinds such as `bad_json`,
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
//! Several generators can share one load ([`distributed`]). Each runs the
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

pub mod api;
pub mod batcher;
pub mod busy_poll;
pub mod capacity;
pub mod cli;
pub mod client;
pub mod config;
pub mod distributed;
pub mod engine;
pub mod http1;
pub mod limits;
pub mod outputs;
pub mod payloads;
pub mod progress;
pub mod schedule;
pub mod server_stats;
pub mod shards;
pub mod stream;
pub mod summary;
pub mod target;
pub mod tls;
pub mod verify;
// Wired into the command line and the engine next; its tests run now.
#[cfg_attr(not(test), allow(dead_code))]
mod workload;

use std::fmt;
use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::log::{LogError, LogRow, LogWriter};
use tokio::sync::{mpsc, watch};

pub use api::ApiChoice;
pub use config::{
    Arrival, ConfigError, ConnectionMode, LoadConfig, OpenLoop, PayloadSource, Profile, Warmup,
};
pub use distributed::{OutDir, Shard};
pub use summary::{Plan, RunSummary, ShardSummary};
pub use target::{Scheme, Target};
pub use tls::TlsOptions;

use api::Api;
use batcher::Batcher;
use client::Transport;
use engine::{Clock, Engine};
use payloads::{PayloadError, Payloads};
use schedule::{Arrivals, ClosedLoop, Issuer, Phase};
use shards::Shards;
use summary::RowStats;

/// Why a run could not start or finish. Failed requests are not errors:
/// they are rows in the log and counts in the summary.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// An option is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The host name does not resolve.
    #[error(transparent)]
    Target(#[from] target::TargetError),
    /// The TLS configuration cannot be built.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The request format cannot be set up (a bad body template).
    #[error(transparent)]
    Api(#[from] api::ApiError),
    /// The server's statistics could not be read before the load, or
    /// written.
    #[error(transparent)]
    ServerStats(#[from] server_stats::StatsError),
    /// The payload file is unusable.
    #[error(transparent)]
    Payloads(#[from] PayloadError),
    /// The log file cannot be created or written.
    #[error("log file: {0}")]
    Log(#[from] LogError),
    /// The log writer thread failed.
    #[error("the log writer stopped unexpectedly")]
    Collector,
    /// The client threads could not be started.
    #[error("cannot start the client threads: {0}")]
    Threads(std::io::Error),
    /// `--start-at` cannot be placed on this machine's monotonic clock.
    #[error("--start-at: {0}")]
    StartAt(String),
}

/// Runs a load test: [`prepare`], then [`Prepared::run`].
pub async fn run(
    config: LoadConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, LoadError> {
    prepare(config).await?.run(shutdown).await
}

/// Everything checked and set up before the first request: the options,
/// the resolved addresses, TLS, the request format and the payloads.
/// Whatever is wrong with them is an error here, before any load is sent.
pub struct Prepared {
    config: LoadConfig,
    target: Target,
    addrs: Vec<SocketAddr>,
    tls: Option<tls::Tls>,
    api: Arc<dyn Api>,
    payloads: Payloads,
    /// The server's statistics around the run, the snapshot before it taken.
    stats: Option<server_stats::Watch>,
}

/// Validates `config`, resolves the host, builds the TLS client and the
/// request format, and loads the payloads.
pub async fn prepare(config: LoadConfig) -> Result<Prepared, LoadError> {
    let target = config.validate()?;
    let addrs = target::resolve(&target).await?;
    let tls = if target.is_tls() {
        let resume = config.connection == ConnectionMode::Pooled || config.tls.resume;
        Some(tls::Tls::new(
            &config.tls,
            &target.host,
            config.http2,
            resume,
        )?)
    } else {
        None
    };
    // Formats that check the server before the load (KServe v2) do it over
    // a transport of their own, with the run's TLS settings.
    let probe = Transport::new(target.clone(), addrs.clone(), tls.clone(), &config, 0);
    let context = api::BuildContext {
        batch_size: config.batch_size,
        model: &config.model,
        url_path: &target.path_and_query,
        probe: &probe,
    };
    let api = api::build(&config.api, context).await?;
    if config.verify == Some(true) && !api.can_verify() {
        return Err(ConfigError::Invalid(format!(
            "--verify: --api {} cannot check outputs here ({}); drop --verify, output digests are logged either way",
            api.name(),
            api.why_unverifiable()
        ))
        .into());
    }
    let target = match api.request_path() {
        Some(path) => target.with_path(path).map_err(ConfigError::from)?,
        None => target,
    };
    let payloads = Payloads::load(&config.payloads, &config.model)?;
    let chat = matches!(
        &config.api,
        ApiChoice::OpenAi(o) if o.endpoint == api::openai::Endpoint::Chat
    );
    if payloads.has_messages() && !chat {
        return Err(ConfigError::Invalid(format!(
            "--payloads: `messages` lines are for --api openai-chat, not --api {}",
            api.name()
        ))
        .into());
    }
    let stats = match (&config.server_stats_path, api.stats_path()) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ConfigError::Invalid(format!(
                "--server-stats: --api {} has no statistics endpoint",
                api.name()
            ))
            .into())
        }
        (Some(file), Some(path)) => {
            let metrics = match &config.server_metrics_url {
                None => None,
                Some(url) => {
                    let metrics = Target::parse(url).map_err(ConfigError::from)?;
                    let addrs = target::resolve(&metrics).await?;
                    let tls = if metrics.is_tls() {
                        Some(tls::Tls::new(&config.tls, &metrics.host, false, true)?)
                    } else {
                        None
                    };
                    let path = metrics.path_and_query.clone();
                    Some((Transport::new(metrics, addrs, tls, &config, 0), path))
                }
            };
            // The probe's requests name their paths, so the one that checked
            // the API before the load serves here too.
            let watch =
                server_stats::Watch::start(probe, path, metrics, &config.model, file.clone())
                    .await?;
            Some(watch)
        }
    };
    Ok(Prepared {
        config,
        target,
        addrs,
        tls,
        api,
        payloads,
        stats,
    })
}

impl Prepared {
    /// The resolved addresses, in the order connections try them.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// HTTP version and transport, e.g. `HTTP/1.1 over TLS (ALPN http/1.1)`.
    pub fn protocol(&self) -> String {
        match (&self.tls, self.config.http2) {
            (None, false) => "HTTP/1.1".into(),
            (None, true) => "HTTP/2 cleartext (prior knowledge)".into(),
            (Some(tls), http2) => format!(
                "{} over TLS (ALPN {}{})",
                if http2 { "HTTP/2" } else { "HTTP/1.1" },
                tls.alpn,
                if http2 { ", required" } else { "" }
            ),
        }
    }

    /// Whether outputs are verified: by default only where the endpoint is
    /// known to give the simulator's answers (`--api simulator`); with
    /// `--verify` wherever the API can check them.
    pub fn verifies(&self) -> bool {
        self.api.can_verify()
            && self
                .config
                .verify
                .unwrap_or_else(|| self.api.verifies_by_default())
    }

    /// What the run will do, a line each, for the start of its output:
    /// target and addresses, protocol and certificate checks, the API and
    /// whether outputs are verified.
    pub fn start_lines(&self) -> Vec<String> {
        let addrs: Vec<String> = self.addrs.iter().map(SocketAddr::to_string).collect();
        let mut lines = vec![
            format!("target: {} -> {}", self.target, addrs.join(", ")),
            format!("protocol: {}", self.protocol()),
        ];
        if let Some(tls) = &self.tls {
            lines.push(format!("TLS: server certificate {}", tls.verification));
        }
        let checks = match (self.verifies(), self.config.verify) {
            (true, Some(true)) => {
                "outputs verified against the simulator's expected outputs (--verify)".to_owned()
            }
            (true, _) => {
                "outputs verified against the simulator's expected outputs (--no-verify for an endpoint with other answers)".to_owned()
            }
            (false, Some(false)) => {
                "outputs not verified (--no-verify); output digests are logged".to_owned()
            }
            (false, _) if self.api.can_verify() => {
                "outputs not verified: a real model gives its own answers; output digests are logged (--verify checks them against the simulator's, for servers that give those)".to_owned()
            }
            (false, _) => format!(
                "outputs not verified ({}); output digests are logged",
                self.api.why_unverifiable()
            ),
        };
        lines.push(format!("api: {}; {checks}", self.api.name()));
        lines
    }

    /// Runs the load test. `shutdown` resolving (Ctrl-C in the binary)
    /// stops new requests; in-flight ones get `config.shutdown_grace` to
    /// finish, then are logged as `interrupted`; the log is flushed and the
    /// partial summary returned with `interrupted: true`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<RunSummary, LoadError> {
        let start_info = StartInfo {
            resolved: self.addrs.iter().map(SocketAddr::to_string).collect(),
            protocol: self.protocol(),
            tls_verification: self.tls.as_ref().map(|t| t.verification.to_string()),
            verified: self.verifies(),
            api: self.api.name(),
        };
        let Prepared {
            config,
            target,
            addrs,
            tls,
            api,
            payloads,
            stats,
        } = self;
        let writer = match &config.log_path {
            Some(path) => Some(LogWriter::create(path, api.token_metrics())?),
            None => None,
        };
        let tls_watch = tls.clone();
        let shards = match shard_count(&config) {
            Some(count) => Some(Shards::start(count).map_err(LoadError::Threads)?),
            None => None,
        };
        let transport = Transport::new(
            target,
            addrs,
            tls,
            &config,
            shards.as_ref().map_or(0, Shards::len),
        );
        let checks = verify::Checks {
            verify: start_info.verified,
            digests: config.log_path.is_some(),
        };
        let engine = Arc::new(Engine::new(api, transport, checks, Clock::new()));
        let parts = RunParts {
            config,
            engine,
            payloads,
            shards,
            writer,
            info: start_info,
        };
        let mut summary = run_engine(parts, shutdown).await?;
        summary.tls_first_failure = tls_watch
            .as_ref()
            .and_then(tls::Tls::first_failure)
            .map(str::to_owned);
        if let Some(watch) = stats {
            // The run's rows are already on disk: a failure here is a
            // warning in the summary, not a lost run.
            summary.server_stats_warning = watch.finish().await.err().map(|e| e.to_string());
        }
        Ok(summary)
    }
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("target", &self.target)
            .field("addrs", &self.addrs)
            .field("api", &self.api.name())
            .finish_non_exhaustive()
    }
}

/// What the summary reports of the set-up.
struct StartInfo {
    resolved: Vec<String>,
    protocol: String,
    tls_verification: Option<String>,
    verified: bool,
    api: &'static str,
}

/// What a run needs once it is set up.
struct RunParts {
    config: LoadConfig,
    engine: Arc<Engine>,
    payloads: Payloads,
    shards: Option<Shards>,
    writer: Option<LogWriter<std::io::BufWriter<std::fs::File>>>,
    info: StartInfo,
}

async fn run_engine(
    parts: RunParts,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, LoadError> {
    let RunParts {
        config,
        engine,
        payloads,
        shards,
        writer,
        info: start_info,
    } = parts;
    let batcher = (config.batch_size > 1).then(|| {
        Batcher::spawn(
            engine.clone(),
            config.batch_size,
            Duration::from_millis(config.batch_wait_ms),
        )
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    // `--start-at` on the engine's own clock, so the logged timestamps of
    // the intended starts are exactly --start-at + their offsets.
    let start_at = match config.start_at {
        None => None,
        Some(at) => Some(engine.clock().instant_at(at).ok_or_else(|| {
            LoadError::StartAt(format!(
                "{:.3} (Unix seconds) is too far in the past for this machine's monotonic clock",
                distributed::unix_ms(at) / 1000.0
            ))
        })?),
    };

    let load = async {
        if !config.warmup.is_none() {
            let warmup = Arc::new(Issuer {
                engine: engine.clone(),
                batcher: batcher.clone(),
                payloads: payloads.clone(),
                sink: None,
                phase: phase_rx.clone(),
            });
            // Each shard warms its own connections, with its own ids.
            let (requests, deadline) = match config.warmup {
                config::Warmup::Requests(n) => (Some(n), None),
                config::Warmup::For(d) => (None, Some(Instant::now() + d)),
            };
            let plan = ClosedLoop {
                concurrency: config.workers(),
                ids: distributed::Shard::WHOLE,
                requests,
                deadline,
            };
            schedule::closed_loop(warmup, plan, shards.as_ref(), config.busy_poll).await;
            engine.reset_counters();
        }
        let (sink, rows) = mpsc::unbounded_channel();
        // The live bar only where a person watches: never in a CI log or a
        // file stderr is redirected to.
        let goal = progress::Goal::of(config.own_requests(), config.duration);
        let live = goal
            .filter(|_| config.progress && std::io::stderr().is_terminal())
            .map(|goal| (goal, Arc::new(progress::Live::default())));
        let collector = spawn_collector(rows, writer, live.as_ref().map(|(_, l)| l.clone()))?;
        let issuer = Arc::new(Issuer {
            engine: engine.clone(),
            batcher: batcher.clone(),
            payloads: payloads.clone(),
            sink: Some(sink),
            phase: phase_rx.clone(),
        });
        // The origin of the schedule: `--start-at` (after the warm-up, so
        // that must end before it), else now.
        let (started, origin, start_skew_ms) = match start_at {
            None => {
                let now = Instant::now();
                (now, now, None)
            }
            Some(at) => {
                let mut phase = phase_rx.clone();
                tokio::select! {
                    started = distributed::wait_until(at) => {
                        let skew_ms = distributed::signed_ms(started, at);
                        let load = match (&config.open_loop, config.duration) {
                            (Some(_), _) => distributed::LateStart::OpenLoop,
                            (None, Some(_)) => distributed::LateStart::ClosedForDuration,
                            (None, None) => distributed::LateStart::ClosedForCount,
                        };
                        if let Some(warning) = distributed::late_start_warning(skew_ms, load) {
                            eprintln!("loadgen: WARNING: {warning}");
                        }
                        (started, at, Some(skew_ms))
                    }
                    // Stopped before the start: nothing is sent below.
                    _ = phase.wait_for(|p| *p != Phase::Running) => (Instant::now(), at, None),
                }
            }
        };
        let bar = live.map(|(goal, live)| {
            progress::Progress::start(live, goal, engine.token_metrics(), started)
        });
        let shard = config.shard.unwrap_or(distributed::Shard::WHOLE);
        let open_stats = match &config.open_loop {
            None => {
                let plan = ClosedLoop {
                    concurrency: config.workers(),
                    ids: shard,
                    requests: config.requests,
                    // Anchored like the open loop: every shard stops at
                    // --start-at + -z, however late it started.
                    deadline: config.duration.map(|d| origin + d),
                };
                schedule::closed_loop(issuer, plan, shards.as_ref(), config.busy_poll).await;
                None
            }
            Some(open) => {
                let arrivals = Arrivals::new(open, shard, config.requests, config.duration);
                Some(schedule::open_loop(issuer, open, arrivals, origin).await)
            }
        };
        let duration_s = started.elapsed().as_secs_f64();
        if let Some(bar) = bar {
            bar.finish();
        }
        // Every issuer (and so every sink) is gone: the collector drains,
        // flushes and returns.
        let stats = tokio::task::spawn_blocking(move || collector.join())
            .await
            .map_err(|_| LoadError::Collector)?
            .map_err(|_| LoadError::Collector)??;
        Ok::<_, LoadError>((stats, open_stats, duration_s, start_skew_ms))
    };

    tokio::pin!(load);
    tokio::pin!(shutdown);
    let mut interrupted = false;
    let outcome = tokio::select! {
        outcome = &mut load => outcome,
        () = &mut shutdown => {
            interrupted = true;
            let _ = phase_tx.send(Phase::Stopping);
            let grace = tokio::time::sleep(config.shutdown_grace);
            tokio::pin!(grace);
            tokio::select! {
                outcome = &mut load => outcome,
                () = &mut grace => {
                    let _ = phase_tx.send(Phase::Aborted);
                    load.await
                }
            }
        }
    };
    let (mut stats, open_stats, duration_s, start_skew_ms) = outcome?;
    let mut summary = build_summary(
        &config,
        &mut stats,
        open_stats,
        duration_s,
        &engine,
        interrupted,
    );
    summary.shard = config.shard.map(|shard| ShardSummary {
        index: shard.index,
        count: shard.count,
        start_at_unix_ms: config.start_at.map(distributed::unix_ms),
        start_skew_ms,
    });
    summary.resolved = start_info.resolved;
    summary.protocol = start_info.protocol;
    summary.tls_verification = start_info.tls_verification;
    summary.verified = start_info.verified;
    summary.api = start_info.api.to_owned();
    summary.client_threads = shards.as_ref().map_or(0, Shards::len);
    summary.busy_poll_us = if summary.client_threads > 0 {
        u64::try_from(config.busy_poll.as_micros()).unwrap_or(u64::MAX)
    } else {
        0
    };
    Ok(summary)
}

/// How many shard threads run the closed loop, or `None` when it runs on
/// the caller's runtime. Shards hold HTTP/1.1 connections of their own; an
/// HTTP/2 connection or the micro-batcher is one task all requests share,
/// so those (and the open loop, whose single scheduler hands out every
/// send) stay on the caller's runtime.
fn shard_count(config: &LoadConfig) -> Option<usize> {
    let shardable = config.runs_client_threads();
    let threads = config.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    shardable.then(|| threads.min(config.workers()).max(1))
}

fn build_summary(
    config: &LoadConfig,
    stats: &mut RowStats,
    open_stats: Option<schedule::OpenLoopStats>,
    duration_s: f64,
    engine: &Engine,
    interrupted: bool,
) -> RunSummary {
    // A shard's own target: its part of the schedule, 1/COUNT of the rate.
    let shard_count = config.shard.map_or(1.0, |s| f64::from(s.count));
    let target_rate = config.open_loop.as_ref().map(|o| o.rate_rps / shard_count);
    let rate_warning = match (target_rate, open_stats) {
        (Some(target), Some(open)) => {
            let behind = open.achieved_rate_rps < 0.95 * target && open.sent >= 10;
            let late_share = open.late_sends as f64 / (open.sent + open.dropped).max(1) as f64;
            (behind || late_share > 0.01 || open.dropped > 0).then(|| {
                format!(
                    "the generator did not keep its schedule: achieved {:.1} of {target:.1} req/s, {} late sends ({:.1}%), {} dropped at the in-flight bound; the offered load was lower than asked",
                    open.achieved_rate_rps,
                    open.late_sends,
                    late_share * 100.0,
                    open.dropped
                )
            })
        }
        _ => None,
    };
    let latency_histogram = stats.latency_histogram_base64();
    // numpy's linear method, as `report` computes it from the log: exact
    // from every latency while they fit in memory's bound.
    let latency = stats.latency_mut();
    let [p50_ms, p90_ms, p95_ms, p99_ms, p99_9_ms] =
        [0.50, 0.90, 0.95, 0.99, 0.999].map(|q| latency.quantile_ms(q));
    let (quantiles_exact, quantile_error) = (latency.exact(), latency.quantile_error());
    RunSummary {
        schema_version: summary::SCHEMA_VERSION,
        total: stats.total,
        succeeded: stats.succeeded,
        failed: stats.total - stats.succeeded,
        p50_ms,
        p90_ms,
        p95_ms,
        p99_ms,
        p99_9_ms,
        quantiles_exact,
        quantile_error,
        mean_ms: stats.mean_ms(),
        min_ms: stats.min_ms(),
        max_ms: stats.max_ms(),
        latency_buckets: stats.latency_buckets(summary::HISTOGRAM_BUCKETS),
        throughput_rps: if duration_s > 0.0 {
            stats.succeeded as f64 / duration_s
        } else {
            0.0
        },
        duration_s,
        errors: stats.errors.clone(),
        status_codes: engine.status_codes(),
        connections_opened: engine.connections_opened(),
        retries: stats.retries,
        mode: if config.open_loop.is_some() {
            "open"
        } else {
            "closed"
        }
        .to_owned(),
        profile: config.profile.map(|p| p.name().to_owned()),
        connection: config.connection.name().to_owned(),
        http2: config.http2,
        batch_size: config.batch_size,
        batch_wait_ms: config.batch_wait_ms,
        concurrency: config.workers(),
        client_threads: 0,
        busy_poll_us: 0,
        http_requests: engine.http_requests(),
        server_batch_size_mean: engine.server_batch_size_mean(),
        verified: false,
        verified_rows: stats.verified,
        target_rate_rps: target_rate,
        achieved_rate_rps: open_stats.map(|o| o.achieved_rate_rps),
        late_sends: open_stats.map(|o| o.late_sends),
        dropped: open_stats.map(|o| o.dropped),
        max_send_lag_ms: open_stats.map(|o| o.max_send_lag_ms),
        rate_warning,
        interrupted,
        url: config.url.clone(),
        resolved: Vec::new(),
        api: config.api.name().to_owned(),
        protocol: String::new(),
        tls_verification: None,
        tls_first_failure: None,
        server_stats_warning: None,
        model: config.model.clone(),
        llm: stats.llm_summary(duration_s),
        shard: None,
        plan: summary::plan_of(config),
        latency_histogram,
        // A single run's summary has none of a merge's keys.
        percentiles_from: None,
        ids: None,
        shards: None,
        slos: None,
    }
}

type CollectorHandle = std::thread::JoinHandle<Result<RowStats, LoadError>>;

/// How long the collector sleeps when the channel is empty. It polls rather
/// than blocks: a blocked receiver must be woken (a futex syscall and, on a
/// busy core, a context switch) for every row, which cost ~1.6 context
/// switches per request and capped throughput; polling lets senders push
/// without waking anyone. 1 ms of delay before a row is counted is harmless.
const COLLECTOR_POLL: Duration = Duration::from_millis(1);

/// Rows between two looks at the clock while rows keep coming (when the
/// channel is empty the collector looks at every poll).
const PUBLISH_CHECK_ROWS: u32 = 64;

/// Writes rows on a plain thread so file I/O never blocks the runtime that
/// times requests; flushes once a second so an interrupted run keeps its rows.
/// With `live` (a progress bar is drawn), publishes the statistics so far
/// every [`progress::PUBLISH_INTERVAL`].
fn spawn_collector(
    mut rows: mpsc::UnboundedReceiver<LogRow>,
    mut writer: Option<LogWriter<std::io::BufWriter<std::fs::File>>>,
    live: Option<Arc<progress::Live>>,
) -> Result<CollectorHandle, LoadError> {
    std::thread::Builder::new()
        .name("loadgen-log".into())
        .spawn(move || {
            let mut stats = RowStats::new();
            let mut last_flush = Instant::now();
            let mut last_publish = Instant::now();
            let mut unchecked_rows = 0u32;
            let mut publish_if_due = |stats: &RowStats| {
                if let Some(live) = &live {
                    if last_publish.elapsed() >= progress::PUBLISH_INTERVAL {
                        live.publish(stats);
                        last_publish = Instant::now();
                    }
                }
            };
            loop {
                let row = match rows.try_recv() {
                    Ok(row) => row,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        publish_if_due(&stats);
                        std::thread::sleep(COLLECTOR_POLL);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                };
                stats.record(&row);
                unchecked_rows += 1;
                if unchecked_rows >= PUBLISH_CHECK_ROWS {
                    unchecked_rows = 0;
                    publish_if_due(&stats);
                }
                if let Some(w) = writer.as_mut() {
                    w.write_row(&row)?;
                    if last_flush.elapsed() >= Duration::from_secs(1) {
                        w.flush()?;
                        last_flush = Instant::now();
                    }
                }
            }
            if let Some(w) = writer.as_mut() {
                w.flush()?;
            }
            Ok(stats)
        })
        .map_err(|_| LoadError::Collector)
}
