//! Where things are: the repository root, the release binaries, the venv.
//!
//! The root is found when xtask runs, never baked in when it is compiled:
//! with a `CARGO_TARGET_DIR` shared by two checkouts, an xtask built in one
//! runs in the other, and a compile-time path would send its builds and
//! its `input.py` to a checkout that may no longer exist.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::TaskError;

/// The repository root: the directory of the workspace `Cargo.toml`.
///
/// Found at run time, once: first above the `CARGO_MANIFEST_DIR` that
/// `cargo run` (and so `cargo xtask`) sets for the running package, if that
/// directory exists and a workspace manifest is above it, else above the
/// current directory. Neither: an error saying where it looked.
pub(crate) fn root() -> Result<PathBuf, TaskError> {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
        let cwd = std::env::current_dir().ok();
        find_root(manifest_dir.as_deref(), cwd.as_deref())
    })
    .clone()
    .map_err(TaskError::Workspace)
}

/// The workspace root above `manifest_dir` (tried first, when it exists)
/// or above `cwd`; the error says what was tried.
pub(crate) fn find_root(
    manifest_dir: Option<&Path>,
    cwd: Option<&Path>,
) -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    for (what, start) in [
        ("CARGO_MANIFEST_DIR", manifest_dir),
        ("the current directory", cwd),
    ] {
        let Some(start) = start else {
            continue;
        };
        if !start.is_dir() {
            tried.push(format!("{what} {} does not exist", start.display()));
            continue;
        }
        match start.ancestors().find(|dir| is_workspace_root(dir)) {
            Some(root) => return Ok(root.to_path_buf()),
            None => tried.push(format!(
                "no Cargo.toml with [workspace] in or above {what} {}",
                start.display()
            )),
        }
    }
    if tried.is_empty() {
        tried.push("neither CARGO_MANIFEST_DIR nor the current directory is known".into());
    }
    Err(format!(
        "{}; run `cargo xtask` from inside the repository",
        tried.join("; ")
    ))
}

/// Whether `dir` holds a `Cargo.toml` with a `[workspace]` table (or a
/// `[workspace.…]` one, which implies it).
fn is_workspace_root(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|text| {
        text.lines().any(|line| {
            let line = line.split('#').next().unwrap_or_default().trim();
            line.strip_prefix("[workspace")
                .is_some_and(|rest| rest.starts_with(']') || rest.starts_with('.'))
        })
    })
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` (a relative one
/// is relative to the root, where xtask runs cargo).
pub(crate) fn target_dir() -> Result<PathBuf, TaskError> {
    Ok(match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => root()?.join(dir),
        None => root()?.join("target"),
    })
}

/// Names a directory of prebuilt `stub-server`, `loadgen` and `report`
/// binaries to use instead of building the release ones.
pub(crate) const BIN_DIR_ENV: &str = "XTASK_BIN_DIR";

/// The prebuilt-binaries directory from [`BIN_DIR_ENV`], if set.
pub(crate) fn prebuilt_bin_dir() -> Option<PathBuf> {
    std::env::var_os(BIN_DIR_ENV)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("xtask-workspace-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            // Canonical, so comparisons hold where the temp dir is a link.
            Self(dir.canonicalize().unwrap())
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// `root/Cargo.toml` (a workspace), `root/xtask/Cargo.toml` and
    /// `root/crates/a/src` (a member's directory).
    fn checkout(name: &str) -> TempDir {
        let tmp = TempDir::new(name);
        let root = &tmp.0;
        std::fs::write(
            root.join("Cargo.toml"),
            "[workspace] # the root\nmembers = [\"crates/*\", \"xtask\"]\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("xtask")).unwrap();
        std::fs::write(
            root.join("xtask/Cargo.toml"),
            "[package]\nname = \"xtask\"\n# [workspace] in a comment is not one\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("crates/a/src")).unwrap();
        tmp
    }

    #[test]
    fn the_root_is_above_the_runtime_manifest_dir() {
        let tmp = checkout("manifest");
        let root = &tmp.0;
        let elsewhere = TempDir::new("elsewhere");
        assert_eq!(
            find_root(Some(&root.join("xtask")), Some(&elsewhere.0)),
            Ok(root.clone())
        );
    }

    #[test]
    fn a_manifest_dir_that_no_longer_exists_falls_back_to_the_current_directory() {
        let tmp = checkout("fallback");
        let root = &tmp.0;
        let gone = root.join("deleted-clone/xtask");
        assert_eq!(
            find_root(Some(&gone), Some(&root.join("crates/a/src"))),
            Ok(root.clone())
        );
        assert_eq!(find_root(None, Some(root)), Ok(root.clone()));
    }

    #[test]
    fn a_workspace_table_with_only_dotted_keys_counts() {
        let tmp = TempDir::new("dotted");
        std::fs::write(
            tmp.0.join("Cargo.toml"),
            "[workspace.package]\nversion = \"1\"\n",
        )
        .unwrap();
        assert_eq!(find_root(None, Some(&tmp.0)), Ok(tmp.0.clone()));
    }

    #[test]
    fn outside_any_workspace_the_error_says_where_it_looked() {
        let tmp = TempDir::new("outside");
        // A package manifest is not a workspace root.
        std::fs::write(tmp.0.join("Cargo.toml"), "[package]\nname = \"p\"\n").unwrap();
        let gone = tmp.0.join("gone");
        let err = find_root(Some(&gone), Some(&tmp.0)).unwrap_err();
        assert!(
            err.contains(&format!(
                "CARGO_MANIFEST_DIR {} does not exist",
                gone.display()
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "no Cargo.toml with [workspace] in or above the current directory {}",
                tmp.0.display()
            )),
            "{err}"
        );
        assert!(
            err.ends_with("run `cargo xtask` from inside the repository"),
            "{err}"
        );
        assert!(find_root(None, None).is_err());
    }

    #[test]
    fn this_checkout_is_found_from_the_test_environment() {
        // cargo test sets CARGO_MANIFEST_DIR (xtask/) at run time as well.
        let root = root().unwrap();
        assert!(
            root.join("xtask/Cargo.toml").is_file(),
            "{}",
            root.display()
        );
    }
}
