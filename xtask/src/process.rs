//! Child processes: simulators that stop when dropped, clients with a deadline.
//!
//! The client and the server always run as separate OS processes so that
//! neither steals the other's runtime; every simulator is fresh and on port 0.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Why a child process could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started at all.
    #[error("could not start {program}: {source}")]
    Spawn {
        /// What we tried to run.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The simulator never printed its `listening on` line.
    #[error("the simulator did not report `listening on http://ADDR` within {0:?} (see {1})")]
    NotListening(Duration, String),
    /// A client ran past its deadline and was killed.
    #[error("{program} ran longer than {limit:?} and was stopped")]
    Deadline {
        /// What ran.
        program: String,
        /// The deadline.
        limit: Duration,
    },
}

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running `stub-server`, stopped with SIGTERM (graceful) when dropped.
pub struct ServerProcess {
    child: Child,
    /// Base URL, `http://127.0.0.1:PORT`.
    pub base_url: String,
}

impl ServerProcess {
    /// Starts the simulator on a free loopback port and waits for its
    /// `listening on` line (never a sleep); stderr goes to `log_path`.
    pub fn start(bin: &Path, args: &[String], log_path: &Path) -> Result<Self, ProcessError> {
        let program = bin.display().to_string();
        let log = File::create(log_path).map_err(|source| ProcessError::Spawn {
            program: program.clone(),
            source,
        })?;
        let mut child = Command::new(bin)
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|source| ProcessError::Spawn { program, source })?;
        let not_listening =
            || ProcessError::NotListening(READY_TIMEOUT, log_path.display().to_string());
        let Some(stdout) = child.stdout.take() else {
            stop(&mut child);
            return Err(not_listening());
        };
        // Read the first line on a thread so a silent server cannot hang us.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(stdout);
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the server never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = rx.recv_timeout(READY_TIMEOUT).unwrap_or_default();
        match line.trim().strip_prefix("listening on ") {
            Some(url) if url.starts_with("http://") => Ok(Self {
                child,
                base_url: url.trim_end_matches('/').to_owned(),
            }),
            _ => {
                stop(&mut child);
                Err(not_listening())
            }
        }
    }

    /// The inference endpoint.
    pub fn infer_url(&self) -> String {
        format!("{}/v1/infer", self.base_url)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// SIGTERM, a grace period for in-flight work, then SIGKILL.
fn stop(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    if wait_until(child, Instant::now() + STOP_GRACE).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => return None,
        }
    }
}

/// Runs a client to completion within `limit`, with stdout and stderr
/// inherited or sent where the command says; returns its exit status.
pub fn run_with_deadline(cmd: &mut Command, limit: Duration) -> Result<ExitStatus, ProcessError> {
    let program = format!("{:?}", cmd.get_program());
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    match wait_until(&mut child, Instant::now() + limit) {
        Some(status) => Ok(status),
        None => {
            stop(&mut child);
            Err(ProcessError::Deadline { program, limit })
        }
    }
}
