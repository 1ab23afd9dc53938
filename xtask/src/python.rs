//! The Python side of Before: a `.venv` filled from `requirements.txt`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why `input.py` cannot run here; the workflow falls back to the Rust
/// reproduction and says so loudly.
pub(crate) type Unavailable = String;

/// Returns the venv's interpreter, creating the venv and installing the pinned
/// requirements when they are missing.
pub(crate) fn ensure_venv(root: &Path) -> Result<PathBuf, Unavailable> {
    let venv = root.join(".venv");
    let python = venv.join("bin").join("python");
    if has_pinned_httpx(&python, root) {
        return Ok(python);
    }
    if !python.exists() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv .venv",
        )?;
    }
    pip_install(&python, &root.join("requirements.txt"), "requirements.txt")?;
    if has_pinned_httpx(&python, root) {
        Ok(python)
    } else {
        Err("httpx is still not importable after pip install".into())
    }
}

/// `python -m pip install -r requirements` (quietly); `shown` names the
/// file in the error.
pub(crate) fn pip_install(
    python: &Path,
    requirements: &Path,
    shown: &str,
) -> Result<(), Unavailable> {
    run(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(requirements),
        &format!("pip install -r {shown}"),
    )
}

/// Whether the interpreter imports the exact httpx that requirements.txt pins.
fn has_pinned_httpx(python: &Path, root: &Path) -> bool {
    let Some(pinned) = pinned_httpx(root) else {
        return false;
    };
    Command::new(python)
        .args(["-c", "import httpx; print(httpx.__version__)"])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == pinned)
}

fn pinned_httpx(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("requirements.txt")).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("httpx=="))
        .map(|v| v.trim().to_owned())
}

/// Runs `cmd` to completion; the error quotes `what` and the command's
/// standard error.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<(), Unavailable> {
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{what}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(err) => Err(format!("`{what}` could not start: {err}")),
    }
}

/// The interpreter's version line, for the report's conditions.
pub(crate) fn version(python: &Path) -> String {
    Command::new(python)
        .args([
            "-c",
            "import sys, httpx; print(sys.version.split()[0], 'httpx', httpx.__version__)",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
