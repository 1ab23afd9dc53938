//! Proves `xtask/triton/expected_output.py`, the model the real Triton server
//! runs, answers byte for byte what `model::output::expected_output` answers,
//! so a client verifies Triton's outputs exactly as it verifies the simulator's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use model::output::{expected_output, output_digest};
use model::payload::baseline_input;

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../xtask/triton/expected_output.py")
}

/// The inputs compared: the baseline payloads plus text that trips up
/// encoders (quotes, escapes, control characters, multi-byte UTF-8).
fn inputs() -> Vec<String> {
    let mut all: Vec<String> = (0..100).map(baseline_input).collect();
    let tricky = [
        "",
        " ",
        "\"",
        "\"quoted\" and 'single'",
        "back\\slash \\\\ \\n \\u0000",
        "line one\nline two\r\nline three\r",
        "tab\tseparated\tvalues",
        "\u{0}\u{1}\u{1f}\u{7f}",
        "emoji 😀🚀👍🏽 and a family 👨‍👩‍👧‍👦",
        "non-ASCII: café, naïve, Grüße, Ελληνικά, русский, 日本語, 한국어, עברית, العربية",
        "\u{fffd}\u{feff}\u{200b}\u{10ffff}",
        "{\"model\": \"x\", \"input\": \"y\"}",
        "</script><b>html</b>&amp;",
        "ab",
        "a",
        "bc",
        "c",
    ];
    all.extend(tricky.iter().map(|s| s.to_string()));
    all.push("long ".repeat(2000));
    all.push("x".repeat(70_000));
    all
}

/// The first `python3` on PATH, if it runs at all. Without one the test
/// skips with a note, except under CI (`CI` set), where it fails.
fn python3_or_skip() -> Option<&'static str> {
    let runs = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return Some("python3");
    }
    let msg = "python3 not found on PATH: cannot check xtask/triton/expected_output.py";
    if std::env::var_os("CI").is_some() {
        panic!("{msg} (CI is set, so this is a failure)");
    }
    // Straight to stderr: the harness captures eprintln! of a passing test.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}");
    None
}

/// Runs the script over every (model, input) pair and returns its outputs.
fn python_outputs(python: &str, pairs: &[(&str, &str)]) -> Vec<String> {
    let mut stdin = Vec::new();
    for (model, input) in pairs {
        serde_json::to_writer(
            &mut stdin,
            &serde_json::json!({"model": model, "input": input}),
        )
        .unwrap();
        stdin.push(b'\n');
    }
    let mut child = Command::new(python)
        .arg(script_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    // Write from a thread: the script answers while it reads, and a full
    // stdout pipe would otherwise deadlock against a full stdin pipe.
    let mut child_stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        child_stdin.write_all(&stdin).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "expected_output.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("script output is UTF-8");
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            v["output"].as_str().expect("an output string").to_owned()
        })
        .collect()
}

#[test]
fn python_port_matches_the_rust_expected_output() {
    let Some(python) = python3_or_skip() else {
        return;
    };
    let inputs = inputs();
    let models = ["example-model", "other.model_v2"];
    let pairs: Vec<(&str, &str)> = models
        .iter()
        .flat_map(|m| inputs.iter().map(move |i| (*m, i.as_str())))
        .collect();
    assert!(pairs.len() >= 200, "{} pairs", pairs.len());
    let got = python_outputs(python, &pairs);
    assert_eq!(got.len(), pairs.len(), "one output line per input line");
    for ((model, input), py) in pairs.iter().zip(&got) {
        let rust = expected_output(model, input);
        assert!(
            py.as_bytes() == rust.as_bytes(),
            "model {model:?} input {:?}:\n python {py:?}\n rust   {rust:?}",
            input.chars().take(80).collect::<String>()
        );
        assert_eq!(output_digest(py.as_bytes()), output_digest(rust.as_bytes()));
    }
}

#[test]
fn python_port_digest_matches_the_rust_digest() {
    let Some(python) = python3_or_skip() else {
        return;
    };
    // output_digest is not exposed on the command line; import the module.
    let dir = script_path().parent().unwrap().to_path_buf();
    let code = "import sys, expected_output as e\n\
                for line in sys.stdin.buffer:\n    \
                    print(e.output_digest(line.rstrip(b'\\n')))";
    let samples: Vec<String> = (0..20)
        .map(|i| expected_output("example-model", &baseline_input(i)))
        .chain([
            "".to_owned(),
            "a".to_owned(),
            "foobar".to_owned(),
            "café 😀".to_owned(),
        ])
        .collect();
    let mut child = Command::new(python)
        .args(["-c", code])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    {
        let mut stdin = child.stdin.take().unwrap();
        for s in &samples {
            stdin.write_all(s.as_bytes()).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let got: Vec<&str> = text.lines().collect();
    let want: Vec<String> = samples
        .iter()
        .map(|s| output_digest(s.as_bytes()))
        .collect();
    assert_eq!(got, want);
}
