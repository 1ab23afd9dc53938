//! Per-request log rows and their CSV form, for `input.py` and `loadgen` logs.
//!
//! The first five columns are `input.py`'s, with the same meaning, so every
//! tool reads both kinds of log; `loadgen` appends what it knows beyond them.
//! Rows are written one at a time (a long run never holds them all) and a
//! malformed file is refused with the line and column at fault.
//!
//! A row of the warm-up (`phase` = `warmup`) is logged so a reader can see
//! what the warm-up did, but it is not a measurement: [`read_log`] and
//! [`read_log_file`] leave such rows out, so every statistic computed from
//! their rows is of the measured run; [`read_log_all`] keeps them.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// What a column's fields hold, as text in the CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// A whole number, 0 or more.
    Count,
    /// A decimal number (`loadgen` writes three decimals; `input.py`,
    /// Python's `repr` of a float).
    Number,
    /// `true` or `false`.
    Bool,
    /// Any text (quoted where CSV needs it).
    Text,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// Decimal numbers separated by single spaces.
    Numbers,
}

/// Which logs have a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnSet {
    /// `input.py`'s five columns, first in every log.
    InputPy,
    /// What `loadgen` writes after them, in every loadgen log.
    Loadgen,
    /// What a streamed LLM run (`--api openai-chat`, `openai-completions`)
    /// adds after those.
    Llm,
    /// What every loadgen log has after those (after the LLM columns in
    /// an LLM log, after loadgen's own otherwise).
    Run,
    /// What an LLM log has last.
    Workload,
}

/// One column of the per-request log: the one description of it that the
/// writer's header, the reader's look-ups and the published documentation
/// (`docs/schemas/log-columns.md`, `docs/schemas/log-row.schema.json`,
/// made by [`crate::schema`]) all come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The header's name.
    pub name: &'static str,
    /// The unit of its values (empty for none).
    pub unit: &'static str,
    /// What its fields hold.
    pub kind: ColumnKind,
    /// When the field is empty, if it may be (`None`: never).
    pub empty: Option<&'static str>,
    /// Which logs have it.
    pub set: ColumnSet,
    /// What it means.
    pub meaning: &'static str,
}

/// Every column, in the order a log has them.
pub const COLUMNS: [Column; 29] = [
    Column {
        name: "request_id",
        unit: "",
        kind: ColumnKind::Count,
        empty: None,
        set: ColumnSet::InputPy,
        meaning: "the request's index in the run (its payload index)",
    },
    Column {
        name: "timestamp_ms",
        unit: "ms since the Unix epoch",
        kind: ColumnKind::Number,
        empty: None,
        set: ColumnSet::InputPy,
        meaning: "wall-clock time the request started",
    },
    Column {
        name: "latency_ms",
        unit: "ms",
        kind: ColumnKind::Number,
        empty: None,
        set: ColumnSet::InputPy,
        meaning: "end to end: from the request's start (its intended start in the open loop; \
                  its own enqueue time when batched, so a batch's wait is counted) to the whole response",
    },
    Column {
        name: "status_code",
        unit: "",
        kind: ColumnKind::Count,
        empty: None,
        set: ColumnSet::InputPy,
        meaning: "HTTP status; 0 when no response came",
    },
    Column {
        name: "error",
        unit: "",
        kind: ColumnKind::Text,
        empty: Some("on success"),
        set: ColumnSet::InputPy,
        meaning: "the error kind (in `input.py`'s log, the Python exception's text)",
    },
    Column {
        name: "ok",
        unit: "",
        kind: ColumnKind::Bool,
        empty: None,
        set: ColumnSet::Loadgen,
        meaning: "the request counts as a success: a 2xx answer, well formed, no error, \
                  and its output matched when it was checked",
    },
    Column {
        name: "batch_id",
        unit: "",
        kind: ColumnKind::Count,
        empty: Some("when the request never went out (e.g. `dropped`)"),
        set: ColumnSet::Loadgen,
        meaning: "which HTTP request carried this logical request (client micro-batching)",
    },
    Column {
        name: "batch_size",
        unit: "requests",
        kind: ColumnKind::Count,
        empty: Some("as `batch_id`"),
        set: ColumnSet::Loadgen,
        meaning: "how many logical requests that HTTP request carried",
    },
    Column {
        name: "connect_ms",
        unit: "ms",
        kind: ColumnKind::Number,
        empty: Some("when not measured (e.g. a request that never went out)"),
        set: ColumnSet::Loadgen,
        meaning: "TCP connect for this request; 0 on a reused connection",
    },
    Column {
        name: "tls_ms",
        unit: "ms",
        kind: ColumnKind::Number,
        empty: Some("over `http://`"),
        set: ColumnSet::Loadgen,
        meaning: "TLS handshake for this request; 0 on a reused connection",
    },
    Column {
        name: "queue_ms",
        unit: "ms",
        kind: ColumnKind::Number,
        empty: Some("when the server sends no `Server-Timing: queue`"),
        set: ColumnSet::Loadgen,
        meaning: "the server's queue wait, from its `Server-Timing: queue;dur=...` header",
    },
    Column {
        name: "service_ms",
        unit: "ms",
        kind: ColumnKind::Number,
        empty: Some("when the server sends no `Server-Timing: infer`"),
        set: ColumnSet::Loadgen,
        meaning: "the server's execution time, from `Server-Timing: infer;dur=...`",
    },
    Column {
        name: "output_digest",
        unit: "16 hex digits",
        kind: ColumnKind::Text,
        empty: Some("when no output came"),
        set: ColumnSet::Loadgen,
        meaning: "FNV-1a digest of the output (for `--api template`, of the value at \
                  `--expect-json-path`, or of the whole body), to compare runs request by request",
    },
    Column {
        name: "verified",
        unit: "",
        kind: ColumnKind::Bool,
        empty: None,
        set: ColumnSet::Loadgen,
        meaning: "true when the row's output was checked against the expected output and matched; \
                  false where nothing was checked (`--no-verify`, an API whose answers are not known \
                  without `--verify`, a failed request); read as false in logs older than the column",
    },
    Column {
        name: "retries",
        unit: "requests",
        kind: ColumnKind::Count,
        empty: None,
        set: ColumnSet::Loadgen,
        meaning: "re-sends on a new connection after a kept-alive connection was found closed \
                  before any byte of a response came (or an HTTP/2 GOAWAY turned the request away); \
                  0 almost always, and in logs older than the column",
    },
    Column {
        name: "ttft_ms",
        unit: "ms",
        kind: ColumnKind::Number,
        empty: Some("when no content came or the answer was not streamed"),
        set: ColumnSet::Llm,
        meaning: "time to first token: from the request's intended start to its first content delta",
    },
    Column {
        name: "tpot_ms",
        unit: "ms",
        kind: ColumnKind::Number,
        empty: Some("under two tokens"),
        set: ColumnSet::Llm,
        meaning: "time per output token: (e2e - TTFT) / (tokens - 1)",
    },
    Column {
        name: "output_tokens",
        unit: "tokens",
        kind: ColumnKind::Count,
        empty: Some("when not known"),
        set: ColumnSet::Llm,
        meaning: "output tokens of the answer",
    },
    Column {
        name: "tokens_from",
        unit: "",
        kind: ColumnKind::OneOf(&["usage", "counted"]),
        empty: Some("as `output_tokens`"),
        set: ColumnSet::Llm,
        meaning: "where `output_tokens` came from: `usage` (the server's `usage.completion_tokens`) \
                  or `counted` (content deltas counted)",
    },
    Column {
        name: "itl_mean_ms",
        unit: "ms",
        kind: ColumnKind::Number,
        empty: Some("under two content deltas"),
        set: ColumnSet::Llm,
        meaning: "mean gap between content deltas (inter-token latency)",
    },
    Column {
        name: "itl_max_ms",
        unit: "ms",
        kind: ColumnKind::Number,
        empty: Some("under two content deltas"),
        set: ColumnSet::Llm,
        meaning: "longest gap between content deltas",
    },
    Column {
        name: "itl_ms",
        unit: "ms",
        kind: ColumnKind::Numbers,
        empty: Some("under two content deltas"),
        set: ColumnSet::Llm,
        meaning: "every gap between content deltas, in order, space-separated, so percentiles \
                  over all gaps of a run are exact",
    },
    Column {
        name: "phase",
        unit: "",
        kind: ColumnKind::OneOf(&["measure", "warmup"]),
        empty: None,
        set: ColumnSet::Run,
        meaning: "which part of the run the row belongs to: `warmup` rows (`--warmup`) are in \
                  no statistic; read as `measure` in logs older than the column",
    },
    Column {
        name: "send_lag_ms",
        unit: "ms",
        kind: ColumnKind::Number,
        empty: Some("for a send not on an open-loop schedule (the closed loop, a conversation's later turns)"),
        set: ColumnSet::Run,
        meaning: "schedule adherence: the actual send minus the intended send on the open loop",
    },
    Column {
        name: "input_tokens",
        unit: "tokens",
        kind: ColumnKind::Count,
        empty: Some("when the prompt's length was not asked for (fixed payloads)"),
        set: ColumnSet::Workload,
        meaning: "the prompt length asked for (drawn by `--input-tokens`, or a trace row's); \
                  for a conversation's turn, its new message's",
    },
    Column {
        name: "max_tokens",
        unit: "tokens",
        kind: ColumnKind::Count,
        empty: Some("when the request sent none"),
        set: ColumnSet::Workload,
        meaning: "the `max_tokens` the request sent",
    },
    Column {
        name: "prompt_tokens",
        unit: "tokens",
        kind: ColumnKind::Count,
        empty: Some("when the server sent no `usage.prompt_tokens`"),
        set: ColumnSet::Workload,
        meaning: "the server's own count of the prompt's tokens (`usage.prompt_tokens`, \
                  the chat template's tokens included)",
    },
    Column {
        name: "session_id",
        unit: "",
        kind: ColumnKind::Count,
        empty: Some("outside conversations (`--turns`)"),
        set: ColumnSet::Workload,
        meaning: "the conversation this request is a turn of",
    },
    Column {
        name: "turn",
        unit: "",
        kind: ColumnKind::Count,
        empty: Some("as `session_id`"),
        set: ColumnSet::Workload,
        meaning: "its turn in that conversation, from 1",
    },
];

/// The names of the [`COLUMNS`] of the sets `first..=last` (in the order
/// of [`ColumnSet`]), checked when compiled: `N` must be their count.
const fn names<const N: usize>(first: ColumnSet, last: ColumnSet) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut i, mut k) = (0, 0);
    while i < COLUMNS.len() {
        let set = COLUMNS[i].set as u8;
        if set >= first as u8 && set <= last as u8 {
            out[k] = COLUMNS[i].name;
            k += 1;
        }
        i += 1;
    }
    assert!(k == N, "the count of columns does not match the table");
    out
}

/// Whether `name` is one of the [`COLUMNS`].
pub(crate) fn is_column(name: &str) -> bool {
    COLUMNS.iter().any(|c| c.name == name)
}

/// The columns `input.py` writes.
pub(crate) const INPUT_PY_COLUMNS: [&str; 5] = names(ColumnSet::InputPy, ColumnSet::InputPy);

/// The columns `loadgen` writes: `input.py`'s, then the rich ones.
/// `verified` and `retries` came last, so older logs lack them (read as
/// not verified and 0).
pub const LOADGEN_COLUMNS: [&str; 15] = names(ColumnSet::InputPy, ColumnSet::Loadgen);

/// The columns a streamed LLM run adds after [`LOADGEN_COLUMNS`]: per
/// request its time to first token, time per output token, output tokens
/// and where their count came from, and its inter-token gaps (their mean,
/// their maximum and every gap, space-separated, so the report computes
/// percentiles over all gaps of a run exactly).
pub(crate) const LLM_COLUMNS: [&str; 7] = names(ColumnSet::Llm, ColumnSet::Llm);

/// The columns every loadgen log has after [`LOADGEN_COLUMNS`] and, in an
/// LLM log, its LLM columns: which part of the run the row belongs to
/// (`warmup` or `measure`) and, for a send on an open-loop schedule, how
/// late it went out (actual minus intended send, ms).
pub const RUN_COLUMNS: [&str; 2] = names(ColumnSet::Run, ColumnSet::Run);

/// The columns an LLM log has last: per request the prompt length it asked
/// for (`input_tokens`, drawn or from a trace), the `max_tokens` it sent,
/// the server's `usage.prompt_tokens`, and for a conversation its session
/// and turn (1-based).
pub(crate) const WORKLOAD_COLUMNS: [&str; 5] = names(ColumnSet::Workload, ColumnSet::Workload);

/// Which part of a run a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// The measured run (and every row of a log without the column).
    #[default]
    Measure,
    /// The warm-up: logged, left out of every statistic.
    Warmup,
}

impl Phase {
    /// The name written in the log.
    pub fn name(self) -> &'static str {
        match self {
            Self::Measure => "measure",
            Self::Warmup => "warmup",
        }
    }
}

/// Where a row's output token count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokensFrom {
    /// The server's `usage.completion_tokens`.
    Usage,
    /// Content deltas counted by the client (the server sent no usage).
    Counted,
}

impl TokensFrom {
    /// The name written in the log.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Usage => "usage",
            Self::Counted => "counted",
        }
    }
}

/// What a streamed LLM answer measured, for one logical request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LlmTiming {
    /// From the request's (intended) start to its first content delta, ms;
    /// `None` when no content came (or the answer was not streamed).
    pub ttft_ms: Option<f64>,
    /// (e2e - TTFT) / (tokens - 1), ms; `None` under two tokens.
    pub tpot_ms: Option<f64>,
    /// Output tokens, when known.
    pub output_tokens: Option<u64>,
    /// Where `output_tokens` came from.
    pub tokens_from: Option<TokensFrom>,
    /// The gaps between consecutive content deltas, ms, in order.
    pub itl_ms: Vec<f64>,
}

impl LlmTiming {
    /// The mean inter-token gap, ms.
    pub(crate) fn itl_mean_ms(&self) -> Option<f64> {
        (!self.itl_ms.is_empty())
            .then(|| self.itl_ms.iter().sum::<f64>() / self.itl_ms.len() as f64)
    }

    /// The longest inter-token gap, ms.
    pub(crate) fn itl_max_ms(&self) -> Option<f64> {
        self.itl_ms.iter().copied().reduce(f64::max)
    }
}

/// One logical request: what was sent when, how long it took, what came back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogRow {
    /// Index of the request in the run (its payload index).
    pub request_id: u64,
    /// Wall-clock time the request started, ms since the Unix epoch.
    pub timestamp_ms: f64,
    /// End-to-end latency, ms, from the request's (intended) start.
    pub latency_ms: f64,
    /// HTTP status, 0 when no response came.
    pub status_code: u16,
    /// Error kind or message; empty when the request succeeded.
    pub error: String,
    /// Whether the request counts as a success (2xx, no error, verified).
    pub ok: bool,
    /// Which HTTP request carried this logical request (client batching).
    pub batch_id: Option<u64>,
    /// How many logical requests that HTTP request carried.
    pub batch_size: Option<u32>,
    /// Time spent opening a TCP connection for this request, ms.
    pub connect_ms: Option<f64>,
    /// Time spent in the TLS handshake for this request, ms (empty
    /// without TLS; 0 on a reused connection).
    pub tls_ms: Option<f64>,
    /// Server-reported queue wait (`Server-Timing: queue`), ms.
    pub queue_ms: Option<f64>,
    /// Server-reported execution time (`Server-Timing: infer`), ms.
    pub service_ms: Option<f64>,
    /// Digest of the output, to compare runs request by request.
    pub output_digest: Option<String>,
    /// The output was compared with its expected output and matched.
    /// False where nothing was checked (`--no-verify`, an API or server
    /// whose answers are not known, a failed request, `input.py`'s log).
    pub verified: bool,
    /// Times the request was sent again because the kept-alive connection
    /// it went out on turned out closed before any byte of a response
    /// came (0 in logs that predate the column, and in `input.py`'s).
    pub retries: u32,
    /// A streamed LLM answer's timing (`None` for other APIs).
    pub llm: Option<LlmTiming>,
    /// Warm-up or measured run.
    pub phase: Phase,
    /// Open loop: actual send minus intended send, ms (`None` for a send
    /// not on the schedule: the closed loop, a conversation's later turns).
    pub send_lag_ms: Option<f64>,
    /// The prompt length asked for, tokens (drawn, or a trace row's);
    /// for a conversation's turn, its new message's.
    pub input_tokens: Option<u32>,
    /// The `max_tokens` the request sent.
    pub max_tokens: Option<u32>,
    /// The server's `usage.prompt_tokens`, when it sent it.
    pub prompt_tokens: Option<u64>,
    /// The conversation this request is a turn of.
    pub session_id: Option<u64>,
    /// Its turn in that conversation, from 1.
    pub turn: Option<u32>,
}

/// Which tool wrote a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `input.py`'s five columns.
    InputPy,
    /// `loadgen`'s columns.
    Loadgen,
}

/// A whole log read back from CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    /// Which columns the file had.
    pub format: LogFormat,
    /// The rows, in file order.
    pub rows: Vec<LogRow>,
}

/// Why a log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Opening, reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file ended before its first line: a log starts with a header.
    #[error("the file is empty: a log starts with a header line such as {}", INPUT_PY_COLUMNS.join(","))]
    Empty,
    /// A record has more or fewer fields than the header.
    #[error("line {line}: {}, the header has {header_fields}", count(*fields, "field"))]
    FieldCount {
        /// 1-based line of the record.
        line: u64,
        /// Fields on that line.
        fields: u64,
        /// Fields in the header.
        header_fields: u64,
    },
    /// A field is not UTF-8 text.
    #[error(
        "line {line}, {column}: not UTF-8 text (an invalid byte after {valid_bytes} valid ones)"
    )]
    NotUtf8 {
        /// 1-based line of the record.
        line: u64,
        /// The column's name (`column `error``), or its position
        /// (`field 3`) where the header is not known.
        column: String,
        /// Bytes of the field before the invalid one.
        valid_bytes: usize,
    },
    /// Reading the file failed part-way.
    #[error("line {line}: {message}")]
    Csv {
        /// 1-based line being read.
        line: u64,
        /// What went wrong, in words.
        message: String,
    },
    /// The header lacks a column every log must have.
    #[error("line 1: the header has no `{0}` column; a log has at least the columns {columns}", columns = INPUT_PY_COLUMNS.join(", "))]
    MissingColumn(&'static str),
    /// A field holds a value of the wrong kind.
    #[error("line {line}, column `{column}`: {value:?} is not {expected}")]
    Field {
        /// 1-based line of the record.
        line: u64,
        /// The column's name.
        column: &'static str,
        /// The offending text.
        value: String,
        /// What the column must hold.
        expected: &'static str,
    },
}

/// `1 field`, `7 fields`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

impl LogError {
    /// The csv crate's error in words; `header`, once read, names a
    /// column where the error is in one.
    /// `at` is where the reader stood, for errors that carry no position
    /// of their own (a failed read).
    fn from_csv(err: csv::Error, header: Option<&csv::StringRecord>, at: &csv::Position) -> Self {
        let line = err.position().unwrap_or(at).line();
        match err.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => Self::FieldCount {
                line,
                fields: *len,
                header_fields: *expected_len,
            },
            csv::ErrorKind::Utf8 { err: utf8, .. } => Self::NotUtf8 {
                line,
                column: match header.and_then(|h| h.get(utf8.field())) {
                    Some(name) => format!("column `{}`", name.trim()),
                    None => format!("field {}", utf8.field() + 1),
                },
                valid_bytes: utf8.valid_up_to(),
            },
            csv::ErrorKind::Io(e) => Self::Csv {
                line,
                message: format!("reading failed: {e}"),
            },
            // Not raised when reading records; the crate's own words.
            _ => Self::Csv {
                line,
                message: err.to_string(),
            },
        }
    }
}

/// Streams rows to CSV in the `loadgen` format.
pub struct LogWriter<W: Write> {
    csv: csv::Writer<W>,
    path: PathBuf,
    /// Whether the [`LLM_COLUMNS`] follow.
    llm: bool,
}

impl LogWriter<BufWriter<File>> {
    /// Creates (truncates) `path` and writes the header, with the LLM
    /// columns (`ttft_ms` to `itl_ms`) when `llm`.
    pub fn create(path: &Path, llm: bool) -> Result<Self, LogError> {
        let file = File::create(path).map_err(|source| LogError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::with_path(BufWriter::new(file), path.to_owned(), llm)
    }
}

impl<W: Write> LogWriter<W> {
    /// Wraps any writer and writes the header, with the LLM columns
    /// (`ttft_ms` to `itl_ms`) when `llm`.
    pub fn new(writer: W, llm: bool) -> Result<Self, LogError> {
        Self::with_path(writer, PathBuf::from("<log>"), llm)
    }

    fn with_path(writer: W, path: PathBuf, llm: bool) -> Result<Self, LogError> {
        let mut log = Self {
            csv: csv::Writer::from_writer(writer),
            path,
            llm,
        };
        let header = LOADGEN_COLUMNS
            .iter()
            .chain(if llm { &LLM_COLUMNS[..] } else { &[] })
            .chain(&RUN_COLUMNS)
            .chain(if llm { &WORKLOAD_COLUMNS[..] } else { &[] });
        log.csv.write_record(header).map_err(|e| log.io(e))?;
        Ok(log)
    }

    fn io(&self, err: csv::Error) -> LogError {
        LogError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(err.to_string()),
        }
    }

    /// Appends one row (buffered; see [`LogWriter::flush`]).
    pub fn write_row(&mut self, row: &LogRow) -> Result<(), LogError> {
        let mut record = vec![
            row.request_id.to_string(),
            format!("{:.3}", row.timestamp_ms),
            format!("{:.3}", row.latency_ms),
            row.status_code.to_string(),
            row.error.clone(),
            row.ok.to_string(),
            opt(row.batch_id),
            opt(row.batch_size),
            opt_ms(row.connect_ms),
            opt_ms(row.tls_ms),
            opt_ms(row.queue_ms),
            opt_ms(row.service_ms),
            row.output_digest.clone().unwrap_or_default(),
            row.verified.to_string(),
            row.retries.to_string(),
        ];
        if self.llm {
            let none = LlmTiming::default();
            let llm = row.llm.as_ref().unwrap_or(&none);
            let mut gaps = String::with_capacity(8 * llm.itl_ms.len());
            for (k, gap) in llm.itl_ms.iter().enumerate() {
                if k > 0 {
                    gaps.push(' ');
                }
                gaps.push_str(&format!("{gap:.3}"));
            }
            record.extend([
                opt_ms(llm.ttft_ms),
                opt_ms(llm.tpot_ms),
                opt(llm.output_tokens),
                llm.tokens_from
                    .map(TokensFrom::name)
                    .unwrap_or_default()
                    .to_owned(),
                opt_ms(llm.itl_mean_ms()),
                opt_ms(llm.itl_max_ms()),
                gaps,
            ]);
        }
        record.extend([row.phase.name().to_owned(), opt_ms(row.send_lag_ms)]);
        if self.llm {
            record.extend([
                opt(row.input_tokens),
                opt(row.max_tokens),
                opt(row.prompt_tokens),
                opt(row.session_id),
                opt(row.turn),
            ]);
        }
        self.csv.write_record(&record).map_err(|e| self.io(e))
    }

    /// Pushes buffered rows to the file, so they survive an interruption.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.csv.flush().map_err(|source| LogError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

fn opt_ms(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.3}")).unwrap_or_default()
}

/// Reads a log file of either format, without its warm-up rows.
pub fn read_log_file(path: &Path) -> Result<Log, LogError> {
    let file = File::open(path).map_err(|source| LogError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_log(file)
}

/// Reads a log of either format (the header says which), without its
/// warm-up rows: what every statistic is computed from.
pub fn read_log<R: Read>(reader: R) -> Result<Log, LogError> {
    read(reader, false)
}

/// Reads a log of either format with every row, the warm-up's included.
pub fn read_log_all<R: Read>(reader: R) -> Result<Log, LogError> {
    read(reader, true)
}

fn read<R: Read>(reader: R, warmup: bool) -> Result<Log, LogError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(reader);
    let header = match csv.headers() {
        Ok(header) => header.clone(),
        Err(e) => return Err(LogError::from_csv(e, None, csv.position())),
    };
    if header.is_empty() {
        return Err(LogError::Empty);
    }
    let columns = ColumnIndex::new(&header)?;
    let format = if columns.ok.is_some() {
        LogFormat::Loadgen
    } else {
        LogFormat::InputPy
    };
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(true) => {
                let row = columns.row(&record)?;
                if warmup || row.phase != Phase::Warmup {
                    rows.push(row);
                }
            }
            Ok(false) => break,
            Err(e) => return Err(LogError::from_csv(e, Some(&header), csv.position())),
        }
    }
    Ok(Log { format, rows })
}

/// Where each known column sits in this file's header.
struct ColumnIndex {
    base: [usize; 5],
    ok: Option<usize>,
    batch_id: Option<usize>,
    batch_size: Option<usize>,
    connect_ms: Option<usize>,
    tls_ms: Option<usize>,
    queue_ms: Option<usize>,
    service_ms: Option<usize>,
    output_digest: Option<usize>,
    verified: Option<usize>,
    retries: Option<usize>,
    /// `ttft_ms, tpot_ms, output_tokens, tokens_from, itl_ms`, when the
    /// log has them (`itl_mean_ms` and `itl_max_ms` follow from `itl_ms`).
    llm: Option<[usize; 5]>,
    phase: Option<usize>,
    send_lag_ms: Option<usize>,
    input_tokens: Option<usize>,
    max_tokens: Option<usize>,
    prompt_tokens: Option<usize>,
    session_id: Option<usize>,
    turn: Option<usize>,
}

impl ColumnIndex {
    fn new(header: &csv::StringRecord) -> Result<Self, LogError> {
        // Every name looked up is one of the documented COLUMNS.
        let find = |name: &'static str| {
            debug_assert!(is_column(name), "`{name}` is not in log::COLUMNS");
            header.iter().position(|h| h.trim() == name)
        };
        let mut base = [0; 5];
        for (slot, name) in base.iter_mut().zip(INPUT_PY_COLUMNS) {
            *slot = find(name).ok_or(LogError::MissingColumn(name))?;
        }
        Ok(Self {
            base,
            ok: find("ok"),
            batch_id: find("batch_id"),
            batch_size: find("batch_size"),
            connect_ms: find("connect_ms"),
            tls_ms: find("tls_ms"),
            queue_ms: find("queue_ms"),
            service_ms: find("service_ms"),
            output_digest: find("output_digest"),
            verified: find("verified"),
            retries: find("retries"),
            llm: match (
                find("ttft_ms"),
                find("tpot_ms"),
                find("output_tokens"),
                find("tokens_from"),
                find("itl_ms"),
            ) {
                (Some(a), Some(b), Some(c), Some(d), Some(e)) => Some([a, b, c, d, e]),
                _ => None,
            },
            phase: find("phase"),
            send_lag_ms: find("send_lag_ms"),
            input_tokens: find("input_tokens"),
            max_tokens: find("max_tokens"),
            prompt_tokens: find("prompt_tokens"),
            session_id: find("session_id"),
            turn: find("turn"),
        })
    }

    fn llm(&self, field: &Field<'_>) -> Result<Option<LlmTiming>, LogError> {
        let Some([ttft, tpot, tokens, from, itl]) = self.llm else {
            return Ok(None);
        };
        let tokens_from = match field.text(from) {
            "" => None,
            "usage" => Some(TokensFrom::Usage),
            "counted" => Some(TokensFrom::Counted),
            _ => return Err(field.bad(from, "tokens_from", "usage, counted or empty")),
        };
        let mut itl_ms = Vec::new();
        for gap in field.text(itl).split_ascii_whitespace() {
            match gap.parse::<f64>() {
                Ok(g) if g.is_finite() && g >= 0.0 => itl_ms.push(g),
                _ => {
                    return Err(field.bad(
                        itl,
                        "itl_ms",
                        "space-separated finite, non-negative numbers of ms",
                    ))
                }
            }
        }
        let timing = LlmTiming {
            ttft_ms: field.optional_latency(Some(ttft), "ttft_ms")?,
            tpot_ms: field.optional_latency(Some(tpot), "tpot_ms")?,
            output_tokens: field.optional(
                Some(tokens),
                "output_tokens",
                "a non-negative integer",
            )?,
            tokens_from,
            itl_ms,
        };
        // A row of a non-streamed or failed request may have nothing.
        Ok((timing != LlmTiming::default()).then_some(timing))
    }

    fn row(&self, record: &csv::StringRecord) -> Result<LogRow, LogError> {
        let line = record.position().map_or(0, csv::Position::line);
        let field = Field { record, line };
        let [id, ts, lat, status, error] = self.base;
        let status_code = field.parse(status, "status_code", "an HTTP status (0-999)")?;
        let error = field.text(error).to_owned();
        let ok = match self.ok {
            Some(i) => field.parse(i, "ok", "true or false")?,
            None => (200..300).contains(&status_code) && error.is_empty(),
        };
        Ok(LogRow {
            request_id: field.parse(id, "request_id", "a non-negative integer")?,
            timestamp_ms: field.finite(ts, "timestamp_ms")?,
            latency_ms: field.latency(lat, "latency_ms")?,
            status_code,
            error,
            ok,
            batch_id: field.optional(self.batch_id, "batch_id", "a non-negative integer")?,
            batch_size: field.optional(self.batch_size, "batch_size", "a positive integer")?,
            connect_ms: field.optional_latency(self.connect_ms, "connect_ms")?,
            tls_ms: field.optional_latency(self.tls_ms, "tls_ms")?,
            queue_ms: field.optional_latency(self.queue_ms, "queue_ms")?,
            service_ms: field.optional_latency(self.service_ms, "service_ms")?,
            output_digest: self
                .output_digest
                .map(|i| field.text(i).to_owned())
                .filter(|d| !d.is_empty()),
            // A log written before the column existed verified nothing it
            // can show.
            verified: match self.verified {
                Some(i) => field.parse(i, "verified", "true or false")?,
                None => false,
            },
            retries: field
                .optional(self.retries, "retries", "a non-negative integer")?
                .unwrap_or(0),
            llm: self.llm(&field)?,
            // A log written before the column existed has no warm-up rows.
            phase: match self.phase.map(|i| field.text(i)) {
                None | Some("" | "measure") => Phase::Measure,
                Some("warmup") => Phase::Warmup,
                Some(_) => {
                    return Err(field.bad(
                        self.phase.unwrap_or(0),
                        "phase",
                        "warmup, measure or empty",
                    ))
                }
            },
            send_lag_ms: field.optional_latency(self.send_lag_ms, "send_lag_ms")?,
            input_tokens: field.optional(
                self.input_tokens,
                "input_tokens",
                "a positive integer",
            )?,
            max_tokens: field.optional(self.max_tokens, "max_tokens", "a positive integer")?,
            prompt_tokens: field.optional(
                self.prompt_tokens,
                "prompt_tokens",
                "a non-negative integer",
            )?,
            session_id: field.optional(self.session_id, "session_id", "a non-negative integer")?,
            turn: field.optional(self.turn, "turn", "a positive integer")?,
        })
    }
}

/// One record's fields, parsed with errors that point at line and column.
struct Field<'a> {
    record: &'a csv::StringRecord,
    line: u64,
}

impl Field<'_> {
    fn text(&self, index: usize) -> &str {
        self.record.get(index).unwrap_or_default().trim()
    }

    fn bad(&self, index: usize, column: &'static str, expected: &'static str) -> LogError {
        LogError::Field {
            line: self.line,
            column,
            value: self.text(index).to_owned(),
            expected,
        }
    }

    fn parse<T: std::str::FromStr>(
        &self,
        index: usize,
        column: &'static str,
        expected: &'static str,
    ) -> Result<T, LogError> {
        self.text(index)
            .parse()
            .map_err(|_| self.bad(index, column, expected))
    }

    fn finite(&self, index: usize, column: &'static str) -> Result<f64, LogError> {
        const EXPECTED: &str = "a finite number";
        let value: f64 = self.parse(index, column, EXPECTED)?;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(self.bad(index, column, EXPECTED))
        }
    }

    fn latency(&self, index: usize, column: &'static str) -> Result<f64, LogError> {
        const EXPECTED: &str = "a finite, non-negative number of ms";
        let value: f64 = self.parse(index, column, EXPECTED)?;
        if value.is_finite() && value >= 0.0 {
            Ok(value)
        } else {
            Err(self.bad(index, column, EXPECTED))
        }
    }

    fn optional<T: std::str::FromStr>(
        &self,
        index: Option<usize>,
        column: &'static str,
        expected: &'static str,
    ) -> Result<Option<T>, LogError> {
        match index {
            Some(i) if !self.text(i).is_empty() => self.parse(i, column, expected).map(Some),
            _ => Ok(None),
        }
    }

    fn optional_latency(
        &self,
        index: Option<usize>,
        column: &'static str,
    ) -> Result<Option<f64>, LogError> {
        match index {
            Some(i) if !self.text(i).is_empty() => self.latency(i, column).map(Some),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rich_row() -> LogRow {
        LogRow {
            request_id: 3,
            timestamp_ms: 1_700_000_000_123.5,
            latency_ms: 104.25,
            status_code: 200,
            error: String::new(),
            ok: true,
            batch_id: Some(1),
            batch_size: Some(10),
            connect_ms: Some(0.25),
            tls_ms: Some(1.75),
            queue_ms: Some(1.5),
            service_ms: Some(100.125),
            output_digest: Some("00ff00ff00ff00ff".into()),
            verified: true,
            retries: 1,
            llm: None,
            ..LogRow::default()
        }
    }

    #[test]
    fn loadgen_rows_round_trip() {
        let failed = LogRow {
            request_id: 4,
            latency_ms: 30_000.0,
            error: "timeout, after \"30 s\"\nretry".into(),
            ..LogRow::default()
        };
        let mut buf = Vec::new();
        let mut w = LogWriter::new(&mut buf, false).unwrap();
        w.write_row(&rich_row()).unwrap();
        w.write_row(&failed).unwrap();
        w.flush().unwrap();
        drop(w);
        let log = read_log(buf.as_slice()).unwrap();
        assert_eq!(log.format, LogFormat::Loadgen);
        assert_eq!(log.rows, vec![rich_row(), failed]);
    }

    #[test]
    fn llm_rows_round_trip_and_bad_gaps_are_errors() {
        let streamed = LogRow {
            llm: Some(LlmTiming {
                ttft_ms: Some(200.5),
                tpot_ms: Some(20.25),
                output_tokens: Some(3),
                tokens_from: Some(TokensFrom::Usage),
                itl_ms: vec![20.125, 20.375],
            }),
            ..rich_row()
        };
        let failed = LogRow {
            request_id: 9,
            error: "truncated_stream".into(),
            ..LogRow::default()
        };
        let mut buf = Vec::new();
        let mut w = LogWriter::new(&mut buf, true).unwrap();
        w.write_row(&streamed).unwrap();
        w.write_row(&failed).unwrap();
        w.flush().unwrap();
        drop(w);
        let text = String::from_utf8(buf.clone()).unwrap();
        let header = text.lines().next().unwrap();
        assert!(
            header.ends_with(
                ",ttft_ms,tpot_ms,output_tokens,tokens_from,itl_mean_ms,itl_max_ms,itl_ms,\
                 phase,send_lag_ms,input_tokens,max_tokens,prompt_tokens,session_id,turn"
            ),
            "{header}"
        );
        assert!(
            text.contains(",200.500,20.250,3,usage,20.250,20.375,20.125 20.375,measure,,,,,,\n"),
            "{text}"
        );
        let log = read_log(buf.as_slice()).unwrap();
        assert_eq!(log.rows, vec![streamed, failed]);
        let bad = text.replace("20.125 20.375", "20.125 x");
        let err = read_log(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("itl_ms"), "{err}");
        let bad = text.replace(",usage,", ",guess,");
        let err = read_log(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("tokens_from"), "{err}");
    }

    #[test]
    fn retries_follow_the_loadgen_columns_and_older_logs_read_as_zero() {
        let mut buf = Vec::new();
        let mut w = LogWriter::new(&mut buf, true).unwrap();
        w.write_row(&rich_row()).unwrap();
        w.flush().unwrap();
        drop(w);
        let text = String::from_utf8(buf).unwrap();
        let header = text.lines().next().unwrap();
        assert!(
            header.contains(",output_digest,verified,retries,ttft_ms,"),
            "{header}"
        );
        // A log written before the column existed: the same row, without it.
        let old = "request_id,timestamp_ms,latency_ms,status_code,error,ok,batch_id,batch_size,\
                   connect_ms,tls_ms,queue_ms,service_ms,output_digest\n\
                   3,1700000000123.500,104.250,200,,true,1,10,0.250,1.750,1.500,100.125,00ff00ff00ff00ff\n";
        let log = read_log(old.as_bytes()).unwrap();
        assert_eq!(log.format, LogFormat::Loadgen);
        assert_eq!(
            log.rows,
            vec![LogRow {
                retries: 0,
                verified: false,
                ..rich_row()
            }]
        );
        let bad = text.replace(",00ff00ff00ff00ff,true,1,", ",00ff00ff00ff00ff,true,-1,");
        let err = read_log(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("retries"), "{err}");
    }

    #[test]
    fn workload_columns_round_trip_and_warmup_rows_are_left_out_unless_asked() {
        let turn = LogRow {
            request_id: 7,
            llm: Some(LlmTiming {
                ttft_ms: Some(12.5),
                ..LlmTiming::default()
            }),
            send_lag_ms: Some(0.125),
            input_tokens: Some(512),
            max_tokens: Some(64),
            prompt_tokens: Some(538),
            session_id: Some(3),
            turn: Some(2),
            ..rich_row()
        };
        let warm = LogRow {
            request_id: 0,
            phase: Phase::Warmup,
            ..turn.clone()
        };
        for llm in [true, false] {
            let mut buf = Vec::new();
            let mut w = LogWriter::new(&mut buf, llm).unwrap();
            w.write_row(&warm).unwrap();
            w.write_row(&turn).unwrap();
            w.flush().unwrap();
            drop(w);
            let text = String::from_utf8(buf.clone()).unwrap();
            assert!(text.contains(",warmup,0.125"), "{text}");
            let expected = if llm {
                turn.clone()
            } else {
                // Without the LLM columns only the run's columns are written.
                LogRow {
                    llm: None,
                    input_tokens: None,
                    max_tokens: None,
                    prompt_tokens: None,
                    session_id: None,
                    turn: None,
                    ..turn.clone()
                }
            };
            assert_eq!(
                read_log(buf.as_slice()).unwrap().rows,
                vec![expected.clone()]
            );
            let all = read_log_all(buf.as_slice()).unwrap().rows;
            assert_eq!(all.len(), 2);
            assert_eq!(
                (all[0].phase, all[1].phase),
                (Phase::Warmup, Phase::Measure)
            );
        }
        let mut buf = Vec::new();
        let mut w = LogWriter::new(&mut buf, true).unwrap();
        w.write_row(&turn).unwrap();
        w.flush().unwrap();
        drop(w);
        let text = String::from_utf8(buf).unwrap();
        for (from, to, column) in [
            (",measure,", ",warm,", "phase"),
            (",512,64,538,3,2", ",0.5,64,538,3,2", "input_tokens"),
            (",512,64,538,3,2", ",512,64,538,3,0x", "turn"),
        ] {
            let bad = text.replace(from, to);
            let err = read_log(bad.as_bytes()).unwrap_err().to_string();
            assert!(err.contains("line 2") && err.contains(column), "{err}");
        }
    }

    #[test]
    fn input_py_rows_derive_ok_from_status_and_error() {
        let csv = "request_id,timestamp_ms,latency_ms,status_code,error\n\
                   0,1.5,120.25,200,\n\
                   1,2.5,30000.0,0,ReadTimeout\n\
                   2,3.5,5.0,503,\n";
        let log = read_log(csv.as_bytes()).unwrap();
        assert_eq!(log.format, LogFormat::InputPy);
        let ok: Vec<bool> = log.rows.iter().map(|r| r.ok).collect();
        assert_eq!(ok, [true, false, false]);
        assert_eq!(log.rows[1].error, "ReadTimeout");
        assert_eq!(log.rows[0].batch_size, None);
    }

    #[test]
    fn bad_fields_name_line_and_column() {
        let csv = "request_id,timestamp_ms,latency_ms,status_code,error\n0,1,2,200,\n1,1,-3,200,\n";
        let err = read_log(csv.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("latency_ms"),
            "{err}"
        );
        let csv = "request_id,timestamp_ms,latency_ms,status_code,error\nx,1,2,200,\n";
        let err = read_log(csv.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("request_id"),
            "{err}"
        );
    }

    #[test]
    fn ragged_rows_and_missing_columns_are_errors() {
        let csv = "request_id,timestamp_ms,latency_ms,status_code,error\n0,1,2\n";
        assert!(matches!(
            read_log(csv.as_bytes()),
            Err(LogError::FieldCount { line: 2, .. })
        ));
        let csv = "request_id,latency_ms\n0,1\n";
        assert!(matches!(
            read_log(csv.as_bytes()),
            Err(LogError::MissingColumn("timestamp_ms"))
        ));
        let bytes: &[u8] =
            b"request_id,timestamp_ms,latency_ms,status_code,error\n0,1,2,200,\xff\n";
        assert!(matches!(read_log(bytes), Err(LogError::NotUtf8 { .. })));
    }

    #[test]
    fn empty_log_has_no_rows() {
        let log = read_log("request_id,timestamp_ms,latency_ms,status_code,error\n".as_bytes());
        assert_eq!(log.unwrap().rows.len(), 0);
    }
}
