//! The verdict as JUnit XML (`--junit FILE` of `report compare`, `report
//! merge` and `report repeats`), the format CI systems read test results
//! in (Jenkins, GitLab, GitHub's test reporters).
//!
//! One `<testsuite>` per run judged, one `<testcase>` per check of its
//! verdict (`verdict.checks` of `comparison.json`: `sla_p95`,
//! `failed_budget`, ... and one per `--sla` objective). A case's name is
//! stable from run to run (the check's id, or `slo <expression>`), so a CI
//! tracks it across runs; what it measured goes in the text. A failed
//! check is a `<failure>` whose `message` gives the measured value against
//! the threshold, with the unit, and whose text adds the verdict's
//! sentence; a passed one says the same in its `<system-out>`. Only
//! elements and attributes of the JUnit schema Jenkins documents (its
//! xUnit plugin's `junit-10.xsd`) are written, so a validating reader
//! accepts the file.
//!
//! The XML is written with `quick-xml`, which escapes text and attribute
//! values (newlines and tabs in attributes too); characters XML 1.0 cannot
//! hold at all (most control characters), which a label given on the
//! command line could carry, are replaced with U+FFFD first.

use std::path::Path;

use model::comparison::Comparison;
use model::repeats::RepeatsReport;
use model::summary::{ObjectiveResult, RunSummary};
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use stats::slo::{Metric, Slo};

use crate::error::ReportError;
use crate::write_files::write_atomically;

/// One check, as a test case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Stable name: the check's id, or `slo EXPR`.
    pub name: String,
    /// Where CI files it: `verdict`, `slo`, `merge` or `repeats`, after
    /// the pair's name with `--repeat`.
    pub classname: String,
    /// What was measured, in words (e.g. "the After's P95 latency").
    pub what: String,
    /// The measured value; `None` when there was nothing to measure.
    pub measured: Option<f64>,
    /// The comparison the value must pass, e.g. `<=`.
    pub op: String,
    /// The bound.
    pub threshold: f64,
    /// The unit of both (empty for a share or a count of nothing).
    pub unit: String,
    /// Whether the check passed.
    pub passed: bool,
    /// The verdict's own sentence.
    pub detail: String,
}

impl Case {
    /// The measured value against the threshold, with the unit, in one line.
    pub fn message(&self) -> String {
        let with_unit = |v: f64| {
            let n = number(v);
            if self.unit.is_empty() {
                n
            } else {
                format!("{n} {}", self.unit)
            }
        };
        let measured = self
            .measured
            .map_or_else(|| "nothing to measure".to_owned(), with_unit);
        format!(
            "{}: measured {measured}, threshold {} {} ({})",
            self.what,
            self.op,
            with_unit(self.threshold),
            if self.passed { "passed" } else { "FAILED" }
        )
    }

    /// The message, then the verdict's sentence.
    fn text(&self) -> String {
        format!("{}\n{}", self.message(), self.detail)
    }
}

/// One run judged: a test suite.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// What was judged, e.g. "Before vs After".
    pub name: String,
    /// The run's duration, s (the After's, the merged run's); 0 when none.
    pub time_s: f64,
    /// Facts about the run, as `<property>`s.
    pub properties: Vec<(String, String)>,
    /// Every check.
    pub cases: Vec<Case>,
}

impl Suite {
    /// Failed checks.
    pub fn failures(&self) -> usize {
        self.cases.iter().filter(|c| !c.passed).count()
    }
}

/// A number as the messages print it: at most three decimals, no
/// trailing zeros (`800`, `912.345`, `0.01`).
fn number(v: f64) -> String {
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// The unit an objective's value is in.
fn slo_unit(expression: &str) -> (&'static str, &'static str) {
    match expression.parse::<Slo>().map(|s| s.metric) {
        Ok(Metric::Latency(..)) => ("ms", "latency"),
        Ok(Metric::ErrorRate) => ("", "share of requests that failed"),
        Ok(Metric::Throughput) => ("req/s", "successful requests per second"),
        Ok(Metric::Goodput) => (
            "req/s",
            "successful requests per second that met every latency objective",
        ),
        // Written by this build, so it parses; a hand-edited file may not.
        Err(_) => ("", "value"),
    }
}

/// An objective as a case.
fn slo_case(slo: &ObjectiveResult, classname: &str, on: &str) -> Case {
    let (unit, what) = slo_unit(&slo.expression);
    Case {
        name: format!("slo {}", slo.expression),
        classname: classname.to_owned(),
        what: format!("{on} {what} ({})", slo.expression),
        measured: slo.measured,
        op: slo.op.clone(),
        threshold: slo.threshold,
        unit: unit.to_owned(),
        passed: slo.met,
        detail: slo.to_string(),
    }
}

/// The suite of a comparison: one case per check of its verdict, each
/// `slo` check with its objective's numbers. `prefix` (e.g. `pair_2.`)
/// goes before each case's class.
pub fn comparison_suite(comparison: &Comparison, name: &str, prefix: &str) -> Suite {
    let (before, after, quality) = (&comparison.before, &comparison.after, &comparison.quality);
    let verdict = &comparison.verdict;
    let count = |n: u64| n as f64;
    let mut slos = comparison.slos.iter();
    let cases = verdict
        .checks
        .iter()
        .map(|check| {
            let case = |what: &str, measured: Option<f64>, threshold: f64, unit: &str| Case {
                name: check.id.clone(),
                classname: format!("{prefix}verdict"),
                what: what.to_owned(),
                measured,
                op: "<=".to_owned(),
                threshold,
                unit: unit.to_owned(),
                passed: check.passed,
                detail: check.detail.clone(),
            };
            match check.id.as_str() {
                "sla_p95" => case(
                    "the After's P95 latency",
                    after.p95_ms,
                    comparison.sla.threshold_ms,
                    "ms",
                ),
                "failed_budget" => case(
                    "the After's failed requests",
                    Some(count(after.failed)),
                    count(verdict.max_failed),
                    "requests",
                ),
                "output_mismatches" => case(
                    "outputs that did not match the expected output, Before and After",
                    Some(count(quality.mismatches)),
                    0.0,
                    "requests",
                ),
                "identical_inputs" => case(
                    "request ids missing from the After or extra in it, plus the difference in rows",
                    Some(count(
                        quality.missing_in_after
                            + quality.extra_in_after
                            + before.total.abs_diff(after.total),
                    )),
                    0.0,
                    "requests",
                ),
                "output_digests" => case(
                    &format!(
                        "requests whose output digest differs from the {} (of {} compared)",
                        if quality.digest_reference == "before" {
                            "Before's"
                        } else {
                            "Before's Rust reproduction's"
                        },
                        quality.digests_compared
                    ),
                    Some(count(quality.digest_differences)),
                    0.0,
                    "requests",
                ),
                // The verdict lists one `slo` check per objective, in order.
                "slo" => match slos.next() {
                    Some(slo) => Case {
                        passed: check.passed,
                        ..slo_case(slo, &format!("{prefix}slo"), "the After's")
                    },
                    None => case(&check.detail, None, 0.0, ""),
                },
                // A check this build does not know: its sentence says it all.
                _ => case(&check.detail, None, 0.0, ""),
            }
        })
        .collect();
    let mut properties = vec![
        ("before".to_owned(), before.label.clone()),
        ("after".to_owned(), after.label.clone()),
        ("sla_p95_ms".to_owned(), number(comparison.sla.threshold_ms)),
        (
            "verdict".to_owned(),
            if verdict.met { "met" } else { "not met" }.to_owned(),
        ),
    ];
    for (key, log) in [
        ("before_log", &before.log_file),
        ("after_log", &after.log_file),
    ] {
        if let Some(log) = log {
            properties.push((key.to_owned(), log.clone()));
        }
    }
    Suite {
        name: name.to_owned(),
        time_s: after.duration_s.unwrap_or(0.0),
        properties,
        cases,
    }
}

/// The suite of a merge: one case per objective judged on the union,
/// and, where the rows were merged, that no request id repeats.
pub fn merge_suite(summary: &RunSummary) -> Suite {
    let mut cases: Vec<Case> = summary
        .slos
        .iter()
        .flatten()
        .map(|slo| slo_case(slo, "merge.slo", "the merged run's"))
        .collect();
    if let Some(ids) = &summary.ids {
        let passed = ids.duplicates == 0;
        cases.push(Case {
            name: "unique_request_ids".to_owned(),
            classname: "merge".to_owned(),
            what: "rows whose request id an earlier row (of any shard) already had".to_owned(),
            measured: Some(ids.duplicates as f64),
            op: "<=".to_owned(),
            threshold: 0.0,
            unit: "requests".to_owned(),
            passed,
            detail: format!(
                "{} distinct request ids, {} repeated: the shards {}",
                ids.unique,
                ids.duplicates,
                if passed {
                    "did not overlap"
                } else {
                    "overlapped"
                }
            ),
        });
    }
    let shards = summary.shards.as_ref().map_or(0, |s| s.count);
    Suite {
        name: format!("merge of {shards} shards"),
        time_s: summary.duration_s,
        properties: vec![
            ("shards".to_owned(), shards.to_string()),
            (
                "percentiles_from".to_owned(),
                summary.percentiles_from.clone().unwrap_or_default(),
            ),
            ("url".to_owned(), summary.url.clone()),
        ],
        cases,
    }
}

/// The suites of `report repeats`: one per pair (its comparison), then
/// the proof's, whose one case is that every pair met its verdict.
pub fn repeats_suites(report: &RepeatsReport, pairs: &[(String, Comparison)]) -> Vec<Suite> {
    let mut suites: Vec<Suite> = pairs
        .iter()
        .enumerate()
        .map(|(i, (name, comparison))| {
            comparison_suite(comparison, name, &format!("pair_{}.", i + 1))
        })
        .collect();
    suites.push(Suite {
        name: "interleaved proof".to_owned(),
        time_s: 0.0,
        properties: vec![("pairs".to_owned(), report.pairs.to_string())],
        cases: vec![Case {
            name: "every_pair_met".to_owned(),
            classname: "repeats".to_owned(),
            what: "pairs whose verdict was not met".to_owned(),
            measured: Some(f64::from(report.pairs - report.met_count)),
            op: "<=".to_owned(),
            threshold: 0.0,
            unit: "pairs".to_owned(),
            passed: report.met_every_pair,
            detail: report.verdict.clone(),
        }],
    });
    suites
}

/// `text` with every character XML 1.0 cannot hold replaced with U+FFFD.
fn xml_chars(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' => c,
            c if c >= '\u{10000}' => c,
            _ => '\u{FFFD}',
        })
        .collect()
}

/// The document: `<testsuites name=NAME>` holding `suites`.
pub fn to_xml(name: &str, suites: &[Suite]) -> String {
    // Writing into a Vec cannot fail.
    let bytes = write_xml(name, suites).unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

fn write_xml(name: &str, suites: &[Suite]) -> std::io::Result<Vec<u8>> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let tests: usize = suites.iter().map(|s| s.cases.len()).sum();
    let failures: usize = suites.iter().map(Suite::failures).sum();
    let time: f64 = suites.iter().map(|s| s.time_s).sum();
    let mut root = BytesStart::new("testsuites");
    root.push_attribute(("name", xml_chars(name).as_str()));
    root.push_attribute(("tests", tests.to_string().as_str()));
    root.push_attribute(("failures", failures.to_string().as_str()));
    root.push_attribute(("errors", "0"));
    root.push_attribute(("time", format!("{time:.3}").as_str()));
    w.write_event(Event::Start(root))?;
    for suite in suites {
        let mut start = BytesStart::new("testsuite");
        start.push_attribute(("name", xml_chars(&suite.name).as_str()));
        start.push_attribute(("tests", suite.cases.len().to_string().as_str()));
        start.push_attribute(("failures", suite.failures().to_string().as_str()));
        start.push_attribute(("errors", "0"));
        start.push_attribute(("skipped", "0"));
        start.push_attribute(("time", format!("{:.3}", suite.time_s.max(0.0)).as_str()));
        w.write_event(Event::Start(start))?;
        if !suite.properties.is_empty() {
            w.write_event(Event::Start(BytesStart::new("properties")))?;
            for (key, value) in &suite.properties {
                let mut property = BytesStart::new("property");
                property.push_attribute(("name", xml_chars(key).as_str()));
                property.push_attribute(("value", xml_chars(value).as_str()));
                w.write_event(Event::Empty(property))?;
            }
            w.write_event(Event::End(BytesEnd::new("properties")))?;
        }
        for case in &suite.cases {
            let mut start = BytesStart::new("testcase");
            start.push_attribute(("name", xml_chars(&case.name).as_str()));
            start.push_attribute(("classname", xml_chars(&case.classname).as_str()));
            start.push_attribute(("time", "0"));
            w.write_event(Event::Start(start))?;
            let text = xml_chars(&case.text());
            if case.passed {
                w.write_event(Event::Start(BytesStart::new("system-out")))?;
                w.write_event(Event::Text(BytesText::new(&text)))?;
                w.write_event(Event::End(BytesEnd::new("system-out")))?;
            } else {
                let mut failure = BytesStart::new("failure");
                failure.push_attribute(("message", xml_chars(&case.message()).as_str()));
                failure.push_attribute(("type", xml_chars(&case.name).as_str()));
                w.write_event(Event::Start(failure))?;
                w.write_event(Event::Text(BytesText::new(&text)))?;
                w.write_event(Event::End(BytesEnd::new("failure")))?;
            }
            w.write_event(Event::End(BytesEnd::new("testcase")))?;
        }
        w.write_event(Event::End(BytesEnd::new("testsuite")))?;
    }
    w.write_event(Event::End(BytesEnd::new("testsuites")))?;
    let mut bytes = w.into_inner();
    bytes.push(b'\n');
    Ok(bytes)
}

/// Refuses a `--junit` path that cannot be written, before any work: an
/// existing directory. Its parent is created when missing.
pub fn check_path(path: &Path) -> Result<(), ReportError> {
    if path.is_dir() {
        return Err(ReportError::InvalidOption(format!(
            "--junit {} is a directory; give a file path such as results/junit.xml",
            path.display()
        )));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))
        }
        _ => Ok(()),
    }
}

/// `comparison` with its logs named relative to the directory of the
/// JUnit file `junit` (as `comparison.json` names them relative to its
/// own), so the `before_log` and `after_log` properties lead to the logs
/// from wherever the file is archived with them. `from`: the directory a
/// comparison read from a `comparison.json` was read from. Call after
/// [`check_path`], which makes that directory.
pub fn with_logs_beside(comparison: &Comparison, from: Option<&Path>, junit: &Path) -> Comparison {
    let dir = match junit.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    crate::write_files::with_logs_moved(comparison, from, dir)
}

/// Writes the document to `path`, atomically.
pub fn write(path: &Path, name: &str, suites: &[Suite]) -> Result<(), ReportError> {
    check_path(path)?;
    write_atomically(path, to_xml(name, suites).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_short() {
        assert_eq!(number(800.0), "800");
        assert_eq!(number(912.3456), "912.346");
        assert_eq!(number(0.01), "0.01");
        assert_eq!(number(-0.0001), "0");
    }

    #[test]
    fn characters_xml_cannot_hold_are_replaced_and_the_rest_escaped() {
        let suite = Suite {
            name: "A <&> \"B\"\u{7}".to_owned(),
            time_s: 1.5,
            properties: vec![("after".to_owned(), "x\ny".to_owned())],
            cases: vec![Case {
                name: "slo p95<=800".to_owned(),
                classname: "slo".to_owned(),
                what: "the After's latency".to_owned(),
                measured: Some(900.0),
                op: "<=".to_owned(),
                threshold: 800.0,
                unit: "ms".to_owned(),
                passed: false,
                detail: "SLO p95<=800: After measured 900.000 (NOT met)".to_owned(),
            }],
        };
        let xml = to_xml("report compare", &[suite]);
        assert!(
            xml.contains(r#"<testsuite name="A &lt;&amp;&gt; &quot;B&quot;"#),
            "{xml}"
        );
        assert!(xml.contains('\u{FFFD}') && !xml.contains('\u{7}'), "{xml}");
        assert!(xml.contains(r#"value="x&#10;y""#), "{xml}");
        assert!(
            xml.contains(
                r#"message="the After&apos;s latency: measured 900 ms, threshold &lt;= 800 ms (FAILED)""#
            ),
            "{xml}"
        );
        assert!(xml.contains(r#"<testcase name="slo p95&lt;=800""#), "{xml}");
    }
}
