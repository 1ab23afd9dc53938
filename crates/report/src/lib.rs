//! Before/After comparison of per-request latency logs: an SLA verdict, a
//! diagnosis from measured data, and reports in JSON, CSV, Markdown and HTML.
//!
//! It reads the logs of `input.py` (five columns) and of `loadgen` (twelve),
//! summarises each run exactly from its rows ([`SideSummary`]: counts,
//! P50/P95/P99 with the Linear method, mean, min, max, throughput,
//! duration), decides whether the After meets the SLA with no failures,
//! no output mismatches and identical inputs
//! ([`Verdict`](model::comparison::Verdict)), explains where the time went
//! with findings that cite their numbers
//! ([`Finding`](model::comparison::Finding)), and writes `comparison.json` (stable schema, version 1), `comparison.csv`,
//! `report.md` and a self-contained `report.html`.
//!
//! The `report` binary wraps this: `report compare --before A.csv --after
//! B.csv --out-dir DIR` exits 0 when the verdict is met, 1 when not, 2 on
//! error; `report summary FILE.csv` prints one run's summary as JSON
//! ([`summary_of_log`]). `report merge --out DIR SHARD_DIR...` merges the
//! shards of a distributed run into one summary and log, SLAs judged on
//! the union ([`merge`]); `report repeats` draws the interleaved proof from
//! several pairs ([`repeats`]); `report whatif` decides the After from the
//! Before ([`whatif`]). The flags are the binary's: each subcommand here
//! takes plain options.
//!
//! ```
//! use model::log::read_log;
//! use report::{compare, CompareOptions, RunLog};
//!
//! let header = "request_id,timestamp_ms,latency_ms,status_code,error\n";
//! let before = read_log(format!("{header}0,0,900,200,\n1,10,1000,200,\n").as_bytes()).unwrap();
//! let after = read_log(format!("{header}0,0,90,200,\n1,10,100,200,\n").as_bytes()).unwrap();
//! let options = CompareOptions { sla_p95_ms: 800.0, ..CompareOptions::default() };
//! let c = compare(&RunLog::new("Before", before), &RunLog::new("After", after), None, &options).unwrap();
//! // Linear P95 of [90, 100]: 90 + 0.95 * 10 = 99.5 ms.
//! assert!((c.after.p95_ms.unwrap() - 99.5).abs() < 1e-9);
//! assert!(c.sla.met && c.verdict.met && c.quality.identical_inputs);
//! ```

mod breakdown;
mod compare;
mod diagnosis;
mod error;
mod evidence;
mod html;
mod input_py;
pub mod junit;
mod markdown;
pub mod merge;
mod prediction;
pub mod repeats;
mod slo;
mod summary;
mod svg;
mod table;
mod verdict;
pub mod whatif;
mod write_files;

use std::fs;
use std::path::{Path, PathBuf};

pub use compare::{compare, CompareOptions, RunLog};
pub use error::ReportError;
pub use model::comparison::{Comparison, SideSummary};
pub use summary::{summary_of_log, summary_of_rows};
pub use table::plain_text;

/// The files [`write_reports`] writes, in order.
pub const REPORT_FILES: [&str; 4] = [
    "comparison.json",
    "comparison.csv",
    "report.md",
    "report.html",
];

/// Writes `comparison.json`, `comparison.csv`, `report.md` and `report.html`
/// into `out_dir` (created if missing), each atomically; returns their paths.
/// The logs are needed for the charts. Each side's `log_file` is written
/// relative to `out_dir`, so the reports (and `report repeats`) find the
/// logs wherever the directory is moved or read from.
pub fn write_reports(
    comparison: &Comparison,
    before: &RunLog,
    after: &RunLog,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, ReportError> {
    fs::create_dir_all(out_dir).map_err(|e| ReportError::io(out_dir, e))?;
    let comparison = &write_files::with_logs_relative_to(comparison, out_dir);
    let contents = [
        write_files::comparison_json(comparison)?,
        write_files::comparison_csv(comparison),
        markdown::render_markdown(comparison),
        html::render_html(comparison, &before.log, &after.log),
    ];
    let mut written = Vec::new();
    for (name, text) in REPORT_FILES.iter().zip(contents) {
        // Fixed names joined to out_dir: nothing is ever written outside it.
        let path = out_dir.join(name);
        write_files::write_atomically(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}
