//! What the binary prints: `--output-format json` is the summary JSON alone
//! on stdout; a stderr that is not a terminal (here a pipe) gets no
//! progress bar; `-q` silences the start lines.

mod common;

use common::loadgen;

#[test]
fn json_output_is_the_summary_alone_on_stdout() {
    let server = common::simulator("zero-cost");
    let dir = common::temp_dir("output-json");
    let csv = dir.join("log.csv");
    let file = dir.join("summary.json");
    let url = server.url();
    let out = loadgen(&[
        "--url",
        &url,
        "-n",
        "40",
        "-c",
        "4",
        "--connection",
        "per-request",
        "--output-format",
        "json",
        "-o",
        csv.to_str().unwrap(),
        "--json",
        file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The whole of stdout parses: nothing else was printed there.
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(printed["total"], 40);
    assert!(printed["p99_9_ms"].as_f64().is_some(), "{printed}");
    assert_eq!(printed["status_codes"], serde_json::json!({"200": 40}));
    // Per-request connections: one per request.
    assert_eq!(printed["connections_opened"], 40);
    let buckets = printed["latency_buckets"].as_array().unwrap();
    let counted: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 40);
    // The same document --json writes (the run's own fields are equal;
    // compared whole, since both come from one summary).
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(printed, written);
    // The log line moved to stderr.
    assert!(
        stderr.contains(&format!("Log written to {}", csv.display())),
        "{stderr}"
    );
}

#[test]
fn a_piped_stderr_gets_no_progress_and_quiet_drops_the_start_lines() {
    let server = common::simulator("zero-cost");
    let url = server.url();
    let out = loadgen(&[
        "--url",
        &url,
        "-n",
        "30",
        "-c",
        "3",
        "--connection",
        "per-request",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Only the start lines: no bar, no carriage return, no escape codes.
    assert!(stderr.contains("loadgen: target: "), "{stderr}");
    assert!(
        stderr.lines().all(|line| line.starts_with("loadgen: ")),
        "{stderr:?}"
    );
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "{stderr:?}"
    );
    // The text summary, with the new lines.
    for needle in [
        "P90 latency: ",
        "P99.9 latency: ",
        "Max latency: ",
        "Connections opened: 30\n",
        "Latency histogram (",
        "Status code distribution:\n  [200] 30 responses\n",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }

    let out = loadgen(&["--url", &url, "-n", "5", "-q"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("P95 latency"));
}

#[test]
fn an_unknown_output_format_names_the_allowed_ones() {
    let out = loadgen(&["--output-format", "yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[possible values: text, json]"), "{stderr}");
}

/// `--no-digest`: the log's answers carry no digest (a model whose answers
/// change with its batching), while by default they do; with `--verify`
/// it is refused.
#[test]
fn no_digest_leaves_the_answers_undigested() {
    let mut config = stub_server::ServerConfig::profile("zero-cost").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    let server = stub_server::spawn(config).unwrap();
    let url = format!("http://{}", server.addr);
    let dir = common::temp_dir("output-no-digest");
    for (flag, digested) in [(None, true), (Some("--no-digest"), false)] {
        let csv = dir.join(format!("log-{digested}.csv"));
        let mut args = vec![
            "--url",
            &url,
            "--api",
            "openai-chat",
            "--max-tokens",
            "4",
            "-n",
            "6",
            "-c",
            "2",
            "-q",
            "-o",
            csv.to_str().unwrap(),
        ];
        args.extend(flag);
        let out = loadgen(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{flag:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = model::log::read_log_file(&csv).unwrap().rows;
        assert_eq!(rows.len(), 6);
        assert!(
            rows.iter()
                .all(|r| r.ok && r.output_digest.is_some() == digested),
            "{flag:?}: {rows:?}"
        );
    }
    let out = loadgen(&[
        "--url",
        &url,
        "--api",
        "openai-chat",
        "--verify",
        "--no-digest",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
