//! End-to-end tests of `report whatif`: synthetic Before and probe logs
//! drawn from a known server model, the binary run on them, and its JSON
//! read back through the typed schema.

mod common;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use model::log::{LogRow, LogWriter};
use report::whatif::{CandidateKind, Load, WhatifReport, SCHEMA_VERSION};
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
    let mut log = LogWriter::create(&path, false).unwrap();
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

    let report = read_report(&json);
    assert_eq!(report.schema_version, SCHEMA_VERSION);
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
    let report = read_report(&json);
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
    let report = read_report(&json);
    assert!(report.chosen.is_none());
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
