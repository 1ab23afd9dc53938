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
    /// Its gRPC listener, `http://127.0.0.1:PORT`, for a server started
    /// with [`ServerProcess::start_command_with_grpc`].
    pub grpc_url: Option<String>,
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
        cmd: Command,
        log_path: &Path,
        ready: Duration,
    ) -> Result<Self, ProcessError> {
        Self::start_lines(cmd, log_path, ready, false)
    }

    /// Starts a server that prints `listening on http://ADDR` and then
    /// `grpc listening on ADDR` once it serves (Triton's serve.py,
    /// stub-server with `--grpc-bind`), and waits up to `ready` for both.
    pub(crate) fn start_command_with_grpc(
        cmd: Command,
        log_path: &Path,
        ready: Duration,
    ) -> Result<Self, ProcessError> {
        Self::start_lines(cmd, log_path, ready, true)
    }

    fn start_lines(
        mut cmd: Command,
        log_path: &Path,
        ready: Duration,
        grpc: bool,
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
        // Read the first lines on a thread so a silent server cannot hang us.
        let (tx, rx) = mpsc::channel();
        let lines = if grpc { 2 } else { 1 };
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut read = Vec::new();
            for _ in 0..lines {
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                read.push(line);
            }
            let _ = tx.send(read);
            // Keep draining so the server never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let read = rx.recv_timeout(ready).unwrap_or_default();
        let http = read
            .first()
            .and_then(|l| l.trim().strip_prefix("listening on "))
            .filter(|url| url.starts_with("http://"));
        let grpc_addr = read
            .get(1)
            .and_then(|l| l.trim().strip_prefix("grpc listening on "));
        match (http, grpc_addr) {
            (Some(url), addr) if addr.is_some() || !grpc => Ok(Self {
                child,
                base_url: url.trim_end_matches('/').to_owned(),
                grpc_url: addr.map(|a| format!("http://{a}")),
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
                grpc_url: None,
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

/// What one reaped child used, from `wait4(2)`'s `rusage`: its own CPU and
/// peak memory, not any other child's (`getrusage(RUSAGE_CHILDREN)` keeps
/// only the largest peak of every child reaped so far).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub(crate) struct ChildUsage {
    /// User-mode CPU seconds.
    pub user_s: f64,
    /// Kernel-mode CPU seconds.
    pub system_s: f64,
    /// Peak resident set, KiB (Linux's `ru_maxrss`, `VmHWM` at exit).
    pub max_rss_kib: u64,
    /// Voluntary plus involuntary context switches.
    pub context_switches: u64,
}

/// Waits for a child started with [`spawn_child`] within `limit`, as
/// [`wait_with_deadline`] does, and returns what it used.
pub(crate) fn wait_with_usage(
    child: &mut Child,
    program: &str,
    limit: Duration,
) -> Result<(ExitStatus, ChildUsage), ProcessError> {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + limit;
    let gone = || ProcessError::Spawn {
        program: program.to_owned(),
        source: std::io::Error::last_os_error(),
    };
    let pid = libc::pid_t::try_from(child.id()).map_err(|_| gone())?;
    loop {
        let mut status = 0;
        // SAFETY: wait4 writes the status and the zeroed rusage we own.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = {
            // Under the registry's lock, so a signal never reaches the pid
            // once it is reaped and free for reuse.
            let mut registry = children();
            // SAFETY: as above; WNOHANG never blocks.
            let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if reaped == pid {
                registry.retain(|&p| p != child.id());
            }
            reaped
        };
        if reaped == pid {
            let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            return Ok((
                ExitStatus::from_raw(status),
                ChildUsage {
                    user_s: seconds(usage.ru_utime),
                    system_s: seconds(usage.ru_stime),
                    max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
                    context_switches: u64::try_from(usage.ru_nvcsw + usage.ru_nivcsw).unwrap_or(0),
                },
            ));
        }
        if reaped < 0 {
            return Err(gone());
        }
        if Instant::now() >= deadline {
            stop(child);
            return Err(ProcessError::Deadline {
                program: program.to_owned(),
                limit,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_python(code: &str) -> ChildUsage {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", code]).stdout(Stdio::null());
        let mut child = spawn_child(&mut cmd).expect("python3 runs");
        let (status, usage) =
            wait_with_usage(&mut child, "python3", Duration::from_secs(60)).unwrap();
        assert!(status.success(), "{status}");
        assert!(
            !children().contains(&child.id()),
            "a reaped child leaves the registry"
        );
        usage
    }

    #[test]
    fn each_child_reports_its_own_peak_memory_and_cpu() {
        // 64 MB written, then a child that holds little: wait4 gives each
        // its own peak, where RUSAGE_CHILDREN would give the first's twice.
        let big = run_python("b = b'x' * 64_000_000; print(len(b))");
        assert!(big.max_rss_kib >= 62_500, "{big:?}");
        let small = run_python("print(1)");
        assert!(small.max_rss_kib < 40_000, "{small:?}");
        assert!(big.user_s + big.system_s > 0.0, "{big:?}");
    }

    #[test]
    fn a_child_past_its_limit_is_stopped() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut child = spawn_child(&mut cmd).unwrap();
        let err = wait_with_usage(&mut child, "sleep", Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, ProcessError::Deadline { .. }), "{err}");
    }
}
