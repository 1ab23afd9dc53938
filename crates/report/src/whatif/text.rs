//! What `report whatif` prints: the engine's ranking, its choice and
//! conclusion, then every decision with its reason.

use std::fmt::Write as _;

use model::whatif::{
    CandidateKind, CandidateRow, Decision, EngineReport, LlmCandidateRow, LlmEngineReport, Load,
    WhatifReport,
};

use super::llm::est;

/// The engine's ranking, then every decision with its reason, as printed
/// to stdout.
pub(super) fn summary_text(report: &WhatifReport) -> String {
    let mut out = report.engine.as_ref().map_or_else(String::new, engine_text);
    if let Some(llm) = &report.llm {
        out.push_str(&llm_text(llm));
    }
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
    let setting = d
        .server_setting
        .map_or_else(String::new, |s| format!("; server {}", s.describe()));
    format!(
        "{} ({who}) -> loadgen {}{setting}",
        d.label,
        d.loadgen_args.join(" ")
    )
}

fn load_words(load: &Load) -> String {
    match *load {
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
    }
}

/// The LLM engine's fit, its replay of the Before, every candidate ranked,
/// the choice and the conclusion.
fn llm_text(r: &LlmEngineReport) -> String {
    let mut out = String::new();
    let f = &r.fit;
    let _ = writeln!(
        out,
        "Step model: {}, spread {}, stalls in {:.1}% of steps (+{:.1} ms on average); client {} ms; fitted on {} steps and {} first tokens",
        crate::whatif::llm::step_terms(f),
        [("decode", &f.decode_spread), ("prefilling", &f.prefill_spread)]
            .map(|(kind, spread)| match spread {
                Some(s) => format!(
                    "{kind} steps observed over fitted P50 {:.2}, P99 {:.2} ({} steps)",
                    s.p50, s.p99, s.steps
                ),
                None => format!("{kind} steps log-normal sigma {}", est(&f.sigma, 3)),
            })
            .join(", "),
        f.stall_share * 100.0,
        f.stall_mean_ms,
        est(&f.client_overhead_ms, 2),
        f.steps,
        f.first_token_steps
    );
    let _ = writeln!(
        out,
        "Server: {} slots (from {}), max_batched_tokens {}{}, chunked prefill {}, {} replica(s); prompts: {}",
        f.server.max_num_seqs,
        f.slots_from,
        f.server
            .max_batched_tokens
            .map_or("no limit".to_owned(), |b| b.to_string()),
        f.server.pass_tokens.map_or(String::new(), |p| format!(
            ", passes of {p} tokens ({} step(s) beyond one: +{:.2} ms per 1,000 tokens beyond)",
            f.over_pass_steps, f.over_pass_ms
        )),
        if f.server.chunked_prefill { "on" } else { "off" },
        f.server.replicas,
        f.prompt_tokens_from
    );
    for caveat in &f.caveats {
        let _ = writeln!(out, "Caveat: {caveat}");
    }
    let checks: Vec<String> = f
        .checks
        .iter()
        .map(|c| {
            format!(
                "{} {:.1} vs {:.1} ms ({:+.1}%)",
                c.metric, c.predicted_ms, c.measured_ms, c.error_pct
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "The Before replayed (predicted vs measured): {}",
        checks.join(", ")
    );
    let _ = writeln!(
        out,
        "Load: {}; objectives {} with a {:.0}% margin",
        load_words(&r.load),
        r.objectives.join(", "),
        r.margin * 100.0
    );
    let _ = writeln!(
        out,
        "{:>4}  {:<64} {:>20} {:>9} {:>9} {:>9}  meets",
        "rank", "candidate", "TTFT P95 [interval]", "ITL P99", "TPOT P50", "e2e P95"
    );
    for row in &r.candidates {
        let _ = writeln!(out, "{}", llm_table_line(row));
    }
    match &r.chosen {
        Some(c) => {
            let _ = writeln!(out, "Chosen: {}", c.label);
        }
        None => {
            let _ = writeln!(
                out,
                "Chosen: none that can be run keeps every objective with the margin"
            );
        }
    }
    let _ = writeln!(out, "{}", r.conclusion);
    out
}

fn llm_table_line(row: &LlmCandidateRow) -> String {
    format!(
        "{:>4}  {:<64} {:>20} {:>9.1} {:>9.1} {:>9.1}  {}",
        row.rank,
        row.label,
        format!(
            "{:.0} [{:.0}, {:.0}]",
            row.ttft.p95_ms, row.ttft.p95_interval_ms[0], row.ttft.p95_interval_ms[1]
        ),
        row.itl.p99_ms,
        row.tpot.p50_ms,
        row.e2e.p95_ms,
        match (row.meets_objectives_with_margin, row.runnable) {
            (true, true) => "yes",
            (true, false) => "yes (cannot be run yet)",
            (false, true) => "no",
            (false, false) => "no (cannot be run yet)",
        }
    )
}

/// The engine's ranking (top 10 and every server change), the choice and
/// the conclusion.
fn engine_text(report: &EngineReport) -> String {
    let mut out = String::new();
    let f = &report.fit;
    let load = load_words(&report.load);
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
