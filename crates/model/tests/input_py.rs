//! Pins the frozen `input.py` and proves the Rust payloads equal its bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

use model::payload::baseline_body;
use sha2::{Digest, Sha256};

/// SHA-256 of `input.py` as first committed. It must never change: the
/// baseline is the customer's legacy script, not ours to edit.
const INPUT_PY_SHA256: &str = "090f4cda37152317bff1936c086c4dcf957d95989978cefc82e48b42d08bf542";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/input_py_bodies.jsonl")
}

fn expected_bodies(count: u64) -> Vec<u8> {
    let mut all = Vec::new();
    for i in 0..count {
        all.extend(baseline_body(i));
        all.push(b'\n');
    }
    all
}

#[test]
fn input_py_is_frozen() {
    let bytes = std::fs::read(repo_root().join("input.py")).unwrap();
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex, INPUT_PY_SHA256,
        "input.py changed: restore it, change the Rust code instead"
    );
}

#[test]
fn input_py_load_shape_matches_the_constants() {
    let text = std::fs::read_to_string(repo_root().join("input.py")).unwrap();
    assert!(text.contains(&format!("CONCURRENCY = {}", model::BASELINE_CONCURRENCY)));
    assert!(text.contains(&format!("TOTAL_REQUESTS = {}", model::BASELINE_REQUESTS)));
    assert!(text.contains(&format!("TIMEOUT_S = {}", model::BASELINE_TIMEOUT_S)));
    assert!(text.contains(&format!("MODEL = \"{}\"", model::DEFAULT_MODEL)));
    assert!(text.contains(model::DEFAULT_URL));
}

#[test]
fn payloads_match_the_golden_file_from_input_py() {
    let golden = std::fs::read(golden_path()).unwrap();
    let expected = expected_bodies(model::BASELINE_REQUESTS);
    assert_eq!(
        golden.len(),
        expected.len(),
        "golden file and Rust bodies differ in size"
    );
    for (i, (g, e)) in golden
        .split(|&b| b == b'\n')
        .zip(expected.split(|&b| b == b'\n'))
        .enumerate()
    {
        assert_eq!(
            String::from_utf8_lossy(g),
            String::from_utf8_lossy(e),
            "request {i} differs"
        );
    }
}

/// A Python that can import httpx: the project's `.venv` first, then the system's.
fn python_with_httpx() -> Option<PathBuf> {
    let candidates = [
        repo_root().join(".venv/bin/python"),
        PathBuf::from("python3"),
    ];
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import httpx"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn payloads_match_live_python_when_available() {
    let Some(python) = python_with_httpx() else {
        // Under CI, where .ci/run installs httpx, this is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "no Python with httpx (CI is set, so this is a failure, not a skip)"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: no Python with httpx here; the golden-file test covers the bytes"
        );
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/make_golden.py");
    let out = Command::new(python).arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == expected_bodies(model::BASELINE_REQUESTS),
        "live httpx bodies differ"
    );
}
