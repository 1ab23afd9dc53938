//! `oha` in the bench: for the duration, its JSON report read back.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use super::{output_of, ClientRun, Load, Reuse};
use crate::error::TaskError;
use crate::json;

/// What the bench reads of `oha --output-format json` (its schema marks
/// every one required; the percentiles are null when nothing answered).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    summary: Summary,
    latency_percentiles: Percentiles,
    /// Responses by HTTP status (`"200": n`).
    status_code_distribution: BTreeMap<String, u64>,
    /// Requests that got no response, by error message.
    error_distribution: BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    requests_per_sec: f64,
}

#[derive(Debug, Deserialize)]
struct Percentiles {
    /// Seconds.
    #[serde(deserialize_with = "json::nullable")]
    p50: Option<f64>,
}

/// `oha` for the duration, JSON output.
pub(crate) fn oha_command(bin: &Path, load: &Load) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("-z")
        .arg(format!("{}s", load.duration.as_secs().max(1)))
        .arg("-c")
        .arg(load.connections.to_string())
        .args(["-m", "POST", "-H", "Content-Type: application/json", "-d"])
        .arg(load.body)
        .args(["--no-tui", "--output-format", "json"]);
    if load.cacert.is_some() {
        cmd.arg("--insecure");
    }
    if load.reuse == Reuse::PerRequest {
        cmd.arg("--disable-keepalive");
    }
    cmd.arg(load.url);
    cmd
}

/// Runs oha and reads `summary.requestsPerSec`, the median and the counts.
pub(super) fn run(bin: &Path, load: &Load, tag: &str) -> Result<ClientRun, TaskError> {
    let out = output_of(oha_command(bin, load), load, &format!("oha-{tag}"))?;
    Ok(ClientRun {
        cpu: out.cpu,
        ..parse(&out.text, &out.path)?
    })
}

/// oha's output (anything it printed before the JSON is skipped), read
/// from `origin`.
fn parse(text: &str, origin: &Path) -> Result<ClientRun, TaskError> {
    let start = text.find('{').unwrap_or(0);
    let report: Report = json::parse(&text[start..], origin)?;
    let ok = report
        .status_code_distribution
        .get("200")
        .copied()
        .unwrap_or(0);
    let total: u64 = report.status_code_distribution.values().sum();
    // oha cancels the requests in flight when the duration ends and lists
    // them as "aborted due to deadline": not failures of the server.
    let failed_other: u64 = report
        .error_distribution
        .iter()
        .filter(|(kind, _)| !kind.contains("deadline"))
        .map(|(_, count)| count)
        .sum();
    Ok(ClientRun {
        rps: report.summary.requests_per_sec,
        p50_us: report.latency_percentiles.p50.map(|s| s * 1e6),
        errors: total.saturating_sub(ok) + failed_other,
        requests: total,
        ..ClientRun::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from oha 1.16's output against the simulator.
    const REPORT: &str = r#"{
  "summary": {"successRate": 1.0, "total": 3.0, "slowest": 0.01, "fastest": 0.0001,
              "average": 0.0004, "requestsPerSec": 70123.5, "totalData": 100, "sizePerRequest": 50, "sizePerSec": 10.0},
  "responseTimeHistogram": {"0.0001": 3},
  "latencyPercentiles": {"p10": 0.0002, "p25": 0.0003, "p50": 0.000425, "p75": 0.0005, "p90": 0.0006,
                         "p95": 0.0007, "p99": 0.001, "p99.9": 0.002, "p99.99": 0.003},
  "rps": {"mean": 70000.0, "stddev": 1.0, "max": 71000.0, "percentiles": {}},
  "details": {},
  "statusCodeDistribution": {"200": 210000, "503": 4},
  "errorDistribution": {"aborted due to deadline": 32, "connection closed": 1}
}"#;

    #[test]
    fn the_report_gives_rate_median_and_failures() {
        let run = parse(&format!("some banner\n{REPORT}"), Path::new("oha.out")).unwrap();
        assert_eq!(run.rps, 70123.5);
        assert_eq!(run.p50_us, Some(425.0));
        assert_eq!(run.requests, 210_004);
        // 4 non-200 answers and 1 error that is not the deadline's.
        assert_eq!(run.errors, 5);
    }

    #[test]
    fn nothing_answered_gives_no_median() {
        let none = REPORT
            .replace(r#""p50": 0.000425"#, r#""p50": null"#)
            .replace(r#""200": 210000, "503": 4"#, "");
        let run = parse(&none, Path::new("oha.out")).unwrap();
        assert_eq!((run.p50_us, run.requests, run.errors), (None, 0, 1));
    }

    #[test]
    fn a_renamed_field_is_an_error_naming_file_and_field() {
        let renamed = REPORT.replace("requestsPerSec", "requests_per_sec");
        let err = parse(&renamed, Path::new("/b/oha-stub-0.out")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/b/oha-stub-0.out: missing field `summary.requestsPerSec`"
        );
        let err = parse(
            &REPORT.replace("statusCodeDistribution", "statusCodes"),
            Path::new("o.out"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "o.out: missing field `statusCodeDistribution`"
        );
    }
}
