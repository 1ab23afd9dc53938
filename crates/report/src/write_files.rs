//! Writes `comparison.json` and `comparison.csv`, atomically.
//!
//! Each file is written to a temporary name in the same directory and then
//! renamed over the target: a reader (or a CI step) never sees a half-written
//! report, and a crash leaves the previous one intact.

use std::fs;
use std::io::Write;
use std::path::Path;

use model::comparison::Comparison;

use crate::error::ReportError;

/// Writes `bytes` to `path` via a temporary file in the same directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".to_owned());
    // The pid keeps two concurrent writers of the same file from sharing a temp name.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        // Best effort: a leftover temp file is harmless but untidy.
        let _ = fs::remove_file(&tmp);
        ReportError::io(path, e)
    })
}

/// `comparison` with each log file (`before`, `after`, the reproduction)
/// named relative to `dir`, where its reports go. A path that cannot be
/// resolved (a log not read from a file, or gone) stays as given.
pub(crate) fn with_logs_relative_to(comparison: &Comparison, dir: &Path) -> Comparison {
    with_logs_moved(comparison, None, dir)
}

/// As [`with_logs_relative_to`], for a comparison whose relative log
/// paths are relative to `from` (the directory of the `comparison.json`
/// it was read from) rather than to the current directory.
pub(crate) fn with_logs_moved(
    comparison: &Comparison,
    from: Option<&Path>,
    dir: &Path,
) -> Comparison {
    let mut comparison = comparison.clone();
    let Ok(dir) = fs::canonicalize(dir) else {
        return comparison;
    };
    let relative = |log_file: &mut Option<String>| {
        let Some(given) = log_file.as_deref() else {
            return;
        };
        let given = match from {
            Some(from) => from.join(given),
            None => Path::new(given).to_owned(),
        };
        if let Some(path) = fs::canonicalize(given)
            .ok()
            .and_then(|log| pathdiff::diff_paths(log, &dir))
        {
            *log_file = Some(path.display().to_string());
        }
    };
    relative(&mut comparison.before.log_file);
    relative(&mut comparison.after.log_file);
    if let Some(reproduction) = &mut comparison.before_reproduction {
        relative(&mut reproduction.summary.log_file);
    }
    comparison
}

/// `comparison.json`, pretty-printed, with a trailing newline.
pub(crate) fn comparison_json(comparison: &Comparison) -> Result<String, ReportError> {
    let mut text = serde_json::to_string_pretty(comparison)?;
    text.push('\n');
    Ok(text)
}

/// `comparison.csv`: one row per metric; empty cells where a value is undefined.
pub(crate) fn comparison_csv(comparison: &Comparison) -> String {
    let mut out = model::schema::COMPARISON_CSV_COLUMNS.join(",");
    out.push('\n');
    for (metric, d) in comparison.delta.rows() {
        let cells = [d.before, d.after, d.diff, d.pct].map(csv_number);
        out.push_str(metric);
        for cell in cells {
            out.push(',');
            out.push_str(&cell);
        }
        out.push('\n');
    }
    out
}

/// Shortest text that parses back to the same f64 (so a test can re-derive
/// the JSON's numbers from the CSV exactly); empty for "no value".
fn csv_number(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}
