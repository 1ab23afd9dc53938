//! What `report whatif` prints: the engine's ranking, its choice and
//! conclusion, then every decision with its reason.

use std::fmt::Write as _;

use model::whatif::{
    CandidateKind, CandidateRow, Decision, EngineReport, Load, ServerSetting, WhatifReport,
};

/// The engine's ranking, then every decision with its reason, as printed
/// to stdout.
pub(super) fn summary_text(report: &WhatifReport) -> String {
    let mut out = report.engine.as_ref().map_or_else(String::new, engine_text);
    for (heading, decision) in [
        ("After", &report.after),
        (
            "Server change, measured beside the After",
            &report.server_change,
        ),
    ] {
        if let Some(d) = decision {
            let _ = writeln!(out, "{heading}: {}", decision_line(d));
            let _ = writeln!(out, "  why: {}", d.reason);
        }
    }
    if report.after.is_none() && report.engine.is_some() {
        let _ = writeln!(out, "After: none proposed (no client-side candidate)");
    }
    out
}

/// A decision in one line: who changes what, and how it is run.
fn decision_line(d: &Decision) -> String {
    let who = match d.kind {
        CandidateKind::Server => "server change",
        CandidateKind::Client => "client change",
        CandidateKind::Baseline => "no change",
    };
    let setting = match d.server_setting {
        Some(ServerSetting::MaxNumSeqs { max_num_seqs }) => {
            format!("; server max_num_seqs {max_num_seqs}")
        }
        Some(ServerSetting::DynamicBatching { max_queue_delay_us }) => {
            format!("; server dynamic batching, max_queue_delay {max_queue_delay_us} us")
        }
        Some(other) => format!("; server {}", other.describe()),
        None => String::new(),
    };
    format!(
        "{} ({who}) -> loadgen {}{setting}",
        d.label,
        d.loadgen_args.join(" ")
    )
}

/// The engine's ranking (top 10 and every server change), the choice and
/// the conclusion.
fn engine_text(report: &EngineReport) -> String {
    let mut out = String::new();
    let f = &report.fit;
    let load = match report.load {
        Load::Closed {
            concurrency,
            requests,
        } => format!("closed loop, concurrency {concurrency}, {requests} requests"),
        Load::Open {
            rate_rps,
            requests,
            poisson,
        } => format!(
            "open loop at {rate_rps} rps ({}), {requests} requests",
            if poisson { "Poisson" } else { "even spacing" }
        ),
    };
    let _ = writeln!(
        out,
        "Fit: {} workers, base {:.2} ms [{:.2}, {:.2}], per item {:.3} ms [{:.3}, {:.3}], sigma {:.3} [{:.3}, {:.3}], {} executions, batch sizes {:?}",
        f.workers,
        f.base_ms.value,
        f.base_ms.lo,
        f.base_ms.hi,
        f.per_item_ms.value,
        f.per_item_ms.lo,
        f.per_item_ms.hi,
        f.sigma.value,
        f.sigma.lo,
        f.sigma.hi,
        f.executions,
        f.batch_sizes
    );
    let _ = writeln!(
        out,
        "Load: {load}; SLA P95 <= {} ms, margin {} (must predict <= {:.0} ms)",
        report.sla_p95_ms,
        report.margin,
        report.sla_p95_ms * (1.0 - report.margin)
    );
    let _ = writeln!(
        out,
        "{:>4}  {:<72} {:>9} {:>19} {:>9} {:>9}  meets",
        "rank", "candidate", "P95 ms", "P95 interval", "P50 ms", "P99 ms"
    );
    let shown = report
        .candidates
        .iter()
        .filter(|r| r.rank <= 10 || r.kind != CandidateKind::Client);
    for row in shown {
        let _ = writeln!(out, "{}", table_line(row));
    }
    match &report.chosen {
        Some(c) => {
            let _ = writeln!(
                out,
                "Chosen: {} -> loadgen {}",
                c.label,
                c.loadgen_args.join(" ")
            );
        }
        None => {
            let _ = writeln!(out, "Chosen: none meets the SLA with the margin");
        }
    }
    let _ = writeln!(out, "{}", report.conclusion);
    let cap = &report.predicted_capacity_rps;
    let rps = |x: Option<f64>| x.map_or("none".to_owned(), |v| format!("{v:.1} rps"));
    let _ = writeln!(
        out,
        "Predicted capacity at P95 <= {} ms: baseline {}, chosen {}",
        report.sla_p95_ms,
        rps(cap.baseline),
        rps(cap.chosen)
    );
    if let Some(best) = &cap.best {
        let _ = writeln!(
            out,
            "Most open-loop capacity: {} at {:.1} rps (measure it: loadgen capacity {} --sla 'p95<={}')",
            best.label,
            best.max_rate_rps,
            best.loadgen_args.join(" "),
            report.sla_p95_ms
        );
    }
    out
}

fn table_line(row: &CandidateRow) -> String {
    format!(
        "{:>4}  {:<72} {:>9.1} {:>19} {:>9.1} {:>9.1}  {}",
        row.rank,
        row.label,
        row.p95_ms,
        format!(
            "[{:.1}, {:.1}]",
            row.p95_interval_ms[0], row.p95_interval_ms[1]
        ),
        row.p50_ms,
        row.p99_ms,
        if row.meets_sla_with_margin {
            "yes"
        } else {
            "no"
        }
    )
}
