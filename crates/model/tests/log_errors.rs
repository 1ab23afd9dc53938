//! Every way `read_log` refuses a file, and the plain words it says it in:
//! the line, the column where there is one, and what was wrong, never the
//! CSV parser's internals.

use std::io::Read;

use model::log::{read_log, LogError, LOADGEN_COLUMNS};

const HEADER: &str = "request_id,timestamp_ms,latency_ms,status_code,error";

fn message(bytes: &[u8]) -> String {
    let err = read_log(bytes).unwrap_err();
    let text = err.to_string();
    // Nothing of Rust's debug output: no struct names, braces or `Some(`.
    for internal in [
        "UnequalLengths",
        "Position",
        "Some(",
        "{",
        "Utf8Error",
        "Error",
    ] {
        assert!(!text.contains(internal), "{internal} in {text:?}");
    }
    text
}

#[test]
fn a_line_with_too_few_or_too_many_fields_says_how_many() {
    let header = LOADGEN_COLUMNS.join(",");
    let good = "0,1.0,2.0,200,,true,0,1,,,,,,false,0";
    let mut text = format!("{header}\n");
    for _ in 0..24 {
        text.push_str(good);
        text.push('\n');
    }
    text.push_str("25,1.0,2.0,200,,true,0\n");
    assert_eq!(
        message(text.as_bytes()),
        format!(
            "line 26: 7 fields, the header has {}",
            LOADGEN_COLUMNS.len()
        )
    );
    assert_eq!(
        message(format!("{HEADER}\n0\n").as_bytes()),
        "line 2: 1 field, the header has 5"
    );
    assert_eq!(
        message(format!("{HEADER}\n0,1,2,200,,extra\n").as_bytes()),
        "line 2: 6 fields, the header has 5"
    );
    assert!(matches!(
        read_log(format!("{HEADER}\n0\n").as_bytes()),
        Err(LogError::FieldCount {
            line: 2,
            fields: 1,
            header_fields: 5
        })
    ));
}

#[test]
fn bytes_that_are_not_utf8_name_the_column() {
    let bytes = [HEADER.as_bytes(), b"\n0,1,2,200,ok\xff\n"].concat();
    assert_eq!(
        message(&bytes),
        "line 2, column `error`: not UTF-8 text (an invalid byte after 2 valid ones)"
    );
    // In the header itself there are no names yet: its position.
    let bytes = b"request_id,timestamp_ms,\xfflatency_ms\n";
    assert_eq!(
        message(bytes),
        "line 1, field 3: not UTF-8 text (an invalid byte after 0 valid ones)"
    );
}

#[test]
fn an_empty_file_or_a_missing_column_says_what_a_log_needs() {
    assert_eq!(
        message(b""),
        "the file is empty: a log starts with a header line such as \
         request_id,timestamp_ms,latency_ms,status_code,error"
    );
    assert_eq!(
        message(b"request_id,latency_ms\n0,5\n"),
        "line 1: the header has no `timestamp_ms` column; a log has at least the columns \
         request_id, timestamp_ms, latency_ms, status_code, error"
    );
}

#[test]
fn a_bad_value_names_line_column_and_what_the_column_holds() {
    assert_eq!(
        message(format!("{HEADER}\n0,1,2,200,\n1,1,-3,200,\n").as_bytes()),
        "line 3, column `latency_ms`: \"-3\" is not a finite, non-negative number of ms"
    );
    assert_eq!(
        message(format!("{HEADER}\n0,1,2,99999,\n").as_bytes()),
        "line 2, column `status_code`: \"99999\" is not an HTTP status (0-999)"
    );
}

/// Yields `good`, then fails as a disk or a network mount might.
struct FailingReader {
    good: &'static [u8],
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.good.is_empty() {
            return Err(std::io::Error::other("device went away"));
        }
        let n = buf.len().min(self.good.len());
        buf[..n].copy_from_slice(&self.good[..n]);
        self.good = &self.good[n..];
        Ok(n)
    }
}

#[test]
fn a_read_that_fails_part_way_says_where_and_why() {
    let reader = FailingReader {
        good: b"request_id,timestamp_ms,latency_ms,status_code,error\n0,1,2,200,\n1,1,",
    };
    let text = read_log(reader).unwrap_err().to_string();
    assert_eq!(text, "line 3: reading failed: device went away");
}
