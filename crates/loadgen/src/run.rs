//! A prepared run, start to summary: the engine and its connections (on
//! client threads where the closed loop runs there), the warm-up, the wait
//! for `--start-at`, the closed or open loop, the shutdown with its grace,
//! and the summary with what the set-up reports.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::log::{LogWriter, Phase as RowPhase};
use model::summary::{RunSummary, ShardSummary, WorkloadSummary};
use tokio::sync::{mpsc, watch};

use crate::batcher::Batcher;
use crate::client::Transport;
use crate::collector::spawn_collector;
use crate::config::{self, LoadConfig};
use crate::distributed;
use crate::engine::{Clock, Engine, Link};
use crate::error::LoadError;
use crate::prepare::{prepare, Prepared, Protocol};
use crate::progress;
use crate::schedule::{self, Arrivals, ClosedLoop, Due, Issuer, Phase, TurnIds};
use crate::shards::Shards;
use crate::summary::{build_summary, ScheduleFacts};
use crate::tls;
use crate::verify;
use crate::workload::replay::{Trace, TraceArrivals};
use crate::workload::requests::Requests;
use crate::workload::Stages;

/// Runs a load test: [`prepare`], then [`Prepared::run`].
pub async fn run(
    config: LoadConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, LoadError> {
    prepare(config).await?.run(shutdown).await
}

impl Prepared {
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
            api: self.protocol.name(),
            workload: self.describes_workload().then(|| WorkloadSummary {
                prompts: self.requests.source(),
                exact_lengths: self.requests.exact(),
                trace: self.trace.as_ref().map(Trace::summary),
                stages: self.config.stages.as_ref().map(ToString::to_string),
                ..WorkloadSummary::default()
            }),
        };
        let Prepared {
            config,
            target,
            addrs,
            tls,
            protocol,
            requests,
            trace,
            stats,
            metrics,
        } = self;
        let writer = match &config.log_path {
            Some(path) => Some(LogWriter::create(path, protocol.token_metrics())?),
            None => None,
        };
        let tls_watch = tls.clone();
        let shards = match shard_count(&config) {
            Some(count) => Some(Shards::start(count).map_err(LoadError::Threads)?),
            None => None,
        };
        let link = match protocol {
            Protocol::Http(api) => Link::Http {
                api,
                transport: Transport::new(
                    target,
                    addrs,
                    tls,
                    &config,
                    shards.as_ref().map_or(0, Shards::len),
                ),
            },
            // Its connections were set up with the API (`prepare`).
            Protocol::Grpc(grpc) => Link::Grpc(grpc),
        };
        let checks = verify::Checks {
            verify: start_info.verified,
            digests: config.log_path.is_some() && config.digests,
        };
        let clock = Clock::new();
        // On the engine's clock, so the series and the rows share a time base.
        let scraper = match metrics {
            Some(target) => Some(target.start(clock).await),
            None => None,
        };
        let engine = Arc::new(Engine::new(link, checks, clock));
        let parts = RunParts {
            config,
            engine,
            requests,
            trace,
            shards,
            writer,
            info: start_info,
        };
        let outcome = run_engine(parts, shutdown).await;
        if let Some(scraper) = scraper {
            scraper.finish().await;
        }
        let mut summary = outcome?;
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

/// What the summary reports of the set-up.
struct StartInfo {
    resolved: Vec<String>,
    protocol: String,
    tls_verification: Option<String>,
    verified: bool,
    api: &'static str,
    /// What the summary says of an LLM workload, before its rows.
    workload: Option<WorkloadSummary>,
}

/// What a run needs once it is set up.
struct RunParts {
    config: LoadConfig,
    engine: Arc<Engine>,
    requests: Arc<Requests>,
    trace: Option<Trace>,
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
        requests,
        trace,
        shards,
        writer,
        info: start_info,
    } = parts;
    let shard = config.shard.unwrap_or(distributed::Shard::WHOLE);
    // The trace's rows, read again as the schedule pulls them; opened
    // here so a file gone since the check fails before any request.
    let trace_arrivals = match &trace {
        Some(trace) => Some(trace.arrivals(shard)?),
        None => None,
    };
    let trace_error = trace_arrivals.as_ref().map(TraceArrivals::error_slot);
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
        // Rows, the warm-up's included, stream to the collector from the
        // first request on. The live bar only where a person watches:
        // never in a CI log or a file stderr is redirected to.
        let (sink, rows) = mpsc::unbounded_channel();
        // With conversations -n counts sessions, not the rows the bar counts.
        let bar_requests = config.own_requests().filter(|_| !requests.converses());
        let goal = progress::Goal::of(bar_requests, run_length(&config, trace.as_ref()));
        let live = goal
            .filter(|_| config.progress && std::io::stderr().is_terminal())
            .map(|goal| (goal, Arc::new(progress::Live::default())));
        // Registered before the first request, so a scrape sees the run's
        // series (at zero) from its start.
        let run_metrics = config.metrics.as_ref().map(|metrics| {
            metrics.start_run(
                config.shard,
                engine.token_metrics(),
                config.open_loop.is_some(),
            )
        });
        let collector = spawn_collector(
            rows,
            writer,
            live.as_ref().map(|(_, l)| l.clone()),
            run_metrics.clone(),
            engine.token_metrics(),
        )?;
        let issuer_for = |row_phase: RowPhase| {
            Arc::new(Issuer {
                engine: engine.clone(),
                batcher: batcher.clone(),
                requests: requests.clone(),
                sink: Some(sink.clone()),
                phase: phase_rx.clone(),
                row_phase,
                turn_ids: TurnIds::new(shard),
                // The warm-up is left out of the metrics as of every statistic.
                metrics: run_metrics
                    .clone()
                    .filter(|_| row_phase == RowPhase::Measure),
            })
        };
        if !config.warmup.is_none() {
            // Each shard warms its own connections, with its own ids; the
            // rows are logged as the warm-up's and counted in nothing.
            let (requests, deadline) = match config.warmup {
                config::Warmup::Requests(n) => (Some(n), None),
                config::Warmup::For(d) => (None, Some(Instant::now() + d)),
            };
            let plan = ClosedLoop {
                concurrency: config.workers(),
                ids: distributed::Shard::WHOLE,
                requests,
                deadline,
                stages: None,
                origin: Instant::now(),
            };
            schedule::closed_loop(
                issuer_for(RowPhase::Warmup),
                plan,
                shards.as_ref(),
                config.busy_poll,
            )
            .await;
            engine.reset_counters();
        }
        let issuer = issuer_for(RowPhase::Measure);
        drop(sink);
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
        // Anchored like the open loop: every shard stops at --start-at +
        // -z (or the stages' end), however late it started.
        let deadline = config
            .duration
            .or(config.stages.as_ref().map(Stages::total))
            .map(|d| origin + d);
        let open_stats = match (&config.open_loop, trace_arrivals) {
            (None, _) => {
                let plan = ClosedLoop {
                    concurrency: closed_workers(&config),
                    ids: shard,
                    requests: config.requests,
                    deadline,
                    stages: config
                        .stages
                        .clone()
                        .filter(|_| config.stages_step_concurrency),
                    origin,
                };
                schedule::closed_loop(issuer, plan, shards.as_ref(), config.busy_poll).await;
                None
            }
            (Some(open), Some(rows)) => {
                let due = rows.map(|(id, offset_s, row)| Due {
                    id,
                    offset_s,
                    row: Some(row),
                });
                Some(schedule::open_loop(issuer, open, due, origin, deadline).await)
            }
            (Some(open), None) => {
                let arrivals = match &config.stages {
                    Some(stages) => Arrivals::staged(open, stages, shard, config.requests),
                    None => Arrivals::new(open, shard, config.requests, config.duration),
                };
                let due = arrivals.map(|(id, offset_s)| Due {
                    id,
                    offset_s,
                    row: None,
                });
                Some(schedule::open_loop(issuer, open, due, origin, deadline).await)
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
    let schedule = ScheduleFacts {
        open: open_stats,
        mean_rate_rps: mean_rate_rps(&config, trace.as_ref()),
        trace_error: trace_error.and_then(|slot| slot.lock().ok().and_then(|e| e.clone())),
    };
    let mut summary = build_summary(
        &config,
        &mut stats,
        schedule,
        duration_s,
        &engine,
        interrupted,
    );
    summary.workload = start_info.workload.map(|mut workload| {
        stats.fill_workload(&mut workload);
        workload
    });
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

/// The closed loop's workers: `-c` (this shard's part), or with stepped
/// stages the most any stage runs.
fn closed_workers(config: &LoadConfig) -> usize {
    match config
        .stages
        .as_ref()
        .filter(|_| config.stages_step_concurrency)
    {
        Some(stages) => {
            let shard = config.shard.unwrap_or(distributed::Shard::WHOLE);
            let most = stages
                .stages()
                .iter()
                .map(|s| shard.share(s.target as u64))
                .max()
                .unwrap_or(1);
            usize::try_from(most).unwrap_or(usize::MAX).max(1)
        }
        None => config.workers(),
    }
}

/// How long the measured run is planned to last, when it is a time:
/// `-z`, the stages, or the trace's window on the replay's clock.
fn run_length(config: &LoadConfig, trace: Option<&Trace>) -> Option<Duration> {
    config
        .duration
        .or(config.stages.as_ref().map(Stages::total))
        .or(trace.map(|t| Duration::from_secs_f64(t.span_s())))
}

/// The open loop's mean target rate over the whole load, requests/s.
fn mean_rate_rps(config: &LoadConfig, trace: Option<&Trace>) -> Option<f64> {
    let open = config.open_loop.as_ref()?;
    Some(match (trace, &config.stages) {
        (Some(trace), _) => trace.mean_rate_rps(),
        (None, Some(stages)) => {
            let ramp = stages.ramp(open.rate_rps);
            ramp.total_area() / ramp.total_s().max(f64::MIN_POSITIVE)
        }
        (None, None) => open.rate_rps,
    })
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
    shardable.then(|| threads.min(closed_workers(config)).max(1))
}
