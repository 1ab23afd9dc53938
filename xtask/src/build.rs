//! The release build `perf` and `bench` start with: `cargo build --release`
//! of the tools in the repository root, or the prebuilt binaries that
//! [`workspace::BIN_DIR_ENV`] names.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::error::TaskError;
use crate::process::{self, ProcessError};
use crate::workspace;

/// The longest a release build may take.
const BUILD_LIMIT: Duration = Duration::from_secs(3600);

/// Why the release build did not produce the binaries.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    /// cargo ran and failed; its own messages are above.
    #[error("the release build failed ({status}): run `cargo build --release` to see why")]
    Failed {
        /// cargo's exit status.
        status: ExitStatus,
    },
    /// cargo could not even be started: the cause is the OS's.
    #[error("the release build could not start: `{command}` in {}: {source}{}", dir.display(), missing_dir_hint(dir))]
    Spawn {
        /// The command line.
        command: String,
        /// The directory it was to run in.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn missing_dir_hint(dir: &Path) -> &'static str {
    if dir.is_dir() {
        ""
    } else {
        " (that directory does not exist)"
    }
}

/// Where the tools' binaries are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The binaries in `dir`.
    pub(crate) fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The binary `name` (`stub-server`, `loadgen`, `report`).
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The binaries of `packages`: the prebuilt ones when
/// [`workspace::BIN_DIR_ENV`] is set (nothing is built), else built with
/// `cargo build --release` in the repository root, as a registered child
/// (an interruption stops the build too).
pub(crate) fn release_binaries(packages: &[&str]) -> Result<Binaries, TaskError> {
    if let Some(dir) = workspace::prebuilt_bin_dir() {
        println!(
            "using prebuilt binaries from {} ({}); not building",
            dir.display(),
            workspace::BIN_DIR_ENV
        );
        return Ok(Binaries::in_dir(dir));
    }
    let root = workspace::root()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    cargo_build(&cargo, &root, packages)?;
    Ok(Binaries::in_dir(workspace::target_dir()?.join("release")))
}

/// Runs `cargo build --release` of `packages` in `root`.
fn cargo_build(cargo: &OsString, root: &Path, packages: &[&str]) -> Result<(), TaskError> {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--quiet", "--bins"])
        .stdin(Stdio::null());
    for package in packages {
        cmd.args(["-p", package]);
    }
    let status = process::run_with_deadline(&mut cmd, BUILD_LIMIT);
    if let Some(signal) = process::interrupted() {
        return Err(ProcessError::Interrupted(signal).into());
    }
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(BuildError::Failed { status }.into()),
        Err(ProcessError::Spawn { source, .. }) => Err(BuildError::Spawn {
            command: describe(&cmd),
            dir: root.to_owned(),
            source,
        }
        .into()),
        Err(other) => Err(other.into()),
    }
}

/// The command line as a user would type it.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_in_a_directory_that_is_gone_says_so() {
        let gone = std::env::temp_dir().join(format!("xtask-build-gone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&gone);
        let err = cargo_build(&"cargo".into(), &gone, &["loadgen"]).unwrap_err();
        assert!(
            matches!(err, TaskError::Build(BuildError::Spawn { .. })),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "the release build could not start: `cargo build --release --quiet --bins -p loadgen` in {}: ",
                gone.display()
            )),
            "{text}"
        );
        assert!(text.contains("No such file or directory"), "{text}");
        assert!(text.ends_with("(that directory does not exist)"), "{text}");
    }

    #[test]
    fn a_cargo_that_cannot_be_started_is_named_with_the_os_error() {
        let dir = std::env::temp_dir();
        let err = cargo_build(&"/nonexistent/cargo".into(), &dir, &["loadgen"]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("the release build could not start: `/nonexistent/cargo build"),
            "{text}"
        );
        assert!(text.contains("No such file or directory"), "{text}");
        assert!(!text.contains("does not exist)"), "{text}");
    }

    #[test]
    fn a_build_that_ran_and_failed_points_at_cargo() {
        // `false` runs and exits 1, as a failing cargo would.
        let err = cargo_build(&"false".into(), &std::env::temp_dir(), &[]).unwrap_err();
        assert!(
            matches!(err, TaskError::Build(BuildError::Failed { .. })),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the release build failed (exit status: 1): run `cargo build --release` to see why"
        );
    }
}
