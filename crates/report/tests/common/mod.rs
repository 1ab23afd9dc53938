//! Helpers shared by the integration tests: temp dirs and hand-made logs.
#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;

/// A fresh, empty directory for one test, removed when dropped; it derefs
/// to its path.
pub(crate) struct TestDir(tempfile::TempDir);

impl std::ops::Deref for TestDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        self.0.path()
    }
}

/// A fresh, empty directory under cargo's per-target temp dir, named after
/// `name`.
pub(crate) fn temp_dir(name: &str) -> TestDir {
    TestDir(
        tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap(),
    )
}

pub(crate) const INPUT_PY_HEADER: &str = "request_id,timestamp_ms,latency_ms,status_code,error\n";
pub(crate) const LOADGEN_HEADER: &str = "request_id,timestamp_ms,latency_ms,status_code,error,ok,batch_id,batch_size,connect_ms,queue_ms,service_ms,output_digest,verified\n";

/// An input.py log: (request_id, timestamp_ms, latency_ms, status, error).
pub(crate) fn input_py_log(rows: &[(u64, f64, f64, u16, &str)]) -> String {
    let mut s = INPUT_PY_HEADER.to_owned();
    for (id, ts, lat, status, err) in rows {
        s.push_str(&format!("{id},{ts},{lat},{status},{err}\n"));
    }
    s
}

/// A loadgen log of successful, verified rows with the given latencies
/// (ids 0..n, 10 ms apart), queue 0, service = latency / 2, batch 1.
pub(crate) fn loadgen_ok_log(latencies: &[f64]) -> String {
    loadgen_log(latencies, true)
}

/// As [`loadgen_ok_log`], the `verified` column as given.
pub(crate) fn loadgen_log(latencies: &[f64], verified: bool) -> String {
    let mut s = LOADGEN_HEADER.to_owned();
    for (i, lat) in latencies.iter().enumerate() {
        s.push_str(&format!(
            "{i},{},{lat},200,,true,{i},1,0,0,{},d{i},{verified}\n",
            1_700_000_000_000.0 + 10.0 * i as f64,
            lat / 2.0
        ));
    }
    s
}

pub(crate) fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

/// The repository's root.
pub(crate) fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Says why a test did not run; under CI (`CI` set) that is a failure.
pub(crate) fn skip(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{why} (CI is set, so this is a failure, not a skip)"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// The Python of `<repo>/.venv-tools` (`xtask/tools/setup.sh`) when it
/// has the packages the checks use; else skips, saying why.
pub(crate) fn tools_python() -> Option<PathBuf> {
    let python = repo_root().join(".venv-tools/bin/python");
    let ready = std::process::Command::new(&python)
        .args(["-c", "import junitparser, jsonschema, xmlschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ready {
        Some(python)
    } else {
        skip(&format!(
            "{} lacks junitparser, jsonschema or xmlschema; run xtask/tools/setup.sh",
            python.display()
        ));
        None
    }
}

/// `xtask/tools/check_junit.py` on `xml`: validated against the JUnit
/// XSD Jenkins documents and read by junitparser; `None` when skipped.
pub(crate) fn check_junit(xml: &std::path::Path) -> Option<serde_json::Value> {
    let python = tools_python()?;
    let root = repo_root();
    let out = std::process::Command::new(python)
        .arg(root.join("xtask/tools/check_junit.py"))
        .arg(root.join("crates/report/tests/data/junit-10.xsd"))
        .arg(xml)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check_junit.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Validates `files` against `docs/schemas/SCHEMA` with `jsonschema`
/// (`xtask/tools/validate_json.py`), failing on any error; `false` when
/// skipped.
pub(crate) fn validate_against_schema(schema: &str, files: &[&std::path::Path]) -> bool {
    let Some(python) = tools_python() else {
        return false;
    };
    let root = repo_root();
    let out = std::process::Command::new(python)
        .arg(root.join("xtask/tools/validate_json.py"))
        .arg(root.join("docs/schemas").join(schema))
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{schema}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}
