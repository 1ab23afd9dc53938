//! Candidate fixes, their predicted latencies, and the choice; with the
//! capacity of the baseline, the choice and the best open-loop client
//! (searched in `capacity.rs`).
//!
//! Each candidate is simulated 8 times with the fit's point estimates (the
//! point prediction is the mean of those runs) and once per bootstrap refit
//! with a fresh seed (the interval: the fit's uncertainty and one run's own
//! sampling noise together). Every candidate sees the same seeds and the
//! same refits, so differences between candidates are not seed noise.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use model::whatif::{
    CandidateKind, CandidateRow, EngineReport, Load, PredictedCapacity, ServerChange,
};
use stats::{QuantileMethod, SplitMix64};

use super::capacity::{best_for_capacity, capacity_rps};
use super::fit::{LineFit, ServiceFit};
use super::sim::{simulate, ClientModel, ServerModel, SimOutcome};
use super::WhatifError;

/// Client batch waits tried at every batch size, ms.
pub(super) const BATCH_WAITS_MS: [u64; 5] = [0, 1, 2, 5, 10];
/// Server dynamic-batching windows tried, ms.
pub(super) const DYNAMIC_WINDOWS_MS: [u64; 4] = [1, 2, 5, 10];
/// Simulations with the point estimates behind each point prediction.
pub(super) const POINT_SIMULATIONS: usize = 8;
/// Batching "helps" when it lowers the best P95 by at least this fraction.
pub(super) const BATCHING_HELPS_FRACTION: f64 = 0.10;

/// What to predict and how to choose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct EngineOptions {
    /// The load every candidate runs under (the Before's, by default).
    pub load: Load,
    /// SLA bound on P95, ms.
    pub sla_p95_ms: f64,
    /// Fraction of the SLA kept in reserve, in `[0, 1)`.
    pub margin: f64,
    /// Bootstrap refits behind the intervals (at least 2).
    pub refits: usize,
    /// Seed of every draw.
    pub seed: u64,
    /// Whether the server can batch dynamically (adds those candidates).
    pub server_dynamic_batching: bool,
}

impl EngineOptions {
    /// Checks every option; the message says what is allowed.
    pub(super) fn validate(&self) -> Result<(), WhatifError> {
        let bad = |m: String| Err(WhatifError::InvalidOption(m));
        if !(self.sla_p95_ms.is_finite() && self.sla_p95_ms > 0.0) {
            return bad(format!(
                "--sla-p95-ms must be a finite number of ms above 0 (got {})",
                self.sla_p95_ms
            ));
        }
        if !(self.margin.is_finite() && (0.0..1.0).contains(&self.margin)) {
            return bad(format!(
                "--margin must be a fraction in [0, 1), e.g. 0.2 (got {})",
                self.margin
            ));
        }
        if !(2..=10_000).contains(&self.refits) {
            return bad(format!("--refits must be 2 to 10000 (got {})", self.refits));
        }
        match self.load {
            Load::Closed {
                concurrency,
                requests,
            } => {
                if concurrency == 0 {
                    return bad("--concurrency must be at least 1".to_owned());
                }
                if requests == 0 {
                    return bad("--requests must be at least 1".to_owned());
                }
            }
            Load::Open {
                rate_rps, requests, ..
            } => {
                if !(rate_rps.is_finite() && rate_rps > 0.0) {
                    return bad(format!(
                        "--rate must be a finite number of requests per second above 0 (got {rate_rps})"
                    ));
                }
                if requests == 0 {
                    return bad("--requests must be at least 1".to_owned());
                }
            }
        }
        Ok(())
    }

    /// The P95 a candidate's interval must stay within.
    pub(super) fn threshold_ms(&self) -> f64 {
        self.sla_p95_ms * (1.0 - self.margin)
    }
}

/// A candidate before prediction: the client it runs and the server it assumes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Candidate {
    /// Who has to change something.
    pub kind: CandidateKind,
    /// Logical requests per HTTP request.
    pub batch_size: u32,
    /// Client batcher's wait, ms.
    pub batch_wait_ms: u64,
    /// Pooled connections (the overhead without connect and TLS).
    pub pooled: bool,
    /// The server change assumed.
    pub server_change: Option<ServerChange>,
}

impl Candidate {
    /// The Before as measured.
    pub(super) fn baseline() -> Self {
        Candidate {
            kind: CandidateKind::Baseline,
            batch_size: 1,
            batch_wait_ms: 0,
            pooled: false,
            server_change: None,
        }
    }

    /// A pooled client batching `batch_size` with `batch_wait_ms`.
    pub(super) fn client(batch_size: u32, batch_wait_ms: u64) -> Self {
        Candidate {
            kind: CandidateKind::Client,
            batch_size,
            batch_wait_ms,
            pooled: true,
            server_change: None,
        }
    }

    /// A pooled unbatched client against a changed server.
    pub(super) fn server(change: ServerChange) -> Self {
        Candidate {
            kind: CandidateKind::Server,
            server_change: Some(change),
            ..Candidate::client(1, 0)
        }
    }

    /// What the candidate is, in words.
    pub(super) fn label(&self) -> String {
        let client = if self.batch_size > 1 {
            format!(
                "client batching B={}, W={} ms, pooled",
                self.batch_size, self.batch_wait_ms
            )
        } else if self.pooled {
            "pooled connections, no batching".to_owned()
        } else {
            "per-request connections, no batching".to_owned()
        };
        match (self.kind, self.server_change) {
            (CandidateKind::Baseline, _) => format!("baseline as measured: {client}"),
            (_, Some(ServerChange::OneMoreWorker { workers })) => {
                format!("server: one more worker ({workers} workers); {client}")
            }
            (_, Some(ServerChange::DynamicBatching { batch_window_ms })) => {
                format!("server: dynamic batching, window {batch_window_ms} ms; {client}")
            }
            (_, None) => client,
        }
    }

    /// The loadgen flags for this client.
    pub(super) fn loadgen_args(&self) -> Vec<String> {
        if !self.pooled {
            return vec!["--connection".into(), "per-request".into()];
        }
        let mut args = vec![
            "--connection".into(),
            "pooled".into(),
            "--batch-size".into(),
            self.batch_size.to_string(),
        ];
        // A batch of one leaves at once: loadgen refuses a wait for it.
        if self.batch_size > 1 {
            args.extend(["--batch-wait-ms".into(), self.batch_wait_ms.to_string()]);
        }
        args
    }

    /// The stub-server flags for the server change.
    pub(super) fn server_args(&self) -> Vec<String> {
        match self.server_change {
            None => Vec::new(),
            Some(ServerChange::OneMoreWorker { workers }) => {
                vec!["--workers".into(), workers.to_string()]
            }
            Some(ServerChange::DynamicBatching { batch_window_ms }) => vec![
                "--dynamic-batching".into(),
                "--batch-window-ms".into(),
                batch_window_ms.to_string(),
            ],
        }
    }

    /// The simulated server: the fit with `line`, changed as assumed.
    pub(super) fn server_model(&self, fit: &ServiceFit, line: LineFit) -> ServerModel {
        let mut server = fit.server_model_with(line);
        match self.server_change {
            None => {}
            Some(ServerChange::OneMoreWorker { workers }) => server.workers = workers,
            Some(ServerChange::DynamicBatching { batch_window_ms }) => {
                server.dynamic_batching_window_ms = Some(batch_window_ms as f64);
            }
        }
        server
    }

    /// The simulated client, drawing the fit's overhead samples.
    pub(super) fn client_model<'a>(&self, fit: &'a ServiceFit) -> ClientModel<'a> {
        ClientModel {
            batch_size: self.batch_size,
            batch_wait_ms: self.batch_wait_ms as f64,
            overhead_ms: if self.pooled {
                &fit.overhead_pooled_ms
            } else {
                &fit.overhead_per_request_ms
            },
        }
    }
}

/// Every candidate, in a fixed order: the baseline, pooling alone, client
/// batching at every `B` in `2..=max_batch` and wait in [`BATCH_WAITS_MS`]
/// (at `B = 1` the wait never matters: a request leaves as it comes), one
/// more worker, and dynamic batching when the server supports it.
pub(super) fn candidates(fit: &ServiceFit, server_dynamic_batching: bool) -> Vec<Candidate> {
    let mut out = vec![Candidate::baseline(), Candidate::client(1, 0)];
    for b in 2..=fit.max_batch {
        out.extend(BATCH_WAITS_MS.iter().map(|&w| Candidate::client(b, w)));
    }
    out.push(Candidate::server(ServerChange::OneMoreWorker {
        workers: fit.workers + 1,
    }));
    if server_dynamic_batching {
        out.extend(
            DYNAMIC_WINDOWS_MS
                .iter()
                .map(|&d| Candidate::server(ServerChange::DynamicBatching { batch_window_ms: d })),
        );
    }
    out
}

/// A seed for draw `index` of stream `stream`, decorrelated from `seed`.
fn derive_seed(seed: u64, stream: u64, index: u64) -> u64 {
    let mut rng = SplitMix64::new(
        seed ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03)
            ^ index.wrapping_mul(0x8cb9_2ba7_2f3d_8dd7),
    );
    rng.next_u64()
}

const STREAM_POINT: u64 = 1;
const STREAM_REFIT: u64 = 2;
const STREAM_REFIT_SIM: u64 = 3;
const STREAM_CAPACITY: u64 = 4;

/// `R` bootstrap refits of the cost line, each seeded by its index.
pub(super) fn refit_lines(fit: &ServiceFit, refits: usize, seed: u64) -> Vec<LineFit> {
    (0..refits)
        .map(|r| {
            let mut rng = SplitMix64::new(derive_seed(seed, STREAM_REFIT, r as u64));
            // A degenerate resample is vanishingly rare with stratified
            // resampling; fall back to the point line rather than fail.
            (0..5)
                .find_map(|_| fit.refit(&mut rng))
                .unwrap_or_else(|| fit.line())
        })
        .collect()
}

#[derive(Debug, Clone, Copy, Default)]
struct Point {
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    throughput_rps: f64,
}

fn point_of(fit: &ServiceFit, c: &Candidate, load: &Load, seed: u64) -> Point {
    let server = c.server_model(fit, fit.line());
    let client = c.client_model(fit);
    let mut sum = Point::default();
    for k in 0..POINT_SIMULATIONS {
        let o = simulate(
            &server,
            &client,
            load,
            derive_seed(seed, STREAM_POINT, k as u64),
        );
        sum.p50_ms += o.p50_ms;
        sum.p95_ms += o.p95_ms;
        sum.p99_ms += o.p99_ms;
        sum.throughput_rps += o.throughput_rps;
    }
    let n = POINT_SIMULATIONS as f64;
    Point {
        p50_ms: sum.p50_ms / n,
        p95_ms: sum.p95_ms / n,
        p99_ms: sum.p99_ms / n,
        throughput_rps: sum.throughput_rps / n,
    }
}

/// 95% intervals of P50, P95 and P99 over one simulation per refit.
fn intervals_of(
    fit: &ServiceFit,
    c: &Candidate,
    load: &Load,
    lines: &[LineFit],
    seed: u64,
) -> [[f64; 2]; 3] {
    let client = c.client_model(fit);
    let mut draws: [Vec<f64>; 3] = Default::default();
    for (r, line) in lines.iter().enumerate() {
        let o: SimOutcome = simulate(
            &c.server_model(fit, *line),
            &client,
            load,
            derive_seed(seed, STREAM_REFIT_SIM, r as u64),
        );
        draws[0].push(o.p50_ms);
        draws[1].push(o.p95_ms);
        draws[2].push(o.p99_ms);
    }
    draws.map(|mut d| {
        d.sort_unstable_by(f64::total_cmp);
        let q = |p: f64| stats::quantile(&d, p, QuantileMethod::Linear).unwrap_or(f64::NAN);
        [q(0.025), q(0.975)]
    })
}

/// `f` over `items` on every available core; the result is in input order
/// and does not depend on how the work was split.
pub(super) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    let next = AtomicUsize::new(0);
    let mut pieces: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            // A panicking closure is a bug; re-raise it here.
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    pieces.sort_by_key(|(i, _)| *i);
    pieces.into_iter().map(|(_, r)| r).collect()
}

/// Predicts every candidate for `fit` (already fitted), chooses, and
/// measures capacity; `elapsed_ms` covers this call.
pub(super) fn predict(
    fit: &ServiceFit,
    options: &EngineOptions,
) -> Result<EngineReport, WhatifError> {
    let started = Instant::now();
    options.validate()?;
    let threshold = options.threshold_ms();
    let all = candidates(fit, options.server_dynamic_batching);
    let load = options.load;
    let seed = options.seed;

    let points = par_map(&all, |c| point_of(fit, c, &load, seed));
    let lines = refit_lines(fit, options.refits, seed);
    let best_p95 = points
        .iter()
        .zip(&all)
        .filter(|(_, c)| c.kind == CandidateKind::Client)
        .map(|(p, _)| p.p95_ms)
        .fold(f64::INFINITY, f64::min);
    // Rows far from the best and far over the SLA cannot be chosen and
    // cannot meet it: a quarter of the refits shows their spread well enough.
    let few = (options.refits / 4).max(10).min(options.refits);
    let refits_for: Vec<usize> = points
        .iter()
        .map(|p| {
            if p.p95_ms <= (2.0 * best_p95).max(1.25 * threshold) {
                options.refits
            } else {
                few
            }
        })
        .collect();
    let jobs: Vec<(usize, &Candidate)> = refits_for.iter().copied().zip(&all).collect();
    let intervals = par_map(&jobs, |(r, c)| {
        intervals_of(fit, c, &load, &lines[..*r], seed)
    });

    let mut rows: Vec<CandidateRow> = all
        .iter()
        .zip(points)
        .zip(intervals)
        .zip(&refits_for)
        .map(|(((c, p), intervals), &refits)| {
            // With heavy tails (an open loop near saturation) the mean of the
            // point runs can land outside the refit runs' 95% range; widen
            // the interval to hold it, which only makes the SLA test stricter.
            let widen = |[lo, hi]: [f64; 2], point: f64| [lo.min(point), hi.max(point)];
            let i50 = widen(intervals[0], p.p50_ms);
            let i95 = widen(intervals[1], p.p95_ms);
            let i99 = widen(intervals[2], p.p99_ms);
            CandidateRow {
                rank: 0,
                label: c.label(),
                kind: c.kind,
                batch_size: c.batch_size,
                batch_wait_ms: c.batch_wait_ms,
                pooled: c.pooled,
                server_change: c.server_change,
                loadgen_args: c.loadgen_args(),
                server_args: c.server_args(),
                p50_ms: p.p50_ms,
                p95_ms: p.p95_ms,
                p99_ms: p.p99_ms,
                p50_interval_ms: i50,
                p95_interval_ms: i95,
                p99_interval_ms: i99,
                throughput_rps: p.throughput_rps,
                meets_sla_with_margin: i95[1] <= threshold,
                refits,
            }
        })
        .collect();
    rows.sort_by(order);
    for (i, row) in rows.iter_mut().enumerate() {
        row.rank = i + 1;
    }
    let baseline = rows
        .iter()
        .find(|r| r.kind == CandidateKind::Baseline)
        .cloned()
        .ok_or_else(|| WhatifError::InvalidOption("no baseline candidate".to_owned()))?;

    let choice = choose(&rows, options);
    let capacity_seed = derive_seed(seed, STREAM_CAPACITY, 0);
    let capacity_of = |c: &Candidate| {
        capacity_rps(
            &c.server_model(fit, fit.line()),
            &c.client_model(fit),
            options.sla_p95_ms,
            capacity_seed,
        )
    };
    let chosen_candidate = choice.chosen.as_ref().map(|r| Candidate {
        kind: r.kind,
        batch_size: r.batch_size,
        batch_wait_ms: r.batch_wait_ms,
        pooled: r.pooled,
        server_change: r.server_change,
    });
    let predicted_capacity_rps = PredictedCapacity {
        baseline: capacity_of(&Candidate::baseline()),
        chosen: chosen_candidate.as_ref().and_then(capacity_of),
        best: best_for_capacity(fit, options.sla_p95_ms, capacity_seed),
    };
    Ok(EngineReport {
        fit: fit.summary(),
        load,
        sla_p95_ms: options.sla_p95_ms,
        margin: options.margin,
        refits: options.refits,
        seed,
        baseline,
        candidates: rows,
        chosen: choice.chosen,
        batching_helps: choice.batching_helps,
        conclusion: choice.conclusion,
        predicted_capacity_rps,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Lower predicted P95 first; equal ones (within rounding) by smaller
/// batch, then *longer* wait, then client before server before baseline.
///
/// Equal predictions across waits mean every batch filled before any wait
/// ran out. The real client's requests freed by one response reach its
/// batcher microseconds apart, not at one instant as simulated, so a wait
/// of 0 would send the first of them alone; a longer wait costs nothing
/// while batches fill and keeps them full.
fn order(a: &CandidateRow, b: &CandidateRow) -> std::cmp::Ordering {
    let kind_rank = |k: CandidateKind| match k {
        CandidateKind::Client => 0,
        CandidateKind::Server => 1,
        CandidateKind::Baseline => 2,
    };
    let tolerance = 1e-9 * a.p95_ms.abs().max(b.p95_ms.abs());
    let by_p95 = if (a.p95_ms - b.p95_ms).abs() <= tolerance {
        std::cmp::Ordering::Equal
    } else {
        a.p95_ms.total_cmp(&b.p95_ms)
    };
    by_p95
        .then(a.batch_size.cmp(&b.batch_size))
        .then(b.batch_wait_ms.cmp(&a.batch_wait_ms))
        .then(kind_rank(a.kind).cmp(&kind_rank(b.kind)))
}

/// The choice among ranked rows and the sentence that explains it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Choice {
    /// The client-side row to run, if one meets the SLA with the margin.
    pub chosen: Option<CandidateRow>,
    /// See [`EngineReport::batching_helps`].
    pub batching_helps: bool,
    /// One sentence with numbers.
    pub conclusion: String,
}

/// Chooses among `rows` (ranked by P95, then batch size and wait): the
/// lowest predicted P95 of the client candidates whose P95 interval stays
/// within the SLA less the margin; an unbatched one when batching gains
/// less than 10%.
pub(super) fn choose(rows: &[CandidateRow], options: &EngineOptions) -> Choice {
    let threshold = options.threshold_ms();
    let sla = options.sla_p95_ms;
    let pct = (options.margin * 100.0).round();
    let client = || rows.iter().filter(|r| r.kind == CandidateKind::Client);
    // Rows are ranked, so the first of a filter is its best.
    let best_unbatched = client().find(|r| r.batch_size == 1);
    let best_batched = client().find(|r| r.batch_size > 1);
    let best_meeting = client().find(|r| r.meets_sla_with_margin);
    let batching_helps = match (best_unbatched, best_batched) {
        (Some(u), Some(b)) => b.p95_ms <= (1.0 - BATCHING_HELPS_FRACTION) * u.p95_ms,
        (None, Some(_)) => true,
        _ => false,
    };
    let chosen = if batching_helps {
        best_meeting
    } else {
        best_unbatched
            .filter(|u| u.meets_sla_with_margin)
            .or(best_meeting)
    };
    let describe = |r: &CandidateRow| {
        format!(
            "{} (P95 {:.0} ms, 95% interval {:.0}-{:.0} ms)",
            r.label, r.p95_ms, r.p95_interval_ms[0], r.p95_interval_ms[1]
        )
    };
    let baseline = rows.iter().find(|r| r.kind == CandidateKind::Baseline);
    let from = baseline.map_or(String::new(), |b| {
        format!(" from the baseline's {:.0} ms", b.p95_ms)
    });
    let conclusion = match chosen {
        Some(c) if batching_helps => format!(
            "Choose {}: it brings the predicted P95{from} within the {threshold:.0} ms that the \
             {sla:.0} ms SLA leaves with a {pct:.0}% margin; the best unbatched client predicts {}.",
            describe(c),
            best_unbatched.map_or("nothing".to_owned(), |u| format!("{:.0} ms", u.p95_ms)),
        ),
        Some(c) => format!(
            "Batching will not help: the best batched candidate predicts P95 {} against {:.0} ms \
             unbatched (under 10% better); choose {}, within the {threshold:.0} ms that the \
             {sla:.0} ms SLA leaves with a {pct:.0}% margin.",
            best_batched.map_or("nothing".to_owned(), |b| format!("{:.0} ms ({})", b.p95_ms, b.label)),
            best_unbatched.map_or(f64::NAN, |u| u.p95_ms),
            describe(c),
        ),
        None => {
            let server = rows
                .iter()
                .find(|r| r.kind == CandidateKind::Server && r.meets_sla_with_margin);
            let best = client().next();
            let lead = if batching_helps {
                String::new()
            } else {
                format!(
                    "Batching will not help (best batched P95 {} against {} unbatched), and ",
                    best_batched.map_or("n/a".to_owned(), |b| format!("{:.0} ms", b.p95_ms)),
                    best_unbatched.map_or("n/a".to_owned(), |u| format!("{:.0} ms", u.p95_ms)),
                )
            };
            let no = if lead.is_empty() { "No" } else { "no" };
            format!(
                "{lead}{no} client-side candidate keeps P95 within {threshold:.0} ms (the {sla:.0} ms \
                 SLA less a {pct:.0}% margin): the best is {}; {}.",
                best.map_or("none".to_owned(), describe),
                match server {
                    Some(s) => format!("a server change would: {}", describe(s)),
                    None => "no server change considered would either".to_owned(),
                }
            )
        }
    };
    Choice {
        chosen: chosen.cloned(),
        batching_helps,
        conclusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::whatif::Estimate;

    fn exact(value: f64) -> Estimate {
        Estimate {
            value,
            lo: value,
            hi: value,
        }
    }

    fn fitted(workers: usize, base_ms: f64, per_item_ms: f64, max_batch: u32) -> ServiceFit {
        ServiceFit::noiseless(workers, base_ms, per_item_ms, max_batch)
    }

    fn options(concurrency: u32, requests: u32) -> EngineOptions {
        EngineOptions {
            load: Load::Closed {
                concurrency,
                requests,
            },
            sla_p95_ms: 800.0,
            margin: 0.2,
            refits: 10,
            seed: 1,
            server_dynamic_batching: true,
        }
    }

    #[test]
    fn candidates_cover_every_batch_size_wait_and_server_change() {
        let f = fitted(2, 100.0, 2.0, 4);
        let all = candidates(&f, true);
        // Baseline, pooled, 3 sizes x 5 waits, one more worker, 4 windows.
        assert_eq!(all.len(), 2 + 3 * 5 + 1 + 4);
        assert_eq!(all[0].loadgen_args(), ["--connection", "per-request"]);
        assert_eq!(
            all[1].loadgen_args(),
            ["--connection", "pooled", "--batch-size", "1",]
        );
        let worker = all
            .iter()
            .find(|c| matches!(c.server_change, Some(ServerChange::OneMoreWorker { .. })))
            .unwrap();
        assert_eq!(worker.server_args(), ["--workers", "3"]);
        assert_eq!(worker.kind, CandidateKind::Server);
        let last = all.last().unwrap();
        assert_eq!(
            last.server_args(),
            ["--dynamic-batching", "--batch-window-ms", "10"]
        );
        assert_eq!(candidates(&f, false).len(), 2 + 3 * 5 + 1);
    }

    #[test]
    fn noiseless_prediction_picks_the_batch_that_fills_both_workers() {
        // 20 clients, 2 workers: B=10 gives two batches of 120 ms in flight.
        let f = fitted(2, 100.0, 2.0, 32);
        let report = predict(&f, &options(20, 400)).unwrap();
        let chosen = report.chosen.as_ref().unwrap();
        // Every wait ties (batches fill at once): the longest one is chosen.
        assert_eq!((chosen.batch_size, chosen.batch_wait_ms), (10, 10));
        assert!((chosen.p95_ms - 120.0).abs() < 1e-6, "{}", chosen.p95_ms);
        assert!(report.batching_helps);
        // The baseline queues 20 requests on 2 workers: 10 services + overhead.
        assert!(
            (report.baseline.p95_ms - 1021.0).abs() < 2.0,
            "{}",
            report.baseline.p95_ms
        );
        assert!(report
            .candidates
            .windows(2)
            .all(|w| w[0].p95_ms <= w[1].p95_ms));
        assert_eq!(report.candidates[0].rank, 1);
        let capacity = report.predicted_capacity_rps;
        // One unbatched request per 103 ms on each of 2 workers at most.
        let baseline = capacity.baseline.unwrap();
        assert!(baseline > 15.0 && baseline <= 2000.0 / 101.0, "{baseline}");
        // W=0 sends each open-loop arrival alone (none arrive together), so
        // the chosen client's capacity is the unbatched server's too.
        let chosen = capacity.chosen.unwrap();
        assert!(chosen > 15.0 && chosen <= 2000.0 / 101.0, "{chosen}");
    }

    #[test]
    fn batching_that_costs_as_much_as_it_saves_does_not_help() {
        // Two clients on two workers: nothing queues, batching only adds cost.
        let f = fitted(2, 20.0, 18.0, 16);
        let report = predict(&f, &options(2, 200)).unwrap();
        assert!(!report.batching_helps);
        let chosen = report.chosen.unwrap();
        assert_eq!(chosen.batch_size, 1);
        assert!(
            report.conclusion.starts_with("Batching will not help"),
            "{}",
            report.conclusion
        );
    }

    #[test]
    fn nothing_meeting_the_sla_chooses_nothing_and_says_so() {
        let f = fitted(1, 2000.0, 1.0, 4);
        let report = predict(&f, &options(2, 50)).unwrap();
        assert!(report.chosen.is_none());
        assert!(
            report
                .conclusion
                .contains("client-side candidate keeps P95"),
            "{}",
            report.conclusion
        );
        assert!(report.predicted_capacity_rps.baseline.is_none());
    }

    #[test]
    fn the_same_seed_gives_the_same_report() {
        let mut f = fitted(2, 100.0, 2.0, 8);
        f.sigma = exact(0.1);
        let o = options(8, 100);
        let mut a = predict(&f, &o).unwrap();
        let mut b = predict(&f, &o).unwrap();
        a.elapsed_ms = 0.0;
        b.elapsed_ms = 0.0;
        assert_eq!(a, b);
        let c = predict(&f, &EngineOptions { seed: 2, ..o }).unwrap();
        assert_ne!(a.candidates[0].p95_ms, c.candidates[0].p95_ms);
    }

    #[test]
    fn bad_options_are_refused_with_what_is_allowed() {
        let mut o = options(20, 400);
        o.margin = 1.0;
        assert!(o.validate().unwrap_err().to_string().contains("--margin"));
        let mut o = options(20, 400);
        o.sla_p95_ms = f64::NAN;
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--sla-p95-ms"));
        let mut o = options(20, 400);
        o.refits = 1;
        assert!(o.validate().unwrap_err().to_string().contains("--refits"));
        assert!(options(0, 400).validate().is_err());
    }
}
