//! The Before/After table as text cells, shared by stdout, Markdown and HTML.

use model::comparison::{Comparison, MetricDelta};

/// Column headings of the table: the runs' labels name their columns.
pub(crate) fn headings(comparison: &Comparison) -> [String; 5] {
    [
        "Metric".to_owned(),
        comparison.before.label.clone(),
        comparison.after.label.clone(),
        "Change".to_owned(),
        "Change %".to_owned(),
    ]
}

/// Human name of a metric key.
pub(crate) fn metric_title(metric: &str) -> &'static str {
    match metric {
        "total" => "Total requests",
        "succeeded" => "Succeeded",
        "failed" => "Failed",
        "p50_ms" => "P50 latency (ms)",
        "p95_ms" => "P95 latency (ms)",
        "p99_ms" => "P99 latency (ms)",
        "mean_ms" => "Mean latency (ms)",
        "min_ms" => "Min latency (ms)",
        "max_ms" => "Max latency (ms)",
        "throughput_rps" => "Throughput (req/s)",
        "duration_s" => "Duration (s)",
        "goodput_rps" => "Goodput (req/s meeting every SLO)",
        "ttft_p50_ms" => "TTFT P50 (ms)",
        "ttft_p90_ms" => "TTFT P90 (ms)",
        "ttft_p95_ms" => "TTFT P95 (ms)",
        "ttft_p99_ms" => "TTFT P99 (ms)",
        "itl_p50_ms" => "ITL P50 (ms)",
        "itl_p90_ms" => "ITL P90 (ms)",
        "itl_p95_ms" => "ITL P95 (ms)",
        "itl_p99_ms" => "ITL P99 (ms)",
        "tpot_p50_ms" => "TPOT P50 (ms)",
        "tpot_p90_ms" => "TPOT P90 (ms)",
        "tpot_p95_ms" => "TPOT P95 (ms)",
        "tpot_p99_ms" => "TPOT P99 (ms)",
        "e2e_p90_ms" => "P90 latency (ms)",
        "output_tokens_per_s" => "Output tokens/s",
        _ => "?",
    }
}

/// Decimals worth showing for a metric: counts are integers.
fn decimals(metric: &str) -> usize {
    match metric {
        "total" | "succeeded" | "failed" => 0,
        "duration_s" | "goodput_rps" => 2,
        _ => 1,
    }
}

/// A number with `decimals` places, or `n/a`.
pub(crate) fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

fn fmt_signed(value: Option<f64>, decimals: usize, suffix: &str) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:+.decimals$}{suffix}"))
}

/// One row: metric title, before, after, change, change %.
pub(crate) fn row_cells(metric: &str, d: &MetricDelta) -> [String; 5] {
    let n = decimals(metric);
    [
        metric_title(metric).to_owned(),
        fmt_opt(d.before, n),
        fmt_opt(d.after, n),
        fmt_signed(d.diff, n, ""),
        fmt_signed(d.pct, 1, "%"),
    ]
}

/// Every row of the table, in `comparison.csv` order.
pub(crate) fn table_rows(comparison: &Comparison) -> Vec<(&'static str, [String; 5])> {
    comparison
        .delta
        .rows()
        .into_iter()
        .map(|(metric, d)| (metric, row_cells(metric, d)))
        .collect()
}

/// The one-line verdict: states whether the SLA P95 <= X ms is met.
pub(crate) fn verdict_line(comparison: &Comparison) -> String {
    let sla = &comparison.sla;
    let p95 = fmt_opt(comparison.after.p95_ms, 1);
    let sla_text = if sla.met {
        format!(
            "SLA P95 <= {} ms is MET after optimization (After P95 {p95} ms)",
            sla.threshold_ms
        )
    } else {
        format!(
            "SLA P95 <= {} ms is NOT MET after optimization (After P95 {p95} ms)",
            sla.threshold_ms
        )
    };
    let verdict = if comparison.verdict.met {
        "PASS"
    } else {
        "FAIL"
    };
    format!("Verdict: {verdict}. {sla_text}.")
}

/// The table and verdict as plain text for a terminal.
pub fn plain_text(comparison: &Comparison) -> String {
    let rows = table_rows(comparison);
    let head = headings(comparison);
    let mut widths = [0usize; 5];
    for cells in std::iter::once(&head).chain(rows.iter().map(|(_, c)| c)) {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String; 5]| -> String {
        let mut s = format!("{:<w$}", cells[0], w = widths[0]);
        for (c, w) in cells.iter().zip(widths).skip(1) {
            s.push_str(&format!("  {c:>w$}"));
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = String::new();
    for warning in &comparison.warnings {
        out.push_str(&format!("WARNING: {warning}\n"));
    }
    if !comparison.warnings.is_empty() {
        out.push('\n');
    }
    out.push_str(&line(&head));
    for (_, cells) in &rows {
        out.push_str(&line(cells));
    }
    out.push('\n');
    out.push_str(&verdict_line(comparison));
    out.push('\n');
    for reason in &comparison.verdict.reasons {
        out.push_str(&format!("  - {reason}\n"));
    }
    if !comparison.slos.is_empty() {
        out.push_str("Objectives (judged on the After):\n");
        for slo in &comparison.slos {
            out.push_str(&format!("  {slo}\n"));
        }
    }
    if !comparison.summary.is_empty() {
        out.push_str("Summary:\n");
        for line in &comparison.summary {
            out.push_str(&format!("  {line}\n"));
        }
    }
    if let Some(d) = &comparison.decision {
        out.push_str(&model::comparison::decision_sentence(d));
        out.push('\n');
    }
    if let Some(p) = &comparison.prediction {
        out.push_str(&p.sentence());
        out.push('\n');
    }
    if let Some(p) = &comparison.llm_prediction {
        out.push_str(&p.sentence());
        out.push('\n');
    }
    for (capacity, _) in comparison.capacities() {
        out.push_str(&capacity.sentence());
        out.push('\n');
    }
    out
}

/// Column headings of the `input.py` reconciliation table.
pub(crate) const INPUT_PY_HEADINGS: [&str; 4] = [
    "Metric",
    "input.py printed",
    "Exclusive, from its log",
    "Linear, from its log",
];

/// Rows of the `input.py` reconciliation table, formatted once for both the
/// Markdown and the HTML report: what the script printed, the Exclusive
/// method recomputed from its log, and the Linear method used elsewhere.
/// The paragraph on the Rust reproduction of the Before, in one wording for
/// both reports: `escape` makes a label safe for the format, `strong`
/// marks the agreement. `None` without a reproduction.
pub(crate) fn reproduction_paragraph(
    c: &Comparison,
    escape: fn(&str) -> String,
    strong: fn(&str) -> String,
) -> Option<String> {
    let rep = c.before_reproduction.as_ref()?;
    let a = &rep.agreement;
    Some(format!(
        "The reproduction ({}) measured P50 {} ms and P95 {} ms against the Before's P50 {} ms and P95 {} ms: ratios {} (P50) and {} (P95); tolerance \u{b1}{}%: {}.",
        escape(&rep.summary.label),
        fmt_opt(rep.summary.p50_ms, 1),
        fmt_opt(rep.summary.p95_ms, 1),
        fmt_opt(c.before.p50_ms, 1),
        fmt_opt(c.before.p95_ms, 1),
        fmt_opt(a.p50_ratio, 3),
        fmt_opt(a.p95_ratio, 3),
        a.tolerance_pct,
        strong(if a.within_tolerance {
            "agrees"
        } else {
            "does NOT agree"
        })
    ))
}

pub(crate) fn input_py_rows(py: &model::comparison::InputPyReconciliation) -> Vec<[String; 4]> {
    let (p, x, l) = (&py.printed, &py.recomputed_exclusive, &py.recomputed_linear);
    let count = |v: Option<u64>| v.map_or("n/a".to_owned(), |v| v.to_string());
    let mut rows: Vec<[String; 4]> = [
        ("Total requests", p.total, x.total),
        ("Succeeded", p.succeeded, x.succeeded),
        ("Failed", p.failed, x.failed),
    ]
    .into_iter()
    .map(|(name, a, b)| [name.to_owned(), count(a), count(b), count(b)])
    .collect();
    rows.extend(
        [
            ("P50 (ms)", p.p50_ms, x.p50_ms, l.p50_ms),
            ("P95 (ms)", p.p95_ms, x.p95_ms, l.p95_ms),
            ("P99 (ms)", p.p99_ms, x.p99_ms, l.p99_ms),
        ]
        .into_iter()
        .map(|(name, a, b, lin)| {
            [
                name.to_owned(),
                fmt_opt(a, 2),
                fmt_opt(b, 3),
                fmt_opt(lin, 3),
            ]
        }),
    );
    rows
}
