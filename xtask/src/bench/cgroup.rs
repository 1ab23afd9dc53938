//! The client-bound runs' CPU cap: a cgroup with a CFS quota that client
//! processes join before they exec.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CPU bandwidth cap for client processes: a cgroup whose CFS quota lets
/// its members use `share` of one CPU. Capped, a client (not the server) is
/// the bottleneck, so its requests per second measure what it gets out of
/// its CPU, free of the server-side effects that decide the uncapped runs.
/// The cgroup is removed when this is dropped.
#[derive(Debug)]
pub(super) struct CpuCap {
    dir: PathBuf,
    tasks: PathBuf,
    /// The share of one CPU, for the record.
    pub share: f64,
}

impl CpuCap {
    /// CFS period of the cap: short, so a client is never throttled for
    /// long stretches that would leave the server idle.
    const PERIOD_US: u64 = 10_000;

    /// Creates the cgroup (cgroup v1 `cpu` controller, or v2 with `cpu`
    /// enabled at the root). `None` where neither is writable, e.g. without
    /// root: the capped comparison is then skipped and says so.
    pub(super) fn create(share: f64) -> Option<Self> {
        let quota_us = (share * Self::PERIOD_US as f64).round() as u64;
        let name = format!("latency-bench-{}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let v2 = Path::new("/sys/fs/cgroup");
        let (dir, settings) = if v1.join("cpu.cfs_quota_us").is_file() {
            let dir = v1.join(&name);
            let settings = vec![
                ("cpu.cfs_period_us", Self::PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", quota_us.to_string()),
            ];
            (dir, settings)
        } else if fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"))
        {
            let settings = vec![("cpu.max", format!("{quota_us} {}", Self::PERIOD_US))];
            (v2.join(&name), settings)
        } else {
            return None;
        };
        fs::create_dir(&dir).ok()?;
        let cap = Self {
            tasks: dir.join(if settings.len() == 2 {
                "tasks"
            } else {
                "cgroup.procs"
            }),
            dir,
            share,
        };
        for (file, value) in settings {
            fs::write(cap.dir.join(file), value).ok()?;
        }
        Some(cap)
    }

    /// `cmd`, started inside the cgroup: a shell joins it, then execs the
    /// client (same process, so its resource usage is still the client's).
    pub(super) fn wrap(&self, cmd: &Command) -> Command {
        let mut capped = Command::new("sh");
        capped
            .arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$@\"")
            .arg(&self.tasks)
            .arg(cmd.get_program())
            .args(cmd.get_args());
        capped
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        // Empty once its clients have exited.
        let _ = fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::super::clients::describe;
    use super::*;

    #[test]
    fn a_capped_command_joins_the_cgroup_then_execs_the_client() {
        let cap = CpuCap {
            dir: PathBuf::from("/nonexistent/cap"),
            tasks: PathBuf::from("/nonexistent/cap/tasks"),
            share: 0.4,
        };
        let mut client = Command::new("wrk");
        client.args(["-c32", "http://127.0.0.1:1/"]);
        assert_eq!(
            describe(&cap.wrap(&client)),
            r#"sh -c 'echo $$ > "$0" && exec "$@"' /nonexistent/cap/tasks wrk -c32 http://127.0.0.1:1/"#
        );
    }

    /// Where this process may create cgroups (root with a cpu controller,
    /// as on the development VM and CI), a capped child really is in the
    /// cgroup and the cgroup is gone after the cap is dropped.
    #[test]
    fn a_capped_child_runs_in_its_cgroup_where_cgroups_can_be_made() {
        let _children = super::super::accounting::child_processes_lock();
        let Some(cap) = CpuCap::create(0.5) else {
            return;
        };
        let name = cap
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cat = Command::new("cat");
        cat.arg("/proc/self/cgroup");
        let out = cap.wrap(&cat).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&name), "{name} not in:\n{text}");
        let dir = cap.dir.clone();
        drop(cap);
        assert!(!dir.exists());
    }
}
