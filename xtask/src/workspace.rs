//! Where things are: the repository root, the release binaries, the venv.

use std::path::{Path, PathBuf};

/// The repository root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                root().join(dir)
            }
        }
        None => root().join("target"),
    }
}

/// Names a directory of prebuilt `stub-server`, `loadgen` and `report`
/// binaries to use instead of building the release ones.
pub const BIN_DIR_ENV: &str = "XTASK_BIN_DIR";

/// The prebuilt-binaries directory from [`BIN_DIR_ENV`], if set.
pub fn prebuilt_bin_dir() -> Option<PathBuf> {
    std::env::var_os(BIN_DIR_ENV)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// A release binary of the workspace (or the prebuilt one, see
/// [`BIN_DIR_ENV`]).
pub fn release_bin(name: &str) -> PathBuf {
    match prebuilt_bin_dir() {
        Some(dir) => dir.join(name),
        None => target_dir().join("release").join(name),
    }
}
