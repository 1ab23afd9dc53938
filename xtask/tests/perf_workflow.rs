//! End-to-end runs of `cargo xtask perf` on a fast simulator profile, and its exit codes.
//!
//! The workflow runs the real release binaries of `stub-server`, `loadgen`
//! and `report`. Rather than have each `xtask perf` start a hidden
//! `cargo build --release --quiet` from inside `cargo test`, the test builds
//! them once itself, as a visible step (cargo's progress and any compiler
//! error go to the terminal), finds them from cargo's own artifact messages
//! (so a `CARGO_TARGET_DIR` or `build.target-dir` anywhere is honoured),
//! and points `XTASK_BIN_DIR` at them. Where `XTASK_BIN_DIR` is already
//! set, those binaries are used and nothing is built.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde::Deserialize;

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs")
}

/// `xtask` with the release tools of [`tool_bins`]: no nested build.
fn xtask_with_tools(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("XTASK_BIN_DIR", tool_bins())
        .output()
        .expect("xtask runs")
}

/// The binaries the workflow runs.
const TOOLS: [&str; 3] = ["stub-server", "loadgen", "report"];

/// The directory of the release tools: `XTASK_BIN_DIR` when the
/// environment gives it, else built here once for every test of this file.
fn tool_bins() -> &'static Path {
    static BINS: OnceLock<PathBuf> = OnceLock::new();
    BINS.get_or_init(|| {
        let dir = match std::env::var_os("XTASK_BIN_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => build_tools(),
        };
        for tool in TOOLS {
            assert!(
                dir.join(tool).is_file(),
                "{} has no {tool} (XTASK_BIN_DIR must name a directory of the release tools)",
                dir.display()
            );
        }
        dir
    })
}

/// What the test reads of cargo's `--message-format=json` lines.
#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    target: Option<CargoTarget>,
    #[serde(default)]
    executable: Option<PathBuf>,
}

#[derive(Deserialize)]
struct CargoTarget {
    name: String,
}

/// `cargo build --release` of the tools in the workspace root; the
/// directory cargo reports their executables in.
fn build_tools() -> PathBuf {
    // The root at run time (cargo test sets CARGO_MANIFEST_DIR for the
    // test process too), as xtask itself finds it.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let root = manifest_dir.parent().expect("xtask/ has a parent");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(root).args([
        "build",
        "--release",
        "--bins",
        "--message-format=json-render-diagnostics",
    ]);
    for tool in TOOLS {
        cmd.args(["-p", tool]);
    }
    eprintln!(
        "perf_workflow: building the release tools once: cargo build --release --bins -p stub-server -p loadgen -p report (in {})",
        root.display()
    );
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cargo:?} in {}: {e}", root.display()));
    assert!(
        out.status.success(),
        "the release build failed ({}); cargo's messages are above",
        out.status
    );
    let mut dirs: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<CargoMessage>(line).ok())
        .filter(|m| m.reason == "compiler-artifact")
        .filter(|m| {
            m.target
                .as_ref()
                .is_some_and(|t| TOOLS.contains(&t.name.as_str()))
        })
        .filter_map(|m| m.executable?.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    match dirs.as_slice() {
        [dir] => dir.clone(),
        other => panic!("cargo reported the tools' executables in {other:?}, not in one directory"),
    }
}

/// A fresh directory, removed on drop; the workflow writes into `out` in it.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("xtask-{name}-"))
        .tempdir()
        .unwrap()
}

fn comparison(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("comparison.json")).expect("comparison.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// The repository's root.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Says why a check did not run; under CI (`CI` set) that is a failure.
fn skip(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{why} (CI is set, so this is a failure, not a skip)"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// The Python of `<repo>/.venv-tools` (`xtask/tools/setup.sh`) when it
/// has the independent checkers; else skips, saying why.
fn tools_python() -> Option<PathBuf> {
    let python = repo_root().join(".venv-tools/bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import junitparser, jsonschema, xmlschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        skip(&format!(
            "{} lacks junitparser, jsonschema or xmlschema; run xtask/tools/setup.sh",
            python.display()
        ));
    }
    ready.then_some(python)
}

/// `junit.xml` validated against the JUnit XSD Jenkins documents and read
/// by junitparser (`xtask/tools/check_junit.py`).
fn check_junit(python: &Path, xml: &Path) -> serde_json::Value {
    let root = repo_root();
    let out = Command::new(python)
        .arg(root.join("xtask/tools/check_junit.py"))
        .arg(root.join("crates/report/tests/data/junit-10.xsd"))
        .arg(xml)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read["valid"], true, "{}", read["validation_error"]);
    assert_eq!(read["stated"]["tests"], read["counted"]["tests"]);
    assert_eq!(read["stated"]["failures"], read["counted"]["failures"]);
    read
}

/// The published schema (in `docs/schemas/`) of an output file, by name;
/// `None` for the files written for people. An output of no known kind
/// fails the test: every file another tool may read has a schema.
fn schema_of(path: &Path) -> Option<&'static str> {
    let name = path.file_name().unwrap().to_str().unwrap();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match (name, ext) {
        ("comparison.json", _) => Some("comparison.schema.json"),
        ("whatif.json", _) => Some("whatif.schema.json"),
        ("conditions.json", _) => Some("conditions.schema.json"),
        ("repeats.json", _) => Some("repeats.schema.json"),
        ("capacity.json" | "capacity_open_loop.json", _) => Some("capacity.schema.json"),
        ("before.json" | "after.json" | "server_change.json" | "summary.json", _) => {
            Some("run-summary.schema.json")
        }
        (n, _) if n.ends_with("_server_metrics.json") => Some("server-metrics.schema.json"),
        ("comparison.csv", _) => Some("comparison-csv-row.schema.json"),
        (_, "csv") => Some("log-row.schema.json"),
        ("junit.xml", _) => Some("junit"),
        (_, "md" | "html" | "txt" | "log") => None,
        _ => panic!("{}: an output with no published schema", path.display()),
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The schemas every `./run_tests` run has outputs of (`junit` for
/// `junit.xml`).
const EVERY_RUN: [&str; 6] = [
    "comparison.schema.json",
    "comparison-csv-row.schema.json",
    "run-summary.schema.json",
    "log-row.schema.json",
    "conditions.schema.json",
    "junit",
];

/// Validates every output under `out` against its published schema with
/// `jsonschema` (`xtask/tools/validate_json.py`), and each `junit.xml`
/// with [`check_junit`]; fails when no output is of a schema of
/// [`EVERY_RUN`] or of `also`. Returns the JUnit files read, by path.
fn validate_outputs(python: &Path, out: &Path, also: &[&str]) -> Vec<(PathBuf, serde_json::Value)> {
    let mut by_schema: std::collections::BTreeMap<&str, Vec<PathBuf>> = Default::default();
    for path in files_under(out) {
        if let Some(schema) = schema_of(&path) {
            by_schema.entry(schema).or_default().push(path);
        }
    }
    for must in EVERY_RUN.iter().chain(also) {
        assert!(
            by_schema.contains_key(must),
            "no output for {must}: {by_schema:?}"
        );
    }
    let mut junit = Vec::new();
    for (schema, files) in by_schema {
        if schema == "junit" {
            junit.extend(files.into_iter().map(|f| {
                let read = check_junit(python, &f);
                (f, read)
            }));
            continue;
        }
        let out = Command::new(python)
            .arg(repo_root().join("xtask/tools/validate_json.py"))
            .arg(repo_root().join("docs/schemas").join(schema))
            .args(&files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{schema} on {files:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    junit
}

/// Checks each JUnit suite of a pair against the verdict its
/// `comparison.json` states: one case per check, failed where it failed.
fn assert_suite_is_the_verdict(suite: &serde_json::Value, comparison: &serde_json::Value) {
    let checks = comparison["verdict"]["checks"].as_array().unwrap();
    let cases = suite["cases"].as_array().unwrap();
    assert_eq!(cases.len(), checks.len(), "{suite:#}");
    for (case, check) in cases.iter().zip(checks) {
        let failed = case["result"] == "failure";
        assert_eq!(failed, check["passed"] == false, "{case:#} vs {check:#}");
        if failed {
            let message = case["message"].as_str().unwrap();
            assert!(
                message.contains("measured ") && message.contains(", threshold "),
                "{message}"
            );
        }
    }
    let failures = checks.iter().filter(|c| c["passed"] == false).count();
    assert_eq!(suite["failures"], failures);
}

/// The placeholder profile scaled down tenfold (base 10 ms, 0.2 ms per item)
/// keeps the queueing story and runs in seconds.
const FAST: [&str; 3] = [
    "--skip-python",
    "--server-arg=--base-ms=10",
    "--server-arg=--per-item-ms=0.2",
];

#[test]
fn workflow_runs_end_to_end_and_gates_on_the_sla() {
    let scratch = temp_dir("e2e");
    let out = scratch.path().join("out");
    let out_arg = out.to_string_lossy().into_owned();
    let mut args = vec!["perf", "--out", &out_arg];
    args.extend(FAST);
    let run = xtask_with_tools(&args);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Step 1 took the tools built above: no cargo build inside the workflow.
    assert!(stdout.contains("using prebuilt binaries from"), "{stdout}");

    for file in [
        "before.csv",
        "after.csv",
        "comparison.json",
        "comparison.csv",
        "report.md",
        "report.html",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let c = comparison(&out);
    let before_p95 = c["before"]["p95_ms"].as_f64().unwrap();
    let after_p95 = c["after"]["p95_ms"].as_f64().unwrap();
    // 20 requests in flight on 2 workers of ~10 ms queue ~10 deep: ~100 ms.
    // Batches of 10 at ~12 ms with nothing queued: well under half of that.
    assert!(before_p95 > 60.0, "before P95 {before_p95}");
    assert!(
        after_p95 < before_p95 / 2.0,
        "after P95 {after_p95} vs before {before_p95}"
    );
    assert_eq!(c["after"]["total"], 400);
    assert_eq!(c["after"]["failed"], 0);
    assert_eq!(c["quality"]["identical_inputs"], true);
    assert_eq!(c["quality"]["mismatches"], 0);
    assert_eq!(c["conditions"]["quantile_method"], "linear");
    assert_eq!(c["verdict"]["met"], true);

    // The After is what `report whatif` decided, carried out as written and
    // carried into comparison.json with its reason and numbers; every file
    // reads back through its contract in `model`.
    let read = |name: &str| std::fs::read_to_string(out.join(name)).expect(name);
    let whatif: model::whatif::WhatifReport = serde_json::from_str(&read("whatif.json")).unwrap();
    let decided = whatif.after.expect("report decided the After");
    assert_eq!(decided.kind, model::whatif::CandidateKind::Client);
    assert!(
        decided.reason.contains("Choose client batching"),
        "{}",
        decided.reason
    );
    let doc: model::comparison::Comparison =
        serde_json::from_str(&read("comparison.json")).unwrap();
    assert_eq!(doc.decision.as_ref(), Some(&decided));
    assert!(doc.prediction.is_some());
    let conditions = model::conditions::Conditions::from_json(&read("conditions.json")).unwrap();
    assert_eq!(conditions, doc.conditions);
    assert_eq!(conditions.schema_version, model::conditions::SCHEMA_VERSION);
    assert_eq!(
        conditions.target,
        Some(model::conditions::TargetKind::Simulator)
    );
    assert_eq!(
        (
            conditions.requests,
            conditions.concurrency,
            conditions.server_seed
        ),
        (
            Some(model::BASELINE_REQUESTS),
            Some(model::BASELINE_CONCURRENCY as u64),
            Some(42)
        )
    );
    assert_eq!(
        conditions.after_client,
        Some(format!(
            "loadgen {} --api simulator",
            decided.loadgen_args.join(" ")
        ))
    );
    for phase in ["before", "analysis", "after"] {
        assert!(
            conditions.phases.contains_key(phase),
            "{phase}: {conditions:?}"
        );
    }

    // Every output validates against its published schema, read by
    // programs written apart from this project; the verdict in
    // junit.xml is comparison.json's, every check passed.
    let python = tools_python();
    if let Some(python) = &python {
        let junit = validate_outputs(python, &out, &["whatif.schema.json"]);
        assert_eq!(junit.len(), 1, "{junit:?}");
        let (path, read) = &junit[0];
        assert_eq!(path, &out.join("junit.xml"));
        assert_eq!(read["suites"].as_array().unwrap().len(), 1);
        assert_eq!(read["stated"]["failures"], 0);
        assert_suite_is_the_verdict(&read["suites"][0], &c);
    }

    // Same run, an SLA the After cannot meet, twice over (`--repeat 2`),
    // with the capacity searches: exit 1, and the JSON says why.
    let strict_args = [
        "--sla-p95-ms",
        "1",
        "--repeat",
        "2",
        "--capacity",
        "--capacity-step",
        "1s",
    ];
    let strict = xtask_with_tools(&[&args[..], &strict_args].concat());
    assert_eq!(
        strict.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&strict.stdout)
    );
    assert_eq!(comparison(&out)["verdict"]["met"], false);
    assert!(out.join("repeats.json").is_file() && out.join("capacity.json").is_file());
    // One JUnit file covers both pairs and the proof: each pair's suite is
    // its own verdict; every pair failed, so the proof did.
    if let Some(python) = &python {
        let junit = validate_outputs(
            python,
            &out,
            &[
                "whatif.schema.json",
                "repeats.schema.json",
                "capacity.schema.json",
            ],
        );
        assert_eq!(junit.len(), 1, "{junit:?}");
        let (path, read) = &junit[0];
        eprintln!(
            "perf_workflow: the failing run's junit.xml:\n{}",
            std::fs::read_to_string(path).unwrap()
        );
        let suites = read["suites"].as_array().unwrap();
        assert_eq!(suites.len(), 3, "{read:#}");
        for (suite, dir) in suites.iter().zip([out.clone(), out.join("repeat-2")]) {
            assert_suite_is_the_verdict(suite, &comparison(&dir));
            assert!(suite["failures"].as_u64().unwrap() >= 1);
        }
        assert_eq!(suites[2]["name"], "interleaved proof");
        assert_eq!(suites[2]["cases"][0]["result"], "failure");
    }
    let _ = std::fs::remove_dir_all(&out);

    // The same workflow against an endpoint the user runs (`--url`), here a
    // simulator this test starts itself, with the body from a template.
    let endpoint = Endpoint::start(&tool_bins().join("stub-server"));
    let url_scratch = temp_dir("url");
    let url_out = url_scratch.path().join("out");
    let url_out_arg = url_out.to_string_lossy().into_owned();
    let body = url_out.with_extension("body.json");
    std::fs::write(&body, r#"{"model": {{model}}, "inputs": {{inputs}}}"#).unwrap();
    let body_arg = format!("--loadgen-arg=--body-template={}", body.display());
    let run = xtask_with_tools(&[
        "perf",
        "--url",
        &endpoint.url,
        "--out",
        &url_out_arg,
        "--api",
        "template",
        &body_arg,
        "--loadgen-arg=--expect-json-path=outputs",
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("input.py skipped: it sends the simulator's wire format"));
    let c = comparison(&url_out);
    assert_eq!(c["conditions"]["target"], "endpoint");
    assert_eq!(c["conditions"]["api"], "template");
    assert_eq!(c["before"]["succeeded"], 400);
    assert_eq!(c["after"]["succeeded"], 400);
    assert_eq!(c["verdict"]["met"], true);
    if let Some(python) = &python {
        validate_outputs(python, &url_out, &[]);
    }
    let _ = std::fs::remove_dir_all(&url_out);
    let _ = std::fs::remove_file(&body);
}

/// A stub-server process on a free loopback port (fast placeholder shape).
struct Endpoint {
    child: std::process::Child,
    /// Kept open: the server may print again, and a closed pipe would fail it.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
    url: String,
}

impl Endpoint {
    fn start(bin: &Path) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(bin)
            .args([
                "--bind",
                "127.0.0.1:0",
                "--base-ms",
                "10",
                "--per-item-ms",
                "0.2",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("stub-server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(stdout);
        stdout.read_line(&mut line).expect("first line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self {
            child,
            _stdout: stdout,
            url: format!("http://{addr}/v1/infer"),
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn bad_flags_exit_2_with_a_message_that_says_what_is_allowed() {
    let cases: [(&[&str], &str); 12] = [
        (
            &["perf", "--url", "ftp://127.0.0.1:9/x"],
            "must be an absolute http:// or https:// URL",
        ),
        (&["perf", "--api", "grpc"], "allowed: simulator, template"),
        (
            &["perf", "--repeat", "0"],
            "0 is out of range; --repeat must be 1..=20",
        ),
        (
            &["perf", "--sla-p95-ms", "-5"],
            "-5 is out of range; --sla-p95-ms must be more than 0",
        ),
        (
            &[
                "perf",
                "--url",
                "http://127.0.0.1:9/v1/infer",
                "--server-arg=--workers=2",
            ],
            "cannot be used with --url",
        ),
        (&["perf", "--no-such-flag"], "unexpected argument"),
        (&["perf", "--protocol", "quic"], "allowed: http, grpc"),
        (
            &["perf", "--protocol", "grpc"],
            "--protocol grpc applies to --server triton",
        ),
        (
            &["perf", "--server", "vllm"],
            "allowed: simulator, triton, llama (with --scenario llm)",
        ),
        (
            &["perf", "--server", "llama"],
            "--server llama is an LLM server: give it with --scenario llm",
        ),
        (
            &["perf", "--scenario", "llm", "--server", "triton"],
            "--server cannot be used with --scenario llm",
        ),
        (
            &[
                "perf",
                "--scenario",
                "llm",
                "--server",
                "llama",
                "--profile",
                "llm-slots",
            ],
            "--profile and --server-arg describe the simulator",
        ),
    ];
    for (args, message) in cases {
        let run = xtask(args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
