//! When the release build cannot run, `cargo xtask perf` says why (exit 2):
//! the OS's reason for a cargo that cannot start, the directories it looked
//! in for a workspace root it cannot find. The repository root is found
//! when xtask runs: a `CARGO_MANIFEST_DIR` that no longer exists (an xtask
//! built in another clone) falls back to the current directory.
//!
//! No test here builds anything: cargo is a path that does not exist.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A fresh directory, removed on drop.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("xtask-build-{name}-"))
        .tempdir()
        .unwrap()
}

/// The workspace root of this checkout, at run time.
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().unwrap().to_path_buf()
}

/// `xtask perf` with cargo at a path that does not exist, no prebuilt
/// binaries, in `cwd`, with `CARGO_MANIFEST_DIR` as given.
fn perf(cwd: &Path, manifest_dir: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["perf", "--skip-python", "--out"])
        .arg(out)
        .current_dir(cwd)
        .env("CARGO", "/nonexistent/cargo")
        .env("CARGO_MANIFEST_DIR", manifest_dir)
        .env_remove("XTASK_BIN_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("xtask runs")
}

#[test]
fn a_build_that_cannot_start_is_reported_with_its_cause() {
    let tmp = temp_dir("spawn");
    let run = perf(&root(), &root().join("xtask"), &tmp.path().join("results"));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: the release build could not start: `/nonexistent/cargo build --release --quiet --bins -p stub-server -p loadgen -p report` in {}: ",
            root().display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}

#[test]
fn a_manifest_dir_from_a_deleted_clone_falls_back_to_the_current_directory() {
    let tmp = temp_dir("deleted-clone");
    let gone = tmp.path().join("old-clone/xtask");
    // Run from a member's directory of this checkout: the root is above it.
    let run = perf(&root().join("crates"), &gone, &tmp.path().join("results"));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("` in {}: ", root().display())),
        "the build must run in this checkout: {stderr}"
    );
    assert!(!stderr.contains("old-clone"), "{stderr}");
}

#[test]
fn outside_any_checkout_the_error_says_where_it_looked() {
    let tmp = temp_dir("outside");
    let gone = tmp.path().join("old-clone/xtask");
    let run = perf(tmp.path(), &gone, &tmp.path().join("results"));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: cannot find the workspace root: CARGO_MANIFEST_DIR {} does not exist; no Cargo.toml with [workspace] in or above the current directory ",
            gone.display()
        )),
        "{stderr}"
    );
}
