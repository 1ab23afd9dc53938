//! Keeping the client's CPUs to the client (`--isolate-client`): for the
//! scale runs every other thread that may move, kernel threads included,
//! goes to the server's CPUs, and loadgen runs at `SCHED_FIFO` priority 1.
//! That is what `isolcpus` or `tuna --isolate` and `chrt -f 1` do on a
//! machine set up for benchmarks, done for the runs only and undone after.
//!
//! Why both: on a 2-core VM whose kernel does not preempt kernel code
//! (`CONFIG_PREEMPT_NONE`), a kernel thread such as `kdamond` holds the
//! client's CPU for 1-4 ms whatever loadgen's priority, and an ordinary
//! process does the same to a client at normal priority. Either shows up as
//! client delay though it is the machine's.
//!
//! Each moved thread gets its own CPUs back when the [`Isolation`] is
//! dropped (also when the run is interrupted and unwinds). Threads that
//! cannot move (per-CPU kernel threads) stay and are counted. A thread born
//! during the runs inherits its parent's narrowed CPUs; one that still has
//! exactly the server's CPUs at the end gets the client's back as well
//! (a thread pinned there before the runs is left as it was).

use std::collections::{HashMap, HashSet};
use std::fs;

use super::TaskError;

/// The real-time priority loadgen runs at: the lowest, above every
/// normal thread and below the kernel's own real-time threads.
pub(super) const CLIENT_FIFO_PRIORITY: libc::c_int = 1;

/// Threads moved off the client's CPUs, with the CPUs each had.
pub(super) struct Isolation {
    saved: HashMap<libc::pid_t, libc::cpu_set_t>,
    client: Vec<usize>,
    server: Vec<usize>,
    /// Lists the threads to look for newborns among at the end (every
    /// thread when the whole machine was isolated); none when absent.
    newborns: Option<Box<dyn Fn() -> Vec<libc::pid_t>>>,
    /// Every thread there was at the start, moved or not.
    existed: HashSet<libc::pid_t>,
    /// Threads that had a client CPU and moved.
    pub moved: usize,
    /// Threads that had a client CPU and could not move.
    pub stayed: usize,
}

impl Isolation {
    /// Moves every thread that may run on a `client` CPU to the `server`
    /// CPUs (disjoint ones; the bench has checked [`allowed`] first).
    pub(super) fn start(client: &[usize], server: &[usize]) -> Self {
        let isolation = Self::moving(all_threads(), client, server, Some(Box::new(all_threads)));
        println!(
            "  client isolated: {} threads moved to CPUs {} for the runs, {} could not move (per-CPU kernel threads); loadgen at SCHED_FIFO {CLIENT_FIFO_PRIORITY}",
            isolation.moved,
            super::pinning::cpu_list(server),
            isolation.stayed,
        );
        isolation
    }

    /// Moves those of `tids` that may run on a `client` CPU to the
    /// `server` CPUs; at the end, threads that `newborns` lists and `tids`
    /// did not, still on exactly the server's CPUs, are widened again.
    fn moving(
        tids: impl IntoIterator<Item = libc::pid_t>,
        client: &[usize],
        server: &[usize],
        newborns: Option<Box<dyn Fn() -> Vec<libc::pid_t>>>,
    ) -> Self {
        let mut isolation = Self {
            saved: HashMap::new(),
            client: client.to_vec(),
            server: server.to_vec(),
            newborns,
            existed: HashSet::new(),
            moved: 0,
            stayed: 0,
        };
        let to = cpu_set(server);
        for tid in tids {
            isolation.existed.insert(tid);
            let Some(had) = affinity(tid) else { continue };
            if !client.iter().any(|&c| is_set(&had, c)) {
                continue;
            }
            if set_affinity(tid, &to) {
                isolation.saved.insert(tid, had);
                isolation.moved += 1;
            } else {
                isolation.stayed += 1;
            }
        }
        isolation
    }

    /// Gives every moved thread its CPUs back.
    fn restore(&mut self) {
        for (tid, had) in self.saved.drain() {
            set_affinity(tid, &had);
        }
        if let Some(newborns) = &self.newborns {
            // Born during the runs from a moved parent; a thread pinned to
            // the server's CPUs before the runs keeps its pinning.
            let narrowed = cpu_set(&self.server);
            let widened = cpu_set(&[self.server.as_slice(), self.client.as_slice()].concat());
            for tid in newborns() {
                if self.existed.contains(&tid) {
                    continue;
                }
                if affinity(tid).is_some_and(|now| same(&now, &narrowed)) {
                    set_affinity(tid, &widened);
                }
            }
        }
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Sets `SCHED_FIFO` at [`CLIENT_FIFO_PRIORITY`] for the calling thread;
/// called in the child between fork and exec, so only loadgen gets it.
pub(super) fn take_fifo() -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: CLIENT_FIFO_PRIORITY,
    };
    // SAFETY: pid 0 is the calling thread; the parameter outlives the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether this process may isolate the client: it may take `SCHED_FIFO`
/// (tried on a scratch thread), which needs the same privilege as moving
/// other users' threads. Checked before anything is built or started.
pub(super) fn allowed() -> Result<(), TaskError> {
    let tried = std::thread::spawn(take_fifo)
        .join()
        .map_err(|_| "the check's thread panicked".to_owned())
        .and_then(|r| r.map_err(|e| e.to_string()));
    tried.map_err(|why| {
        TaskError::BadFlag(format!(
            "--isolate-client needs root or CAP_SYS_NICE, to run loadgen at SCHED_FIFO and move other threads: {why}"
        ))
    })
}

/// Every thread of every process, from /proc.
fn all_threads() -> Vec<libc::pid_t> {
    let mut tids = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return tids;
    };
    for p in procs.flatten() {
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(tasks) = fs::read_dir(p.path().join("task")) else {
            continue;
        };
        tids.extend(
            tasks
                .flatten()
                .filter_map(|t| t.file_name().to_str()?.parse::<libc::pid_t>().ok()),
        );
    }
    tids
}

fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        set
    }
}

fn is_set(set: &libc::cpu_set_t, cpu: usize) -> bool {
    // SAFETY: CPU_ISSET reads inside the set.
    unsafe { libc::CPU_ISSET(cpu, set) }
}

fn same(a: &libc::cpu_set_t, b: &libc::cpu_set_t) -> bool {
    // SAFETY: CPU_EQUAL reads both sets.
    unsafe { libc::CPU_EQUAL(a, b) }
}

/// A thread's CPUs; None where it is gone or cannot be read.
fn affinity(tid: libc::pid_t) -> Option<libc::cpu_set_t> {
    // SAFETY: sched_getaffinity writes at most the size given into the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then_some(set)
    }
}

/// Sets a thread's CPUs; false where it may not move or is gone.
fn set_affinity(tid: libc::pid_t, set: &libc::cpu_set_t) -> bool {
    // SAFETY: sched_setaffinity reads the set; a bad tid is an error return.
    unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_sets_hold_what_was_put_in() {
        let set = cpu_set(&[0, 3]);
        assert!(is_set(&set, 0) && is_set(&set, 3) && !is_set(&set, 1));
        assert!(same(&set, &cpu_set(&[3, 0])));
        assert!(!same(&set, &cpu_set(&[0])));
    }

    #[test]
    fn a_moved_thread_gets_its_cpus_back_and_a_pinned_one_keeps_its_pin() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            assert!(
                std::env::var_os("CI").is_none(),
                "one CPU: nothing to move a thread to"
            );
            eprintln!("skipped: one CPU, nothing to move a thread to");
            return;
        }
        let sleeper = || match std::process::Command::new("sleep").arg("30").spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot start `sleep` to move: {e}"),
        };
        let tid_of = |c: &std::process::Child| libc::pid_t::try_from(c.id()).unwrap_or(0);
        // One on both CPUs, whatever the test runner was pinned to; one
        // pinned to the server's CPU before the runs.
        let (mut both, mut pinned) = (sleeper(), sleeper());
        let (b, p) = (tid_of(&both), tid_of(&pinned));
        assert!(set_affinity(b, &cpu_set(&[0, 1])) && set_affinity(p, &cpu_set(&[1])));
        // One born during the runs, on the server's CPU as a moved parent's
        // child would be.
        let mut born = sleeper();
        let n = tid_of(&born);
        {
            let isolation =
                Isolation::moving([b, p], &[0], &[1], Some(Box::new(move || vec![b, p, n])));
            assert_eq!((isolation.moved, isolation.stayed), (1, 0));
            assert!(affinity(b).is_some_and(|now| same(&now, &cpu_set(&[1]))));
            assert!(set_affinity(n, &cpu_set(&[1])));
        }
        let after = [b, p, n].map(affinity);
        for child in [&mut both, &mut pinned, &mut born] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let is = |cpus: Option<libc::cpu_set_t>, want: &[usize]| {
            cpus.is_some_and(|c| same(&c, &cpu_set(want)))
        };
        assert!(is(after[0], &[0, 1]), "the moved thread got its CPUs back");
        assert!(is(after[1], &[1]), "the pinned thread kept its pin");
        assert!(is(after[2], &[0, 1]), "the newborn got the client's CPU");
    }

    #[test]
    fn the_threads_listed_include_this_one() {
        // SAFETY: gettid takes nothing and returns this thread's id.
        let me = unsafe { libc::gettid() };
        assert!(all_threads().contains(&me));
        assert!(affinity(me).is_some());
    }
}
