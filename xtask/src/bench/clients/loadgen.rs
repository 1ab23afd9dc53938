//! `loadgen` in the bench: a closed loop for the duration, its `--json`
//! summary read back.

use std::path::Path;
use std::process::{Command, Stdio};

use model::summary::RunSummary;

use super::{output_of, ClientRun, Load, Reuse};
use crate::error::TaskError;
use crate::json;

/// `loadgen` in a closed loop for the duration, no per-request log, with
/// `--busy-poll-us` when given.
pub(crate) fn loadgen_command(
    bin: &Path,
    load: &Load,
    json: &Path,
    busy_poll_us: Option<u64>,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["--url", load.url, "-q", "-c"])
        .arg(load.connections.to_string())
        .arg("-z")
        .arg(format!("{}ms", load.duration.as_millis()))
        .arg("--json")
        .arg(json)
        // wrk and oha check nothing in the answer; loadgen does the same work
        // here, so the ratios compare request engines, not features.
        .arg("--no-verify");
    if let Some(us) = busy_poll_us {
        cmd.arg("--busy-poll-us").arg(us.to_string());
    }
    if let Some(cacert) = load.cacert {
        cmd.arg("--cacert").arg(cacert);
    }
    // Pooled is loadgen's default outside the baseline profile.
    if load.reuse == Reuse::PerRequest {
        cmd.args(["--connection", "per-request"]);
        // wrk and oha resume the TLS session on each new connection; loadgen
        // only does when asked (its default is input.py's full handshake).
        if load.cacert.is_some() {
            cmd.arg("--tls-resume");
        }
    }
    cmd
}

/// Whether this `loadgen` build lists `flag` (e.g. `--busy-poll-us`) in its
/// help: an older one given with `--bin-dir` may not have it.
pub(crate) fn loadgen_has_flag(bin: &Path, flag: &str) -> bool {
    Command::new(bin)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|out| help_lists_flag(&String::from_utf8_lossy(&out.stdout), flag))
}

/// Whether clap's `help` text lists `flag` as an option of its own, not
/// merely as the start of a longer one (`--cacert` in `--cacert-dir`).
fn help_lists_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(at, _)| {
        help[at + flag.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'))
    })
}

/// Runs loadgen and reads its `--json` summary.
pub(super) fn run(
    bin: &Path,
    load: &Load,
    tag: &str,
    busy_poll_us: Option<u64>,
) -> Result<ClientRun, TaskError> {
    let json_path = load.dir.join(format!("loadgen-{tag}.json"));
    let cmd = loadgen_command(bin, load, &json_path, busy_poll_us);
    let out = output_of(cmd, load, &format!("loadgen-{tag}"))?;
    Ok(ClientRun {
        cpu: out.cpu,
        ..from_summary(json::read_contract(&json_path)?)
    })
}

/// The rate, the median (`None` when no request succeeded) and the counts
/// of loadgen's summary.
fn from_summary(summary: RunSummary) -> ClientRun {
    ClientRun {
        rps: summary.throughput_rps,
        p50_us: summary.p50_ms.map(|ms| ms * 1000.0),
        errors: summary.failed,
        requests: summary.total,
        ..ClientRun::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `loadgen --json` writes after a closed-loop run, through
    /// loadgen's own type.
    fn summary_json() -> String {
        RunSummary {
            schema_version: model::summary::SCHEMA_VERSION,
            total: 38211,
            succeeded: 38209,
            failed: 2,
            p50_ms: Some(0.412),
            throughput_rps: 12736.9,
            duration_s: 3.0,
            errors: [("timeout".to_owned(), 2)].into(),
            mode: "closed".into(),
            ..RunSummary::default()
        }
        .to_json()
        .unwrap()
    }

    #[test]
    fn the_summary_gives_rate_median_and_counts() {
        let summary: RunSummary =
            json::parse_contract(&summary_json(), Path::new("loadgen.json")).unwrap();
        let run = from_summary(summary);
        assert_eq!(run.rps, 12736.9);
        assert_eq!(run.p50_us, Some(412.0));
        assert_eq!((run.errors, run.requests), (2, 38211));
        // No success: no median, still a run.
        let none = RunSummary {
            total: 5,
            failed: 5,
            p50_ms: None,
            ..RunSummary::default()
        };
        assert_eq!(from_summary(none).p50_us, None);
    }

    #[test]
    fn a_renamed_field_is_an_error_not_zero_requests_per_second() {
        let renamed = summary_json().replace("throughput_rps", "rps");
        let err = json::parse_contract::<RunSummary>(&renamed, Path::new("/b/loadgen-stub-0.json"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/b/loadgen-stub-0.json: missing field `throughput_rps`"
        );
        let no_median = summary_json().replace("\"p50_ms\"", "\"median_ms\"");
        let err = json::parse_contract::<RunSummary>(&no_median, Path::new("l.json")).unwrap_err();
        assert_eq!(err.to_string(), "l.json: missing field `p50_ms`");
    }

    #[test]
    fn a_flag_counts_only_as_a_whole_option_of_the_help() {
        let help = "Options:\n      --cacert-dir <DIR>  Trust every PEM in DIR\n      --busy-poll-us <US>  Spin\n";
        assert!(help_lists_flag(help, "--busy-poll-us"));
        assert!(!help_lists_flag(help, "--cacert"));
        assert!(help_lists_flag("      --cacert <FILE>\n", "--cacert"));
        assert!(help_lists_flag("--insecure", "--insecure"));
        assert!(!help_lists_flag("", "--cacert"));
    }
}
