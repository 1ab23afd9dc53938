//! The peers the bench measures against (`wrk`, `oha`, `nginx`): where they
//! are and which version. Nothing is installed: a missing peer is recorded
//! as missing and its comparisons are skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A peer program and what we know of it.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Peer {
    /// Where it was found; `None` when missing.
    pub path: Option<PathBuf>,
    /// First line of its version output.
    pub version: Option<String>,
}

impl Peer {
    fn missing() -> Self {
        Self {
            path: None,
            version: None,
        }
    }
}

/// The three peers.
pub(super) struct Peers {
    pub wrk: Peer,
    pub oha: Peer,
    pub nginx: Peer,
}

impl Peers {
    /// Looks for each peer and prints what was found.
    pub(super) fn find() -> Self {
        let peers = Self {
            wrk: find("wrk", &["-v"]),
            oha: find("oha", &["--version"]),
            nginx: find("nginx", &["-v"]),
        };
        for (name, peer) in [
            ("wrk", &peers.wrk),
            ("oha", &peers.oha),
            ("nginx", &peers.nginx),
        ] {
            match &peer.version {
                Some(v) => println!("peer {name}: {v}"),
                None => {
                    println!("peer {name}: MISSING (not installed; its comparisons are skipped)")
                }
            }
        }
        peers
    }
}

/// Finds `name` on `PATH` or in the extra directories (cargo installs to
/// `~/.cargo/bin`, nginx lives in `/usr/sbin`, often off a user's `PATH`).
pub(super) fn find(name: &str, version_args: &[&str]) -> Peer {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.push(PathBuf::from("/usr/sbin"));
    let Some(path) = dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file()) else {
        return Peer::missing();
    };
    // wrk exits 1 after printing its version and nginx prints to stderr:
    // take the first non-empty line of either stream, whatever the status.
    let version = Command::new(&path)
        .args(version_args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|out| {
            let text = format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_owned)
        });
    Peer {
        path: Some(path),
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_is_nowhere_is_missing() {
        let peer = find("no-such-peer-program-xtask", &["--version"]);
        assert!(peer.path.is_none() && peer.version.is_none());
    }

    #[test]
    fn a_present_program_has_its_path_and_first_version_line() {
        // `sh` is on every PATH these tests run with.
        let peer = find("sh", &["-c", "echo; echo '  sh 1.0  '; echo later"]);
        assert!(peer.path.is_some_and(|p| p.ends_with("sh")));
        assert_eq!(peer.version.as_deref(), Some("sh 1.0"));
    }
}
