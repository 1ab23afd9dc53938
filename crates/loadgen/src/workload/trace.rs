//! Production traces to replay (`--trace FILE`): each row is one request
//! whose intended start is its timestamp and whose prompt and answer have
//! the row's token lengths.
//!
//! Three formats are read, detected from the file when not named:
//!
//! - **Mooncake** (JSONL): `timestamp` in ms, `input_length`,
//!   `output_length`, `hash_ids` (one id per block of 512 prompt tokens:
//!   two requests sharing their first k ids share their first k blocks).
//! - **Azure** LLM inference traces (CSV): `TIMESTAMP` (a date and time,
//!   `2023-11-16 18:15:46.6805900`), `ContextTokens`, `GeneratedTokens`.
//! - **BurstGPT** (CSV): `Timestamp` in seconds, `Request tokens`,
//!   `Response tokens` (0 for a request that failed in production: such
//!   rows are counted and not replayed, since no answer length is known).
//!
//! Rows are read as a stream, so a trace of millions of rows replays in
//! bounded memory; [`scan`] reads the whole file once before the first
//! request, so a malformed row (named by its line) or timestamps out of
//! order stop the run before it starts.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

/// A trace file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// Mooncake's JSONL.
    Mooncake,
    /// Azure's LLM inference trace CSV.
    Azure,
    /// BurstGPT's CSV.
    BurstGpt,
}

impl TraceFormat {
    /// The name `--trace-format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mooncake => "mooncake",
            Self::Azure => "azure",
            Self::BurstGpt => "burstgpt",
        }
    }
}

impl FromStr for TraceFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "mooncake" => Ok(Self::Mooncake),
            "azure" => Ok(Self::Azure),
            "burstgpt" => Ok(Self::BurstGpt),
            _ => Err(format!(
                "{text:?} is not a trace format; use mooncake, azure or burstgpt"
            )),
        }
    }
}

/// Why a trace cannot be replayed; said before any request.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file cannot be opened or read.
    #[error("--trace {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The format cannot be told from the file.
    #[error("--trace {path}: cannot tell its format ({why}); give --trace-format mooncake, azure or burstgpt")]
    Unknown {
        /// The file.
        path: PathBuf,
        /// What the first line looked like.
        why: String,
    },
    /// A row is malformed.
    #[error("--trace {path} line {line}: {why}")]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong, and what the format expects.
        why: String,
    },
    /// A timestamp is earlier than the row before it.
    #[error("--trace {path} line {line}: timestamp {at_ms:.3} ms is earlier than the previous row's {previous_ms:.3} ms; replay needs rows in time order (give --trace-sort to sort them, which holds the whole trace in memory)")]
    OutOfOrder {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// This row's time.
        at_ms: f64,
        /// The previous row's time.
        previous_ms: f64,
    },
    /// The file holds no row to replay.
    #[error("--trace {path}: no row to replay{why}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// Why, when rows were skipped.
        why: String,
    },
}

/// One request of a trace.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TraceRow {
    /// 1-based line of the file.
    pub line: u64,
    /// Its timestamp on the trace's own clock, ms.
    pub at_ms: f64,
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Answer tokens (`max_tokens` of the replayed request).
    pub output_tokens: u32,
    /// Mooncake's block hash ids (empty for the other formats).
    pub hash_ids: Vec<u64>,
    /// BurstGPT: the request failed in production (0 response tokens).
    pub failed: bool,
}

/// Largest token count a row may hold.
const MAX_TOKENS: u64 = 10_000_000;

/// Tells the format from the first line: `{` is Mooncake's JSONL, a CSV
/// header names Azure's or BurstGPT's columns.
pub(crate) fn detect(path: &Path) -> Result<TraceFormat, TraceError> {
    let file = File::open(path).map_err(|source| TraceError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut first = String::new();
    BufReader::new(file)
        .read_line(&mut first)
        .map_err(|source| TraceError::Io {
            path: path.to_owned(),
            source,
        })?;
    let first = first.trim_start_matches('\u{feff}').trim();
    if first.starts_with('{') {
        return Ok(TraceFormat::Mooncake);
    }
    if first.contains("ContextTokens") && first.contains("GeneratedTokens") {
        return Ok(TraceFormat::Azure);
    }
    if first.contains("Request tokens") && first.contains("Response tokens") {
        return Ok(TraceFormat::BurstGpt);
    }
    let shown: String = first.chars().take(80).collect();
    Err(TraceError::Unknown {
        path: path.to_owned(),
        why: if shown.is_empty() {
            "it is empty".to_owned()
        } else {
            format!("its first line is {shown:?}")
        },
    })
}

/// The rows of a trace, read one at a time.
pub(crate) struct TraceReader {
    path: PathBuf,
    source: Source,
}

enum Source {
    Jsonl {
        lines: std::io::Lines<BufReader<File>>,
        line: u64,
    },
    Csv {
        records: csv::StringRecordsIntoIter<Box<dyn Read + Send>>,
        columns: [usize; 3],
        format: TraceFormat,
    },
}

impl TraceReader {
    /// Opens `path` as `format`.
    pub(crate) fn open(path: &Path, format: TraceFormat) -> Result<Self, TraceError> {
        let io = |source| TraceError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let source = match format {
            TraceFormat::Mooncake => Source::Jsonl {
                lines: BufReader::new(file).lines(),
                line: 0,
            },
            TraceFormat::Azure | TraceFormat::BurstGpt => {
                let reader: Box<dyn Read + Send> = Box::new(BufReader::new(file));
                let mut csv = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .trim(csv::Trim::All)
                    .from_reader(reader);
                let header = csv.headers().map_err(|e| TraceError::Row {
                    path: path.to_owned(),
                    line: 1,
                    why: format!("the header is not CSV ({e})"),
                })?;
                let names: [&str; 3] = if format == TraceFormat::Azure {
                    ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
                } else {
                    ["Timestamp", "Request tokens", "Response tokens"]
                };
                let mut columns = [0; 3];
                for (slot, name) in columns.iter_mut().zip(names) {
                    *slot = header
                        .iter()
                        .position(|h| h.trim_start_matches('\u{feff}') == name)
                        .ok_or_else(|| TraceError::Row {
                            path: path.to_owned(),
                            line: 1,
                            why: format!(
                                "the header has no {name:?} column; a {} trace has {}",
                                format.name(),
                                names.join(", ")
                            ),
                        })?;
                }
                Source::Csv {
                    records: csv.into_records(),
                    columns,
                    format,
                }
            }
        };
        Ok(Self {
            path: path.to_owned(),
            source,
        })
    }

    fn row_error(&self, line: u64, why: String) -> TraceError {
        TraceError::Row {
            path: self.path.clone(),
            line,
            why,
        }
    }
}

/// Mooncake's row, as written.
#[derive(Deserialize)]
struct MooncakeRow {
    timestamp: f64,
    input_length: u64,
    output_length: u64,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

const MOONCAKE_SHAPE: &str = "a Mooncake row is {\"timestamp\": MS, \"input_length\": N, \"output_length\": N, \"hash_ids\": [...]}";

fn tokens(value: u64, what: &str, zero_ok: bool) -> Result<u32, String> {
    let low = u64::from(!zero_ok);
    if (low..=MAX_TOKENS).contains(&value) {
        Ok(value as u32)
    } else {
        Err(format!(
            "{what} {value} is out of range ({low} to {MAX_TOKENS})"
        ))
    }
}

impl Iterator for TraceReader {
    type Item = Result<TraceRow, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.source {
            Source::Jsonl { lines, line } => loop {
                *line += 1;
                let n = *line;
                let text = match lines.next()? {
                    Ok(text) => text,
                    Err(e) => return Some(Err(self.row_error(n, format!("cannot read: {e}")))),
                };
                if text.trim().is_empty() {
                    continue;
                }
                let row: MooncakeRow = match serde_json::from_str(&text) {
                    Ok(row) => row,
                    Err(e) => {
                        return Some(Err(self.row_error(n, format!("{e}; {MOONCAKE_SHAPE}"))))
                    }
                };
                let checked = (|| {
                    if !(row.timestamp.is_finite() && row.timestamp >= 0.0) {
                        return Err(format!(
                            "timestamp {} is not a time in ms (0 or more)",
                            row.timestamp
                        ));
                    }
                    Ok(TraceRow {
                        line: n,
                        at_ms: row.timestamp,
                        input_tokens: tokens(row.input_length, "input_length", false)?,
                        output_tokens: tokens(row.output_length, "output_length", false)?,
                        hash_ids: row.hash_ids,
                        failed: false,
                    })
                })();
                return Some(checked.map_err(|why| self.row_error(n, why)));
            },
            Source::Csv {
                records,
                columns,
                format,
            } => {
                let (format, columns) = (*format, *columns);
                let record = match records.next()? {
                    Ok(record) => record,
                    Err(e) => {
                        let line = e.position().map_or(0, csv::Position::line);
                        return Some(Err(self.row_error(line, format!("malformed CSV: {e}"))));
                    }
                };
                let line = record.position().map_or(0, csv::Position::line);
                let field = |i: usize| record.get(columns[i]).unwrap_or("");
                let whole = |i: usize, what: &str, zero_ok: bool| -> Result<u32, String> {
                    let text = field(i);
                    // Some exports write whole numbers as 52.0.
                    let value = text
                        .parse::<u64>()
                        .ok()
                        .or_else(|| {
                            text.parse::<f64>()
                                .ok()
                                .filter(|x| x.fract() == 0.0 && *x >= 0.0)
                                .map(|x| x as u64)
                        })
                        .ok_or_else(|| format!("{what} {text:?} is not a whole number"))?;
                    tokens(value, what, zero_ok)
                };
                let checked = (|| {
                    let at_ms = match format {
                        TraceFormat::Azure => azure_ms(field(0))?,
                        _ => match field(0).parse::<f64>() {
                            Ok(s) if s.is_finite() && s >= 0.0 => s * 1000.0,
                            _ => {
                                return Err(format!(
                                    "Timestamp {:?} is not a time in seconds (0 or more)",
                                    field(0)
                                ))
                            }
                        },
                    };
                    let (input_name, output_name) = if format == TraceFormat::Azure {
                        ("ContextTokens", "GeneratedTokens")
                    } else {
                        ("Request tokens", "Response tokens")
                    };
                    let burst = format == TraceFormat::BurstGpt;
                    let output_tokens = whole(2, output_name, burst)?;
                    Ok(TraceRow {
                        line,
                        at_ms,
                        input_tokens: whole(1, input_name, false)?,
                        output_tokens,
                        hash_ids: Vec::new(),
                        failed: burst && output_tokens == 0,
                    })
                })();
                Some(checked.map_err(|why| self.row_error(line, why)))
            }
        }
    }
}

/// Azure's `2023-11-16 18:15:46.6805900` (UTC, no zone written) in ms
/// since the Unix epoch.
fn azure_ms(text: &str) -> Result<f64, String> {
    let ns = crate::distributed::parse_rfc3339(&format!("{}Z", text.trim())).map_err(|e| {
        format!("TIMESTAMP {text:?} is not a date and time like 2023-11-16 18:15:46.6805900 ({e})")
    })?;
    // Whole microseconds first: since the epoch they fit a double exactly,
    // nanoseconds do not (the ms that result are 0.24 us apart).
    Ok((ns / 1000) as f64 / 1000.0)
}

/// What one pass over a trace found: enough to plan the replay and to
/// refuse a bad file before the first request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TraceScan {
    /// Rows read (failed BurstGPT rows included).
    pub rows: u64,
    /// BurstGPT rows of requests that failed in production, not replayed.
    pub failed_rows: u64,
    /// First and last timestamp, ms on the trace's clock.
    pub first_ms: f64,
    /// Last timestamp.
    pub last_ms: f64,
    /// Whether the rows are in time order.
    pub sorted: bool,
    /// The first row out of order: (line, its time, the previous time).
    pub first_disorder: Option<(u64, f64, f64)>,
}

/// Reads every row once, checking each, and shows each good row to
/// `on_row`; returns what it saw. Rows out of time order are an error
/// unless `sort` (the replay will then sort them).
pub(crate) fn scan(
    path: &Path,
    format: TraceFormat,
    sort: bool,
    mut on_row: impl FnMut(&TraceRow),
) -> Result<TraceScan, TraceError> {
    let mut scan = TraceScan {
        rows: 0,
        failed_rows: 0,
        first_ms: 0.0,
        last_ms: 0.0,
        sorted: true,
        first_disorder: None,
    };
    let mut previous: Option<f64> = None;
    for row in TraceReader::open(path, format)? {
        let row = row?;
        on_row(&row);
        scan.rows += 1;
        scan.failed_rows += u64::from(row.failed);
        match previous {
            None => scan.first_ms = row.at_ms,
            Some(p) if row.at_ms < p && scan.first_disorder.is_none() => {
                scan.sorted = false;
                scan.first_disorder = Some((row.line, row.at_ms, p));
            }
            Some(_) => {}
        }
        scan.first_ms = scan.first_ms.min(row.at_ms);
        scan.last_ms = scan.last_ms.max(row.at_ms);
        previous = Some(row.at_ms);
    }
    if let (Some((line, at_ms, previous_ms)), false) = (scan.first_disorder, sort) {
        return Err(TraceError::OutOfOrder {
            path: path.to_owned(),
            line,
            at_ms,
            previous_ms,
        });
    }
    if scan.rows == scan.failed_rows {
        return Err(TraceError::Empty {
            path: path.to_owned(),
            why: if scan.rows > 0 {
                format!(
                    " ({} rows, every one a request that failed in production)",
                    scan.rows
                )
            } else {
                String::new()
            },
        });
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("loadgen-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn rows(path: &Path) -> Vec<TraceRow> {
        let format = detect(path).unwrap();
        TraceReader::open(path, format)
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn mooncake_rows_keep_their_hash_ids() {
        let path = write(
            "m.jsonl",
            "{\"timestamp\": 0, \"input_length\": 1200, \"output_length\": 52, \"hash_ids\": [1, 2, 3]}\n\
             \n\
             {\"timestamp\": 27.5, \"input_length\": 600, \"output_length\": 7, \"hash_ids\": [1, 9]}\n",
        );
        assert_eq!(detect(&path).unwrap(), TraceFormat::Mooncake);
        let rows = rows(&path);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[1].line,
                rows[1].at_ms,
                rows[1].input_tokens,
                rows[1].output_tokens
            ),
            (3, 27.5, 600, 7)
        );
        assert_eq!(rows[0].hash_ids, [1, 2, 3]);
    }

    #[test]
    fn azure_timestamps_become_ms() {
        let path = write(
            "a.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n\
             2023-11-16 18:15:46.6805900,374,44\n\
             2023-11-16 18:15:50.9951690,396,109\n",
        );
        assert_eq!(detect(&path).unwrap(), TraceFormat::Azure);
        let rows = rows(&path);
        assert_eq!((rows[0].input_tokens, rows[0].output_tokens), (374, 44));
        // ms since the epoch are spaced 0.24 us apart in a double.
        assert!((rows[1].at_ms - rows[0].at_ms - 4314.579).abs() < 1e-3);
        assert_eq!(rows[1].line, 3);
    }

    #[test]
    fn burstgpt_failed_rows_are_marked_and_counted() {
        let path = write(
            "b.csv",
            "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
             5,ChatGPT,472,18,490,Conversation log\n\
             45,ChatGPT,1087,0,1087,Conversation log\n\
             118.5,GPT-4,417,276,693,API log\n",
        );
        assert_eq!(detect(&path).unwrap(), TraceFormat::BurstGpt);
        let rows = rows(&path);
        assert_eq!(rows.iter().filter(|r| r.failed).count(), 1);
        assert_eq!((rows[2].at_ms, rows[2].input_tokens), (118_500.0, 417));
        let s = scan(&path, TraceFormat::BurstGpt, false, |_| {}).unwrap();
        assert_eq!((s.rows, s.failed_rows, s.sorted), (3, 1, true));
        assert_eq!((s.first_ms, s.last_ms), (5_000.0, 118_500.0));
    }

    #[test]
    fn bad_rows_name_their_line() {
        for (name, text, needle) in [
            (
                "bad1.jsonl",
                "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": 1, \"input_length\": \"x\"}\n",
                "line 2",
            ),
            (
                "bad2.jsonl",
                "{\"timestamp\": -4, \"input_length\": 5, \"output_length\": 1}\n",
                "timestamp -4 is not a time in ms",
            ),
            (
                "bad3.csv",
                "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,12,3\n2023-13-01 00:00:00,1,1\n",
                "line 3: TIMESTAMP \"2023-13-01 00:00:00\"",
            ),
            (
                "bad4.csv",
                "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n1,x,0,5,5,y\n",
                "line 2: Request tokens 0 is out of range",
            ),
            (
                "bad5.csv",
                "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n1,x,5\n",
                "line 2",
            ),
        ] {
            let path = write(name, text);
            let err = scan(&path, detect(&path).unwrap(), false, |_| {})
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{name}: {err}");
        }
        let path = write("what.txt", "hello\n");
        assert!(detect(&path)
            .unwrap_err()
            .to_string()
            .contains("give --trace-format mooncake, azure or burstgpt"));
    }

    #[test]
    fn disorder_is_found_and_an_all_failed_trace_is_empty() {
        let path = write(
            "o.jsonl",
            "{\"timestamp\": 10, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": 3, \"input_length\": 5, \"output_length\": 1}\n",
        );
        let err = scan(&path, TraceFormat::Mooncake, false, |_| {}).unwrap_err();
        assert!(
            err.to_string().contains(
                "line 2: timestamp 3.000 ms is earlier than the previous row's 10.000 ms"
            ),
            "{err}"
        );
        let s = scan(&path, TraceFormat::Mooncake, true, |_| {}).unwrap();
        assert_eq!(s.first_disorder, Some((2, 3.0, 10.0)));
        let path = write(
            "f.csv",
            "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n1,x,5,0,5,y\n",
        );
        assert!(scan(&path, TraceFormat::BurstGpt, false, |_| {})
            .unwrap_err()
            .to_string()
            .contains("every one a request that failed in production"));
    }
}
