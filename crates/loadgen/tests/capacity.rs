//! `loadgen capacity`: the search against a simulator whose capacity is
//! known exactly, and the binary's flags and exit codes. The search logic,
//! driven by a fake runner on paused time, and the judging of a step are
//! tested beside them, in `src/capacity/tests.rs`.

mod common;

use common::loadgen;

use std::process::Command;
use std::time::{Duration, Instant};

use loadgen::capacity::{
    search, Answer, CapacityOptions, CapacityReport, LoadgenRunner, Phase, StepRecord, Stopped,
    TableRow,
};
use loadgen::{Arrival, LoadConfig};

/// One worker, 100 ms per request whatever its size, no jitter: exactly 10
/// requests/s.
fn ten_per_second_server() -> stub_server::RunningServer {
    let mut config = stub_server::ServerConfig::profile("placeholder").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.workers = 1;
    config.service.base_ms = 100.0;
    config.service.per_item_ms = 0.0;
    config.service.jitter = 0.0;
    stub_server::spawn(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_capacity_of_a_ten_per_second_server() {
    let server = ten_per_second_server();
    let base = LoadConfig {
        url: server.url(),
        timeout: Duration::from_secs(10),
        progress: false,
        ..LoadConfig::default()
    };
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut runner = LoadgenRunner::new(base, Arrival::Constant, 1000, stop_rx);
    let options = CapacityOptions {
        step_duration: Duration::from_secs(2),
        warmup: loadgen::Warmup::For(Duration::from_millis(500)),
        start_rate_rps: 4.0,
        precision: 0.05,
        repeats: 2,
        time_limit: Duration::from_secs(120),
        ..CapacityOptions::default()
    };
    let started = Instant::now();
    let mut table = Vec::new();
    let report = search(&options, &mut runner, &mut |r: &StepRecord| {
        table.push(TableRow(r).to_string())
    })
    .await
    .unwrap();
    let took_s = started.elapsed().as_secs_f64();
    println!("{}", table.join("\n"));
    print!("{}", Answer(&report));
    println!("capacity test took {took_s:.1} s");

    let max = report.max_rate_rps.expect("an answer");
    assert!(
        (9.0..=11.0).contains(&max),
        "max_rate_rps {max}: {report:#?}"
    );
    assert_eq!(report.stopped, Stopped::Converged, "{report:#?}");
    assert!(!report.bounded_by_time);
    // Under capacity the latency is the service time; the interval is
    // around the pooled P95.
    let p95 = report.p95_at_max_ms.unwrap();
    assert!((95.0..400.0).contains(&p95), "P95 at the answer {p95}");
    let [lo, hi] = report.p95_interval_ms.unwrap();
    assert!(lo <= p95 && p95 <= hi, "{lo} {p95} {hi}");
    let goodput = report.goodput_rps.unwrap();
    assert!(
        goodput > 0.9 * max && goodput < 1.1 * max,
        "goodput {goodput}"
    );
    let phases: Vec<Phase> = report.curve.iter().map(|s| s.phase).collect();
    assert_eq!(&phases[..3], [Phase::Bracket; 3], "4, 8 and 16 req/s");
    assert!(phases.contains(&Phase::Bisect));
    let repeats: Vec<&StepRecord> = report
        .curve
        .iter()
        .filter(|s| s.phase == Phase::Repeat)
        .collect();
    assert!(repeats
        .iter()
        .all(|s| s.sustainable && s.offered_rps == max));
    // Twice the capacity queues: the answers lag the sends.
    let overload = &report.curve[2];
    assert_eq!(overload.offered_rps, 16.0);
    assert!(!overload.sustainable);
    assert!(overload.achieved_rps < 11.0, "{overload:?}");
}

#[test]
fn bad_capacity_flags_exit_2_naming_the_flag() {
    // Every case is refused before a connection is opened.
    let cases: &[(&[&str], &str)] = &[
        (&["--precision", "0"], "--precision"),
        (&["--precision", "0.7"], "from 0.001 to 0.5"),
        (&["--repeats", "0"], "--repeats"),
        (&["--repeats", "21"], "must be 1..=20"),
        (&["--step-duration", "0s"], "--step-duration"),
        (&["--step-duration", "2"], "has no unit"),
        (&["--warmup", "11m"], "at most 10m"),
        (&["--start-rate", "0"], "--start-rate"),
        (&["--max-rate", "-1"], "--max-rate"),
        (
            &["--start-rate", "4", "--max-rate", "2"],
            "below --start-rate",
        ),
        (&["--time-limit", "5s"], "shorter than one step"),
        (&["--start-rate", "0.1"], "at least 5"),
        (&["--sla", "p95=800"], "--sla"),
        (&["--sla", "latency<=5"], "unknown metric"),
        (&["--arrival", "bursty"], "--arrival"),
        (&["-n", "100"], "-n/--requests does not apply to capacity"),
        (&["-z", "5s"], "--step-duration sets each step"),
        (&["--rate", "5"], "the search chooses the rates"),
        (&["-c", "4"], "its steps are open-loop"),
        (&["-o", "log.csv"], "writes no per-request log"),
        (&["--threads", "2"], "apply to the closed loop"),
        (
            &["--url", "ftp://127.0.0.1/v1/infer"],
            "use http:// or https://",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["capacity", "--json", "never-written.json"];
        all.extend_from_slice(args);
        let out = loadgen(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let out = loadgen(&["capacity"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--json"));
    assert!(!std::path::Path::new("never-written.json").exists());
}

#[test]
fn the_binary_exits_0_with_an_answer_and_1_with_nothing_sustainable() {
    let server = ten_per_second_server();
    let dir = common::temp_dir("capacity-cli");
    let json = dir.join("capacity.json");
    let url = server.url();
    // --max-rate under the capacity: sustainable there, confirmed once.
    let out = loadgen(&[
        "capacity",
        "--url",
        &url,
        "--json",
        json.to_str().unwrap(),
        "--start-rate",
        "5",
        "--max-rate",
        "5",
        "--step-duration",
        "1s",
        "--warmup",
        "0s",
        "--repeats",
        "1",
        "-q",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("offered/s"), "the table: {stdout}");
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in [
        "schema_version",
        "sla",
        "max_rate_rps",
        "p95_at_max_ms",
        "p95_interval_ms",
        "goodput_rps",
        "curve",
        "step_duration_s",
        "warmup_s",
        "precision",
        "repeats",
        "elapsed_s",
        "bounded_by_time",
        "stopped",
    ] {
        assert!(value.get(key).is_some(), "missing {key}: {value}");
    }
    assert_eq!(value["schema_version"], 1);
    assert_eq!(value["sla"][0], "p95<=800");
    assert_eq!(value["max_rate_rps"], 5.0);
    assert_eq!(value["stopped"], "max_rate");
    let step = &value["curve"][0];
    for key in [
        "phase",
        "offered_rps",
        "achieved_rps",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "succeeded",
        "failed",
        "error_rate",
        "sustainable",
        "reason",
    ] {
        assert!(step.get(key).is_some(), "missing curve.{key}: {step}");
    }
    assert_eq!(step["phase"], "bracket");
    // The readers read it through the writer's own type: the report's
    // `--capacity` and `model` for xtask.
    let typed = CapacityReport::read(&json).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), value);
    assert!(typed.found());
    let shown = model::capacity::Capacity::read(&json).unwrap();
    assert_eq!(shown.measured, typed);
    assert!(
        shown.sentence().contains("5.00 req/s"),
        "{}",
        shown.sentence()
    );
    drop(server);

    // Nothing listens: every request of the first step fails.
    let out = loadgen(&[
        "capacity",
        "--url",
        &common::dead_url(),
        "--json",
        json.to_str().unwrap(),
        "--start-rate",
        "5",
        "--step-duration",
        "1s",
        "--warmup",
        "0s",
        "-q",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(value["stopped"], "nothing_sustainable");
    assert!(value["max_rate_rps"].is_null());
    let reason = value["curve"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("connect_refused"), "{reason}");
}

#[cfg(unix)]
#[test]
fn sigint_stops_the_search_and_writes_what_was_measured() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let server = ten_per_second_server();
    let dir = common::temp_dir("capacity-sigint");
    let json = dir.join("capacity.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["capacity", "--url", &server.url(), "-q"])
        .args([
            "--start-rate",
            "5",
            "--step-duration",
            "1s",
            "--warmup",
            "0s",
        ])
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first step's row of the table (a condition, not a
    // sleep): the second step is then under way.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let first_step = line.starts_with("bracket");
        seen.push(line);
        if first_step {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.starts_with("bracket")),
        "{seen:?}"
    );
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{seen:?} {rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(value["stopped"], "interrupted", "{value}");
    let curve = value["curve"].as_array().unwrap();
    assert!(!curve.is_empty(), "{value}");
    assert_eq!(curve[0]["offered_rps"], 5.0);
    // The best rate measured so far (5, or 10 had the step ended first).
    assert!(value["max_rate_rps"].as_f64().unwrap() >= 5.0, "{value}");
}

/// An LLM server whose capacity is worked by hand: 4 slots, every step
/// 10 ms whatever it holds, answers of 10 tokens (one a step, the first
/// from the step that admits the sequence), so a slot serves one request
/// per 100 ms and the server 4 / 0.1 s = 40 requests/s. Below that no
/// stream waits for a slot (TTFT about one step, ITL one step); above it
/// the queue, and the TTFT, grow for as long as the step lasts.
#[test]
fn finds_the_capacity_of_an_llm_server_under_ttft_and_itl_objectives() {
    let mut config = stub_server::ServerConfig::profile("zero-cost").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.llm = stub_server::LlmConfig {
        max_num_seqs: 4,
        step_base_ms: 10.0,
        step_per_seq_ms: 0.0,
        prefill_per_token_ms: 0.0,
        ..stub_server::LlmConfig::default()
    };
    let server = stub_server::spawn(config).unwrap();
    let dir = common::temp_dir("capacity-llm");
    let json = dir.join("capacity.json");
    let url = format!("http://{}", server.addr);
    let out = loadgen(&[
        "capacity",
        "--url",
        &url,
        "--api",
        "openai-chat",
        "--max-tokens",
        "10",
        "--json",
        json.to_str().unwrap(),
        "--sla",
        "ttft_p95<=200",
        "--sla",
        "itl_p99<=50",
        "--start-rate",
        "10",
        "--max-rate",
        "160",
        "--step-duration",
        "3s",
        "--warmup",
        "1s",
        "--precision",
        "0.05",
        "--repeats",
        "1",
        "-q",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = CapacityReport::read(&json).unwrap();
    assert_eq!(report.sla, ["ttft_p95<=200", "itl_p99<=50"]);
    let max = report.max_rate_rps.expect("an answer");
    assert!(
        (36.0..=44.0).contains(&max),
        "max_rate_rps {max}, the hand-worked 40/s: {report:#?}"
    );
    // Past the capacity the queue breaks the TTFT objective, never the
    // ITL one: the streams that have a slot still get a token a step.
    let over: Vec<&StepRecord> = report.curve.iter().filter(|s| !s.sustainable).collect();
    assert!(!over.is_empty(), "{report:#?}");
    assert!(
        over.iter().all(|s| !s.reason.contains("itl_p99")),
        "{over:#?}"
    );
    assert!(
        over.iter()
            .any(|s| s.reason.contains("ttft_p95<=200 not met")),
        "{over:#?}"
    );
}
