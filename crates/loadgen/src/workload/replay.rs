//! A trace as a schedule: every row of the window (`--trace-start`,
//! `--trace-duration`, on the trace's own clock from its first row) is due
//! at its time after the window's start, divided by `--trace-speedup`.
//!
//! [`Trace::open`] reads the whole file once before any request (every
//! row checked, the window counted, the mean lengths taken for the
//! warm-up), holding nothing but counts; the replay then reads the file
//! again, a row at a time, as the schedule pulls them ([`TraceArrivals`]),
//! so a trace of millions of rows replays in bounded memory. Only
//! `--trace-sort` holds the rows, to sort them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use model::summary::TraceSummary;

use super::trace::{self, TraceError, TraceFormat, TraceReader, TraceRow};
use super::TraceOptions;
use crate::distributed::Shard;

/// A checked trace, ready to replay.
#[derive(Debug)]
pub(crate) struct Trace {
    path: PathBuf,
    format: TraceFormat,
    speedup: f64,
    /// The window on the trace's clock, ms from its first row.
    start_ms: f64,
    end_ms: Option<f64>,
    /// The first row's time, ms on the trace's clock.
    first_ms: f64,
    rows: u64,
    failed_rows: u64,
    in_window: u64,
    /// Last due row of the window, ms from the window's start (trace clock).
    last_rel_ms: f64,
    input_sum: u64,
    output_sum: u64,
    /// The rows in time order, with `--trace-sort`.
    sorted: Option<Arc<Vec<TraceRow>>>,
}

/// Counts of the rows in a window.
#[derive(Default)]
struct Tally {
    in_window: u64,
    last_rel_ms: f64,
    input_sum: u64,
    output_sum: u64,
}

impl Tally {
    fn add(&mut self, row: &TraceRow, first_ms: f64, start_ms: f64, end_ms: Option<f64>) {
        let rel = row.at_ms - first_ms;
        if row.failed || rel < start_ms || end_ms.is_some_and(|end| rel >= end) {
            return;
        }
        self.in_window += 1;
        self.last_rel_ms = self.last_rel_ms.max(rel - start_ms);
        self.input_sum += u64::from(row.input_tokens);
        self.output_sum += u64::from(row.output_tokens);
    }
}

impl Trace {
    /// Detects the format (unless given), reads and checks every row, and
    /// counts the window; an empty window is an error.
    pub(crate) fn open(options: &TraceOptions) -> Result<Self, TraceError> {
        let path = &options.path;
        let format = match options.format {
            Some(format) => format,
            None => trace::detect(path)?,
        };
        let start_ms = options.start.as_secs_f64() * 1000.0;
        let end_ms = options
            .duration
            .map(|d| start_ms + d.as_secs_f64() * 1000.0);
        let mut tally = Tally::default();
        let mut first: Option<f64> = None;
        let mut held = options.sort.then(Vec::new);
        let scanned = trace::scan(path, format, options.sort, |row| match &mut held {
            Some(rows) => rows.push(row.clone()),
            None => {
                // In time order (or the scan fails): the first row is the
                // earliest.
                let first_ms = *first.get_or_insert(row.at_ms);
                tally.add(row, first_ms, start_ms, end_ms);
            }
        })?;
        let sorted = held.map(|mut rows| {
            // Stable: rows of one time keep their file order.
            rows.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
            let first_ms = rows.first().map_or(0.0, |r| r.at_ms);
            for row in &rows {
                tally.add(row, first_ms, start_ms, end_ms);
            }
            Arc::new(rows)
        });
        if tally.in_window == 0 {
            return Err(TraceError::Empty {
                path: path.clone(),
                why: format!(
                    " in the window of --trace-start {:.3} s{} ({} rows span {:.3} s from the first)",
                    start_ms / 1000.0,
                    end_ms.map_or(String::new(), |e| format!(
                        " --trace-duration {:.3} s",
                        (e - start_ms) / 1000.0
                    )),
                    scanned.rows,
                    (scanned.last_ms - scanned.first_ms) / 1000.0
                ),
            });
        }
        Ok(Self {
            path: path.clone(),
            format,
            speedup: options.speedup,
            start_ms,
            end_ms,
            first_ms: scanned.first_ms,
            rows: scanned.rows,
            failed_rows: scanned.failed_rows,
            in_window: tally.in_window,
            last_rel_ms: tally.last_rel_ms,
            input_sum: tally.input_sum,
            output_sum: tally.output_sum,
            sorted,
        })
    }

    /// Mean input and output lengths of the window's rows.
    pub(crate) fn mean_lengths(&self) -> (u32, u32) {
        let n = self.in_window.max(1);
        let mean = |sum: u64| u32::try_from(sum.div_ceil(n)).unwrap_or(u32::MAX);
        (mean(self.input_sum), mean(self.output_sum))
    }

    /// The replay's length, s: from the window's start to its last row.
    pub(crate) fn span_s(&self) -> f64 {
        self.last_rel_ms / 1000.0 / self.speedup
    }

    /// The window's mean rate on the replay's clock, requests/s.
    pub(crate) fn mean_rate_rps(&self) -> f64 {
        if self.span_s() > 0.0 {
            (self.in_window.saturating_sub(1)) as f64 / self.span_s()
        } else {
            0.0
        }
    }

    /// Rows to replay (of every shard).
    #[cfg(test)]
    pub(crate) fn in_window(&self) -> u64 {
        self.in_window
    }

    /// The start line.
    pub(crate) fn describe(&self) -> String {
        format!(
            "trace: {} ({}), {} rows{}; replaying {} rows over {:.3} s (speedup {}), latency from each row's time",
            self.path.display(),
            self.format.name(),
            self.rows,
            if self.failed_rows > 0 {
                format!(
                    ", {} failed in production (0 response tokens) and skipped",
                    self.failed_rows
                )
            } else {
                String::new()
            },
            self.in_window,
            self.span_s(),
            self.speedup
        )
    }

    /// What the summary says of it.
    pub(crate) fn summary(&self) -> TraceSummary {
        TraceSummary {
            file: self.path.display().to_string(),
            format: self.format.name().to_owned(),
            rows: self.rows,
            in_window: self.in_window,
            failed_rows_skipped: self.failed_rows,
            speedup: self.speedup,
            span_s: self.span_s(),
        }
    }

    /// The schedule `shard` keeps: the window's rows numbered 0, 1, ...
    /// in time order, row `k` kept when the shard keeps id `k`.
    pub(crate) fn arrivals(&self, shard: Shard) -> Result<TraceArrivals, TraceError> {
        let rows: Box<dyn Iterator<Item = Result<TraceRow, TraceError>> + Send> = match &self.sorted
        {
            Some(rows) => {
                let rows = rows.clone();
                Box::new((0..rows.len()).map(move |i| Ok(rows[i].clone())))
            }
            None => Box::new(TraceReader::open(&self.path, self.format)?),
        };
        Ok(TraceArrivals {
            rows,
            first_ms: self.first_ms,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            speedup: self.speedup,
            shard,
            next_id: 0,
            error: Arc::default(),
        })
    }
}

/// The trace's rows as they come due: `(request id, offset from the
/// replay's start in s, row)`.
pub(crate) struct TraceArrivals {
    rows: Box<dyn Iterator<Item = Result<TraceRow, TraceError>> + Send>,
    first_ms: f64,
    start_ms: f64,
    end_ms: Option<f64>,
    speedup: f64,
    shard: Shard,
    next_id: u64,
    error: Arc<Mutex<Option<String>>>,
}

impl TraceArrivals {
    /// Where a failure to read the file again is said (the run stops
    /// replaying there and its summary warns).
    pub(crate) fn error_slot(&self) -> Arc<Mutex<Option<String>>> {
        self.error.clone()
    }
}

impl Iterator for TraceArrivals {
    type Item = (u64, f64, TraceRow);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let row = match self.rows.next()? {
                Ok(row) => row,
                Err(e) => {
                    if let Ok(mut slot) = self.error.lock() {
                        *slot = Some(format!("the trace could not be read again during the replay, which stopped there: {e}"));
                    }
                    return None;
                }
            };
            let rel = row.at_ms - self.first_ms;
            if row.failed || rel < self.start_ms {
                continue;
            }
            // In time order: past the window's end, nothing more is due.
            if self.end_ms.is_some_and(|end| rel >= end) {
                return None;
            }
            let id = self.next_id;
            self.next_id += 1;
            if self.shard.keeps(id) {
                let offset_s = (rel - self.start_ms) / 1000.0 / self.speedup;
                return Some((id, offset_s, row));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn mooncake(times: &[f64]) -> String {
        times
            .iter()
            .map(|t| {
                format!("{{\"timestamp\": {t}, \"input_length\": 10, \"output_length\": 2, \"hash_ids\": [1]}}\n")
            })
            .collect()
    }

    #[test]
    fn the_window_and_the_speedup_set_the_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "m.jsonl",
            &mooncake(&[1000.0, 1500.0, 2000.0, 4000.0, 9000.0]),
        );
        let options = TraceOptions {
            speedup: 2.0,
            start: Duration::from_millis(500),
            duration: Some(Duration::from_secs(3)),
            ..TraceOptions::new(&path)
        };
        let trace = Trace::open(&options).unwrap();
        // Rows at +500, +1000, +3000 ms are in [500, 3500).
        assert_eq!(trace.in_window(), 3);
        assert!((trace.span_s() - 1.25).abs() < 1e-12);
        let due: Vec<(u64, f64)> = trace
            .arrivals(Shard::WHOLE)
            .unwrap()
            .map(|(id, t, _)| (id, t))
            .collect();
        assert_eq!(due, [(0, 0.0), (1, 0.25), (2, 1.25)]);
        // Two shards split the rows by id and keep their times.
        let odd: Vec<(u64, f64)> = trace
            .arrivals(Shard { index: 1, count: 2 })
            .unwrap()
            .map(|(id, t, _)| (id, t))
            .collect();
        assert_eq!(odd, [(1, 0.25)]);
        assert!(trace
            .describe()
            .contains("replaying 3 rows over 1.250 s (speedup 2)"));
    }

    #[test]
    fn sorting_holds_the_rows_and_an_empty_window_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "o.jsonl", &mooncake(&[3000.0, 1000.0, 2000.0]));
        let err = Trace::open(&TraceOptions::new(&path))
            .unwrap_err()
            .to_string();
        assert!(err.contains("give --trace-sort"), "{err}");
        let sorted = Trace::open(&TraceOptions {
            sort: true,
            ..TraceOptions::new(&path)
        })
        .unwrap();
        let due: Vec<f64> = sorted
            .arrivals(Shard::WHOLE)
            .unwrap()
            .map(|(_, t, _)| t)
            .collect();
        assert_eq!(due, [0.0, 1.0, 2.0]);
        let err = Trace::open(&TraceOptions {
            start: Duration::from_secs(60),
            sort: true,
            ..TraceOptions::new(&path)
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("no row to replay in the window of --trace-start 60.000 s"),
            "{err}"
        );
    }
}
