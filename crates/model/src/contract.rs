//! Reading a JSON contract back: a file one tool writes and another reads
//! ([`crate::summary::RunSummary`], [`crate::capacity::CapacityReport`]).
//!
//! Each carries a `schema_version`, checked before any other field: a file
//! written by another version of the tools is refused with a message that
//! names the file and both versions, rather than misread field by field.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A JSON file with a schema version of its own.
pub trait Contract: DeserializeOwned {
    /// The version this build writes and reads.
    const SCHEMA_VERSION: u32;
    /// What the file is, for messages (e.g. "a loadgen run summary").
    const WHAT: &'static str;
}

/// Why a contract file could not be read; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not JSON at all.
    #[error("{}: not JSON: {source}", path.display())]
    NotJson {
        /// The file.
        path: PathBuf,
        /// What serde_json said (line, column).
        source: serde_json::Error,
    },
    /// `schema_version` is missing or not the one this build reads.
    #[error("{}: {problem}", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A field is missing or of the wrong type.
    #[error("{}: {source}", path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// What serde said (names the field).
        source: serde_json::Error,
    },
}

/// Checks the `schema_version` of a parsed document against `T`'s; the
/// error says what is wrong and what to do (without the file, which the
/// caller names).
pub fn check_version<T: Contract>(document: &Value) -> Result<(), String> {
    let expected = T::SCHEMA_VERSION;
    let what = T::WHAT;
    match document.get("schema_version") {
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(expected)) => Ok(()),
        Some(Value::Number(n)) => Err(format!(
            "`schema_version` is {n}, but this build reads {what} of version {expected} only; \
             write it again with the tools of this build, or read it with the build that wrote it"
        )),
        Some(other) => Err(format!(
            "`schema_version` is {other}, not a whole number; this is not {what}"
        )),
        None => Err(format!(
            "no `schema_version`: not {what} of version {expected} (it is from an older build, \
             or another file); write it again with the tools of this build"
        )),
    }
}

/// Parses `text`, read from `path` (named in every error): the version
/// first, then every field.
pub(crate) fn parse<T: Contract>(text: &str, path: &Path) -> Result<T, ContractError> {
    let document: Value = serde_json::from_str(text).map_err(|source| ContractError::NotJson {
        path: path.to_owned(),
        source,
    })?;
    check_version::<T>(&document).map_err(|problem| ContractError::Version {
        path: path.to_owned(),
        problem,
    })?;
    serde_json::from_value(document).map_err(|source| ContractError::Field {
        path: path.to_owned(),
        source,
    })
}

/// Reads and parses the file at `path`.
pub(crate) fn read<T: Contract>(path: &Path) -> Result<T, ContractError> {
    let text = std::fs::read_to_string(path).map_err(|source| ContractError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// `value` as pretty JSON with a final newline, as every tool writes its files.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(value).map(|json| json + "\n")
}
