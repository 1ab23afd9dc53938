//! SIGTERM and SIGINT to `cargo xtask perf` mid-run: the simulator and the
//! client it started are stopped (none is orphaned), nothing new starts,
//! and xtask exits 128 + the signal.
//!
//! The tools are stand-in scripts (via `XTASK_BIN_DIR`) that record their
//! pid and wait, so the test needs no release build and runs in a second.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A fresh directory, removed on drop.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("xtask-test-{name}-"))
        .tempdir()
        .unwrap()
}

/// Stand-ins for the three tools: each appends `name pid` to `pids`; the
/// simulator announces a (fake) address; all then wait for a signal.
fn fake_tools(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let pids = dir.join("pids");
    for (name, announce) in [
        ("stub-server", "echo 'listening on http://127.0.0.1:9'"),
        ("loadgen", ""),
        ("report", ""),
    ] {
        let script = format!(
            "#!/bin/sh\necho \"{name} $$\" >> '{}'\n{announce}\nexec sleep 60\n",
            pids.display()
        );
        let path = bin.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

fn started(dir: &Path) -> Vec<(String, i32)> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (name, pid) = l.split_once(' ')?;
            Some((name.to_owned(), pid.trim().parse().ok()?))
        })
        .collect()
}

/// Alive and not a zombie waiting for a reaper.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn interrupt(signal: libc::c_int, name: &str) {
    let scratch = temp_dir(name);
    let dir = scratch.path();
    let bin = fake_tools(dir);
    let mut xtask = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["perf", "--skip-python", "--out"])
        .arg(dir.join("results"))
        .env("XTASK_BIN_DIR", &bin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The functional check: a simulator and a client are both running.
    let deadline = Instant::now() + Duration::from_secs(20);
    while started(dir).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "xtask never started its children"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = libc::pid_t::try_from(xtask.id()).unwrap();
    // SAFETY: kill(2) on our own child with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let status = xtask.wait().unwrap();
    let mut stderr = String::new();
    if let Some(mut pipe) = xtask.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert_eq!(status.code(), Some(128 + signal), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let children = started(dir);
    let names: Vec<&str> = children.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["stub-server", "loadgen"], "nothing new started");
    for (name, pid) in children {
        assert!(!alive(pid), "{name} (pid {pid}) outlived xtask");
    }
}

#[test]
fn sigterm_stops_every_child_and_exits_143() {
    interrupt(libc::SIGTERM, "sigterm");
}

#[test]
fn sigint_stops_every_child_and_exits_130() {
    interrupt(libc::SIGINT, "sigint");
}
