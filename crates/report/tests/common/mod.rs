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
