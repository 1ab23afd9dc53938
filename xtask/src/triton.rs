//! A real NVIDIA Triton Inference Server for the workflow (`--server
//! triton`): the `nvidia-pytriton` wheel in a venv of its own, serving the
//! model in `xtask/triton/serve.py` (the placeholder's cost shape, outputs
//! from the same `expected_output` the client verifies).
//!
//! The venv is made with the system interpreter, `/usr/bin/python3.11`:
//! Triton's Python backend links the system `libpython3.11.so`, and a venv
//! from another 3.11 build fails at model load. When Triton cannot be
//! installed or started the workflow stops with the reason (exit 2); it
//! never falls back to the simulator.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::TaskError;
use crate::process::{ProcessError, ServerProcess};
use crate::python::{pip_install, run};

/// The model the workflow serves and loads (input.py's model name).
pub(crate) const MODEL: &str = "example-model";

/// The decoupled streaming model served beside it over gRPC.
pub(crate) const STREAM_MODEL: &str = "llm-stream";

/// The interpreter Triton's Python backend was built against.
pub(crate) const SYSTEM_PYTHON: &str = "/usr/bin/python3.11";

/// Triton loads its model in a few seconds on 2 cores; the first start
/// after an install compiles bytecode and takes longer.
const READY: Duration = Duration::from_secs(180);

/// The venv's folder under the repository root.
pub(crate) fn venv_dir(root: &Path) -> PathBuf {
    root.join(".venv-triton")
}

/// The venv's interpreter, creating the venv and installing the pinned
/// requirements when `pytriton` is not importable yet.
pub(crate) fn ensure_venv(root: &Path) -> Result<PathBuf, TaskError> {
    let venv = venv_dir(root);
    let python = venv.join("bin").join("python");
    if imports_pytriton(&python) {
        return Ok(python);
    }
    let failed = |why: String| {
        TaskError::Step(format!(
            "Triton cannot be installed: {why}; --server triton needs {SYSTEM_PYTHON} with its venv module (Debian: apt-get install python3.11-venv) and PyPI"
        ))
    };
    if !Path::new(SYSTEM_PYTHON).exists() {
        return Err(failed(format!("{SYSTEM_PYTHON} does not exist")));
    }
    if !python.exists() {
        run(
            Command::new(SYSTEM_PYTHON).args(["-m", "venv"]).arg(&venv),
            "python3.11 -m venv .venv-triton",
        )
        .map_err(failed)?;
    }
    let requirements = root.join("xtask/triton/requirements.txt");
    println!(
        "installing Triton into {} (nvidia-pytriton, ~55 MB)",
        venv.display()
    );
    pip_install(&python, &requirements, "xtask/triton/requirements.txt").map_err(failed)?;
    if imports_pytriton(&python) {
        Ok(python)
    } else {
        Err(failed(
            "`import pytriton` still fails after pip install".into(),
        ))
    }
}

fn imports_pytriton(python: &Path) -> bool {
    python.exists()
        && Command::new(python)
            .args(["-c", "import pytriton"])
            .output()
            .is_ok_and(|o| o.status.success())
}

/// How one phase's Triton is configured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TritonSetup {
    /// Model instances (Triton's `instance_group` count).
    pub instances: u32,
    /// The model's `max_batch_size`.
    pub max_batch_size: u32,
    /// Dynamic batching with this `max_queue_delay_microseconds`, or off.
    pub dynamic_batching_delay_us: Option<u64>,
    /// Seed of the model's service-time draws.
    pub seed: u64,
}

impl TritonSetup {
    /// The placeholder scenario: 2 instances, batches of up to 32, no
    /// dynamic batching.
    pub(crate) const PLACEHOLDER: Self = Self {
        instances: 2,
        max_batch_size: 32,
        dynamic_batching_delay_us: None,
        seed: crate::perf::FIRST_SEED,
    };

    /// What the report's conditions say of it.
    pub(crate) fn describe(&self) -> String {
        let batching = match self.dynamic_batching_delay_us {
            Some(us) => format!("dynamic batching, max_queue_delay {us} us"),
            None => "no dynamic batching".to_owned(),
        };
        format!(
            "Triton, {} instances, max_batch_size {}, {batching}; model sleeps (100 ms + 2 ms x batch) x lognormal(0.1), seed {}",
            self.instances, self.max_batch_size, self.seed
        )
    }
}

/// Starts Triton with `setup` on free loopback ports (HTTP and gRPC, both
/// in the returned process), with the decoupled [`STREAM_MODEL`] beside
/// the model when `stream_model`; stderr (Triton's log) goes to `log`.
///
/// A start that never serves is tried once more: PyTriton's model stub
/// sometimes finds its handshake socket refused while the Triton before it
/// shuts down (`ConnectionRefusedError` in `get_config_from_handshake_server`,
/// seen here on 2 of 18 starts over five workflow runs), and a second
/// start succeeds. The first attempt's log is kept beside, as `LOG.1`.
pub(crate) fn start(
    python: &Path,
    root: &Path,
    setup: &TritonSetup,
    stream_model: bool,
    log: &Path,
) -> Result<ServerProcess, TaskError> {
    match start_once(python, root, setup, stream_model, log) {
        Err(TaskError::Step(why)) if why.starts_with("Triton did not start") => {
            let first = log.with_extension("log.1");
            let _ = std::fs::rename(log, &first);
            eprintln!(
                "warning: {why}; starting it once more (first attempt's log: {})",
                first.display()
            );
            start_once(python, root, setup, stream_model, log)
        }
        other => other,
    }
}

fn start_once(
    python: &Path,
    root: &Path,
    setup: &TritonSetup,
    stream_model: bool,
    log: &Path,
) -> Result<ServerProcess, TaskError> {
    let mut cmd = Command::new(python);
    cmd.arg(root.join("xtask/triton/serve.py"))
        .args(["--model", MODEL])
        .args(["--http-port", "0"])
        .args(["--instances", &setup.instances.to_string()])
        .args(["--max-batch-size", &setup.max_batch_size.to_string()])
        .args(["--seed", &setup.seed.to_string()]);
    if let Some(us) = setup.dynamic_batching_delay_us {
        cmd.args([
            "--dynamic-batching",
            "--max-queue-delay-us",
            &us.to_string(),
        ]);
    }
    if stream_model {
        cmd.args(["--stream-model", STREAM_MODEL]);
    }
    ServerProcess::start_command_with_grpc(cmd, log, READY).map_err(|e| match e {
        ProcessError::NotListening(..) => TaskError::Step(format!(
            "Triton did not start: {e}; its log is {}",
            log.display()
        )),
        other => other.into(),
    })
}
