//! CPU accounting: what a finished client used (`getrusage` of reaped
//! children) and what a running server's process tree has used so far
//! (`/proc/PID/stat` of it and its children, nginx's workers).

use std::fs;

/// CPU time and context switches of a finished child process, from
/// `getrusage(RUSAGE_CHILDREN)` taken before and after it is reaped (the
/// servers run on and are reaped later, so the difference is the client's).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub(crate) struct ClientCpu {
    /// User-mode CPU seconds.
    pub user_s: f64,
    /// Kernel-mode CPU seconds.
    pub system_s: f64,
    /// Voluntary plus involuntary context switches.
    pub context_switches: u64,
}

impl ClientCpu {
    /// Totals of every child reaped so far.
    pub(crate) fn of_reaped_children() -> Self {
        // SAFETY: getrusage writes into the zeroed struct we own.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            if libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) != 0 {
                return Self::default();
            }
            usage
        };
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Self {
            user_s: seconds(usage.ru_utime),
            system_s: seconds(usage.ru_stime),
            context_switches: u64::try_from(usage.ru_nvcsw + usage.ru_nivcsw).unwrap_or(0),
        }
    }

    /// What was used between `before` and `self`.
    pub(crate) fn since(self, before: Self) -> Self {
        Self {
            user_s: self.user_s - before.user_s,
            system_s: self.system_s - before.system_s,
            context_switches: self
                .context_switches
                .saturating_sub(before.context_switches),
        }
    }
}

/// CPU seconds (user + system, all threads) used so far by process `pid`
/// and its live children (nginx's workers), from `/proc`; `None` where
/// `/proc` cannot tell.
pub(crate) fn process_tree_cpu_s(pid: u32) -> Option<f64> {
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_s <= 0 {
        return None;
    }
    let mut ticks = ProcStat::read(pid)?.cpu_ticks;
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let child = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(stat) = child.and_then(ProcStat::read) {
            if stat.parent == pid {
                ticks += stat.cpu_ticks;
            }
        }
    }
    Some(ticks as f64 / ticks_per_s as f64)
}

/// CPU seconds used so far by `pid` and every live descendant, however
/// deep (aiperf's services and workers are children of children), from
/// `/proc`; `None` where `/proc` cannot tell.
pub(crate) fn descendants_cpu_s(pid: u32) -> Option<f64> {
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_s <= 0 {
        return None;
    }
    let mut all: Vec<(u32, ProcStat)> = Vec::new();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let id = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok());
        if let Some((id, stat)) = id.and_then(|id| Some((id, ProcStat::read(id)?))) {
            all.push((id, stat));
        }
    }
    let mut tree = vec![pid];
    let mut ticks = 0;
    let mut k = 0;
    while k < tree.len() {
        let parent = tree[k];
        for (id, stat) in &all {
            if *id == parent {
                ticks += stat.cpu_ticks;
            }
            if stat.parent == parent && *id != parent {
                tree.push(*id);
            }
        }
        k += 1;
    }
    (ticks > 0 || all.iter().any(|(id, _)| *id == pid)).then(|| ticks as f64 / ticks_per_s as f64)
}

/// The fields of `/proc/PID/stat` the bench reads.
struct ProcStat {
    parent: u32,
    cpu_ticks: u64,
}

impl ProcStat {
    fn read(pid: u32) -> Option<Self> {
        Self::parse(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Fields after the command name (which may hold spaces and parens):
    /// state, ppid, ..., utime (14th of the line), stime (15th).
    fn parse(text: &str) -> Option<Self> {
        let rest: Vec<&str> = text
            .get(text.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        let field = |n: usize| rest.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            parent: u32::try_from(field(4)?).ok()?,
            cpu_ticks: field(14)? + field(15)?,
        })
    }
}

/// Unit tests that start child processes hold this, so that a test reading
/// `RUSAGE_CHILDREN` around its own child sees no other test's.
#[cfg(test)]
pub(crate) fn child_processes_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn child_cpu_is_what_the_reaped_child_reports_of_itself() {
        let _children = child_processes_lock();
        // The reference: bash's `times`, the shell's own user and system
        // time, printed just before it exits.
        let before = ClientCpu::of_reaped_children();
        let output = Command::new("bash")
            .args([
                "-c",
                "i=0; while [ $i -lt 60000 ]; do i=$((i+1)); done; times",
            ])
            .output()
            .expect("bash runs");
        let used = ClientCpu::of_reaped_children().since(before);
        let text = String::from_utf8_lossy(&output.stdout);
        let seconds = |field: &str| -> f64 {
            let (m, s) = field
                .trim_end_matches('s')
                .split_once('m')
                .expect("XmY.YYYs");
            m.parse::<f64>().expect("minutes") * 60.0 + s.parse::<f64>().expect("seconds")
        };
        let own: Vec<f64> = text
            .lines()
            .next()
            .expect("times prints a line")
            .split_whitespace()
            .map(seconds)
            .collect();
        let reported_s = own[0] + own[1];
        let measured_s = used.user_s + used.system_s;
        assert!(reported_s > 0.05, "the loop took CPU: {text}");
        assert!(
            (measured_s - reported_s).abs() < 0.02,
            "rusage {measured_s:.3} s, bash's times {reported_s:.3} s"
        );
    }

    #[test]
    fn proc_stat_lines_give_parent_and_cpu_ticks() {
        let line = "4242 (nginx: worker (x)) S 4241 4241 4241 0 -1 4194624 100 0 0 0 1234 567 0 0 20 0 1 0 99 0 0";
        let stat = ProcStat::parse(line).unwrap();
        assert_eq!((stat.parent, stat.cpu_ticks), (4241, 1234 + 567));
        assert!(ProcStat::parse("garbage").is_none());
        let own = process_tree_cpu_s(std::process::id()).unwrap();
        assert!(own >= 0.0);
        // A grandchild that spins counts toward its grandparent.
        let _children = child_processes_lock();
        let mut shell = std::process::Command::new("bash")
            .args([
                "-c",
                "bash -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5' & wait",
            ])
            .spawn()
            .unwrap();
        let mut seen = 0.0;
        for _ in 0..100 {
            seen = descendants_cpu_s(shell.id()).unwrap_or(0.0);
            if seen >= 0.2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = shell.kill();
        let _ = shell.wait();
        assert!(seen >= 0.2, "the grandchild's loop: {seen} s");
    }
}
