//! CPU pinning: client and server on disjoint CPUs (the effect of
//! `taskset -c`), set with `sched_setaffinity` on the spawning thread so the
//! children it starts inherit it.

/// CPUs for each side.
pub(super) struct Pinning {
    pub client: Vec<usize>,
    pub server: Vec<usize>,
    all: Vec<usize>,
    pub used: bool,
}

impl Pinning {
    /// The lower half of the CPUs for the client, the upper for the server;
    /// no pinning when disabled or with a single CPU.
    pub(super) fn plan(cores: usize, enabled: bool) -> Self {
        let all: Vec<usize> = (0..cores).collect();
        if !enabled || cores < 2 {
            return Self {
                client: all.clone(),
                server: all.clone(),
                all,
                used: false,
            };
        }
        let half = cores / 2;
        Self {
            client: (0..half).collect(),
            server: (half..cores).collect(),
            all,
            used: true,
        }
    }

    /// The plan for this machine's CPUs, printed.
    pub(super) fn for_this_machine(enabled: bool) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let pin = Self::plan(cores, enabled);
        println!(
            "{cores} cores; client CPUs {}, server CPUs {}{}",
            cpu_list(&pin.client),
            cpu_list(&pin.server),
            if pin.used {
                " (pinned)"
            } else {
                " (not pinned)"
            }
        );
        pin
    }

    /// What follows runs on the server's CPUs.
    pub(super) fn as_server(&self) {
        if self.used {
            pin_self(&self.server);
        }
    }

    /// What follows runs on the client's CPUs.
    pub(super) fn as_client(&self) {
        if self.used {
            pin_self(&self.client);
        }
    }

    /// Back to every CPU.
    pub(super) fn release(&self) {
        if self.used {
            pin_self(&self.all);
        }
    }

    /// `taskset -c LIST ` for the client's or the server's printed command.
    pub(super) fn prefix(&self, client: bool) -> String {
        if self.used {
            let cpus = if client { &self.client } else { &self.server };
            format!("taskset -c {} ", cpu_list(cpus))
        } else {
            String::new()
        }
    }
}

/// Pins the calling thread (and so every process it spawns afterwards) to
/// `cpus`: the effect of `taskset -c`. Returns false where not supported.
pub(super) fn pin_self(cpus: &[usize]) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it;
        // sched_setaffinity(0, ...) affects only the calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_ZERO(&mut set);
            for &cpu in cpus {
                libc::CPU_SET(cpu, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpus;
        false
    }
}

/// `0-3` style list for the record and for printed commands.
pub(super) fn cpu_list(cpus: &[usize]) -> String {
    match (cpus.first(), cpus.last()) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_splits_the_cores() {
        let p = Pinning::plan(2, true);
        assert_eq!(
            (p.client.clone(), p.server.clone(), p.used),
            (vec![0], vec![1], true)
        );
        let p = Pinning::plan(16, true);
        assert_eq!((p.client.len(), p.server[0]), (8, 8));
        assert!(!Pinning::plan(1, true).used);
        assert!(!Pinning::plan(4, false).used);
        assert_eq!(p.prefix(true), "taskset -c 0-7 ");
        assert_eq!(Pinning::plan(4, false).prefix(false), "");
    }

    #[test]
    fn cpu_lists_read_like_taskset() {
        assert_eq!(cpu_list(&[0]), "0");
        assert_eq!(cpu_list(&[8, 9, 10]), "8-10");
        assert_eq!(cpu_list(&[]), "");
    }
}
