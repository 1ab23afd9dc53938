//! What `report merge` prints.

use std::fmt::Write as _;

use super::arithmetic::histogram_error;
use super::Merged;

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3} ms"))
}

/// What `report merge` prints: the merged numbers, each objective with
/// its measured value, and any overlap.
pub(super) fn render_text(merged: &Merged) -> String {
    let s = &merged.summary;
    let mut out = String::new();
    let from_rows = s.percentiles_from.as_deref() == Some("rows");
    let from = if from_rows {
        "exact, from every shard's rows".to_owned()
    } else {
        format!(
            "from the merged histograms, {}",
            s.quantile_error.clone().unwrap_or_else(histogram_error)
        )
    };
    let _ = writeln!(
        out,
        "Merged {} shards of {} ({} loop)",
        s.shards.as_ref().map_or(0, |shards| shards.count),
        s.url,
        s.mode
    );
    let _ = writeln!(
        out,
        "Total {} / succeeded {} / failed {}",
        s.total, s.succeeded, s.failed
    );
    for (kind, count) in &s.errors {
        let _ = writeln!(out, "  {kind}: {count}");
    }
    let _ = writeln!(out, "Percentiles {from}:");
    let _ = writeln!(
        out,
        "  P50 {} / P90 {} / P95 {} / P99 {} / P99.9 {}",
        ms(s.p50_ms),
        ms(s.p90_ms),
        ms(s.p95_ms),
        ms(s.p99_ms),
        ms(s.p99_9_ms)
    );
    let _ = writeln!(
        out,
        "  mean {} / min {} / max {}",
        ms(s.mean_ms),
        ms(s.min_ms),
        ms(s.max_ms)
    );
    if let Some(llm) = &s.llm {
        for (name, p) in [("TTFT", &llm.ttft), ("ITL", &llm.itl), ("TPOT", &llm.tpot)] {
            let _ = writeln!(
                out,
                "  {name}: P50 {} / P90 {} / P95 {} / P99 {} / max {} ({} samples)",
                ms(p.p50_ms),
                ms(p.p90_ms),
                ms(p.p95_ms),
                ms(p.p99_ms),
                ms(p.max_ms),
                p.count
            );
        }
    }
    if s.duration_s > 0.0 {
        let _ = writeln!(
            out,
            "Throughput {:.1} req/s over {:.3} s",
            s.throughput_rps, s.duration_s
        );
    }
    if let Some(rate) = s.achieved_rate_rps {
        let _ = writeln!(out, "Achieved send rate {rate:.1} req/s (all shards)");
    }
    if let Some(ids) = &s.ids {
        if ids.duplicates > 0 {
            let _ = writeln!(
                out,
                "OVERLAP: {} rows repeat a request id another row has; the shards overlapped",
                ids.duplicates
            );
        }
    }
    for r in s.slos.iter().flatten() {
        let verdict = if r.met { "met" } else { "NOT met" };
        match r.measured {
            Some(m) => {
                let _ = writeln!(out, "SLO {}: measured {m:.3} ({verdict})", r.expression);
            }
            None if !from_rows => {
                let _ = writeln!(
                    out,
                    "SLO {}: nothing to measure without every shard's log.csv ({verdict})",
                    r.expression
                );
            }
            None => {
                let _ = writeln!(out, "SLO {}: nothing to measure ({verdict})", r.expression);
            }
        }
    }
    out
}
