//! Request inputs: `input.py`'s baseline texts, a JSONL file, or the human
//! turns of a ShareGPT dataset, cycled.

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
    #[error("payloads {path}, line {line}: {reason}; each line must be a JSON object like {{\"input\": \"...\", \"model\": \"...\"}} (model optional; for LLM APIs \"prompt\" may stand for \"input\", or \"messages\": [{{\"role\": \"user\", \"content\": \"...\"}}] for chat)")]
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
    /// A ShareGPT dataset is unusable.
    #[error(transparent)]
    Dataset(#[from] crate::workload::dataset::DatasetError),
}

/// One payload line: its own model (if it names one), its input and, for
/// a chat payload, its own `messages` as JSON text.
#[derive(Debug, Clone)]
struct PayloadLine {
    model: Option<Arc<str>>,
    input: String,
    messages: Option<Arc<str>>,
}

/// What request `i` sends.
#[derive(Debug, Clone)]
pub(crate) struct Payload {
    /// The model to name.
    pub model: Arc<str>,
    /// The input text (a chat payload's contents joined by newlines).
    pub input: String,
    /// A chat payload's `messages` array, as JSON text.
    pub messages: Option<Arc<str>>,
}

/// The inputs of a run; request `i` gets entry `i` (cycled for files).
#[derive(Debug, Clone)]
pub(crate) struct Payloads {
    default_model: Arc<str>,
    lines: Option<Arc<Vec<PayloadLine>>>,
    /// A dataset's conversations (their human turns), kept when they are
    /// replayed as sessions.
    conversations: Option<Arc<Vec<Vec<String>>>>,
}

impl Payloads {
    /// Loads the source (reads and checks the whole file up front, so a bad
    /// line fails the run before any load is sent).
    /// `sessions`: keep a dataset's conversations whole, to replay them as
    /// conversations.
    pub(crate) fn load(
        source: &PayloadSource,
        default_model: &str,
        sessions: bool,
    ) -> Result<Self, PayloadError> {
        let (lines, conversations) = match source {
            PayloadSource::Baseline => (None, None),
            PayloadSource::File(path) => (Some(read_jsonl(path)?), None),
            PayloadSource::ShareGpt(path) => {
                let conversations = crate::workload::dataset::read_sharegpt(path)?;
                // Each human turn is a prompt of its own, too (what a
                // warm-up, or a run without --turns from-data, sends).
                let lines = conversations
                    .iter()
                    .flatten()
                    .map(|turn| PayloadLine {
                        model: None,
                        input: turn.clone(),
                        messages: None,
                    })
                    .collect();
                (Some(lines), sessions.then(|| Arc::new(conversations)))
            }
        };
        Ok(Self {
            default_model: Arc::from(default_model),
            lines: lines.map(Arc::new),
            conversations,
        })
    }

    /// The model requests name when their payload names none.
    pub(crate) fn default_model(&self) -> &Arc<str> {
        &self.default_model
    }

    /// The human turns of a dataset's conversation `k` (cycled), when
    /// conversations were kept.
    pub(crate) fn conversation(&self, k: u64) -> Option<&[String]> {
        let all = self.conversations.as_ref()?;
        let index = usize::try_from(k % all.len() as u64).unwrap_or(0);
        all.get(index).map(Vec::as_slice)
    }

    /// What request `i` sends.
    pub(crate) fn get(&self, i: u64) -> Payload {
        match &self.lines {
            None => Payload {
                model: self.default_model.clone(),
                input: baseline_input(i),
                messages: None,
            },
            Some(lines) => {
                let index = usize::try_from(i % lines.len() as u64).unwrap_or(0);
                let line = &lines[index];
                Payload {
                    model: line
                        .model
                        .clone()
                        .unwrap_or_else(|| self.default_model.clone()),
                    input: line.input.clone(),
                    messages: line.messages.clone(),
                }
            }
        }
    }

    /// Where the inputs come from, for the start line.
    pub(crate) fn describe(&self) -> String {
        match (&self.lines, &self.conversations) {
            (None, _) => "input.py's prompts".to_owned(),
            (Some(_), Some(c)) => format!("{} dataset conversations, their human turns", c.len()),
            (Some(lines), None) => format!("{} payloads, cycled", lines.len()),
        }
    }

    /// Whether some payload carries its own chat `messages`.
    pub(crate) fn has_messages(&self) -> bool {
        self.lines
            .as_ref()
            .is_some_and(|lines| lines.iter().any(|l| l.messages.is_some()))
    }
}

/// A chat's contents joined by newlines (what the simulator answers), if
/// `messages` is a non-empty array of objects with string contents.
fn chat_text(messages: &serde_json::Value) -> Option<String> {
    let messages = messages.as_array().filter(|m| !m.is_empty())?;
    let contents: Option<Vec<&str>> = messages
        .iter()
        .map(|m| m.get("content").and_then(|c| c.as_str()))
        .collect();
    Some(contents?.join("\n"))
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
        let (input, messages) = match (
            value.get("input").or(value.get("prompt")),
            value.get("messages"),
        ) {
            (Some(serde_json::Value::String(text)), None) => (text.clone(), None),
            (None, Some(messages)) => (
                chat_text(messages).ok_or_else(|| {
                    bad(
                        "`messages` must be a non-empty array of objects with a string `content`"
                            .into(),
                    )
                })?,
                Some(Arc::from(messages.to_string())),
            ),
            (Some(_), Some(_)) => {
                return Err(bad(
                    "give `input` (or `prompt`) or `messages`, not both".into()
                ))
            }
            _ => {
                return Err(bad(
                    "no string field `input` (or `prompt`), and no `messages`".into(),
                ))
            }
        };
        let model = match value.get("model") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(m)) if !m.is_empty() => Some(Arc::from(m.as_str())),
            Some(_) => return Err(bad("`model` must be a non-empty string".into())),
        };
        lines.push(PayloadLine {
            model,
            input,
            messages,
        });
    }
    if lines.is_empty() {
        return Err(PayloadError::Empty(path.to_owned()));
    }
    Ok(lines)
}
