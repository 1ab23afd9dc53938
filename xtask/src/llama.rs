//! llama.cpp's own C++ server, `llama-server`, for `./run_tests --scenario
//! llm --server llama`: built by `xtask/llama/build_server.sh` into
//! `.llama-server/` (from the llama.cpp sources vendored in the
//! `llama-cpp-python` source package; CPU only), serving the tiny
//! random-weight GGUF that `xtask/llama/make_gguf.py` writes. Nothing is
//! downloaded at run time.
//!
//! Its continuous batching runs `--parallel N` slots, the setting the
//! analysis decides (`max_num_seqs`); `--metrics` opens its Prometheus
//! `/metrics` (`llamacpp:` names), which loadgen scrapes through each run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::TaskError;
use crate::process::{ProcessError, ServerProcess};

/// How long the server may take to load the model and listen.
const READY: Duration = Duration::from_secs(120);
/// The model's name in requests and in `/v1/models`.
pub(crate) const MODEL: &str = "tiny-llama";
/// Context tokens each slot gets (`-c` is this times the slots): the
/// longest chat prompt of the baseline payloads with its template, plus the
/// answer, fits with room to spare.
const CONTEXT_PER_SLOT: u32 = 512;
/// Tokens a step is computed in at once (`--ubatch-size`, llama.cpp's
/// default, set here so that `report whatif --pass-tokens` is told the
/// same): a step of more takes several passes and costs on another curve.
pub(crate) const PASS_TOKENS: u32 = 512;

/// The server's files.
pub(crate) struct Install {
    binary: PathBuf,
    model: PathBuf,
}

/// The binary (built when missing: about 12 minutes on 2 cores, once) and
/// the tiny model written into `dir`.
pub(crate) fn prepare(root: &Path, dir: &Path) -> Result<Install, TaskError> {
    let binary = root.join(".llama-server/bin/llama-server");
    let python = root.join(".llama-server/venv/bin/python");
    if !(binary.exists() && python.exists()) {
        println!("llama-server is not built yet: running xtask/llama/build_server.sh (about 12 minutes on 2 cores, once)");
        let status = Command::new("bash")
            .arg(root.join("xtask/llama/build_server.sh"))
            .status()
            .map_err(|e| TaskError::Step(format!("cannot run xtask/llama/build_server.sh: {e}")))?;
        if !status.success() {
            return Err(TaskError::Step(format!(
                "xtask/llama/build_server.sh failed ({status}); its output says why"
            )));
        }
    }
    let model = dir.join(format!("{MODEL}.gguf"));
    let made = Command::new(&python)
        .arg(root.join("xtask/llama/make_gguf.py"))
        .arg(&model)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| {
            TaskError::Step(format!(
                "cannot run make_gguf.py with {}: {e}",
                python.display()
            ))
        })?;
    if !made.success() {
        return Err(TaskError::Step(format!(
            "xtask/llama/make_gguf.py could not write {} ({made})",
            model.display()
        )));
    }
    Ok(Install { binary, model })
}

/// The server's flags for `slots` slots, after the model, host and port.
pub(crate) fn args(slots: u32) -> Vec<String> {
    [
        "--parallel",
        &slots.to_string(),
        "--ctx-size",
        &(slots * CONTEXT_PER_SLOT).to_string(),
        "--ubatch-size",
        &PASS_TOKENS.to_string(),
        "--threads",
        "1",
        "--metrics",
        "--alias",
        MODEL,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Starts it on a free loopback port with `slots` slots; ready once it
/// says it listens (after the model is loaded).
pub(crate) fn start(install: &Install, slots: u32, log: &Path) -> Result<ServerProcess, TaskError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| TaskError::Step(format!("no free loopback port for llama-server: {e}")))?
        .port();
    let mut cmd = Command::new(&install.binary);
    cmd.arg("--model")
        .arg(&install.model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(args(slots));
    ServerProcess::start_reading_output(cmd, log, READY, listening_url).map_err(|e| match e {
        ProcessError::NotListening(..) => TaskError::Step(format!(
            "llama-server did not start: {e}; its log is {}",
            log.display()
        )),
        other => other.into(),
    })
}

/// `http://127.0.0.1:PORT` from its line `... listening on http://...`.
fn listening_url(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("listening on ")?;
    let url = rest.split_whitespace().next()?;
    url.starts_with("http://").then(|| url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_url_from_its_log_line() {
        assert_eq!(
            listening_url("0.00.028.098 I srv  llama_server: listening on http://127.0.0.1:18931"),
            Some("http://127.0.0.1:18931".to_owned())
        );
        assert_eq!(listening_url("srv load_model: loading model"), None);
    }

    #[test]
    fn the_slots_set_parallel_and_the_context() {
        let a = args(20);
        let at = |flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!(
            (at("--parallel"), at("--ctx-size")),
            ("20".into(), "10240".into())
        );
        assert_eq!(at("--ubatch-size"), PASS_TOKENS.to_string());
        assert!(a.contains(&"--metrics".to_owned()));
    }
}
