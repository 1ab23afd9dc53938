//! The Prometheus text exposition format (version 0.0.4, and the
//! OpenMetrics text that servers send when asked for it), read into flat
//! samples: a histogram's `_bucket`, `_sum` and `_count` lines each stay a
//! sample under their own name, as `model::server_metrics` keeps them.
//!
//! Written here rather than taken from a crate: the crates on offer either
//! split label values on commas and quotes with a regex (an escaped quote
//! or a comma inside a value breaks them) or pull in a parser generator for
//! what is a line-oriented format of a page's length. What this reader
//! accepts:
//!
//! - `# HELP`, `# TYPE` and other comment lines, blank lines (skipped);
//!   `# EOF` ends the exposition (OpenMetrics);
//! - `name{label="value",...} value [timestamp]`, labels optional, a
//!   trailing comma allowed, values escaped with `\\`, `\"` and `\n`;
//!   the quoted names of the UTF-8 form (`{"name", label="value"}`);
//! - values as Go writes floats, `+Inf`, `-Inf` and `NaN` included; a
//!   timestamp and an OpenMetrics exemplar (` # {...} value`) after the
//!   value are read past.
//!
//! Anything else is an error naming the line, so an HTML page or a JSON
//! answer from a wrong URL is told apart from a server's metrics.

use std::collections::BTreeMap;

/// One sample of one exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric's name as exposed (`vllm:num_requests_running`,
    /// `vllm:request_queue_time_seconds_bucket`).
    pub name: String,
    /// Its labels, values unescaped.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Why a text is not a Prometheus exposition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not Prometheus text: line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong there.
    pub reason: String,
}

/// Every sample of `text`, in the order written.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if comment.trim() == "EOF" {
                break;
            }
            continue;
        }
        let sample = sample(line).map_err(|reason| ParseError {
            line: index + 1,
            reason,
        })?;
        samples.push(sample);
    }
    Ok(samples)
}

/// A sample line: name, optional labels, value, optional timestamp.
fn sample(line: &str) -> Result<Sample, String> {
    let mut cursor = Cursor { rest: line };
    let mut name = cursor.name();
    let mut labels = BTreeMap::new();
    // Blanks may stand between the name and its labels, as Prometheus's
    // own reader allows.
    cursor.skip_space();
    if cursor.eat('{') {
        let (quoted_name, read) = label_set(&mut cursor)?;
        if let Some(quoted) = quoted_name {
            if !name.is_empty() {
                return Err(format!(
                    "a metric named both {name:?} and {quoted:?} inside the braces"
                ));
            }
            name = quoted;
        }
        labels = read;
    }
    if name.is_empty() {
        return Err(format!("no metric name at {:?}", cursor.rest_shown()));
    }
    cursor.skip_space();
    let value_text = cursor.word();
    if value_text.is_empty() {
        return Err(format!("{name}: no value"));
    }
    let value =
        number(value_text).ok_or_else(|| format!("{name}: {value_text:?} is not a number"))?;
    cursor.skip_space();
    // A timestamp (integer ms), then maybe an exemplar: neither is kept.
    let timestamp = cursor.word();
    if !timestamp.is_empty() {
        if timestamp.starts_with('#') {
            return Ok(Sample {
                name,
                labels,
                value,
            });
        }
        if number(timestamp).is_none() {
            return Err(format!("{name}: timestamp {timestamp:?} is not a number"));
        }
        cursor.skip_space();
    }
    if !cursor.rest.is_empty() && !cursor.rest.starts_with('#') {
        return Err(format!(
            "{name}: unexpected {:?} after the value",
            cursor.rest_shown()
        ));
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// The labels between `{` (already read) and `}`; the first item may be a
/// quoted metric name (the UTF-8 form).
fn label_set(
    cursor: &mut Cursor<'_>,
) -> Result<(Option<String>, BTreeMap<String, String>), String> {
    let mut labels = BTreeMap::new();
    let mut quoted_name = None;
    let mut first = true;
    loop {
        cursor.skip_space();
        if cursor.eat('}') {
            return Ok((quoted_name, labels));
        }
        let key = if cursor.peek() == Some('"') {
            let text = quoted(cursor)?;
            cursor.skip_space();
            if first && cursor.peek() != Some('=') {
                quoted_name = Some(text);
                first = false;
                if !cursor.eat(',') && cursor.peek() != Some('}') {
                    return Err(format!("expected , or }} at {:?}", cursor.rest_shown()));
                }
                continue;
            }
            text
        } else {
            let key = cursor.name();
            if key.is_empty() {
                return Err(format!(
                    "expected a label name at {:?}",
                    cursor.rest_shown()
                ));
            }
            key
        };
        first = false;
        cursor.skip_space();
        if !cursor.eat('=') {
            return Err(format!(
                "label {key}: expected = at {:?}",
                cursor.rest_shown()
            ));
        }
        cursor.skip_space();
        let value = quoted(cursor).map_err(|e| format!("label {key}: {e}"))?;
        labels.insert(key, value);
        cursor.skip_space();
        if !cursor.eat(',') && cursor.peek() != Some('}') {
            return Err(format!("expected , or }} at {:?}", cursor.rest_shown()));
        }
    }
}

/// A double-quoted string with `\\`, `\"` and `\n` escapes (any other
/// backslash is kept, as Prometheus itself keeps it).
fn quoted(cursor: &mut Cursor<'_>) -> Result<String, String> {
    if !cursor.eat('"') {
        return Err(format!(
            "expected a quoted value at {:?}",
            cursor.rest_shown()
        ));
    }
    let mut out = String::new();
    let mut chars = cursor.rest.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => {
                cursor.rest = &cursor.rest[at + 1..];
                return Ok(out);
            }
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("a quoted value never ends".to_owned())
}

/// A sample value as Go prints floats (`+Inf`, `-Inf`, `NaN` included).
fn number(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

/// What is left of a line, read from the front.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    /// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (colons are for
    /// metric names only, but a label with one is read rather than
    /// refused).
    fn name(&mut self) -> String {
        let end = self
            .rest
            .char_indices()
            .find(|&(i, c)| {
                !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
            })
            .map_or(self.rest.len(), |(i, _)| i);
        let (name, rest) = self.rest.split_at(end);
        self.rest = rest;
        name.to_owned()
    }

    /// Up to the next space.
    fn word(&mut self) -> &'a str {
        let end = self.rest.find([' ', '\t']).unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        word
    }

    fn rest_shown(&self) -> String {
        self.rest.chars().take(40).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn find<'a>(samples: &'a [Sample], name: &str, pairs: &[(&str, &str)]) -> &'a Sample {
        let want = labels(pairs);
        samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .unwrap_or_else(|| panic!("no {name} {pairs:?} in {samples:#?}"))
    }

    /// A vLLM-style exposition: gauges and counters with labels, a
    /// histogram, escapes in label values, a timestamp, an exemplar, the
    /// UTF-8 quoted name form, and `# EOF` with text after it.
    const VLLM: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta/llama-3"} 4.0
vllm:num_requests_waiting{engine="0",model_name="meta/llama-3"} 7.0
vllm:kv_cache_usage_perc{engine="0",model_name="meta/llama-3",} 0.375
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="meta/llama-3"} 2.0 1733300000000
vllm:prefix_cache_queries_total{engine="0",model_name="meta/llama-3"} 1.2e+04
vllm:prefix_cache_hits_total{engine="0",model_name="meta/llama-3"} 9000
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{engine="0",le="0.3",model_name="meta/llama-3"} 10.0
vllm:request_queue_time_seconds_bucket{engine="0",le="+Inf",model_name="meta/llama-3"} 12.0
vllm:request_queue_time_seconds_sum{engine="0",model_name="meta/llama-3"} 2.5
vllm:request_queue_time_seconds_count{engine="0",model_name="meta/llama-3"} 12.0
vllm:request_success_total{finished_reason="stop",model_name="a \"quoted\" name, with \\ and\nnewline"} 3
vllm:time_to_first_token_seconds_count{model_name="m"} 12 # {trace_id="abc"} 0.12 1733300000.0
{"vllm:odd.name", model_name="m"} -Inf
	  vllm:spaced   {  engine = "0" }   NaN  
# EOF
this is not an exposition line
"#;

    #[test]
    fn reads_a_vllm_style_exposition() {
        let samples = parse(VLLM).unwrap();
        assert_eq!(samples.len(), 14, "{samples:#?}");
        let m = &[("engine", "0"), ("model_name", "meta/llama-3")];
        assert_eq!(find(&samples, "vllm:num_requests_running", m).value, 4.0);
        assert_eq!(find(&samples, "vllm:num_requests_waiting", m).value, 7.0);
        assert_eq!(find(&samples, "vllm:kv_cache_usage_perc", m).value, 0.375);
        assert_eq!(find(&samples, "vllm:num_preemptions_total", m).value, 2.0);
        assert_eq!(
            find(&samples, "vllm:prefix_cache_queries_total", m).value,
            12_000.0
        );
        let bucket = "vllm:request_queue_time_seconds_bucket";
        let inf = [
            ("engine", "0"),
            ("le", "+Inf"),
            ("model_name", "meta/llama-3"),
        ];
        assert_eq!(find(&samples, bucket, &inf).value, 12.0);
        assert_eq!(
            find(&samples, "vllm:request_queue_time_seconds_sum", m).value,
            2.5
        );
        let escaped = [
            ("finished_reason", "stop"),
            ("model_name", "a \"quoted\" name, with \\ and\nnewline"),
        ];
        assert_eq!(
            find(&samples, "vllm:request_success_total", &escaped).value,
            3.0
        );
        assert_eq!(
            find(
                &samples,
                "vllm:time_to_first_token_seconds_count",
                &[("model_name", "m")]
            )
            .value,
            12.0
        );
        assert_eq!(
            find(&samples, "vllm:odd.name", &[("model_name", "m")]).value,
            f64::NEG_INFINITY
        );
        assert!(find(&samples, "vllm:spaced", &[("engine", "0")])
            .value
            .is_nan());
        assert!(
            samples.iter().all(|s| !s.name.contains("this")),
            "text after # EOF is not read"
        );
    }

    /// What `llama-server --metrics` answered on this project's tiny model
    /// after three completions (captured with curl).
    #[test]
    fn reads_llama_servers_own_exposition() {
        let text = include_str!("../../tests/data/llama_server_metrics.txt");
        let samples = parse(text).unwrap();
        let lines = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(samples.len(), lines);
        assert!(samples.iter().all(|s| s.labels.is_empty()));
        let value = |name: &str| find(&samples, name, &[]).value;
        assert_eq!(value("llamacpp:prompt_tokens_total"), 5.0);
        assert_eq!(value("llamacpp:tokens_predicted_total"), 24.0);
        assert_eq!(value("llamacpp:requests_processing"), 0.0);
        assert_eq!(value("llamacpp:requests_deferred"), 0.0);
        assert_eq!(value("llamacpp:predicted_tokens_seconds"), 10184.3);
    }

    #[test]
    fn other_answers_are_refused_with_the_line() {
        for (text, line, says) in [
            ("<!DOCTYPE html>\n<html>", 1, "no metric name"),
            ("{\"error\": \"not found\"}", 1, "expected , or }"),
            ("# TYPE a gauge\na 1\nb", 3, "b: no value"),
            ("a{x=\"1} 2", 1, "never ends"),
            ("a{x=1} 2", 1, "expected a quoted value"),
            ("a one", 1, "\"one\" is not a number"),
            ("a 1 2 3", 1, "unexpected \"3\""),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.reason.contains(says), "{text:?}: {err}");
        }
        assert_eq!(parse("").unwrap(), []);
    }
}
