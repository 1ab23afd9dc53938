//! ShareGPT-style datasets (`--payloads FILE --payloads-format sharegpt`):
//! a JSON list of `{"conversations": [{"from": "human", "value": "..."},
//! {"from": "gpt", "value": "..."}, ...]}`. The human turns (`human` or
//! `user`) are kept, in order; the dataset's own answers are not: a
//! conversation replayed with `--turns from-data` carries the server's
//! live answers instead. Other keys, and turns from others (`gpt`,
//! `system`, ...), are ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a dataset cannot be used; said before any request.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file cannot be read.
    #[error("--payloads {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a ShareGPT list.
    #[error("--payloads {path} (--payloads-format sharegpt): {why}; a ShareGPT file is a JSON list of {{\"conversations\": [{{\"from\": \"human\", \"value\": \"...\"}}, {{\"from\": \"gpt\", \"value\": \"...\"}}]}}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line and column where serde saw it.
        why: String,
    },
}

#[derive(Deserialize)]
struct Entry {
    conversations: Vec<Turn>,
}

#[derive(Deserialize)]
struct Turn {
    from: String,
    value: String,
}

/// The human turns of every conversation that has one, in file order.
pub(crate) fn read_sharegpt(path: &Path) -> Result<Vec<Vec<String>>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
        path: path.to_owned(),
        source,
    })?;
    let entries: Vec<Entry> = serde_json::from_str(&text).map_err(|e| DatasetError::Shape {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    let conversations: Vec<Vec<String>> = entries
        .into_iter()
        .map(|entry| {
            entry
                .conversations
                .into_iter()
                .filter(|t| matches!(t.from.as_str(), "human" | "user"))
                .map(|t| t.value)
                .filter(|v| !v.trim().is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|turns| !turns.is_empty())
        .collect();
    if conversations.is_empty() {
        return Err(DatasetError::Shape {
            path: path.to_owned(),
            why: "no conversation has a human turn with text".to_owned(),
        });
    }
    Ok(conversations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_turns_are_kept_in_order_and_bad_files_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sharegpt.json");
        std::fs::write(
            &path,
            r#"[
              {"id": "a", "conversations": [
                {"from": "system", "value": "be brief"},
                {"from": "human", "value": "first"},
                {"from": "gpt", "value": "an answer"},
                {"from": "human", "value": "second"}]},
              {"id": "b", "conversations": [{"from": "gpt", "value": "no question"}]},
              {"id": "c", "conversations": [{"from": "user", "value": "third"}]}
            ]"#,
        )
        .unwrap();
        assert_eq!(
            read_sharegpt(&path).unwrap(),
            vec![
                vec!["first".to_owned(), "second".to_owned()],
                vec!["third".to_owned()]
            ]
        );
        for (text, needle) in [
            (
                "{\"conversations\": []}",
                "invalid type: map, expected a sequence",
            ),
            ("[{\"turns\": []}]", "missing field `conversations`"),
            (
                "[{\"conversations\": [{\"from\": \"gpt\", \"value\": \"x\"}]}]",
                "no conversation has a human turn",
            ),
            ("[\n{\"conversations\": [{\"from\": \"human\"}]}]", "line 2"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = read_sharegpt(&path).unwrap_err().to_string();
            assert!(
                err.contains(needle) && err.contains("a ShareGPT file is a JSON list"),
                "{err}"
            );
        }
        let err = read_sharegpt(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.json"), "{err}");
    }
}
