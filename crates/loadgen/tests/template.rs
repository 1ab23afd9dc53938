//! `--api template` against the simulator: a template equivalent to the
//! simulator's wire format gets the simulator's answers, single and
//! batched, and every row's digest is the digest of the expected output;
//! a bad template is refused before any request is sent.

mod common;

use loadgen::{ApiChoice, LoadConfig};
use model::output::{expected_output, output_digest};
use model::payload::baseline_input;

fn template_config(dir: &std::path::Path, url: &str, text: &str, path: &str) -> LoadConfig {
    let file = dir.join("body.json");
    std::fs::write(&file, text).unwrap();
    LoadConfig {
        api: ApiChoice::Template {
            body_template: file,
            expect_json_path: Some(path.to_owned()),
        },
        requests: Some(40),
        concurrency: 4,
        ..common::config(url, dir)
    }
}

/// Every row succeeded and carries the digest of its expected output.
fn assert_digests_are_the_expected_outputs(dir: &std::path::Path) {
    let rows = model::log::read_log_file(&dir.join("log.csv"))
        .unwrap()
        .rows;
    assert_eq!(rows.len(), 40);
    for row in rows {
        assert!(row.ok, "{row:?}");
        let expected = expected_output(model::DEFAULT_MODEL, &baseline_input(row.request_id));
        assert_eq!(
            row.output_digest.as_deref(),
            Some(output_digest(expected.as_bytes()).as_str()),
            "request {}",
            row.request_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulator_shaped_template_single_and_batched() {
    let server = common::simulator("zero-cost");
    let url = format!("http://{}/v1/infer", server.addr);
    let dir = common::temp_dir("template-single");
    let config = template_config(
        &dir,
        &url,
        r#"{"model": {{model}}, "input": {{input}}}"#,
        "output",
    );
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (40, 0), "{summary:?}");
    assert_eq!(summary.api, "template");
    assert!(!summary.verified, "a template knows no expected outputs");
    assert_digests_are_the_expected_outputs(&dir);

    let dir = common::temp_dir("template-batch");
    let mut config = template_config(
        &dir,
        &url,
        "{\n  \"model\": {{model}},\n  \"inputs\": {{ inputs }}\n}\n",
        "outputs",
    );
    config.batch_size = 4;
    config.batch_wait_ms = 50;
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (40, 0), "{summary:?}");
    assert_eq!(summary.http_requests, 10, "4 inputs per HTTP request");
    assert_eq!(summary.server_batch_size_mean, Some(4.0));
    assert_digests_are_the_expected_outputs(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_the_answer_lacks_fails_every_row() {
    let server = common::simulator("zero-cost");
    let url = format!("http://{}/v1/infer", server.addr);
    let dir = common::temp_dir("template-path");
    let config = template_config(
        &dir,
        &url,
        r#"{"model": {{model}}, "input": {{input}}}"#,
        "choices.0.text",
    );
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!(summary.failed, 40);
    assert_eq!(summary.errors.get("missing_json_path"), Some(&40));
    // The simulator refuses a body it cannot read: the status is the verdict.
    let dir = common::temp_dir("template-status");
    let config = template_config(&dir, &url, r#"{"prompt": {{input}}}"#, "output");
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    assert_eq!(summary.errors.get("http_400"), Some(&40), "{summary:?}");
}

#[test]
fn an_unknown_placeholder_is_named_before_any_request() {
    let server = common::simulator("zero-cost");
    let dir = common::temp_dir("template-bad");
    let file = dir.join("body.json");
    std::fs::write(&file, "{\"model\": {{model}},\n \"text\": {{prompt}}}").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", &format!("http://{}/v1/infer", server.addr)])
        .args(["--api", "template", "--body-template"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown placeholder {{prompt}} at line 2; the placeholders are {{input}}, {{inputs}}, {{model}}, {{id}}"),
        "{stderr}"
    );
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert_eq!(common::served(server.addr), 0, "no request was sent");
}
