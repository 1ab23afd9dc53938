//! The files a run will write, checked before its first request: a load
//! that runs for minutes and then cannot write its summary has lost the
//! measurement, and two flags naming one file would silently overwrite
//! each other's output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A file (or directory, for `--out-dir`) a run writes, and the flag that
/// named it.
#[derive(Debug, Clone)]
pub(crate) struct Output<'a> {
    /// The flag as the user typed it (`--json`, `-o/--out`).
    pub(crate) flag: &'static str,
    /// The path given.
    pub(crate) path: &'a Path,
    /// A directory that the run creates (with its parents), not a file.
    pub(crate) is_dir: bool,
}

/// Checks that every output can be written and that no two name the same
/// file; the message names the flag, the path and what is wrong.
pub(crate) fn check(outputs: &[Output<'_>]) -> Result<(), String> {
    let mut seen: BTreeMap<PathBuf, &'static str> = BTreeMap::new();
    for output in outputs {
        let path = output.path;
        if path.as_os_str().is_empty() {
            return Err(format!("{} needs a path", output.flag));
        }
        if output.is_dir {
            if path.exists() && !path.is_dir() {
                return Err(format!(
                    "{} {}: exists and is not a directory",
                    output.flag,
                    path.display()
                ));
            }
            // Created later with its parents: the nearest existing
            // ancestor must take new entries.
            let existing = path
                .ancestors()
                .find(|a| a.as_os_str().is_empty() || a.exists())
                .unwrap_or(Path::new("."));
            probe_writable(output.flag, path, existing)?;
        } else {
            if path.is_dir() {
                return Err(format!(
                    "{} {}: is a directory; give a file path",
                    output.flag,
                    path.display()
                ));
            }
            let parent = parent_of(path);
            if !parent.is_dir() {
                return Err(format!(
                    "{} {}: the directory {} does not exist; create it first or give another path",
                    output.flag,
                    path.display(),
                    parent.display()
                ));
            }
            probe_writable(output.flag, path, parent)?;
        }
        let key = normalized(path);
        if let Some(other) = seen.insert(key, output.flag) {
            return Err(format!(
                "{other} and {} both name {}; give each output a file of its own",
                output.flag,
                path.display()
            ));
        }
    }
    Ok(())
}

/// The directory a file goes in (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The path made absolute through its (existing) parent, so `x.csv` and
/// `./x.csv` are one file.
fn normalized(path: &Path) -> PathBuf {
    let parent = parent_of(path);
    let base = parent
        .canonicalize()
        .unwrap_or_else(|_| parent.to_path_buf());
    match path.file_name() {
        Some(name) => base.join(name),
        None => base,
    }
}

/// Creates and removes a probe file in `dir`: the one reliable test that
/// the run will be allowed to write there (permissions, a read-only
/// mount, ACLs).
fn probe_writable(flag: &str, path: &Path, dir: &Path) -> Result<(), String> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let probe = dir.join(format!(".loadgen-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        // Left by an earlier check that was killed: the directory is
        // writable all the same.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!(
            "{flag} {}: cannot write in {}: {e}",
            path.display(),
            dir.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file<'a>(flag: &'static str, path: &'a Path) -> Output<'a> {
        Output {
            flag,
            path,
            is_dir: false,
        }
    }

    #[test]
    fn missing_directories_and_shared_paths_are_refused() {
        let dir = std::env::temp_dir().join(format!("loadgen-outputs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("x.csv");
        let json = dir.join("x.json");
        assert_eq!(check(&[file("-o", &log), file("--json", &json)]), Ok(()));
        let err = check(&[file("-o", &log), file("--json", &log)]).unwrap_err();
        assert!(err.contains("-o and --json both name"), "{err}");
        let same = dir.join(".").join("x.csv");
        assert!(check(&[file("-o", &log), file("--json", &same)]).is_err());
        let nowhere = Path::new("/nonexistent/dir/x.json");
        let err = check(&[file("--json", nowhere)]).unwrap_err();
        assert!(
            err.contains(
                "--json /nonexistent/dir/x.json: the directory /nonexistent/dir does not exist"
            ),
            "{err}"
        );
        let err = check(&[file("--json", &dir)]).unwrap_err();
        assert!(err.contains("is a directory"), "{err}");
        let out_dir = dir.join("a/b/c");
        let as_dir = Output {
            flag: "--out-dir",
            path: &out_dir,
            is_dir: true,
        };
        assert_eq!(check(std::slice::from_ref(&as_dir)), Ok(()));
        let err = check(&[Output {
            path: &log,
            ..as_dir
        }]);
        // x.csv does not exist yet: a directory may be made there.
        assert_eq!(err, Ok(()));
        std::fs::write(&log, b"").unwrap();
        let err = check(&[Output {
            flag: "--out-dir",
            path: &log,
            is_dir: true,
        }])
        .unwrap_err();
        assert!(err.contains("exists and is not a directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
