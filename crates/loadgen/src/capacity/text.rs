//! The search as text: the table of steps as they finish ([`TableRow`]
//! under [`TABLE_HEADER`]) and the answer at the end ([`Answer`]).

use std::fmt;

use model::capacity::{CapacityReport, StepRecord, Stopped};

fn opt_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"))
}

/// The header of the table [`TableRow`]s go under.
pub const TABLE_HEADER: &str =
    "phase    offered/s achieved/s   p50 ms   p95 ms   p99 ms       ok failed  verdict";

/// A step as a line of the table loadgen prints as the search goes.
pub struct TableRow<'a>(pub &'a StepRecord);

impl fmt::Display for TableRow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = self.0;
        let verdict = if step.sustainable {
            "sustainable".to_owned()
        } else {
            format!("NOT sustainable: {}", step.reason)
        };
        write!(
            f,
            "{:<8} {:>9.2} {:>10.2} {:>8} {:>8} {:>8} {:>8} {:>6}  {verdict}",
            step.phase.name(),
            step.offered_rps,
            step.achieved_rps,
            opt_ms(step.p50_ms),
            opt_ms(step.p95_ms),
            opt_ms(step.p99_ms),
            step.succeeded,
            step.failed,
        )
    }
}

/// The search's answer as loadgen prints it at the end.
pub struct Answer<'a>(pub &'a CapacityReport);

impl fmt::Display for Answer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = self.0;
        let sla = report.sla.join(", ");
        let steps = report.curve.len();
        match report.max_rate_rps {
            Some(rate) => {
                write!(f, "capacity: {rate:.2} req/s keeps {sla}")?;
                if let Some(p95) = report.p95_at_max_ms {
                    write!(f, " (P95 there {p95:.1} ms")?;
                    if let Some([lo, hi]) = report.p95_interval_ms {
                        write!(f, ", 95% interval {lo:.1}..{hi:.1} ms")?;
                    }
                    if let Some(goodput) = report.goodput_rps {
                        write!(f, "; goodput {goodput:.2} req/s")?;
                    }
                    write!(f, ")")?;
                }
            }
            None => write!(f, "capacity: no rate kept {sla}")?,
        }
        let how = match report.stopped {
            Stopped::Converged => "converged and confirmed by the repeats",
            Stopped::MaxRate => "--max-rate was sustainable; the capacity may be higher",
            Stopped::TimeLimit => {
                "bounded by --time-limit: the highest rate measured sustainable so far, not converged or confirmed"
            }
            Stopped::NothingSustainable => "the first step, at --start-rate, was already unsustainable",
            Stopped::Unstable => "repeats kept failing as the rate was lowered",
            Stopped::Interrupted => "interrupted: the highest rate measured sustainable so far, not confirmed",
        };
        writeln!(f, "; {how}; {steps} steps in {:.1} s", report.elapsed_s)
    }
}
