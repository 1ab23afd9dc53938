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

/// A streamed LLM Before: 20 streams, first tokens at `ttft_ms[i % len]`,
/// then 10 ms between tokens.
fn llm_before(dir: &Path, ttft_ms: &[f64]) -> PathBuf {
    let rows: Vec<LogRow> = (0..40u64)
        .map(|id| {
            let ttft = ttft_ms[id as usize % ttft_ms.len()];
            LogRow {
                request_id: id,
                timestamp_ms: T0_MS + (id / 20) as f64 * 2_000.0,
                latency_ms: ttft + 10.0 * 31.0,
                status_code: 200,
                ok: true,
                output_digest: Some(format!("d{id}")),
                llm: Some(model::log::LlmTiming {
                    ttft_ms: Some(ttft),
                    tpot_ms: Some(10.0),
                    output_tokens: Some(32),
                    tokens_from: Some(model::log::TokensFrom::Usage),
                    itl_ms: vec![10.0; 31],
                }),
                ..LogRow::default()
            }
        })
        .collect();
    write_log(dir, "before.csv", &rows)
}

#[test]
fn whatif_llm_raises_max_num_seqs_to_the_streams_in_flight_with_its_reason() {
    let dir = common::temp_dir("whatif-llm");
    // Medians 700 ms, a tail of 1400: 70 and ~140 decode steps of 10 ms.
    let before = llm_before(&dir, &[700.0, 700.0, 700.0, 1400.0]);
    let json = dir.join("whatif.json");
    let out = whatif(&[
        "--scenario",
        "llm",
        "--max-num-seqs",
        "8",
        "--concurrency",
        "20",
        "--before",
        s(&before),
        "--json",
        s(&json),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", stderr(&out));
    assert!(
        stdout.contains("After: max_num_seqs 20 (server change)"),
        "{stdout}"
    );
    let report = read_report(&json);
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    assert!(report.engine.is_none() && report.server_change.is_none());
    let after = report.after.expect("the LLM decision");
    assert_eq!(after.kind, CandidateKind::Server);
    assert_eq!(
        after.server_setting,
        Some(ServerSetting::MaxNumSeqs { max_num_seqs: 20 })
    );
    assert_eq!(after.loadgen_args, ["--profile", "baseline"]);
    assert!(
        after.reason.contains("TTFT P50 700 ms")
            && after.reason.contains("are 70 and")
            && after.reason.contains("20 streams were in flight")
            && after.reason.contains("for 8 slots"),
        "{}",
        after.reason
    );
    assert_eq!(after.numbers["ttft_p50_ms"], 700.0);
    assert_eq!(after.numbers["itl_p50_ms"], 10.0);
    assert_eq!(after.numbers["slots_before"], 8.0);

    // Without --concurrency the streams in flight come from the log: the
    // two groups of 20 overlap within each group only.
    let out = whatif(&[
        "--scenario",
        "llm",
        "--max-num-seqs",
        "8",
        "--before",
        s(&before),
        "--json",
        s(&json),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        read_report(&json).after.unwrap().numbers["max_num_seqs"],
        20.0
    );

    // Flags the LLM rule would not read are refused, and so is a log
    // without tokens.
    for (extra, flag) in [
        (
            &["--max-num-seqs", "8", "--probe", s(&before)][..],
            "--probe",
        ),
        (
            &["--max-num-seqs", "8", "--server", "triton"][..],
            "--server",
        ),
        (&[][..], "--max-num-seqs"),
    ] {
        let out = whatif(
            &[
                &[
                    "--scenario",
                    "llm",
                    "--before",
                    s(&before),
                    "--json",
                    s(&json),
                ][..],
                extra,
            ]
            .concat(),
        );
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        assert!(stderr(&out).contains(flag), "{extra:?}: {}", stderr(&out));
    }
    let [plain, _, _] = scenario(&dir, PLACEHOLDER, 4, 40);
    let out = whatif(&[
        "--scenario",
        "llm",
        "--max-num-seqs",
        "8",
        "--before",
        s(&plain),
        "--json",
        s(&json),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("measured no time to first token"),
        "{}",
        stderr(&out)
    );
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
    let before = llm_before(&dir, &[700.0, 700.0, 700.0, 1400.0]);
    let json = dir.join("whatif.json");
    let out = whatif(&[
        "--scenario",
        "llm",
        "--max-num-seqs",
        "8",
        "--concurrency",
        "20",
        "--before",
        s(&before),
        "--json",
        s(&json),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after_dir = dir.join("after");
    std::fs::create_dir_all(&after_dir).unwrap();
    let after = llm_before(&after_dir, &[20.0]);
    let out_dir = dir.join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .args(["compare", "--before", s(&before), "--after", s(&after)])
        .args(["--prediction", s(&json), "--out-dir", s(&out_dir)])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", stderr(&out));
    assert!(
        stdout.contains(
            "Chosen by the analysis, a server change: max_num_seqs 20. Why: the Before's TTFT"
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
    assert!(decision.reason.contains("20 streams were in flight"));
    // Not the engine's candidate: no prediction beside it.
    assert!(c.prediction.is_none());
    // The Before's first tokens were waiting for a slot: the diagnosis says so.
    let wait = c
        .diagnosis
        .iter()
        .find(|f| f.id == "llm_slot_wait" && f.side == "before")
        .expect("the slot-wait finding");
    assert_eq!(wait.values["ttft_p50_steps"], 70.0);
    assert!(
        wait.finding.contains("waiting for a sequence slot"),
        "{}",
        wait.finding
    );
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        md.contains("## Why this After (the analysis's decision)"),
        "{md}"
    );
    assert!(md.contains("| streams_in_flight | 20 |"), "{md}");
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("Why this After"));

    // The server change beside the After is carried only when named.
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .args(["compare", "--before", s(&before), "--after", s(&after)])
        .args(["--prediction", s(&json), "--decision", "server-change"])
        .args(["--out-dir", s(&out_dir)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(out_dir.join("comparison.json")).unwrap();
    let c: model::comparison::Comparison = serde_json::from_str(&text).unwrap();
    assert!(c.decision.is_none());
}
