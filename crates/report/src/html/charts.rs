//! The charts of `report.html`, each an inline SVG ([`crate::svg`]): the
//! latency CDFs, the histograms, latency over time, where the time goes,
//! and the capacity search. Labels and names go through the chart's own
//! escaping.

use std::fmt::Write as _;

use model::capacity::Capacity;
use model::comparison::{Breakdown, Comparison, Parts};
use model::log::{Log, LogRow};

use crate::svg::{escape_xml, Axis, Chart, Mark, RefLine, Series};

pub(super) const BEFORE_COLOR: &str = "#d95f02";
pub(super) const AFTER_COLOR: &str = "#1b7fbf";
const SLA_COLOR: &str = "#c0392b";
const FAILED_COLOR: &str = "#6b2d5c";
/// Points per series on the CDF and the scatter: enough to look exact, few
/// enough that a million-row log still gives a page of a few MB.
const MAX_POINTS: usize = 2500;
const HISTOGRAM_BINS: usize = 40;

/// Every `step`-th element plus the last one, at most about `max` in all.
fn thin<T: Copy>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max {
        return items.to_vec();
    }
    let step = items.len().div_ceil(max);
    let mut out: Vec<T> = items.iter().step_by(step).copied().collect();
    if let Some(last) = items.last() {
        out.push(*last);
    }
    out
}

fn cdf_points(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len() as f64;
    let all: Vec<(f64, f64)> = sorted
        .iter()
        .enumerate()
        .map(|(i, v)| (*v, (i + 1) as f64 / n))
        .collect();
    thin(&all, MAX_POINTS)
}

/// Latency CDFs of both runs on one log-x plot, with the SLA and the P95 level.
pub(super) fn cdf_chart(c: &Comparison, before: &[f64], after: &[f64]) -> Chart {
    let threshold = c.sla.threshold_ms;
    let x = Axis::fit(
        "latency (ms, log scale)",
        before.iter().chain(after).copied().chain([threshold]),
        true,
        false,
    );
    Chart {
        title: "Latency CDF, Before and After".into(),
        width: 960.0,
        height: 380.0,
        x,
        y: Axis {
            label: "fraction of successful requests".into(),
            min: 0.0,
            max: 1.0,
            log: false,
        },
        series: vec![
            Series {
                name: c.before.label.clone(),
                color: BEFORE_COLOR,
                mark: Mark::Step,
                points: cdf_points(before),
            },
            Series {
                name: c.after.label.clone(),
                color: AFTER_COLOR,
                mark: Mark::Step,
                points: cdf_points(after),
            },
        ],
        vlines: vec![RefLine {
            at: threshold,
            label: format!("SLA {threshold} ms"),
            color: SLA_COLOR,
        }],
        hlines: vec![RefLine {
            at: 0.95,
            label: "P95".into(),
            color: "#7b8794",
        }],
    }
}

/// Log-spaced bin edges over both runs, so the two histograms share an axis.
pub(super) fn bin_edges(all: impl Iterator<Item = f64>, threshold: f64) -> Vec<f64> {
    let axis = Axis::fit("", all.chain([threshold]), true, false);
    let (lo, hi) = (axis.min.ln(), axis.max.ln());
    (0..=HISTOGRAM_BINS)
        .map(|k| (lo + (hi - lo) * k as f64 / HISTOGRAM_BINS as f64).exp())
        .collect()
}

pub(super) fn histogram(
    c: &Comparison,
    name: &str,
    color: &'static str,
    sorted: &[f64],
    edges: &[f64],
) -> Chart {
    let mut counts = vec![0.0; edges.len()];
    for v in sorted {
        // partition_point finds the bin whose left edge is the last <= v.
        let bin = edges
            .partition_point(|e| e <= v)
            .saturating_sub(1)
            .min(edges.len() - 2);
        counts[bin] += 1.0;
    }
    let points: Vec<(f64, f64)> = edges.iter().copied().zip(counts.iter().copied()).collect();
    let max_count = counts.iter().copied().fold(1.0, f64::max);
    let threshold = c.sla.threshold_ms;
    Chart {
        title: format!("Latency histogram: {name}"),
        width: 470.0,
        height: 260.0,
        x: Axis {
            label: "latency (ms, log scale)".into(),
            min: edges[0],
            max: edges[edges.len() - 1],
            log: true,
        },
        y: Axis {
            label: "requests".into(),
            min: 0.0,
            max: max_count * 1.1,
            log: false,
        },
        series: vec![Series {
            name: name.to_owned(),
            color,
            mark: Mark::Bars,
            points,
        }],
        vlines: vec![RefLine {
            at: threshold,
            label: format!("SLA {threshold} ms"),
            color: SLA_COLOR,
        }],
        hlines: vec![],
    }
}

/// Seconds since the run's first request, latency, success.
fn timeline(rows: &[LogRow]) -> Vec<(f64, f64, bool)> {
    let start = rows
        .iter()
        .map(|r| r.timestamp_ms)
        .fold(f64::INFINITY, f64::min);
    let mut points: Vec<(f64, f64, bool)> = rows
        .iter()
        .map(|r| ((r.timestamp_ms - start) / 1000.0, r.latency_ms, r.ok))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

pub(super) fn over_time_chart(c: &Comparison, before: &Log, after: &Log) -> Chart {
    let (tb, ta) = (timeline(&before.rows), timeline(&after.rows));
    let threshold = c.sla.threshold_ms;
    let latencies = || tb.iter().chain(&ta).map(|p| p.1).filter(|v| *v > 0.0);
    let (lo, hi) = latencies().fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    // A log scale only pays off when latencies span more than a factor of 20.
    let log = lo.is_finite() && hi / lo > 20.0;
    let y = Axis::fit(
        if log {
            "latency (ms, log scale)"
        } else {
            "latency (ms)"
        },
        latencies().chain([threshold]),
        log,
        !log,
    );
    let x = Axis::fit(
        "seconds since the run's first request",
        tb.iter().chain(&ta).map(|p| p.0),
        false,
        true,
    );
    let mut series = Vec::new();
    for (label, color, points) in [
        (&c.before.label, BEFORE_COLOR, &tb),
        (&c.after.label, AFTER_COLOR, &ta),
    ] {
        let ok: Vec<(f64, f64)> = points.iter().filter(|p| p.2).map(|p| (p.0, p.1)).collect();
        series.push(Series {
            name: label.clone(),
            color,
            mark: Mark::Dots,
            points: thin(&ok, MAX_POINTS),
        });
    }
    let failed: Vec<(f64, f64)> = tb
        .iter()
        .chain(&ta)
        .filter(|p| !p.2)
        .map(|p| (p.0, p.1))
        .collect();
    if !failed.is_empty() {
        series.push(Series {
            name: "failed".into(),
            color: FAILED_COLOR,
            mark: Mark::Crosses,
            points: thin(&failed, MAX_POINTS),
        });
    }
    Chart {
        title: "Latency over time".into(),
        width: 960.0,
        height: 360.0,
        x,
        y,
        series,
        vlines: vec![],
        hlines: vec![RefLine {
            at: threshold,
            label: format!("SLA {threshold} ms"),
            color: SLA_COLOR,
        }],
    }
}

/// Colours of the breakdown's parts, in [`Parts::NAMES`] order.
const PART_COLORS: [&str; 5] = ["#7570b3", "#e7298a", "#d95f02", "#1b9e77", "#a6a6a6"];

/// Stacked horizontal bars: per run, its mean and its slowest 5%, each
/// split into the parts of a latency. Each bar is drawn to its own total
/// on a shared ms axis, so a queue-bound Before and a fast After read on
/// one scale; the parts are `<rect>` marks with a `<title>` each.
pub(super) fn breakdown_chart(breakdowns: &[Breakdown]) -> String {
    let bars: Vec<(String, &Parts)> = breakdowns
        .iter()
        .flat_map(|b| {
            [
                (format!("{}: mean", b.label), &b.mean),
                (format!("{}: slowest 5%", b.label), &b.tail),
            ]
        })
        .collect();
    let (label_w, plot_w, bar_h, gap) = (300.0, 600.0, 22.0, 10.0);
    let height = 40.0 + bars.len() as f64 * (bar_h + gap) + 40.0;
    let width = label_w + plot_w + 40.0;
    let max_ms = bars
        .iter()
        .map(|(_, p)| p.total_ms())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" width=\"100%\" role=\"img\" aria-label=\"Where the time goes\"><text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"600\">Where the time goes (ms)</text>"
    );
    for (i, (name, parts)) in bars.iter().enumerate() {
        let y = 36.0 + i as f64 * (bar_h + gap);
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            label_w - 8.0,
            y + bar_h * 0.7,
            escape_xml(name)
        );
        let mut x = label_w;
        for ((value, part), color) in parts.values().iter().zip(Parts::NAMES).zip(PART_COLORS) {
            let w = value / max_ms * plot_w;
            if w > 0.0 {
                let _ = write!(
                    svg,
                    "<rect class=\"mark\" x=\"{x:.2}\" y=\"{y:.2}\" width=\"{w:.2}\" height=\"{bar_h}\" fill=\"{color}\"><title>{}: {value:.1} ms</title></rect>",
                    escape_xml(part)
                );
            }
            x += w;
        }
        let _ = write!(
            svg,
            "<text x=\"{:.2}\" y=\"{}\" font-size=\"11\">{:.1}</text>",
            x + 4.0,
            y + bar_h * 0.7,
            parts.total_ms()
        );
    }
    let legend_y = height - 16.0;
    let mut x = 10.0;
    for (part, color) in Parts::NAMES.iter().zip(PART_COLORS) {
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{}\" y=\"{legend_y}\" font-size=\"12\">{}</text>",
            legend_y - 10.0,
            x + 16.0,
            escape_xml(part)
        );
        x += 16.0 + part.len() as f64 * 6.8 + 18.0;
    }
    svg.push_str("</svg>");
    svg
}

/// P95 and P99 of every step of the capacity search against the offered
/// rate, with the SLA, the measured capacity and the predicted one.
pub(super) fn capacity_chart(c: &Comparison, capacity: &Capacity) -> Chart {
    let threshold = c.sla.threshold_ms;
    let mut steps: Vec<_> = capacity.curve.iter().collect();
    steps.sort_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps));
    let points = |pick: fn(&model::capacity::StepRecord) -> Option<f64>, ok: bool| {
        steps
            .iter()
            .filter(|s| s.sustainable == ok)
            .filter_map(|s| pick(s).map(|v| (s.offered_rps, v)))
            .collect::<Vec<_>>()
    };
    let series = vec![
        Series {
            name: "P95, sustainable step".into(),
            color: AFTER_COLOR,
            mark: Mark::Dots,
            points: points(|s| s.p95_ms, true),
        },
        Series {
            name: "P95, unsustainable step".into(),
            color: FAILED_COLOR,
            mark: Mark::Crosses,
            points: points(|s| s.p95_ms, false),
        },
        Series {
            name: "P99".into(),
            color: BEFORE_COLOR,
            mark: Mark::Dots,
            points: points(|s| s.p99_ms, true)
                .into_iter()
                .chain(points(|s| s.p99_ms, false))
                .collect(),
        },
    ];
    let latencies = steps
        .iter()
        .flat_map(|s| [s.p95_ms, s.p99_ms])
        .flatten()
        .chain([threshold]);
    let lo = steps
        .iter()
        .filter_map(|s| s.p50_ms)
        .fold(f64::INFINITY, f64::min);
    let hi = latencies.clone().fold(0.0f64, f64::max);
    let log = lo.is_finite() && lo > 0.0 && hi / lo > 20.0;
    let y = Axis::fit(
        if log {
            "latency (ms, log scale)"
        } else {
            "latency (ms)"
        },
        latencies,
        log,
        !log,
    );
    let x = Axis::fit(
        "offered open-loop rate (requests/s)",
        steps
            .iter()
            .map(|s| s.offered_rps)
            .chain(capacity.predicted_max_rate_rps),
        false,
        true,
    );
    let mut vlines = Vec::new();
    let (measured, predicted) = (capacity.max_rate_rps, capacity.predicted_max_rate_rps);
    // Labels of two lines this close would print over each other: the
    // measured line then carries both.
    let close = measured
        .zip(predicted)
        .is_some_and(|(m, p)| (m - p).abs() <= 0.15 * m.abs().max(p.abs()));
    if let Some(rate) = measured {
        vlines.push(RefLine {
            at: rate,
            label: match predicted.filter(|_| close) {
                Some(p) => format!("measured {rate:.1} req/s, predicted {p:.1}"),
                None => format!("measured capacity {rate:.1} req/s"),
            },
            color: AFTER_COLOR,
        });
    }
    if let Some(rate) = predicted {
        vlines.push(RefLine {
            at: rate,
            label: if close {
                String::new()
            } else {
                format!("predicted {rate:.1} req/s")
            },
            color: BEFORE_COLOR,
        });
    }
    Chart {
        title: "Capacity search: latency by offered rate".into(),
        width: 960.0,
        height: 360.0,
        x,
        y,
        series,
        vlines,
        hlines: vec![RefLine {
            at: threshold,
            label: format!("SLA {threshold} ms"),
            color: SLA_COLOR,
        }],
    }
}
