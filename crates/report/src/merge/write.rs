//! Writing the merged `summary.json` and `log.csv`, each to a temporary
//! name first.

use std::fs;
use std::path::{Path, PathBuf};

use model::log::LogWriter;

use super::{MergeError, Merged};
use crate::error::ReportError;
use crate::write_files::write_atomically;

/// The summary each shard directory holds, and the merged one.
pub(super) const SUMMARY_FILE: &str = "summary.json";
/// The per-request log a shard directory may hold, and the merged one.
pub(super) const LOG_FILE: &str = "log.csv";

/// Writes `summary.json` and, with rows, `log.csv` into `out`, each to a
/// temporary name first; returns their paths.
pub(super) fn write(merged: &Merged, out: &Path) -> Result<Vec<PathBuf>, MergeError> {
    fs::create_dir_all(out).map_err(|source| MergeError::Io {
        path: out.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    if let Some(log) = &merged.log {
        let path = out.join(LOG_FILE);
        let tmp = out.join(format!(".{LOG_FILE}.{}.tmp", std::process::id()));
        let result = (|| {
            let llm = log.rows.iter().any(|r| r.llm.is_some());
            let mut writer = LogWriter::create(&tmp, llm)?;
            for row in &log.rows {
                writer.write_row(row)?;
            }
            writer.flush()
        })();
        if let Err(source) = result {
            // Best effort: a leftover temporary file is harmless but untidy.
            let _ = fs::remove_file(&tmp);
            return Err(MergeError::Log { path, source });
        }
        fs::rename(&tmp, &path).map_err(|source| MergeError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    } else {
        // A log.csv left from an earlier merge would not match this summary.
        let stale = out.join(LOG_FILE);
        if stale.exists() {
            fs::remove_file(&stale).map_err(|source| MergeError::Io {
                path: stale.clone(),
                source,
            })?;
        }
    }
    let path = out.join(SUMMARY_FILE);
    let mut text = serde_json::to_string_pretty(&merged.summary).map_err(ReportError::from)?;
    text.push('\n');
    write_atomically(&path, text.as_bytes())?;
    written.push(path);
    Ok(written)
}
