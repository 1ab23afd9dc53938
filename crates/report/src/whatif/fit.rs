//! Fitting the simulated server's model to measured runs.
//!
//! Every executed batch of a run is one observation `(batch size, service
//! time)`. The simulator draws a batch's cost as `(base + per_item * b) *
//! exp(N(0, sigma^2))`, so the log of a cost is `ln(base + per_item * b)`
//! plus a normal error: fitting `ln s` on `b` by least squares estimates the
//! *median* line (not the mean one, which a plain fit of `s` would) and the
//! log residuals estimate `sigma`. Intervals come from a seeded bootstrap over
//! executions; parallelism from how many execution intervals overlap.

use std::collections::{BTreeMap, HashSet};

use model::log::{Log, LogRow};
use model::whatif::{Estimate, FitSummary};
use stats::{QuantileMethod, SplitMix64};

use super::sim::ServerModel;

/// Bootstrap resamples behind the fit's intervals.
pub(super) const DEFAULT_BOOTSTRAP_RESAMPLES: usize = 200;

/// One executed batch: its size and how long the server says it ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Execution {
    /// Items in the batch (the row's `batch_size`, 1 when absent).
    pub batch_size: u32,
    /// Server-reported execution time, ms.
    pub service_ms: f64,
}

/// The median cost line and the spread around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct LineFit {
    /// Fixed cost of a batch, ms.
    pub base_ms: f64,
    /// Cost per item, ms.
    pub per_item_ms: f64,
    /// Standard deviation of `ln(service) - ln(base + per_item * b)`.
    pub sigma: f64,
}

/// What the runs say about the server and the client's own overhead.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ServiceFit {
    /// Fixed cost per executed batch (median line), ms.
    pub base_ms: Estimate,
    /// Added cost per item (median line), ms.
    pub per_item_ms: Estimate,
    /// Standard deviation of the log-normal multiplier.
    pub sigma: Estimate,
    /// Executions that can run at once (99th percentile of the overlap,
    /// maximum over the runs).
    pub workers: usize,
    /// Busy time over span, in the run where executions overlap most.
    pub mean_executions_in_flight: f64,
    /// Every execution the fit used (the bootstrap resamples these).
    pub executions: Vec<Execution>,
    /// Distinct batch sizes seen, ascending.
    pub batch_sizes: Vec<u32>,
    /// Largest batch the server is assumed to take (largest seen unless
    /// overridden with [`ServiceFit::with_max_batch`]).
    pub max_batch: u32,
    /// Client overhead per request with a new connection each time
    /// (`latency - queue - service` of the Before's unbatched rows), ms.
    pub overhead_per_request_ms: Vec<f64>,
    /// The same less `connect_ms` and `tls_ms`, which a pooled connection
    /// does not pay per request, clamped at 0, ms.
    pub overhead_pooled_ms: Vec<f64>,
    /// Mean `connect_ms` of those rows, when they carry it.
    pub connect_ms_mean: Option<f64>,
}

/// Why the runs cannot be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// No log was given.
    #[error("no run to fit: pass the Before log (and any probe logs)")]
    NoRuns,
    /// No row succeeded.
    #[error(
        "the logs hold no successful row ({rows} rows in all), so there is no execution to fit"
    )]
    NoSuccessfulRows {
        /// Rows in all runs.
        rows: usize,
    },
    /// The successful rows carry no `service_ms`.
    #[error(
        "none of the {rows} successful rows carries service_ms (the server's `Server-Timing: infer` \
         duration); fitting needs a loadgen log of a server that sends Server-Timing, as stub-server does"
    )]
    NoServiceTiming {
        /// Successful rows.
        rows: usize,
    },
    /// Every execution had the same batch size.
    #[error(
        "every execution has batch size {size}: the Before alone cannot separate the base cost from \
         the per-item cost; add a probe run at several batch sizes, e.g. for B in 8 and 32: \
         `loadgen --connection pooled -c B --batch-size B --batch-wait-ms 50 -n 8B`, and pass each with --probe"
    )]
    OneBatchSize {
        /// The only batch size seen.
        size: u32,
    },
    /// The least-squares fit found no line positive at every batch size.
    #[error("the cost line could not be fitted: {0}")]
    Degenerate(String),
}

/// Fits the service model to the Before (first) and any probe runs, with
/// `resamples` bootstrap resamples seeded with `seed`. With
/// `line_from_probes_only` the cost line is fitted to the probes alone (the
/// Before's execution times are then a server statistic's mean, not
/// measurements, see [`super::server_stats`]); the Before still gives the
/// parallelism and the client's overhead.
pub(super) fn fit_seeded_opts(
    runs: &[&Log],
    resamples: usize,
    seed: u64,
    line_from_probes_only: bool,
) -> Result<ServiceFit, FitError> {
    if runs.is_empty() {
        return Err(FitError::NoRuns);
    }
    let total_rows: usize = runs.iter().map(|r| r.rows.len()).sum();
    let ok_rows: usize = runs
        .iter()
        .map(|r| r.rows.iter().filter(|row| row.ok).count())
        .sum();
    if ok_rows == 0 {
        return Err(FitError::NoSuccessfulRows { rows: total_rows });
    }
    let per_run: Vec<Vec<Timed>> = runs.iter().map(|run| executions_of(&run.rows)).collect();
    let skip = usize::from(line_from_probes_only && runs.len() > 1);
    let executions: Vec<Execution> = per_run[skip..]
        .iter()
        .flatten()
        .map(|t| t.execution)
        .collect();
    if executions.is_empty() {
        return Err(FitError::NoServiceTiming { rows: ok_rows });
    }
    let batch_sizes: Vec<u32> = {
        let mut sizes: Vec<u32> = executions.iter().map(|e| e.batch_size).collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    };
    if let [size] = batch_sizes[..] {
        return Err(FitError::OneBatchSize { size });
    }
    let max_batch = batch_sizes.last().copied().unwrap_or(1);
    let point = fit_line(&executions, max_batch).ok_or_else(|| {
        FitError::Degenerate(format!(
            "no line base + per_item * b stays positive over batch sizes {batch_sizes:?}"
        ))
    })?;

    let mut rng = SplitMix64::new(seed);
    let groups = by_batch_size(&executions);
    let mut draws: [Vec<f64>; 3] = Default::default();
    let mut resample = Vec::with_capacity(executions.len());
    for _ in 0..resamples {
        resample_stratified(&groups, &mut rng, &mut resample);
        if let Some(line) = fit_line(&resample, max_batch) {
            draws[0].push(line.base_ms);
            draws[1].push(line.per_item_ms);
            draws[2].push(line.sigma);
        }
    }
    let [base_draws, per_draws, sigma_draws] = draws;

    let (mut workers, mean_executions_in_flight) = parallelism(&per_run);
    if line_from_probes_only {
        // The Before's executions are then a statistic's mean placed at the
        // end of each request, so their overlaps are not measured; busy
        // time over span is (the server's own total execution time), and
        // a Before that queues keeps every executor busy.
        workers = (mean_executions_in_flight.round() as usize).max(1);
    }
    let overhead = overhead_of(runs);
    Ok(ServiceFit {
        base_ms: interval(point.base_ms, base_draws),
        per_item_ms: interval(point.per_item_ms, per_draws),
        sigma: interval(point.sigma, sigma_draws),
        workers,
        mean_executions_in_flight,
        executions,
        batch_sizes,
        max_batch,
        overhead_per_request_ms: overhead.per_request_ms,
        overhead_pooled_ms: overhead.pooled_ms,
        connect_ms_mean: overhead.connect_ms_mean,
    })
}

impl ServiceFit {
    /// The fit as `whatif.json` shows it (the samples themselves stay out).
    pub(super) fn summary(&self) -> FitSummary {
        FitSummary {
            base_ms: self.base_ms,
            per_item_ms: self.per_item_ms,
            sigma: self.sigma,
            workers: self.workers,
            mean_executions_in_flight: self.mean_executions_in_flight,
            executions: self.executions.len(),
            batch_sizes: self.batch_sizes.clone(),
            max_batch: self.max_batch,
            overhead_ms_mean: self.overhead_ms_mean(),
            connect_ms_mean: self.connect_ms_mean,
        }
    }

    /// The same fit with the server's largest batch set to `max_batch`
    /// (at least 1), for a server known to take more than the runs showed.
    pub(super) fn with_max_batch(mut self, max_batch: u32) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// The point estimates as a line.
    pub(super) fn line(&self) -> LineFit {
        LineFit {
            base_ms: self.base_ms.value,
            per_item_ms: self.per_item_ms.value,
            sigma: self.sigma.value,
        }
    }

    /// The fitted server with another cost line (a bootstrap refit's).
    pub(super) fn server_model_with(&self, line: LineFit) -> ServerModel {
        ServerModel {
            workers: self.workers,
            base_ms: line.base_ms,
            per_item_ms: line.per_item_ms,
            sigma: line.sigma,
            max_batch: self.max_batch,
            dynamic_batching_window_ms: None,
        }
    }

    /// Mean client overhead per request with per-request connections, ms
    /// (0 without samples).
    pub(super) fn overhead_ms_mean(&self) -> f64 {
        mean(&self.overhead_per_request_ms).unwrap_or(0.0)
    }

    /// A bootstrap refit: the executions resampled within each batch size,
    /// refitted; `None` only if the resample is degenerate.
    pub(super) fn refit(&self, rng: &mut SplitMix64) -> Option<LineFit> {
        let groups = by_batch_size(&self.executions);
        let mut resample = Vec::with_capacity(self.executions.len());
        resample_stratified(&groups, rng, &mut resample);
        fit_line(&resample, self.max_batch)
    }
}

/// An execution with the wall-clock interval it ran in.
#[derive(Debug, Clone, Copy)]
struct Timed {
    execution: Execution,
    start_ms: f64,
    end_ms: f64,
}

/// Successful rows deduplicated by `batch_id` (a row without one is an
/// execution of its own), keeping those with a usable `service_ms`.
fn executions_of(rows: &[LogRow]) -> Vec<Timed> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for row in rows.iter().filter(|r| r.ok) {
        let Some(service_ms) = row.service_ms.filter(|s| s.is_finite() && *s > 0.0) else {
            continue;
        };
        if !(row.timestamp_ms.is_finite() && row.latency_ms.is_finite()) {
            continue;
        }
        if let Some(id) = row.batch_id {
            if !seen.insert(id) {
                continue;
            }
        }
        let end_ms = row.timestamp_ms + row.latency_ms;
        out.push(Timed {
            execution: Execution {
                batch_size: row.batch_size.unwrap_or(1).max(1),
                service_ms,
            },
            start_ms: end_ms - service_ms,
            end_ms,
        });
    }
    out
}

/// Executions grouped by batch size, so a bootstrap resample keeps the
/// design (how many executions of each size) fixed: the sizes were chosen
/// by whoever ran the probes, not drawn, and a resample with a single size
/// could not be fitted at all.
fn by_batch_size(executions: &[Execution]) -> Vec<Vec<Execution>> {
    let mut groups: BTreeMap<u32, Vec<Execution>> = BTreeMap::new();
    for e in executions {
        groups.entry(e.batch_size).or_default().push(*e);
    }
    groups.into_values().collect()
}

fn resample_stratified(groups: &[Vec<Execution>], rng: &mut SplitMix64, out: &mut Vec<Execution>) {
    out.clear();
    for group in groups {
        for _ in 0..group.len() {
            out.push(group[rng.index_below(group.len())]);
        }
    }
}

/// Least squares of `ln s` on `ln(base + per_item * b)`: Gauss-Newton from
/// the ordinary fit of `s` on `b`, with step halving that keeps the line
/// positive on `1..=max_batch` and never raises the sum of squares. Exact
/// on noiseless executions (the starting line already fits them).
pub(super) fn fit_line(executions: &[Execution], max_batch: u32) -> Option<LineFit> {
    let n = executions.len();
    if n < 2 {
        return None;
    }
    let points: Vec<(f64, f64)> = executions
        .iter()
        .map(|e| (f64::from(e.batch_size), e.service_ms.ln()))
        .collect();
    let b_max = points
        .iter()
        .map(|p| p.0)
        .fold(f64::NEG_INFINITY, f64::max)
        .max(f64::from(max_batch));
    // The simulator may run any batch from 1 to max_batch: the line must be
    // positive over that whole range (a line is, if it is at both ends).
    let positive = |base: f64, per: f64| base + per > 0.0 && base + per * b_max > 0.0;
    let sse = |base: f64, per: f64| -> f64 {
        points
            .iter()
            .map(|&(b, ln_s)| {
                let r = ln_s - (base + per * b).ln();
                r * r
            })
            .sum()
    };

    // Start: the ordinary least-squares line of s on b.
    let nf = n as f64;
    let mean_b = points.iter().map(|p| p.0).sum::<f64>() / nf;
    let mean_s = executions.iter().map(|e| e.service_ms).sum::<f64>() / nf;
    let (mut sbb, mut sbs) = (0.0, 0.0);
    for e in executions {
        let db = f64::from(e.batch_size) - mean_b;
        sbb += db * db;
        sbs += db * (e.service_ms - mean_s);
    }
    if sbb <= 0.0 {
        return None;
    }
    let (mut base, mut per) = (mean_s - sbs / sbb * mean_b, sbs / sbb);
    if !positive(base, per) {
        // A flat line at the geometric mean is always a valid start.
        base = (points.iter().map(|p| p.1).sum::<f64>() / nf).exp();
        per = 0.0;
    }
    let mut current = sse(base, per);
    for _ in 0..100 {
        // Normal equations of the linearised problem: J = [1/f, b/f].
        let (mut a11, mut a12, mut a22, mut g1, mut g2) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(b, ln_s) in &points {
            let f = base + per * b;
            let r = ln_s - f.ln();
            let (j1, j2) = (1.0 / f, b / f);
            a11 += j1 * j1;
            a12 += j1 * j2;
            a22 += j2 * j2;
            g1 += j1 * r;
            g2 += j2 * r;
        }
        let det = a11 * a22 - a12 * a12;
        if !(det.is_finite() && det.abs() > f64::EPSILON * a11 * a22) {
            return None;
        }
        let d_base = (a22 * g1 - a12 * g2) / det;
        let d_per = (a11 * g2 - a12 * g1) / det;
        let mut step = 1.0;
        let mut improved = false;
        for _ in 0..40 {
            let (nb, np) = (base + step * d_base, per + step * d_per);
            if positive(nb, np) {
                let candidate = sse(nb, np);
                if candidate <= current {
                    base = nb;
                    per = np;
                    improved = candidate < current;
                    current = candidate;
                    break;
                }
            }
            step *= 0.5;
        }
        let small = d_base.abs() <= 1e-12 * base.abs().max(1e-9)
            && d_per.abs() <= 1e-12 * per.abs().max(1e-9);
        if !improved || small {
            break;
        }
    }
    if !(base.is_finite() && per.is_finite()) {
        return None;
    }
    // Two parameters were fitted: divide by n - 2 (unbiased), n when too few.
    let dof = if n > 2 { nf - 2.0 } else { nf };
    Some(LineFit {
        base_ms: base,
        per_item_ms: per,
        sigma: (current / dof).sqrt(),
    })
}

fn interval(value: f64, mut draws: Vec<f64>) -> Estimate {
    draws.retain(|d| d.is_finite());
    if draws.is_empty() {
        return Estimate {
            value,
            lo: value,
            hi: value,
        };
    }
    draws.sort_unstable_by(f64::total_cmp);
    let q = |p: f64| stats::quantile(&draws, p, QuantileMethod::Linear).unwrap_or(value);
    Estimate {
        value,
        // The point estimate always lies within its own interval.
        lo: q(0.025).min(value),
        hi: q(0.975).max(value),
    }
}

/// `(workers, mean executions in flight)` over the runs. Each run has its
/// own wall clock, so overlaps are counted within a run only.
fn parallelism(per_run: &[Vec<Timed>]) -> (usize, f64) {
    let mut workers = 1usize;
    let mut in_flight = 0.0f64;
    for run in per_run.iter().filter(|r| !r.is_empty()) {
        let mut starts: Vec<f64> = run.iter().map(|t| t.start_ms).collect();
        let mut ends: Vec<f64> = run.iter().map(|t| t.end_ms).collect();
        starts.sort_unstable_by(f64::total_cmp);
        ends.sort_unstable_by(f64::total_cmp);
        // Intervals holding a point m: those started by m less those ended before it.
        let mut overlaps: Vec<f64> = run
            .iter()
            .map(|t| {
                let m = 0.5 * (t.start_ms + t.end_ms);
                let started = starts.partition_point(|&s| s <= m);
                let ended = ends.partition_point(|&e| e < m);
                started.saturating_sub(ended) as f64
            })
            .collect();
        overlaps.sort_unstable_by(f64::total_cmp);
        let p99 = stats::quantile(&overlaps, 0.99, QuantileMethod::Linear).unwrap_or(1.0);
        workers = workers.max(p99.round().max(1.0) as usize);
        let busy_ms: f64 = run.iter().map(|t| t.execution.service_ms).sum();
        let span_ms = ends[ends.len() - 1] - starts[0];
        if span_ms > 0.0 {
            in_flight = in_flight.max(busy_ms / span_ms);
        }
    }
    (workers, in_flight)
}

struct Overhead {
    per_request_ms: Vec<f64>,
    pooled_ms: Vec<f64>,
    connect_ms_mean: Option<f64>,
}

/// The client's own time per request from successful unbatched rows:
/// what the latency holds beyond the server's queue and execution. From
/// the Before (the first run) alone, whose client the baseline is: a probe
/// at batch size 1 runs on pooled connections and would understate the
/// per-request overhead. Only a Before without such rows falls back to
/// the other runs.
fn overhead_of(runs: &[&Log]) -> Overhead {
    let from_before = overhead_of_rows(runs.iter().take(1).flat_map(|r| &r.rows));
    if from_before.per_request_ms.is_empty() {
        overhead_of_rows(runs.iter().skip(1).flat_map(|r| &r.rows))
    } else {
        from_before
    }
}

fn overhead_of_rows<'a>(rows: impl Iterator<Item = &'a LogRow>) -> Overhead {
    let mut per_request_ms = Vec::new();
    let mut pooled_ms = Vec::new();
    let mut connects = Vec::new();
    for row in rows {
        if !row.ok || row.batch_size.unwrap_or(1) != 1 {
            continue;
        }
        let (Some(queue), Some(service)) = (row.queue_ms, row.service_ms) else {
            continue;
        };
        let overhead = (row.latency_ms - queue - service).max(0.0);
        if !overhead.is_finite() {
            continue;
        }
        let connect = row.connect_ms.filter(|c| c.is_finite()).unwrap_or(0.0);
        let tls = row.tls_ms.filter(|t| t.is_finite()).unwrap_or(0.0);
        per_request_ms.push(overhead);
        pooled_ms.push((overhead - connect - tls).max(0.0));
        if let Some(c) = row.connect_ms.filter(|c| c.is_finite()) {
            connects.push(c);
        }
    }
    Overhead {
        per_request_ms,
        pooled_ms,
        connect_ms_mean: mean(&connects),
    }
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// A fit with exact estimates and no spread, for the engine's tests: every
/// batch costs `base_ms + per_item_ms * size`.
#[cfg(test)]
impl ServiceFit {
    pub(super) fn noiseless(
        workers: usize,
        base_ms: f64,
        per_item_ms: f64,
        max_batch: u32,
    ) -> Self {
        let exact = |value| Estimate {
            value,
            lo: value,
            hi: value,
        };
        Self {
            base_ms: exact(base_ms),
            per_item_ms: exact(per_item_ms),
            sigma: exact(0.0),
            workers,
            mean_executions_in_flight: workers as f64,
            executions: [1, max_batch]
                .iter()
                .flat_map(|&b| {
                    (0..4).map(move |_| Execution {
                        batch_size: b,
                        service_ms: base_ms + per_item_ms * f64::from(b),
                    })
                })
                .collect(),
            batch_sizes: vec![1, max_batch],
            max_batch,
            overhead_per_request_ms: vec![1.0],
            overhead_pooled_ms: vec![0.0],
            connect_ms_mean: Some(0.5),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    use model::log::LogFormat;

    use super::*;

    /// Fits with [`DEFAULT_BOOTSTRAP_RESAMPLES`] resamples seeded with 1.
    fn fit(runs: &[&Log]) -> Result<ServiceFit, FitError> {
        fit_seeded(runs, DEFAULT_BOOTSTRAP_RESAMPLES, 1)
    }

    /// [`fit`] with the bootstrap's size and seed chosen.
    fn fit_seeded(runs: &[&Log], resamples: usize, seed: u64) -> Result<ServiceFit, FitError> {
        fit_seeded_opts(runs, resamples, seed, false)
    }

    struct Truth {
        workers: usize,
        base_ms: f64,
        per_item_ms: f64,
        sigma: f64,
    }

    const T0_MS: f64 = 1_700_000_000_000.0;
    const OVERHEAD_MS: f64 = 1.5;
    const CONNECT_MS: f64 = 0.25;

    /// A closed-loop Before of unbatched requests against `truth`: each
    /// request reaches the FIFO after half the overhead, the response
    /// comes back after the other half.
    fn before(truth: &Truth, concurrency: usize, requests: usize, seed: u64) -> Log {
        let mut z = stats::Normals::new(seed);
        // Issue times of the clients, earliest first: arrivals are then
        // handled in order, and each takes the earliest free worker (FIFO).
        let mut clients: BinaryHeap<Reverse<(u64, usize)>> =
            (0..concurrency).map(|c| Reverse((0, c))).collect();
        let mut worker_free_ms = vec![0.0f64; truth.workers];
        let mut rows = Vec::new();
        for id in 0..requests {
            let Some(Reverse((issue_us, client))) = clients.pop() else {
                break;
            };
            let issue_ms = issue_us as f64 / 1000.0;
            let arrive_ms = issue_ms + OVERHEAD_MS / 2.0;
            let (w, free_ms) = worker_free_ms
                .iter()
                .copied()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let start_ms = arrive_ms.max(free_ms);
            let service_ms =
                (truth.base_ms + truth.per_item_ms) * (truth.sigma * z.next_standard()).exp();
            worker_free_ms[w] = start_ms + service_ms;
            let done_ms = start_ms + service_ms + OVERHEAD_MS / 2.0;
            rows.push(LogRow {
                request_id: id as u64,
                timestamp_ms: T0_MS + issue_ms,
                latency_ms: done_ms - issue_ms,
                status_code: 200,
                ok: true,
                batch_id: Some(id as u64),
                batch_size: Some(1),
                connect_ms: Some(CONNECT_MS),
                queue_ms: Some(start_ms - arrive_ms),
                service_ms: Some(service_ms),
                ..LogRow::default()
            });
            clients.push(Reverse(((done_ms * 1000.0).round() as u64, client)));
        }
        Log {
            format: LogFormat::Loadgen,
            rows,
        }
    }

    /// `batches` batches of `b`, one at a time.
    fn probe(truth: &Truth, b: u32, batches: usize, seed: u64) -> Log {
        let mut z = stats::Normals::new(seed);
        let mut t_ms = 0.0;
        let mut rows = Vec::new();
        for batch in 0..batches {
            let service_ms = (truth.base_ms + truth.per_item_ms * f64::from(b))
                * (truth.sigma * z.next_standard()).exp();
            for item in 0..b {
                rows.push(LogRow {
                    request_id: (batch * b as usize + item as usize) as u64,
                    timestamp_ms: T0_MS + t_ms,
                    latency_ms: service_ms + OVERHEAD_MS,
                    status_code: 200,
                    ok: true,
                    batch_id: Some(batch as u64),
                    batch_size: Some(b),
                    connect_ms: Some(0.0),
                    queue_ms: Some(0.0),
                    service_ms: Some(service_ms),
                    ..LogRow::default()
                });
            }
            t_ms += service_ms + OVERHEAD_MS;
        }
        Log {
            format: LogFormat::Loadgen,
            rows,
        }
    }

    const PLACEHOLDER: Truth = Truth {
        workers: 2,
        base_ms: 100.0,
        per_item_ms: 2.0,
        sigma: 0.1,
    };

    /// Triton-style statistics of a log whose rows carry the true
    /// execution times: executions and their total by batch size, and the
    /// total queue time; then the rows lose their timings, as Triton's do.
    fn as_triton(log: &mut Log) -> model::kserve::ModelStats {
        let mut by_size: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let (mut queue_ns, mut requests) = (0u64, 0u64);
        let mut seen = HashSet::new();
        for row in &log.rows {
            requests += 1;
            queue_ns += (row.queue_ms.unwrap_or(0.0) * 1e6) as u64;
            if seen.insert(row.batch_id) {
                let e = by_size
                    .entry(u64::from(row.batch_size.unwrap_or(1)))
                    .or_default();
                e.0 += 1;
                e.1 += (row.service_ms.unwrap_or(0.0) * 1e6) as u64;
            }
        }
        for row in &mut log.rows {
            row.service_ms = None;
            row.queue_ms = None;
        }
        model::kserve::ModelStats {
            batch_stats: by_size
                .into_iter()
                .map(|(size, (count, ns))| model::kserve::BatchStats {
                    batch_size: size,
                    compute_infer: model::kserve::Duration { count, ns },
                    ..Default::default()
                })
                .collect(),
            inference_stats: model::kserve::InferenceStats {
                queue: model::kserve::Duration {
                    count: requests,
                    ns: queue_ns,
                },
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn triton_statistics_give_the_line_and_busy_time_the_workers() {
        let truth = Truth {
            workers: 2,
            base_ms: 100.0,
            per_item_ms: 2.0,
            sigma: 0.1,
        };
        let mut runs = vec![before(&truth, 20, 400, 7)];
        for (i, b) in [1u32, 2, 4, 8, 16, 32].into_iter().enumerate() {
            runs.push(probe(&truth, b, 8, 100 + i as u64));
        }
        let stats: Vec<_> = runs.iter_mut().map(as_triton).collect();
        assert!(super::super::server_stats::annotate_before(&mut runs[0], &stats[0]) > 0);
        for (run, stat) in runs.iter_mut().zip(&stats).skip(1) {
            super::super::server_stats::annotate_probe(run, stat);
        }
        let refs: Vec<&Log> = runs.iter().collect();
        let fit = fit_seeded_opts(&refs, 200, 1, true).unwrap();
        // The probes alone: 48 executions, the Before's means left out.
        assert_eq!(fit.executions.len(), 48);
        assert_eq!(fit.workers, 2, "busy time over span, not overlaps");
        for (name, e, want) in [
            ("base", fit.base_ms, 100.0),
            ("per item", fit.per_item_ms, 2.0),
            ("sigma", fit.sigma, 0.1),
        ] {
            assert!(e.contains(want), "{name}: {e:?} should cover {want}");
        }
    }

    #[test]
    fn recovers_a_noiseless_model_exactly() {
        let truth = Truth {
            sigma: 0.0,
            ..PLACEHOLDER
        };
        let b = before(&truth, 20, 400, 1);
        let p8 = probe(&truth, 8, 8, 2);
        let p32 = probe(&truth, 32, 8, 3);
        let f = fit(&[&b, &p8, &p32]).unwrap();
        assert!((f.base_ms.value - 100.0).abs() < 1e-9, "{:?}", f.base_ms);
        assert!(
            (f.per_item_ms.value - 2.0).abs() < 1e-9,
            "{:?}",
            f.per_item_ms
        );
        assert!(f.sigma.value < 1e-9, "{:?}", f.sigma);
        assert!(f.base_ms.hi - f.base_ms.lo < 1e-6);
        assert_eq!(f.workers, 2);
        assert!(
            (f.mean_executions_in_flight - 2.0).abs() < 0.05,
            "{}",
            f.mean_executions_in_flight
        );
        assert_eq!(f.batch_sizes, [1, 8, 32]);
        assert_eq!(f.max_batch, 32);
        assert_eq!(f.executions.len(), 400 + 16);
        // Overhead from the unbatched rows: latency - queue - service.
        assert_eq!(f.overhead_per_request_ms.len(), 400);
        assert!((f.overhead_ms_mean() - OVERHEAD_MS).abs() < 1e-6);
        assert!(f
            .overhead_pooled_ms
            .iter()
            .all(|o| (o - (OVERHEAD_MS - CONNECT_MS)).abs() < 1e-6));
        assert_eq!(f.connect_ms_mean, Some(CONNECT_MS));
    }

    #[test]
    fn noisy_fits_cover_the_true_model() {
        let mut covered = [0; 3];
        let seeds = 1..=20u64;
        for seed in seeds.clone() {
            let b = before(&PLACEHOLDER, 20, 400, seed * 10);
            let p8 = probe(&PLACEHOLDER, 8, 8, seed * 10 + 1);
            let p32 = probe(&PLACEHOLDER, 32, 8, seed * 10 + 2);
            let f = fit_seeded(&[&b, &p8, &p32], 200, seed).unwrap();
            assert_eq!(f.workers, 2, "seed {seed}");
            for (k, (est, truth)) in [(f.base_ms, 100.0), (f.per_item_ms, 2.0), (f.sigma, 0.1)]
                .into_iter()
                .enumerate()
            {
                assert!(est.lo <= est.value && est.value <= est.hi, "{est:?}");
                covered[k] += usize::from(est.contains(truth));
            }
            assert!((f.base_ms.value - 100.0).abs() < 5.0, "{:?}", f.base_ms);
            assert!(
                (f.per_item_ms.value - 2.0).abs() < 0.5,
                "{:?}",
                f.per_item_ms
            );
            assert!((f.sigma.value - 0.1).abs() < 0.02, "{:?}", f.sigma);
        }
        // 95% intervals: at least 16 of 20 seeds cover each true value
        // (fewer has under 2% chance at a true 95% coverage).
        assert!(covered.iter().all(|&c| c >= 16), "{covered:?}");
    }

    #[test]
    fn one_batch_size_is_refused_with_a_probe_to_run() {
        let b = before(&PLACEHOLDER, 20, 100, 1);
        let err = fit(&[&b]).unwrap_err();
        assert_eq!(err, FitError::OneBatchSize { size: 1 });
        let message = err.to_string();
        assert!(message.contains("cannot separate"), "{message}");
        assert!(
            message.contains(
                "loadgen --connection pooled -c B --batch-size B --batch-wait-ms 50 -n 8B"
            ),
            "{message}"
        );
    }

    #[test]
    fn rows_without_service_ms_are_refused_naming_server_timing() {
        let mut b = before(&PLACEHOLDER, 4, 50, 1);
        for row in &mut b.rows {
            row.service_ms = None;
        }
        let err = fit(&[&b]).unwrap_err();
        assert_eq!(err, FitError::NoServiceTiming { rows: 50 });
        assert!(err.to_string().contains("Server-Timing"));
        let mut failed = before(&PLACEHOLDER, 4, 10, 1);
        for row in &mut failed.rows {
            row.ok = false;
        }
        assert_eq!(
            fit(&[&failed]).unwrap_err(),
            FitError::NoSuccessfulRows { rows: 10 }
        );
        assert_eq!(fit(&[]).unwrap_err(), FitError::NoRuns);
    }

    #[test]
    fn rows_of_one_batch_are_one_execution() {
        let p = probe(&PLACEHOLDER, 4, 3, 1);
        let b = before(&PLACEHOLDER, 1, 5, 2);
        let f = fit(&[&b, &p]).unwrap();
        assert_eq!(f.executions.len(), 5 + 3);
        assert_eq!(f.workers, 1);
    }

    #[test]
    fn overhead_comes_from_the_before_not_from_a_pooled_probe_at_size_one() {
        let b = before(&PLACEHOLDER, 2, 20, 1);
        let p1 = probe(&PLACEHOLDER, 1, 8, 2);
        let p8 = probe(&PLACEHOLDER, 8, 8, 3);
        let f = fit(&[&b, &p1, &p8]).unwrap();
        assert_eq!(f.overhead_per_request_ms.len(), 20);
        // A Before with no unbatched rows falls back to the probes'.
        let f = fit(&[&p8, &p1]).unwrap();
        assert_eq!(f.overhead_per_request_ms.len(), 8);
    }

    #[test]
    fn fit_line_is_exact_on_a_line_and_refuses_one_size() {
        let line = |b: u32| Execution {
            batch_size: b,
            service_ms: 4.2 + 0.045 * f64::from(b),
        };
        let f = fit_line(&[line(1), line(3), line(64), line(64)], 64).unwrap();
        assert!((f.base_ms - 4.2).abs() < 1e-12 && (f.per_item_ms - 0.045).abs() < 1e-12);
        assert!(fit_line(&[line(2), line(2)], 2).is_none());
    }
}
