//! The analysis step's processes: the batch-cost probe, and `report
//! whatif`, whose `whatif.json` (`model::whatif`) says what the After is.
//!
//! The Before alone sends one input per request, which cannot separate a
//! batch's fixed cost from its cost per input; so a short probe against a
//! fresh server sends batches of 1 to 32 inputs, one batch at a time, and
//! `report whatif` fits the model to the Before's rows and the probe's and
//! simulates the candidates. Every decision is report's; xtask reads it
//! through the contract's types and carries it out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use model::whatif::{EngineReport, WhatifReport};

use crate::error::TaskError;
use crate::{json, process};

/// Batch sizes of the probe: a spread wide enough to fit a line, up to the
/// simulator's largest batch.
pub(crate) const PROBE_BATCH_SIZES: [u32; 6] = [1, 2, 4, 8, 16, 32];

/// Batches sent at each probe size.
pub(crate) const PROBE_BATCHES: u32 = 8;

/// A client the engine chose for open-loop capacity.
pub(crate) type OpenLoopClient = model::whatif::CapacityChoice;

/// Runs the probe with `loadgen` (a command already aimed at the target)
/// and returns the probe logs written into `dir`.
pub(crate) fn probe(
    loadgen: impl FnMut() -> Command,
    dir: &Path,
    limit: std::time::Duration,
) -> Result<Vec<PathBuf>, TaskError> {
    probe_with(loadgen, dir, limit, false).map(|(logs, _)| logs)
}

/// [`probe`], also recording the server's statistics around each size
/// (`--server-stats`, for a server that sends no `Server-Timing`); returns
/// the logs and the statistics files.
pub(crate) fn probe_with(
    mut loadgen: impl FnMut() -> Command,
    dir: &Path,
    limit: std::time::Duration,
    server_stats: bool,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), TaskError> {
    let mut logs = Vec::new();
    let mut stats = Vec::new();
    for size in PROBE_BATCH_SIZES {
        let log = dir.join(format!("probe_b{size}.csv"));
        let mut cmd = loadgen();
        if server_stats {
            let path = dir.join(format!("probe_b{size}_server_stats.json"));
            cmd.args(["--server-stats".as_ref(), path.as_os_str()]);
            stats.push(path);
        }
        // B workers and a wait far above a batch's assembly: every batch
        // leaves full, and one batch is in flight at a time, so the server
        // never queues and each row measures one execution at size B.
        let status = process::run_with_deadline(
            cmd.args(["--connection", "pooled", "-q"])
                .args(["-c", &size.to_string()])
                .args(["-n", &(size * PROBE_BATCHES).to_string()])
                .args(["--batch-size", &size.to_string()])
                // A batch of one leaves at once: no wait to give.
                .args(if size > 1 {
                    &["--batch-wait-ms", "50"][..]
                } else {
                    &[][..]
                })
                .args(["--out".as_ref(), log.as_os_str()])
                .stdout(Stdio::null()),
            limit,
        )?;
        match status.code() {
            Some(0 | 1) => logs.push(log),
            _ => {
                return Err(TaskError::Step(format!(
                    "the batch-cost probe at batch size {size} could not run ({status})"
                )))
            }
        }
    }
    Ok((logs, stats))
}

/// Requests at each probe length, one at a time.
pub(crate) const LLM_PROBE_REQUESTS: u32 = 8;

/// Answer tokens of each probe request.
pub(crate) const LLM_PROBE_OUTPUT_TOKENS: u32 = 16;

/// How the LLM step probe runs against one kind of server.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LlmProbe {
    /// Prompt lengths, in words: one run of [`LLM_PROBE_REQUESTS`] each,
    /// one request at a time. A word is a token to stub-server; a real
    /// server counts its own (`usage.prompt_tokens`, which the fit
    /// prefers), so its lengths must leave room in its context.
    pub prompt_words: &'static [u32],
    /// Then, when set, this many streams at once
    /// (`concurrent_requests_per_stream` requests each) at each prompt
    /// length of `concurrent_words`, against a server with as many
    /// slots: for a Before whose steps run one
    /// sequence, where the fit cannot otherwise tell a step's fixed cost
    /// from its cost per sequence, nor see what a batch of prompts joining
    /// together costs (two lengths: the prompt tokens joining at once then
    /// vary enough to tell a cost per token from one that grows faster).
    pub concurrent_streams: Option<u32>,
    /// Prompt lengths of the concurrent runs, words.
    pub concurrent_words: &'static [u32],
    /// Requests each stream of a concurrent run sends.
    pub concurrent_requests_per_stream: u32,
    /// loadgen's flags in place of the phases' own (which may set the
    /// answer's length, as the probe does); empty: the phases' own.
    pub client_args: &'static [&'static str],
}

impl LlmProbe {
    /// stub-server's: its Before runs every slot, so lengths alone.
    pub(crate) const SIMULATOR: Self = Self {
        prompt_words: &[16, 256, 1024],
        concurrent_streams: None,
        concurrent_words: &[],
        concurrent_requests_per_stream: 0,
        client_args: &[],
    };

    /// What it runs, for the console.
    pub(crate) fn describe(&self) -> String {
        let mut text = format!(
            "{LLM_PROBE_REQUESTS} streamed requests at each prompt length {:?} words, {LLM_PROBE_OUTPUT_TOKENS} tokens each, one at a time",
            self.prompt_words
        );
        if let Some(streams) = self.concurrent_streams {
            let _ = write!(
                text,
                "; then {} at each of {:?} words, {streams} streams at once",
                streams * self.concurrent_requests_per_stream,
                self.concurrent_words
            );
        }
        text
    }
}

/// `count` prompts of exactly `words` whitespace words, each beginning
/// with a word of its own (so a prefix cache shares nothing between them),
/// as loadgen's `--payloads` lines.
fn llm_probe_payloads(words: u32, count: u32) -> String {
    let mut out = String::new();
    for i in 0..count {
        let text: Vec<String> = std::iter::once(format!("probe{i}"))
            .chain((1..words).map(|w| format!("w{}", (w * 7 + i) % 50)))
            .collect();
        out.push_str(&serde_json::json!({ "input": text.join(" ") }).to_string());
        out.push('\n');
    }
    out
}

/// The LLM step probe (`probe`): against a server left idle between
/// requests, one streamed request at a time at each prompt length, its
/// answer [`LLM_PROBE_OUTPUT_TOKENS`] tokens long; then, where asked,
/// the concurrent run. Alone, a request's steps run one sequence and its
/// first token is one prefill: the Before (every slot busy) cannot tell a
/// step's fixed cost from its cost per sequence, nor a prompt's prefill
/// from the client's own time. Returns the logs written into `dir` and
/// each one's prompt length in words (the fallback where a server sends
/// no `usage`).
pub(crate) fn llm_probe(
    probe: &LlmProbe,
    mut loadgen: impl FnMut() -> Command,
    dir: &Path,
    limit: std::time::Duration,
) -> Result<(Vec<PathBuf>, Vec<u32>), TaskError> {
    let concurrent = probe
        .concurrent_streams
        .map_or(&[][..], |_| probe.concurrent_words);
    let runs = probe.prompt_words.iter().map(|&words| (words, 1)).chain(
        concurrent
            .iter()
            .map(|&words| (words, probe.concurrent_streams.unwrap_or(1))),
    );
    let mut logs = Vec::new();
    let mut lengths = Vec::new();
    for (words, streams) in runs {
        let name = if streams == 1 {
            format!("probe_p{words}")
        } else {
            format!("probe_c{streams}_p{words}")
        };
        let requests = if streams == 1 {
            LLM_PROBE_REQUESTS
        } else {
            probe.concurrent_requests_per_stream * streams
        };
        let payloads = dir.join(format!("{name}.jsonl"));
        std::fs::write(&payloads, llm_probe_payloads(words, requests))
            .map_err(|e| TaskError::Step(format!("{}: {e}", payloads.display())))?;
        let log = dir.join(format!("{name}.csv"));
        let status = process::run_with_deadline(
            loadgen()
                .args(["-q", "-c", &streams.to_string()])
                .args(["-n", &requests.to_string()])
                .args(["--max-tokens", &LLM_PROBE_OUTPUT_TOKENS.to_string()])
                .args(["--extra-body", r#"{"ignore_eos": true}"#])
                .args(["--payloads".as_ref(), payloads.as_os_str()])
                .args(["--out".as_ref(), log.as_os_str()])
                .stdout(Stdio::null()),
            limit,
        )?;
        match status.code() {
            Some(0 | 1) => {
                logs.push(log);
                lengths.push(words);
            }
            _ => {
                return Err(TaskError::Step(format!(
                    "the step probe ({name}: {words}-word prompts, {streams} at a time) could not run ({status})"
                )))
            }
        }
    }
    Ok((logs, lengths))
}

/// Runs `report whatif` (`cmd`, writing `json_path`) and reads its answer.
pub(crate) fn analyse(
    cmd: &mut Command,
    json_path: &Path,
    limit: std::time::Duration,
) -> Result<WhatifReport, TaskError> {
    let status = process::run_with_deadline(cmd, limit)?;
    match status.code() {
        // 1: no candidate meets the SLA with margin; the JSON says which is best.
        Some(0 | 1) => json::read(json_path),
        _ => Err(TaskError::Step(format!(
            "the analysis (report whatif) could not run ({status}); see the message above"
        ))),
    }
}

/// Runs `report whatif` and returns the what-if engine's part, which the
/// engine's validation compares with measurements.
pub(crate) fn predict(
    cmd: &mut Command,
    json_path: &Path,
    limit: std::time::Duration,
) -> Result<EngineReport, TaskError> {
    analyse(cmd, json_path, limit)?.engine.ok_or_else(|| {
        TaskError::Step(format!(
            "{}: report whatif wrote no engine prediction",
            json_path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use model::whatif::{CandidateKind, Decision, ServerSetting, SCHEMA_VERSION};

    use super::*;

    #[test]
    fn the_llm_probe_prompts_have_their_length_in_words_and_share_no_first_word() {
        let text = llm_probe_payloads(16, 3);
        let prompts: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["input"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(prompts.len(), 3);
        for (i, p) in prompts.iter().enumerate() {
            let words: Vec<&str> = p.split_whitespace().collect();
            assert_eq!(words.len(), 16, "{p}");
            assert_eq!(words[0], format!("probe{i}"));
        }
    }

    #[test]
    fn a_whatif_json_reads_through_the_contract_and_a_missing_decision_field_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("whatif.json");
        let report = WhatifReport {
            schema_version: SCHEMA_VERSION,
            after: Some(Decision {
                kind: CandidateKind::Server,
                label: "max_num_seqs 20".to_owned(),
                loadgen_args: vec!["--profile".to_owned(), "baseline".to_owned()],
                server_setting: Some(ServerSetting::MaxNumSeqs { max_num_seqs: 20 }),
                reason: "20 streams for 8 slots".to_owned(),
                numbers: BTreeMap::from([("max_num_seqs".to_owned(), 20.0)]),
            }),
            server_change: None,
            engine: None,
            llm: None,
        };
        std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
        let back: WhatifReport = json::read(&path).unwrap();
        assert_eq!(back, report);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"reason\"", "\"why\"");
        std::fs::write(&path, text).unwrap();
        let err = json::read::<WhatifReport>(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("{}: missing field `after.reason`", path.display())
        );
    }
}
