//! End-to-end tests of `report whatif`: synthetic Before and probe logs
//! drawn from a known server model, the binary run on them, and its JSON
//! read back through the typed schema.

mod common;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use model::log::{LogRow, LogWriter};
use model::whatif::{CandidateKind, Load, ServerSetting, WhatifReport, SCHEMA_VERSION};
use stats::SplitMix64;

/// The server a synthetic log is drawn from.
#[derive(Clone, Copy)]
struct Truth {
    workers: usize,
    base_ms: f64,
    per_item_ms: f64,
    sigma: f64,
}

/// The placeholder scenario: 2 workers, 100 ms + 2 ms per item, jitter 0.1.
const PLACEHOLDER: Truth = Truth {
    workers: 2,
    base_ms: 100.0,
    per_item_ms: 2.0,
    sigma: 0.1,
};

const T0_MS: f64 = 1_700_000_000_000.0;
/// Client time per request beyond the server's (connect, transfer), ms.
const OVERHEAD_MS: f64 = 1.5;
/// Of which the TCP connect, which a pooled connection does not pay, ms.
const CONNECT_MS: f64 = 0.3;

struct Normals(SplitMix64);

impl Normals {
    fn next(&mut self) -> f64 {
        let u1 = self.0.unit_open_closed();
        let u2 = self.0.unit_open_closed();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A closed-loop Before of unbatched requests on per-request connections.
/// Clients are served in the order they issue (FIFO), each by the earliest
/// free worker; half the overhead before the server, half after.
fn before_rows(truth: Truth, concurrency: usize, requests: usize, seed: u64) -> Vec<LogRow> {
    let mut z = Normals(SplitMix64::new(seed));
    let mut clients: BinaryHeap<Reverse<(u64, usize)>> =
        (0..concurrency).map(|c| Reverse((0, c))).collect();
    let mut worker_free_ms = vec![0.0f64; truth.workers];
    let mut rows = Vec::new();
    for id in 0..requests as u64 {
        let Reverse((issue_us, client)) = clients.pop().unwrap();
        let issue_ms = issue_us as f64 / 1000.0;
        let arrive_ms = issue_ms + OVERHEAD_MS / 2.0;
        let (w, free_ms) = worker_free_ms
            .iter()
            .copied()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        let start_ms = arrive_ms.max(free_ms);
        let service_ms = (truth.base_ms + truth.per_item_ms) * (truth.sigma * z.next()).exp();
        worker_free_ms[w] = start_ms + service_ms;
        let done_ms = start_ms + service_ms + OVERHEAD_MS / 2.0;
        rows.push(LogRow {
            request_id: id,
            timestamp_ms: T0_MS + issue_ms,
            latency_ms: done_ms - issue_ms,
            status_code: 200,
            ok: true,
            batch_id: Some(id),
            batch_size: Some(1),
            connect_ms: Some(CONNECT_MS),
            queue_ms: Some(start_ms - arrive_ms),
            service_ms: Some(service_ms),
            output_digest: Some(format!("d{id}")),
            ..LogRow::default()
        });
        // Microsecond clock, so ties between clients stay exact.
        clients.push(Reverse(((done_ms * 1000.0).round() as u64, client)));
    }
    rows
}

/// What `loadgen --connection pooled -c B --batch-size B -n 8B` logs:
/// eight batches of `b`, one at a time.
fn probe_rows(truth: Truth, b: u32, seed: u64) -> Vec<LogRow> {
    let mut z = Normals(SplitMix64::new(seed));
    let mut t_ms = 0.0;
    let mut rows = Vec::new();
    for batch in 0..8u64 {
        let service_ms =
            (truth.base_ms + truth.per_item_ms * f64::from(b)) * (truth.sigma * z.next()).exp();
        for item in 0..u64::from(b) {
            rows.push(LogRow {
                request_id: batch * u64::from(b) + item,
                timestamp_ms: T0_MS + t_ms,
                latency_ms: service_ms + OVERHEAD_MS - CONNECT_MS,
                status_code: 200,
                ok: true,
                batch_id: Some(batch),
                batch_size: Some(b),
                connect_ms: Some(0.0),
                queue_ms: Some(0.0),
                service_ms: Some(service_ms),
                output_digest: Some(format!("d{item}")),
                ..LogRow::default()
            });
        }
        t_ms += service_ms + OVERHEAD_MS;
    }
    rows
}

fn write_log(dir: &Path, name: &str, rows: &[LogRow]) -> PathBuf {
    let path = dir.join(name);
    let llm = rows.iter().any(|r| r.llm.is_some());
    let mut log = LogWriter::create(&path, llm).unwrap();
    for row in rows {
        log.write_row(row).unwrap();
    }
    log.flush().unwrap();
    path
}

/// A Before at `concurrency` and probes at 8 and 32 items.
fn scenario(dir: &Path, truth: Truth, concurrency: usize, requests: usize) -> [PathBuf; 3] {
    [
        write_log(
            dir,
            "before.csv",
            &before_rows(truth, concurrency, requests, 11),
        ),
        write_log(dir, "probe8.csv", &probe_rows(truth, 8, 12)),
        write_log(dir, "probe32.csv", &probe_rows(truth, 32, 13)),
    ]
}

fn whatif(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_report"))
        .arg("whatif")
        .args(args)
        .output()
        .unwrap()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn read_report(path: &Path) -> WhatifReport {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn whatif_placeholder_scenario_chooses_client_batching_within_the_sla() {
    let dir = common::temp_dir("whatif-placeholder");
    let [before, p8, p32] = scenario(&dir, PLACEHOLDER, 20, 400);
    let json = dir.join("whatif.json");
    let out = whatif(&[
        "--before",
        s(&before),
        "--probe",
        s(&p8),
        s(&p32),
        "--json",
        s(&json),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", stderr(&out));
    assert!(stdout.contains("Chosen: client batching B="), "{stdout}");

    let whole = read_report(&json);
    assert_eq!(whole.schema_version, SCHEMA_VERSION);
    let report = whole.engine.clone().expect("the engine's prediction");
    // The load defaults to the Before's: 20 in flight, 400 requests.
    assert_eq!(
        report.load,
        Load::Closed {
            concurrency: 20,
            requests: 400
        }
    );
    let fit = &report.fit;
    assert!(fit.base_ms.contains(100.0), "{:?}", fit.base_ms);
    assert!(fit.per_item_ms.contains(2.0), "{:?}", fit.per_item_ms);
    assert!(fit.sigma.contains(0.1), "{:?}", fit.sigma);
    assert_eq!(fit.workers, 2);
    assert_eq!(fit.batch_sizes, [1, 8, 32]);
    assert_eq!(fit.max_batch, 32);
    assert_eq!(fit.executions, 400 + 16);
    assert!((fit.overhead_ms_mean - OVERHEAD_MS).abs() < 0.01);

    let chosen = report.chosen.as_ref().unwrap();
    assert_eq!(chosen.kind, CandidateKind::Client);
    assert!(chosen.batch_size > 1, "{chosen:?}");
    assert!(chosen.p95_ms < 640.0 && chosen.meets_sla_with_margin);
    assert!(chosen.p95_interval_ms[1] <= 640.0);
    assert!(report.batching_helps);
    assert_eq!(
        chosen.loadgen_args,
        [
            "--connection".to_owned(),
            "pooled".to_owned(),
            "--batch-size".to_owned(),
            chosen.batch_size.to_string(),
            "--batch-wait-ms".to_owned(),
            chosen.batch_wait_ms.to_string(),
        ]
    );
    // The baseline reproduces the Before: 20 requests on 2 workers, ~1 s.
    assert_eq!(report.baseline.kind, CandidateKind::Baseline);
    assert_eq!(
        report.baseline.loadgen_args,
        ["--connection", "per-request"]
    );
    assert!(
        (900.0..1300.0).contains(&report.baseline.p95_ms),
        "{}",
        report.baseline.p95_ms
    );
    assert!(!report.baseline.meets_sla_with_margin);
    // Ranked by P95, the server change present and labelled.
    assert!(report
        .candidates
        .windows(2)
        .all(|w| w[0].p95_ms <= w[1].p95_ms && w[0].rank + 1 == w[1].rank));
    let worker = report
        .candidates
        .iter()
        .find(|r| r.kind == CandidateKind::Server)
        .unwrap();
    assert_eq!(worker.server_args, ["--workers", "3"]);
    assert!(
        report.conclusion.contains("Choose client batching"),
        "{}",
        report.conclusion
    );
    // The After the workflow runs is the engine's choice, with its reason.
    let after = whole.after.as_ref().expect("the After's decision");
    assert_eq!(after.kind, CandidateKind::Client);
    assert_eq!(after.loadgen_args, chosen.loadgen_args);
    assert_eq!(after.server_setting, None);
    assert_eq!(after.reason, report.conclusion);
    assert_eq!(after.numbers["predicted_p95_ms"], chosen.p95_ms);
    assert_eq!(whole.server_change, None);
    let capacity = &report.predicted_capacity_rps;
    let baseline_rps = capacity.baseline.unwrap();
    assert!((10.0..=20.0).contains(&baseline_rps), "{baseline_rps}");
    assert!(capacity.chosen.is_some());
    // Open-loop traffic fills batches only with time: the client for it
    // batches, and sustains more than the unbatched baseline.
    let best = capacity
        .best
        .as_ref()
        .expect("a client for open-loop traffic");
    assert!(best.batch_size > 1, "{best:?}");
    assert!(best.max_rate_rps > baseline_rps, "{best:?}");
}

#[test]
fn whatif_batching_is_useless_when_nothing_queues_and_items_cost_as_much_as_batches() {
    let dir = common::temp_dir("whatif-useless");
    let truth = Truth {
        base_ms: 20.0,
        per_item_ms: 18.0,
        ..PLACEHOLDER
    };
    let [before, p8, p32] = scenario(&dir, truth, 2, 200);
    let json = dir.join("whatif.json");
    let out = whatif(&[
        "--before",
        s(&before),
        "--probe",
        s(&p8),
        "--probe",
        s(&p32),
        "--refits",
        "20",
        "--json",
        s(&json),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = read_report(&json).engine.expect("the engine's prediction");
    assert!(!report.batching_helps);
    assert_eq!(report.refits, 20);
    let chosen = report.chosen.unwrap();
    assert_eq!((chosen.batch_size, chosen.pooled), (1, true));
    assert!(
        report.conclusion.starts_with("Batching will not help"),
        "{}",
        report.conclusion
    );
}

#[test]
fn whatif_an_sla_nothing_can_meet_exits_1_with_no_choice() {
    let dir = common::temp_dir("whatif-unmet");
    let [before, p8, p32] = scenario(&dir, PLACEHOLDER, 20, 200);
    let json = dir.join("whatif.json");
    let out = whatif(&[
        "--before",
        s(&before),
        "--probe",
        s(&p8),
        s(&p32),
        "--sla-p95-ms",
        "90",
        "--refits",
        "10",
        "--json",
        s(&json),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let whole = read_report(&json);
    let report = whole.engine.expect("the engine's prediction");
    assert!(report.chosen.is_none());
    // The best client candidate is still the After, marked as not keeping
    // the SLA with the margin.
    let after = whole.after.expect("the best client candidate");
    assert_eq!(after.kind, CandidateKind::Client);
    assert_eq!(after.numbers["meets_sla_with_margin"], 0.0);
    assert!(report
        .conclusion
        .contains("client-side candidate keeps P95"));
}

#[test]
fn whatif_bad_flags_exit_2_naming_the_flag() {
    let dir = common::temp_dir("whatif-flags");
    let [before, p8, _] = scenario(&dir, PLACEHOLDER, 4, 40);
    let json = dir.join("whatif.json");
    let base = [
        "--before",
        s(&before),
        "--probe",
        s(&p8),
        "--json",
        s(&json),
    ];
    let stats = dir.join("stats.json");
    std::fs::write(&stats, "{}").unwrap();
    let cases: [(&[&str], &str); 11] = [
        // Statistics come in pairs: the Before's and one per probe.
        (&["--before-stats", s(&stats)], "--probe-stats"),
        (
            &[
                "--before-stats",
                s(&stats),
                "--probe-stats",
                s(&stats),
                s(&stats),
            ],
            "--probe-stats",
        ),
        (
            &["--before-stats", s(&stats), "--probe-stats", s(&stats)],
            "not a server statistics file",
        ),
        (&["--margin", "1.5"], "--margin"),
        (&["--margin", "-0.1"], "--margin"),
        (&["--sla-p95-ms", "-5"], "--sla-p95-ms"),
        (&["--concurrency", "0"], "--concurrency"),
        (&["--refits", "1"], "--refits"),
        (&["--rate", "0"], "--rate"),
        (&["--rate", "10", "--concurrency", "4"], "--concurrency"),
        (&["--max-batch", "0"], "--max-batch"),
    ];
    for (extra, flag) in cases {
        let out = whatif(&[&base[..], extra].concat());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(flag), "{extra:?}: {err}");
    }
    assert!(!json.exists(), "no JSON on a refused flag");

    // A Before alone has one batch size: the error says which probe to run.
    let out = whatif(&["--before", s(&before), "--json", s(&json)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("batch size 1") && err.contains("--probe"),
        "{err}"
    );

    let missing = dir.join("missing.csv");
    let out = whatif(&["--before", s(&missing), "--json", s(&json)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.csv"));
}

/// A streamed LLM run as loadgen logs it: a closed loop of `concurrency`
/// streams against a continuous-batching server with `slots` slots whose
/// step costs 6 ms + 0.4 ms per sequence + 0.05 ms per prompt token, every
/// prompt `prompt` tokens and every answer `answer` tokens; a request
/// reaches the server 1 ms after it starts (0.2 ms of it connecting) and
/// joins the first step that begins after.
fn llm_rows(
    slots: usize,
    concurrency: usize,
    requests: usize,
    prompt: u32,
    answer: usize,
) -> Vec<LogRow> {
    struct Running {
        id: usize,
        reads: Vec<f64>,
    }
    let step_ms =
        |running: usize, prefill: u32| 6.0 + 0.4 * running as f64 + 0.05 * f64::from(prefill);
    let mut starts: Vec<f64> = vec![0.0; concurrency.min(requests)];
    let mut waiting: std::collections::VecDeque<(usize, f64)> = starts
        .iter()
        .enumerate()
        .map(|(i, t)| (i, t + 1.0))
        .collect();
    let mut running: Vec<Running> = Vec::new();
    let mut rows: Vec<(usize, f64, Vec<f64>)> = Vec::new();
    let mut now = 0.0_f64;
    while rows.len() < requests {
        if running.is_empty() {
            // Idle: the next step starts as the first waiting arrives.
            match waiting.front() {
                Some(&(_, arrival)) => now = now.max(arrival),
                None => break,
            }
        }
        let mut joined = 0;
        while running.len() < slots && waiting.front().is_some_and(|&(_, a)| a <= now) {
            let (id, _) = waiting.pop_front().unwrap();
            running.push(Running {
                id,
                reads: Vec::new(),
            });
            joined += 1;
        }
        now += step_ms(running.len(), joined * prompt);
        for r in &mut running {
            r.reads.push(now);
        }
        let (done, still): (Vec<Running>, Vec<Running>) =
            running.into_iter().partition(|r| r.reads.len() == answer);
        running = still;
        for r in done {
            rows.push((r.id, starts[r.id], r.reads));
            if starts.len() < requests {
                starts.push(now);
                waiting.push_back((starts.len() - 1, now + 1.0));
            }
        }
    }
    rows.into_iter()
        .map(|(id, start, reads)| LogRow {
            request_id: id as u64,
            timestamp_ms: T0_MS + start,
            latency_ms: reads[reads.len() - 1] - start,
            status_code: 200,
            ok: true,
            connect_ms: Some(0.2),
            output_digest: Some(format!("d{id}")),
            llm: Some(model::log::LlmTiming {
                ttft_ms: Some(reads[0] - start),
                tpot_ms: Some((reads[reads.len() - 1] - reads[0]) / (answer - 1) as f64),
                output_tokens: Some(answer as u64),
                tokens_from: Some(model::log::TokensFrom::Usage),
                itl_ms: reads.windows(2).map(|w| w[1] - w[0]).collect(),
            }),
            ..LogRow::default()
        })
        .collect()
}

/// The LLM Before (20 streams on 8 slots, 34-token prompts, 20 tokens)
/// and the probe (one at a time, prompts of 16, 256 and 1024 tokens).
fn llm_scenario(dir: &Path) -> [PathBuf; 4] {
    [
        write_log(dir, "before.csv", &llm_rows(8, 20, 200, 34, 20)),
        write_log(dir, "probe_p16.csv", &llm_rows(8, 1, 8, 16, 8)),
        write_log(dir, "probe_p256.csv", &llm_rows(8, 1, 8, 256, 8)),
        write_log(dir, "probe_p1024.csv", &llm_rows(8, 1, 8, 1024, 8)),
    ]
}

/// `report whatif --scenario llm` over the scenario, with `extra` flags.
fn llm_whatif(paths: &[PathBuf; 4], json: &Path, extra: &[&str]) -> Output {
    whatif(
        &[
            &[
                "--scenario",
                "llm",
                "--before",
                s(&paths[0]),
                "--prompt-tokens",
                "34",
                "--max-batched-tokens",
                "2048",
                "--probe",
                s(&paths[1]),
                s(&paths[2]),
                s(&paths[3]),
                "--probe-prompt-tokens",
                "16",
                "256",
                "1024",
                "--refits",
                "10",
                "--json",
                s(json),
            ][..],
            extra,
        ]
        .concat(),
    )
}

#[test]
fn whatif_llm_fits_the_steps_and_chooses_the_slots_with_the_predictions() {
    let dir = common::temp_dir("whatif-llm");
    let paths = llm_scenario(&dir);
    let json = dir.join("whatif.json");
    // e2e P95 within 2 s: 20 slots keep every objective; 32 predict the
    // same (20 streams) and are the bigger change.
    let out = llm_whatif(
        &paths,
        &json,
        &["--max-num-seqs", "8", "--sla-p95-ms", "2000"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", stderr(&out));
    assert!(
        stdout.contains("After: server: max_num_seqs 20 (from 8) (server change)"),
        "{stdout}"
    );
    assert!(stdout.contains("Step model: 6.00 ["), "{stdout}");
    let report = read_report(&json);
    assert!(report.engine.is_none() && report.server_change.is_none());
    let llm = report.llm.expect("the LLM engine's report");
    let fit = &llm.fit;
    // Steps without noise: the costs come back exactly (but for the epoch
    // timestamps' rounding).
    for (e, want) in [
        (fit.step_base_ms, 6.0),
        (fit.step_per_seq_ms, 0.4),
        (fit.prefill_per_token_ms, 0.05),
        (fit.client_overhead_ms, 0.8),
    ] {
        assert!(
            (e.value - want).abs() < 1e-3 * want.max(1.0),
            "{e:?} vs {want}"
        );
    }
    assert_eq!(fit.first_token_steps, 24);
    assert_eq!(fit.server.max_num_seqs, 8);
    assert_eq!(fit.slots_from, "--max-num-seqs");
    // Replaying the Before gives back what it measured.
    for check in &fit.checks {
        assert!(check.error_pct.abs() < 1.0, "{check:?}");
    }
    let after = report.after.expect("the LLM decision");
    assert_eq!(after.kind, CandidateKind::Server);
    assert_eq!(
        after.server_setting,
        Some(ServerSetting::MaxNumSeqs { max_num_seqs: 20 })
    );
    assert_eq!(after.loadgen_args, ["--profile", "baseline"]);
    assert!(
        after.reason.starts_with("Choose server: max_num_seqs 20"),
        "{}",
        after.reason
    );
    let chosen = llm.chosen.as_ref().unwrap();
    assert!(chosen.meets_objectives_with_margin);
    assert_eq!(after.numbers["predicted_ttft_p95_ms"], chosen.ttft.p95_ms);
    assert_eq!(after.numbers["slots_before"], 8.0);
    // Every streams gets a slot: the first token is one step (20 sequences,
    // a prefill of 34 tokens at most per join) after the request arrives.
    assert!(chosen.ttft.p95_ms < 60.0, "{chosen:?}");
    assert!(llm.baseline.ttft.p95_ms > 5.0 * chosen.ttft.p95_ms);
    assert_eq!(
        llm.objectives,
        ["ttft_p95<=500", "itl_p99<=50", "p95<=2000"]
    );
    assert!(llm
        .candidates
        .iter()
        .any(|c| c.label.starts_with("server: 2 replicas")));
    assert!(llm
        .candidates
        .iter()
        .any(|c| c.label.starts_with("client: at most") && !c.runnable));

    // Without --max-num-seqs the slots are the most seen decoding at once.
    let out = llm_whatif(&paths, &json, &["--sla-p95-ms", "2000"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let fit = read_report(&json).llm.unwrap().fit;
    assert_eq!(fit.server.max_num_seqs, 8);
    assert!(
        fit.slots_from.starts_with("the most sequences seen"),
        "{}",
        fit.slots_from
    );

    // With the runner able to change nothing but the replicas, the slots
    // are predicted, not chosen.
    let out = llm_whatif(
        &paths,
        &json,
        &["--sla-p95-ms", "2000", "--server-changes", "replicas"],
    );
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{}",
        stderr(&out)
    );
    let report = read_report(&json);
    assert_eq!(
        report.after.unwrap().server_setting,
        Some(ServerSetting::Replicas { replicas: 2 })
    );

    // Flags the LLM engine would not read are refused, and so is a log
    // without tokens.
    for (extra, flag) in [
        (&["--server", "triton"][..], "--server"),
        (&["--max-batch", "8"][..], "--max-batch"),
    ] {
        let out = llm_whatif(&paths, &json, extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        assert!(stderr(&out).contains(flag), "{extra:?}: {}", stderr(&out));
    }
    let [plain, _, _] = scenario(&dir, PLACEHOLDER, 4, 40);
    let out = whatif(&[
        "--scenario",
        "llm",
        "--before",
        s(&plain),
        "--json",
        s(&json),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no successful streamed row"),
        "{}",
        stderr(&out)
    );
    // The LLM server's flags mean nothing to the inference engine.
    let out = whatif(&[
        "--before",
        s(&plain),
        "--max-num-seqs",
        "8",
        "--json",
        s(&json),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--max-num-seqs"), "{}", stderr(&out));
    let out = whatif(&[
        "--before",
        s(&plain),
        "--pass-tokens",
        "512",
        "--json",
        s(&json),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--pass-tokens does nothing with --scenario inference"),
        "{}",
        stderr(&out)
    );
    // A pass of no tokens is refused with what is allowed.
    let out = whatif(&[
        "--scenario",
        "llm",
        "--before",
        s(&plain),
        "--pass-tokens",
        "0",
        "--json",
        s(&json),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--pass-tokens"), "{}", stderr(&out));
}

/// A `loadgen --server-stats` file whose delta executed `count` requests
/// in `ns` nanoseconds.
fn stats_file(dir: &Path, count: u64, ns: u64) -> PathBuf {
    let model = |count: u64, ns: u64| {
        format!(
            r#"{{"name": "example-model", "version": "1", "inference_count": {count}, "execution_count": {count},
                "inference_stats": {{"success": {{"count": {count}, "ns": {ns}}}, "compute_infer": {{"count": {count}, "ns": {ns}}}}},
                "batch_stats": [{{"batch_size": 1, "compute_infer": {{"count": {count}, "ns": {ns}}}}}]}}"#
        )
    };
    let path = dir.join("before_server_stats.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"path": "/v2/models/example-model/stats", "before": {}, "after": {}, "delta": {}}}"#,
            model(0, 0),
            model(count, ns),
            model(count, ns)
        ),
    )
    .unwrap();
    path
}

#[test]
fn whatif_triton_decides_the_dynamic_batcher_from_the_before_statistics() {
    let dir = common::temp_dir("whatif-triton");
    let [before, _, _] = scenario(&dir, PLACEHOLDER, 20, 400);
    // 400 executions of 102 ms: 2% is 2.04 ms, rounded to 2000 us.
    let stats = stats_file(&dir, 400, 40_800_000_000);
    let json = dir.join("whatif.json");
    let out = whatif(&[
        "--server",
        "triton",
        "--before",
        s(&before),
        "--before-stats",
        s(&stats),
        "--json",
        s(&json),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", stderr(&out));
    let report = read_report(&json);
    // No probe: no engine, and so no client change; the server change alone.
    assert!(report.engine.is_none() && report.after.is_none());
    let change = report.server_change.expect("the server change");
    assert_eq!(change.kind, CandidateKind::Server);
    assert_eq!(
        change.server_setting,
        Some(ServerSetting::DynamicBatching {
            max_queue_delay_us: 2000
        })
    );
    assert_eq!(change.label, "dynamic batching, max_queue_delay 2000 us");
    assert!(
        change.reason.starts_with(
            "max_queue_delay 2000 us = 2% of the Before's measured execution of 102.0 ms"
        ),
        "{}",
        change.reason
    );
    assert_eq!(change.numbers["execution_ms"], 102.0);
    assert!(stdout.contains("Server change, measured beside the After"));

    // Triton needs its statistics; none executed is an error naming the file.
    let out = whatif(&[
        "--server",
        "triton",
        "--before",
        s(&before),
        "--json",
        s(&json),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--before-stats"), "{}", stderr(&out));
    let empty = stats_file(&dir, 0, 0);
    let out = whatif(&[
        "--server",
        "triton",
        "--before",
        s(&before),
        "--before-stats",
        s(&empty),
        "--json",
        s(&json),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("Triton reported no executions") && err.contains(s(&empty)),
        "{err}"
    );
}

#[test]
fn compare_carries_the_decision_it_ran_into_comparison_json_and_the_reports() {
    let dir = common::temp_dir("whatif-compare");
    let paths = llm_scenario(&dir);
    let json = dir.join("whatif.json");
    let out = llm_whatif(
        &paths,
        &json,
        &["--max-num-seqs", "8", "--sla-p95-ms", "2000"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The After as the decision runs it: 20 slots.
    let after = write_log(&dir, "after.csv", &llm_rows(20, 20, 200, 34, 20));
    let before = &paths[0];
    let out_dir = dir.join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .args(["compare", "--before", s(before), "--after", s(&after)])
        .args(["--sla-p95-ms", "2000"])
        .args(["--prediction", s(&json), "--out-dir", s(&out_dir)])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", stderr(&out));
    assert!(
        stdout.contains(
            "Chosen by the analysis, a server change: server: max_num_seqs 20 (from 8). Why: Choose"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "The LLM what-if engine chose server: max_num_seqs 20 (from 8): TTFT P95 predicted"
        ),
        "{stdout}"
    );
    let text = std::fs::read_to_string(out_dir.join("comparison.json")).unwrap();
    let c: model::comparison::Comparison = serde_json::from_str(&text).unwrap();
    let decision = c.decision.expect("the decision");
    assert_eq!(
        decision.server_setting,
        Some(ServerSetting::MaxNumSeqs { max_num_seqs: 20 })
    );
    // Not the batch engine's candidate; the LLM engine's prediction is
    // beside the measurement, and on this noiseless server close to it.
    assert!(c.prediction.is_none());
    let p = c.llm_prediction.expect("the LLM prediction");
    assert!(p.chosen);
    assert_eq!(p.rows.len(), 12);
    for metric in ["ttft_p95", "itl_p99", "tpot_p50", "e2e_p95"] {
        let row = p.rows.iter().find(|r| r.metric == metric).unwrap();
        let error = row.error_pct.unwrap();
        assert!(error.abs() < 5.0, "{row:?}");
    }
    assert!(p.ranked.len() >= 8);
    // The Before's first tokens were waiting for a slot: the diagnosis
    // says so, and splits its TTFT.
    let wait = c
        .diagnosis
        .iter()
        .find(|f| f.id == "llm_slot_wait" && f.side == "before")
        .expect("the slot-wait finding");
    assert!(
        wait.finding.contains("waiting for a sequence slot"),
        "{}",
        wait.finding
    );
    let split = c
        .diagnosis
        .iter()
        .find(|f| f.id == "llm_ttft_split" && f.side == "before")
        .expect("the TTFT split");
    assert!(split.values["wait_pct"] > 80.0, "{split:?}");
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        md.contains("## Why this After (the analysis's decision)"),
        "{md}"
    );
    assert!(
        md.contains("## Prediction (LLM what-if engine) beside measurement"),
        "{md}"
    );
    assert!(md.contains("| TTFT P95 |"), "{md}");
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("Why this After"));
    assert!(html.contains("Prediction (LLM what-if engine)"));

    // The server change beside the After is carried only when named.
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .args(["compare", "--before", s(before), "--after", s(&after)])
        .args(["--prediction", s(&json), "--decision", "server-change"])
        .args(["--out-dir", s(&out_dir)])
        .output()
        .unwrap();
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(out_dir.join("comparison.json")).unwrap();
    let c: model::comparison::Comparison = serde_json::from_str(&text).unwrap();
    assert!(c.decision.is_none() && c.llm_prediction.is_none());
}
