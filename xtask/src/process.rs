//! Child processes: simulators that stop when dropped, clients with a deadline.
//!
//! The client and the server always run as separate OS processes so that
//! neither steals the other's runtime; every simulator is fresh and on port 0.
//!
//! Interruption: [`install_signal_handlers`] makes SIGINT/SIGTERM to xtask
//! stop its children instead of orphaning them. Every child is spawned
//! through a registry; on the first signal a watcher thread sends SIGTERM to
//! each registered child (a client flushes its log and summary, a simulator
//! finishes in-flight work), no new child may start, the workflow unwinds
//! (each [`ServerProcess`] is reaped by its `Drop`), and xtask exits with
//! 128 + the signal (130 for SIGINT, 143 for SIGTERM). Children still alive
//! after [`STOP_GRACE`] get SIGKILL; a second signal kills them at once.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why a child process could not do its job.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProcessError {
    /// The program could not be started at all.
    #[error("could not start {program}: {source}")]
    Spawn {
        /// What we tried to run.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server never printed its `listening on` line.
    #[error("the server did not report `listening on http://ADDR` within {0:?} (see {1})")]
    NotListening(Duration, String),
    /// xtask received SIGINT or SIGTERM: nothing new is started.
    #[error("interrupted by signal {0}: children stopped, nothing new started")]
    Interrupted(i32),
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
/// How long a child gets after SIGTERM before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// Pids of the children that are running or not yet reaped. A pid leaves
/// only when its child is reaped, under this lock, and signals are sent
/// under it too: a signal never reaches a recycled pid.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// The signal that interrupted the workflow, 0 while none has.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

fn children() -> MutexGuard<'static, Vec<u32>> {
    CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The signal that interrupted xtask, if one did.
pub(crate) fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The exit code for an interrupted run: 128 + the signal number.
pub(crate) fn interrupted_exit_code() -> Option<u8> {
    interrupted().and_then(|signal| u8::try_from(128 + signal).ok())
}

/// Installs the SIGINT/SIGTERM watcher (see the module docs). Call once,
/// before starting children; an error means signals keep their default
/// action (xtask dies, the children keep running).
pub(crate) fn install_signal_handlers() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("xtask-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                on_signal(signal);
            }
        })?;
    Ok(())
}

fn on_signal(signal: i32) {
    let code = 128 + signal;
    if INTERRUPTED
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        eprintln!("\nxtask: second signal: killing every child now");
        signal_children(libc::SIGKILL);
        std::process::exit(code);
    }
    eprintln!(
        "\nxtask: signal {signal} received: stopping simulators and clients (clients flush what they measured)"
    );
    signal_children(libc::SIGTERM);
    // The workflow unwinds and reaps its children; if it cannot within the
    // grace period, kill what is left and exit anyway.
    let deadline = Instant::now() + STOP_GRACE + Duration::from_secs(2);
    while !children().is_empty() {
        if Instant::now() >= deadline {
            eprintln!("xtask: children still running after {STOP_GRACE:?}: killing them");
            signal_children(libc::SIGKILL);
            std::thread::sleep(Duration::from_millis(200));
            std::process::exit(code);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal_children(signal: libc::c_int) {
    for &pid in children().iter() {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }
}

/// Spawns `cmd` as a registered child, unless xtask is being interrupted.
pub(crate) fn spawn_child(cmd: &mut Command) -> Result<Child, ProcessError> {
    let program = format!("{:?}", cmd.get_program());
    let mut registry = children();
    if let Some(signal) = interrupted() {
        return Err(ProcessError::Interrupted(signal));
    }
    let child = cmd
        .spawn()
        .map_err(|source| ProcessError::Spawn { program, source })?;
    registry.push(child.id());
    Ok(child)
}

/// `try_wait`, unregistering the child once it is reaped.
fn try_reap(child: &mut Child) -> std::io::Result<Option<ExitStatus>> {
    let mut registry = children();
    let status = child.try_wait();
    if !matches!(status, Ok(None)) {
        let pid = child.id();
        registry.retain(|&p| p != pid);
    }
    status
}

/// A running server (`stub-server`, or Triton through `xtask/triton/serve.py`),
/// stopped with SIGTERM (graceful) when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    /// Base URL, `http://127.0.0.1:PORT`.
    pub base_url: String,
}

impl ServerProcess {
    /// Starts the simulator on a free loopback port and waits for its
    /// `listening on` line (never a sleep); stderr goes to `log_path`.
    pub(crate) fn start(
        bin: &Path,
        args: &[String],
        log_path: &Path,
    ) -> Result<Self, ProcessError> {
        let mut cmd = Command::new(bin);
        cmd.args(["--bind", "127.0.0.1:0"]).args(args);
        Self::start_command(cmd, log_path, READY_TIMEOUT)
    }

    /// Starts any server that prints `listening on http://ADDR` as its first
    /// line once it serves, and waits up to `ready` for it; stderr goes to
    /// `log_path`.
    pub(crate) fn start_command(
        mut cmd: Command,
        log_path: &Path,
        ready: Duration,
    ) -> Result<Self, ProcessError> {
        let log = File::create(log_path).map_err(|source| ProcessError::Spawn {
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        let mut child = spawn_child(cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log))?;
        let not_listening = || ProcessError::NotListening(ready, log_path.display().to_string());
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
        let line = rx.recv_timeout(ready).unwrap_or_default();
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

    /// Starts a server that says where it listens somewhere in its
    /// output (stdout or stderr, after any number of other lines):
    /// `listening_url` reads the base URL from a line, and the first line
    /// it reads one from ends the wait (up to `ready`). Both streams are
    /// copied to `log_path`, line by line, for as long as it runs.
    pub(crate) fn start_reading_output(
        mut cmd: Command,
        log_path: &Path,
        ready: Duration,
        listening_url: fn(&str) -> Option<String>,
    ) -> Result<Self, ProcessError> {
        let log = File::create(log_path).map_err(|source| ProcessError::Spawn {
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        let log = std::sync::Arc::new(Mutex::new(log));
        let mut child = spawn_child(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )?;
        let not_listening = || ProcessError::NotListening(ready, log_path.display().to_string());
        let (tx, rx) = mpsc::channel::<String>();
        let streams: Vec<Box<dyn std::io::Read + Send>> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for stream in streams {
            let (tx, log) = (tx.clone(), log.clone());
            // Drained to the end so the server never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut file) = log.lock() {
                        let _ = writeln!(file, "{line}");
                    }
                    if let Some(url) = listening_url(&line) {
                        let _ = tx.send(url);
                    }
                }
            });
        }
        drop(tx);
        match rx.recv_timeout(ready) {
            Ok(url) => Ok(Self {
                child,
                base_url: url.trim_end_matches('/').to_owned(),
            }),
            Err(_) => {
                stop(&mut child);
                Err(not_listening())
            }
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The inference endpoint.
    pub(crate) fn infer_url(&self) -> String {
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
        let pid = child.id();
        children().retain(|&p| p != pid);
    }
}

fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match try_reap(child) {
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
pub(crate) fn run_with_deadline(
    cmd: &mut Command,
    limit: Duration,
) -> Result<ExitStatus, ProcessError> {
    let program = format!("{:?}", cmd.get_program());
    let mut child = spawn_child(cmd)?;
    wait_with_deadline(&mut child, &program, limit)
}

/// Waits for a child started with [`spawn_child`] (several may run at
/// once), stopping it past `limit`; `program` names it in the error.
pub(crate) fn wait_with_deadline(
    child: &mut Child,
    program: &str,
    limit: Duration,
) -> Result<ExitStatus, ProcessError> {
    match wait_until(child, Instant::now() + limit) {
        Some(status) => Ok(status),
        None => {
            stop(child);
            Err(ProcessError::Deadline {
                program: program.to_owned(),
                limit,
            })
        }
    }
}
