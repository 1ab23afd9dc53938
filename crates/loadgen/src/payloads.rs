//! Request inputs: `input.py`'s baseline texts or a JSONL file, cycled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use model::payload::baseline_input;

use crate::config::PayloadSource;

/// Why a payload file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The file cannot be read.
    #[error("cannot read payloads {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is not an object with a string `input`.
    #[error("payloads {path}, line {line}: {reason}; each line must be a JSON object like {{\"input\": \"...\", \"model\": \"...\"}} (model optional)")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No line holds a payload.
    #[error("payloads {0} holds no payload lines")]
    Empty(PathBuf),
}

/// One payload line: its own model (if it names one) and its input.
type PayloadLine = (Option<Arc<str>>, String);

/// The inputs of a run; request `i` gets entry `i` (cycled for files).
#[derive(Debug, Clone)]
pub struct Payloads {
    default_model: Arc<str>,
    lines: Option<Vec<PayloadLine>>,
}

impl Payloads {
    /// Loads the source (reads and checks the whole file up front, so a bad
    /// line fails the run before any load is sent).
    pub fn load(source: &PayloadSource, default_model: &str) -> Result<Self, PayloadError> {
        let lines = match source {
            PayloadSource::Baseline => None,
            PayloadSource::File(path) => Some(read_jsonl(path)?),
        };
        Ok(Self {
            default_model: Arc::from(default_model),
            lines,
        })
    }

    /// Model and input of request `i`.
    pub fn get(&self, i: u64) -> (Arc<str>, String) {
        match &self.lines {
            None => (self.default_model.clone(), baseline_input(i)),
            Some(lines) => {
                let index = usize::try_from(i % lines.len() as u64).unwrap_or(0);
                let (model, input) = &lines[index];
                (
                    model.clone().unwrap_or_else(|| self.default_model.clone()),
                    input.clone(),
                )
            }
        }
    }
}

fn read_jsonl(path: &Path) -> Result<Vec<PayloadLine>, PayloadError> {
    let text = std::fs::read_to_string(path).map_err(|source| PayloadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| PayloadError::BadLine {
            path: path.to_owned(),
            line: index + 1,
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON ({e})")))?;
        let input = value
            .get("input")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("no string field `input`".into()))?;
        let model = match value.get("model") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(m)) if !m.is_empty() => Some(Arc::from(m.as_str())),
            Some(_) => return Err(bad("`model` must be a non-empty string".into())),
        };
        lines.push((model, input.to_owned()));
    }
    if lines.is_empty() {
        return Err(PayloadError::Empty(path.to_owned()));
    }
    Ok(lines)
}
