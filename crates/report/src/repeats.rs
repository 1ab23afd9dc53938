//! The interleaved proof: what `--repeat N` concludes from N Before/After
//! pairs, each run on fresh servers with a seed of its own.
//!
//! One pair measures one draw of the service's randomness; with one seed the
//! After's P95 repeats to a tenth of a millisecond, so an interval over such
//! repeats measures the machine, not the service. Here each pair's seed is
//! read back from its `conditions.server_seed`, the successful latencies of
//! every pair are pooled per side, and the P95 difference (After - Before)
//! gets a seeded percentile-bootstrap interval
//! ([`stats::bootstrap_quantile_diff_ci`]); each side's P95 gets its own
//! ([`stats::bootstrap_quantile_ci`]). The proof passes only when every
//! pair's verdict was met. Its file, `repeats.json`, is
//! [`model::repeats::RepeatsReport`].

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use model::comparison::Comparison;
pub use model::repeats::{Interval, PairRow, RepeatsReport};
use stats::{ConfidenceInterval, QuantileMethod};

use crate::error::ReportError;
use crate::write_files::write_atomically;

/// Bootstrap resamples of each interval.
const RESAMPLES: usize = 2000;
/// The bootstrap's seed: the same pairs always give the same interval.
const BOOTSTRAP_SEED: u64 = 0x5eed;

/// Reads each pair's `comparison.json` and logs and draws the conclusion.
pub fn summarize(pair_dirs: &[PathBuf]) -> Result<RepeatsReport, ReportError> {
    summarize_pairs(pair_dirs).map(|(report, _)| report)
}

/// As [`summarize`], with each pair's comparison, in order.
pub fn summarize_pairs(
    pair_dirs: &[PathBuf],
) -> Result<(RepeatsReport, Vec<Comparison>), ReportError> {
    if pair_dirs.is_empty() {
        return Err(ReportError::InvalidOption(
            "give at least one pair directory (each holding a comparison.json)".into(),
        ));
    }
    refuse_duplicates(pair_dirs)?;
    let mut rows = Vec::new();
    let mut before_ms = Vec::new();
    let mut after_ms = Vec::new();
    let mut comparisons = Vec::new();
    for (index, dir) in pair_dirs.iter().enumerate() {
        let path = dir.join("comparison.json");
        let text = fs::read_to_string(&path).map_err(|e| ReportError::io(&path, e))?;
        let comparison: Comparison = serde_json::from_str(&text).map_err(|e| {
            ReportError::InvalidOption(format!(
                "{}: not a comparison.json of this version ({e})",
                path.display()
            ))
        })?;
        before_ms.extend(successful_latencies(
            dir,
            comparison.before.log_file.as_deref(),
        )?);
        after_ms.extend(successful_latencies(
            dir,
            comparison.after.log_file.as_deref(),
        )?);
        let diff = comparison
            .before
            .p95_ms
            .zip(comparison.after.p95_ms)
            .map(|(b, a)| a - b);
        rows.push(PairRow {
            pair: u32::try_from(index + 1).unwrap_or(u32::MAX),
            dir: dir.display().to_string(),
            seed: comparison.conditions.server_seed,
            before_p95_ms: comparison.before.p95_ms,
            after_p95_ms: comparison.after.p95_ms,
            diff_p95_ms: diff,
            met: comparison.verdict.met,
        });
        comparisons.push(comparison);
    }
    let quantile_ci = |samples: &[f64]| {
        stats::bootstrap_quantile_ci(
            samples,
            0.95,
            QuantileMethod::Linear,
            RESAMPLES,
            0.95,
            BOOTSTRAP_SEED,
        )
        .ok()
        .map(interval)
    };
    let diff = stats::bootstrap_quantile_diff_ci(
        &before_ms,
        &after_ms,
        0.95,
        QuantileMethod::Linear,
        RESAMPLES,
        0.95,
        BOOTSTRAP_SEED,
    )
    .ok();
    let diff = diff.map(interval);
    let pairs = u32::try_from(rows.len()).unwrap_or(u32::MAX);
    let met_count = u32::try_from(rows.iter().filter(|r| r.met).count()).unwrap_or(u32::MAX);
    let met_every_pair = met_count == pairs;
    let difference = match &diff {
        Some(d) => format!(
            "After P95 - Before P95 = {:.1} ms (95% bootstrap interval {:.1} to {:.1} ms, pooled rows of {pairs} pairs)",
            d.estimate, d.lower, d.upper
        ),
        None => "no P95 difference: a side has no successful request".to_owned(),
    };
    let seeds: Vec<String> = rows
        .iter()
        .map(|r| r.seed.map_or_else(|| "-".to_owned(), |s| s.to_string()))
        .collect();
    let verdict = format!(
        "{difference}; {met_count} of {pairs} pairs met the verdict (seeds {}): {}",
        seeds.join(", "),
        if met_every_pair { "PASS" } else { "FAIL" }
    );
    let report = RepeatsReport {
        schema_version: model::repeats::SCHEMA_VERSION,
        pairs,
        rows,
        met_count,
        met_every_pair,
        before_p95_ms: quantile_ci(&before_ms),
        after_p95_ms: quantile_ci(&after_ms),
        diff_p95_ms: diff,
        resamples: RESAMPLES,
        verdict,
    };
    Ok((report, comparisons))
}

/// The suites of `--junit FILE` (`junit`): each pair's verdict, its logs
/// named relative to the file's directory, then the proof's.
pub fn junit_suites(
    report: &RepeatsReport,
    comparisons: &[Comparison],
    junit: &Path,
) -> Vec<crate::junit::Suite> {
    let named: Vec<(String, Comparison)> = report
        .rows
        .iter()
        .zip(comparisons)
        .map(|(row, c)| {
            let seed = row
                .seed
                .map_or_else(String::new, |s| format!(" (seed {s})"));
            (
                format!(
                    "pair {}{seed}: {} vs {}",
                    row.pair, c.before.label, c.after.label
                ),
                crate::junit::with_logs_beside(c, Some(Path::new(&row.dir)), junit),
            )
        })
        .collect();
    crate::junit::repeats_suites(report, &named)
}

/// `stats`' interval as the contract writes it.
fn interval(ci: ConfidenceInterval) -> Interval {
    Interval {
        estimate: ci.estimate,
        lower: ci.lower,
        upper: ci.upper,
        confidence: ci.confidence,
    }
}

/// Refuses a pair given twice (the same directory by its canonical path,
/// however spelled): its rows would be pooled twice and its verdict
/// counted twice.
fn refuse_duplicates(pair_dirs: &[PathBuf]) -> Result<(), ReportError> {
    let mut seen: Vec<(PathBuf, &Path)> = Vec::with_capacity(pair_dirs.len());
    for dir in pair_dirs {
        // A directory that cannot be resolved is reported when it is read.
        let Ok(canonical) = fs::canonicalize(dir) else {
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(c, _)| *c == canonical) {
            return Err(ReportError::InvalidOption(format!(
                "{} is given twice ({} and {} are the same directory); give each pair's directory once",
                canonical.display(),
                first.display(),
                dir.display()
            )));
        }
        seen.push((canonical, dir));
    }
    Ok(())
}

/// Where a side's log is. `report compare` records it relative to the
/// comparison's own directory, which is tried first; a comparison written
/// before that recorded it as given (absolute, or relative to where it
/// ran), read as such when that file exists; last, a file of that name in
/// the pair's directory (a pair directory moved since).
fn resolve_log(dir: &Path, named: &Path) -> PathBuf {
    let beside = dir.join(named);
    if beside.is_file() {
        return beside;
    }
    if named.is_file() {
        return named.to_path_buf();
    }
    match named.file_name().map(|name| dir.join(name)) {
        Some(by_name) if by_name.is_file() => by_name,
        // Missing everywhere: the error names it as the comparison does.
        _ => beside,
    }
}

/// The successful latencies of a side's log.
fn successful_latencies(dir: &Path, log_file: Option<&str>) -> Result<Vec<f64>, ReportError> {
    let Some(named) = log_file.map(Path::new) else {
        return Err(ReportError::InvalidOption(format!(
            "{}: comparison.json names no log file for a side",
            dir.display()
        )));
    };
    let path = resolve_log(dir, named);
    let log = model::log::read_log_file(&path).map_err(|source| ReportError::ReadLog {
        path: path.clone(),
        source,
    })?;
    Ok(log
        .rows
        .iter()
        .filter(|r| r.ok)
        .map(|r| r.latency_ms)
        .collect())
}

/// `repeats.md`: the pairs and the conclusion.
pub fn render_markdown(report: &RepeatsReport) -> String {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    let mut md = String::from("# Interleaved repeats\n\n");
    let _ = writeln!(md, "{}\n", report.verdict);
    md.push_str(
        "| pair | seed | Before P95 (ms) | After P95 (ms) | After - Before (ms) | verdict |\n",
    );
    md.push_str("| ---: | ---: | ---: | ---: | ---: | --- |\n");
    for r in &report.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            r.pair,
            r.seed.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            ms(r.before_p95_ms),
            ms(r.after_p95_ms),
            ms(r.diff_p95_ms),
            if r.met { "met" } else { "NOT met" }
        );
    }
    for (name, interval) in [
        ("Before P95", &report.before_p95_ms),
        ("After P95", &report.after_p95_ms),
        ("After - Before P95", &report.diff_p95_ms),
    ] {
        if let Some(i) = interval {
            let _ = writeln!(
                md,
                "\n{name}, pooled rows: {:.1} ms (95% bootstrap interval {:.1} to {:.1} ms, {} resamples).",
                i.estimate, i.lower, i.upper, report.resamples
            );
        }
    }
    md
}

/// Writes `repeats.json` and `repeats.md` into `out_dir`, each atomically
/// (a temporary file renamed over the target); returns their paths.
pub fn write(report: &RepeatsReport, out_dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    fs::create_dir_all(out_dir).map_err(|e| ReportError::io(out_dir, e))?;
    let files = [
        ("repeats.json", serde_json::to_string_pretty(report)? + "\n"),
        ("repeats.md", render_markdown(report)),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = out_dir.join(name);
        write_atomically(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}
