//! The run summary: counts, latency percentiles, error kinds, status
//! codes, connections and open-loop generator health, as JSON and as text
//! (in the manner of oha: percentiles, a text histogram of latencies, the
//! status codes).
//!
//! The JSON is [`model::summary::RunSummary`], the one type every reader
//! uses; this module fills it from the rows ([`RowStats`]) and prints it as
//! text ([`SummaryText`]).
//!
//! Every percentile is numpy's default (`stats::QuantileMethod::Linear`),
//! the method `report` uses on the log, so the two tools print one P95 for
//! one run. While a series fits in [`EXACT_SAMPLES_PER_SERIES`] its
//! percentiles are exact, from every value; beyond it they come from the
//! series' histogram by the same method, within half a bucket
//! (`stats::LatencyHistogram::QUANTILE_ERROR`), and the summary says so.
//! Min, max and mean are always exact.

mod build;
mod rows;
mod series;
#[cfg(test)]
mod tests;
mod text;

pub(crate) use build::{build_summary, ScheduleFacts};
pub(crate) use rows::RowStats;
pub(crate) use series::{percentiles, Series};
pub use text::SummaryText;
