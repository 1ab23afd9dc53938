//! `report merge`: one result from the shards of a distributed run.
//!
//! Each shard directory is what `loadgen --shard INDEX/COUNT --out-dir DIR`
//! writes: `summary.json` (a [`RunSummary`] with `latency_histogram`, the
//! LLM series' histograms, `shard` and `plan`) and, when the shard shipped
//! it, `log.csv`. The shards must form one run: every one a shard, one
//! `count` equal to the number of directories, each index in `0..count`
//! exactly once, and the same `plan` (target, API, schedule, client), since
//! percentiles over different plans describe no single load. The merged
//! `summary.json` is a [`RunSummary`] too, with the merge's own keys
//! (`percentiles_from`, `ids`, `shards`, `slos`).
//!
//! How the numbers are merged, so that a reader can re-derive them:
//!
//! - `total`, `succeeded`, `failed`, `errors`, `status_codes`,
//!   `connections_opened`, `retries`, `verified_rows`, `http_requests` and
//!   the open loop's `late_sends` and `dropped` are sums over the shards.
//! - With every shard's `log.csv` (`percentiles_from: "rows"`), every
//!   number is computed from the union of the rows exactly as `report
//!   summary` computes it for their concatenated CSV
//!   ([`SideSummary`](crate::SideSummary): the Linear method, successful
//!   rows, `duration_s` from the first start to the last response over all
//!   rows), the LLM series' (`llm`) too; `ids`
//!   counts the request ids, and an id logged by two shards means they
//!   overlapped.
//! - Otherwise (`percentiles_from: "histogram"`) the percentiles come from
//!   the shards' merged `LatencyHistogram`s by the same Linear method: the
//!   two order statistics it interpolates between are read from their
//!   buckets, the smallest and largest are the exact `min_ms` and
//!   `max_ms`, and the result is clamped to them, so the only error is the
//!   bucket resolution, stated in `quantile_error` ([`histogram_error`]:
//!   at most 1/2048 of the value plus 0.5 ns, and the log's rounding to
//!   0.001 ms when compared with rows). So are TTFT, ITL and TPOT, each
//!   from its merged histogram between its exact extremes. Means, minima
//!   and maxima stay exact (loadgen keeps them exactly per shard), and
//!   `duration_s` runs from the earliest shard start (`start_at_unix_ms +
//!   start_skew_ms`) to the latest shard end (start + its `duration_s`).
//! - `throughput_rps` is merged successes over the merged `duration_s`.
//! - `achieved_rate_rps` (open loop): requests sent (not `dropped`) per
//!   second between the first and the last send, the definition loadgen
//!   uses for one generator; without rows each shard's send span is
//!   recovered from its own rate and placed at its start.
//!
//! Objectives (`--sla`) are judged on the merged result; the merge is met
//! ([`Merged::met`]) when every objective holds and no id repeats. Shards
//! that cannot be merged are an error naming the directory and the field.

mod arithmetic;
mod checks;
mod error;
mod shard;
mod text;
mod write;

use std::path::PathBuf;

use model::log::Log;
use model::summary::{LatencyBucket, RunSummary, LATENCY_BUCKETS};
use stats::slo::Slo;

use arithmetic::{
    from_histograms, from_rows, judge_without_rows, merged, merged_llm, summed, union_of_rows,
    with_histograms,
};
use checks::{check_indices, check_plans};
use shard::read_shard;

use crate::slo::Judge;

pub use arithmetic::histogram_error;
pub use error::MergeError;

/// What `report merge` is asked, one field per flag.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the merged `summary.json` and `log.csv` go (`--out`; created
    /// if missing, and not one of the shard directories).
    pub out: PathBuf,
    /// Objectives judged on the merged result (`--sla`).
    pub slos: Vec<Slo>,
    /// The shards' directories, one per index, any order.
    pub shards: Vec<PathBuf>,
}

/// The merge's result: the summary and, with every shard's rows, their union.
#[derive(Debug, Clone)]
pub struct Merged {
    /// What `summary.json` holds: a loadgen summary with the merge's keys.
    pub summary: RunSummary,
    /// The union of rows, by timestamp then id (`None` unless every shard had rows).
    pub log: Option<Log>,
}

impl Merged {
    /// Whether every objective holds and no request id repeats.
    pub fn met(&self) -> bool {
        self.summary.slos.iter().flatten().all(|s| s.met)
            && self
                .summary
                .ids
                .as_ref()
                .is_none_or(|ids| ids.duplicates == 0)
    }
}

/// Merges the shards, writes `summary.json` (and `log.csv`) into
/// `options.out`, prints the result.
pub fn run(options: &Options) -> Result<Merged, MergeError> {
    checks::check_out_dir(&options.out, &options.shards)?;
    let merged = merge(&options.shards, &options.slos)?;
    let written = write::write(&merged, &options.out)?;
    print!("{}", text::render_text(&merged));
    for path in written {
        println!("written: {}", path.display());
    }
    Ok(merged)
}

/// Reads and checks every shard and merges them; `slos` are judged on the result.
pub fn merge(dirs: &[PathBuf], slos: &[Slo]) -> Result<Merged, MergeError> {
    if dirs.is_empty() {
        return Err(MergeError::InvalidOption(
            "no shard directories given; pass each shard's --out-dir".to_owned(),
        ));
    }
    let shards = dirs
        .iter()
        .map(|d| read_shard(d))
        .collect::<Result<Vec<_>, _>>()?;
    check_indices(&shards)?;
    check_plans(&shards)?;
    let mut shards = shards;
    shards.sort_by_key(|s| s.info.index);
    let open_loop = shards[0].summary.plan.mode == "open";
    let mut summary = summed(&shards);

    let histogram = merged(&shards, "latency_histogram", |s| Some(&s.histogram))?;
    summary.latency_histogram = histogram.to_base64_v2().ok();
    let llm = merged_llm(&shards)?;
    let merged = if shards.iter().all(|s| s.log.is_some()) {
        let log = union_of_rows(&shards);
        let side = from_rows(&mut summary, &log, open_loop)?;
        if let (Some(numbers), Some(histograms)) = (summary.llm.as_mut(), &llm) {
            with_histograms(numbers, histograms);
        }
        // The same judgement `report compare` makes, on the union.
        summary.slos = Some(
            slos.iter()
                .map(|slo| slo.judge(&side, &log, slos))
                .collect(),
        );
        Merged {
            summary,
            log: Some(log),
        }
    } else {
        from_histograms(&mut summary, &shards, &histogram, llm.as_ref(), open_loop)?;
        summary.slos = Some(
            slos.iter()
                .map(|slo| judge_without_rows(slo, &summary, &histogram, llm.as_ref()))
                .collect(),
        );
        Merged { summary, log: None }
    };
    let buckets = match (merged.summary.min_ms, merged.summary.max_ms) {
        (Some(min), Some(max)) => histogram.log_buckets_ms(min, max, LATENCY_BUCKETS),
        _ => Vec::new(),
    };
    let mut merged = merged;
    merged.summary.latency_buckets = buckets
        .into_iter()
        .map(|(upper_ms, count)| LatencyBucket { upper_ms, count })
        .collect();
    Ok(merged)
}
