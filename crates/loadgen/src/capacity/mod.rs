//! `loadgen capacity`: the highest open-loop rate that keeps every
//! objective (`--sla p95<=800`, repeatable), with an interval, and the
//! rate/latency curve on the way.
//!
//! Each *step* offers one rate for a warm-up and then a fixed duration; only
//! requests whose intended start falls after the warm-up are counted, and
//! their latency runs from that intended start, as in any open-loop run. A
//! step is *sustainable* when every objective holds on its counted rows
//! (latency quantiles by the Linear method over successful rows,
//! `error_rate` = failed / total; without an `error_rate` objective any
//! failed or dropped request makes it unsustainable) and the answers kept
//! pace with the sends (see `ACHIEVED_SHARE` where a step is judged).
//!
//! The search doubles the rate from `--start-rate` until a step is
//! unsustainable (or `--max-rate`), bisects until `(hi - lo) / lo <=
//! precision`, and confirms `lo` with `--repeats` fresh steps; a failed
//! repeat lowers `lo` by the precision and repeats again, a bounded number
//! of times. `--time-limit` bounds the whole search. The search is
//! [`search`], generic over a [`StepRunner`], so its logic is tested with a
//! fake runner; [`LoadgenRunner`] runs real steps through
//! [`crate::prepare`].
//!
//! The result is [`model::capacity::CapacityReport`], the one type the
//! report and xtask read `--json` back through; this module prints it as
//! text ([`TableRow`] as the steps finish, [`Answer`] at the end). The
//! objectives are judged by `stats::slo`'s evaluation, the one the report
//! makes of a log, over each counted row.

mod error;
mod judge;
mod options;
mod runner;
mod search;
#[cfg(test)]
mod tests;
mod text;

pub use error::CapacityError;
pub use model::capacity::{CapacityReport, Phase, StepRecord, Stopped};
pub use options::{
    CapacityOptions, MAX_PRECISION, MIN_PRECISION, REPEATS, STEP_DURATION, TIME_LIMIT,
};
pub use runner::LoadgenRunner;
pub use search::{search, StepPlan, StepRows, StepRunner};
pub use text::{Answer, TableRow, TABLE_HEADER};
