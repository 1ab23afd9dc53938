//! `wrk` in the bench: POSTs through a Lua script, its text report parsed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{output_of, ClientRun, Load, Reuse};
use crate::error::TaskError;

/// The Lua script that makes wrk POST `body` as JSON.
pub(crate) fn write_wrk_script(dir: &Path, body: &str) -> Result<PathBuf, TaskError> {
    let path = dir.join("post.lua");
    // A Lua long bracket needs no escaping of the JSON inside.
    let script = format!(
        "wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    fs::write(&path, script).map_err(|source| TaskError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// `wrk` with the POST script and its latency distribution.
pub(crate) fn wrk_command(bin: &Path, load: &Load, script: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg(format!("-t{}", load.threads.min(load.connections)))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(script);
    // wrk has no switch for it, but honours the server closing the
    // connection after a response that asked for it: it reconnects (over
    // TLS with a full handshake, wrk keeps no sessions).
    if load.reuse == Reuse::PerRequest {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(load.url);
    cmd
}

/// Runs wrk and parses `Requests/sec`, the 50% latency and error counts.
pub(super) fn run(
    bin: &Path,
    load: &Load,
    script: &Path,
    tag: &str,
) -> Result<ClientRun, TaskError> {
    let out = output_of(wrk_command(bin, load, script), load, &format!("wrk-{tag}"))?;
    let run = parse_wrk(&out.text).ok_or_else(|| {
        TaskError::Step(format!(
            "cannot parse wrk output ({}):\n{}",
            out.path.display(),
            out.text
        ))
    })?;
    Ok(ClientRun {
        cpu: out.cpu,
        ..run
    })
}

fn parse_wrk(text: &str) -> Option<ClientRun> {
    let mut run = ClientRun::default();
    let mut saw_rps = false;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().ok()?;
            saw_rps = true;
        } else if let Some(v) = line.strip_prefix("50%") {
            run.p50_us = parse_wrk_duration_us(v.trim());
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            run.requests = count.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            run.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    saw_rps.then_some(run)
}

fn parse_wrk_duration_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let n: f64 = number.trim().parse().ok()?;
    Some(match unit.trim() {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_parsed() {
        let text =
            "Running 5s test @ http://127.0.0.1:1/v1/infer\n  1 threads and 32 connections\n\
            Latency Distribution\n     50%  625.00us\n     75%    1.20ms\n\
            384356 requests in 5.01s, 208.57MB read\n  Non-2xx or 3xx responses: 3\n\
            Socket errors: connect 0, read 2, write 0, timeout 1\nRequests/sec:  76679.03\n";
        let run = parse_wrk(text).unwrap();
        assert_eq!(run.rps, 76679.03);
        assert_eq!(run.p50_us, Some(625.0));
        assert_eq!(run.errors, 6);
        assert_eq!(run.requests, 384356);
        assert_eq!(parse_wrk_duration_us("1.20ms"), Some(1200.0));
        assert!(parse_wrk("garbage").is_none());
    }
}
