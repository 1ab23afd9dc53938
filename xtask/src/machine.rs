//! What the machine is, for the record: `conditions.json` (perf, typed as
//! `model::conditions`) and `bench.json` (bench) each keep the keys they
//! always had.

use serde_json::{json, Value};

/// What `/proc` and the standard library say of this machine.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Machine {
    /// Available parallelism (0 when unknown).
    pub cores: usize,
    /// `/proc/cpuinfo`'s first `model name`.
    pub cpu: Option<String>,
    /// `/proc/meminfo`'s `MemTotal`, GiB to one decimal.
    pub memory_gib: Option<f64>,
    /// `std::env::consts::OS`.
    pub os: &'static str,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: Option<String>,
}

impl Machine {
    /// Reads this machine's description.
    pub(crate) fn probe() -> Self {
        let read = |file: &str| std::fs::read_to_string(file).ok();
        Self {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            cpu: read("/proc/cpuinfo").and_then(|t| proc_value(&t, "model name")),
            memory_gib: read("/proc/meminfo")
                .and_then(|t| proc_value(&t, "MemTotal"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map(|kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0),
            os: std::env::consts::OS,
            kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()),
        }
    }

    /// `conditions.json`'s `machine`: `cores`, `cpu` (`"unknown"` when
    /// unknown), `os`, `kernel` (empty when unknown).
    pub(crate) fn conditions(&self) -> model::conditions::Machine {
        model::conditions::Machine {
            cores: self.cores,
            cpu: self.cpu.clone().unwrap_or_else(|| "unknown".to_owned()),
            os: self.os.to_owned(),
            kernel: self.kernel.clone().unwrap_or_default(),
        }
    }

    /// [`Machine::conditions`] as JSON, for the other tasks' records.
    pub(crate) fn conditions_json(&self) -> Value {
        serde_json::to_value(self.conditions()).unwrap_or_default()
    }

    /// `bench.json`'s `machine`: `label`, `cores`, `cpu`, `memory_gib`,
    /// `os`, `kernel` (null where unknown).
    pub(crate) fn bench_json(&self, label: Option<&str>) -> Value {
        json!({
            "label": label,
            "cores": self.cores,
            "cpu": self.cpu,
            "memory_gib": self.memory_gib,
            "os": self.os,
            "kernel": self.kernel,
        })
    }
}

/// The value of the first `key: value` line of a `/proc` file.
/// The machine's load at one instant: `/proc/loadavg` and the CPU time
/// counters of `/proc/stat`'s `cpu` line (Linux; `None` elsewhere).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LoadSnapshot {
    /// Load averages over 1, 5 and 15 minutes.
    pub loadavg: Option<[f64; 3]>,
    /// Clock ticks stolen by the hypervisor, and all ticks, since boot.
    pub steal_and_total_ticks: Option<(u64, u64)>,
}

impl LoadSnapshot {
    /// Reads the counters now.
    pub(crate) fn now() -> Self {
        let read = |file: &str| std::fs::read_to_string(file).ok();
        Self {
            loadavg: read("/proc/loadavg").and_then(|t| parse_loadavg(&t)),
            steal_and_total_ticks: read("/proc/stat").and_then(|t| parse_steal(&t)),
        }
    }

    /// A phase's conditions from its start (`self`) to `end`: the load
    /// averages at its start, the CPUs, and the share of CPU time stolen
    /// during it, percent (`None` where the kernel reports no steal).
    pub(crate) fn phase(&self, end: &LoadSnapshot) -> model::conditions::Phase {
        let steal_pct = match (self.steal_and_total_ticks, end.steal_and_total_ticks) {
            (Some((s0, t0)), Some((s1, t1))) if t1 > t0 => {
                Some(s1.saturating_sub(s0) as f64 / (t1 - t0) as f64 * 100.0)
            }
            _ => None,
        };
        model::conditions::Phase {
            loadavg_at_start: self.loadavg,
            cpus: Some(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(0),
            ),
            cpu_stolen_pct: steal_pct,
            ..model::conditions::Phase::default()
        }
    }
}

/// `/proc/loadavg`: "0.52 0.58 0.59 1/467 12345".
fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}

/// `/proc/stat`'s first line: "cpu user nice system idle iowait irq
/// softirq steal guest guest_nice"; guest time is already counted in user,
/// so the total is the first eight fields.
fn parse_steal(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let total = ticks.iter().take(8).sum();
    Some((*ticks.get(7)?, total))
}

fn proc_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.strip_prefix(key)
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_and_steal_are_read_from_procs_formats() {
        assert_eq!(
            parse_loadavg("0.52 1.58 2.59 1/467 12345\n"),
            Some([0.52, 1.58, 2.59])
        );
        assert_eq!(parse_loadavg("0.52 x"), None);
        let stat = "cpu  100 5 50 800 10 1 2 30 40 0\ncpu0 50 2 25 400 5 0 1 15 20 0\n";
        // Steal is the eighth field; the total the first eight (guest is in user).
        assert_eq!(parse_steal(stat), Some((30, 998)));
        assert_eq!(parse_steal("cpu0 1 2 3\n"), None);
        let start = LoadSnapshot {
            loadavg: Some([1.0, 0.5, 0.25]),
            steal_and_total_ticks: Some((30, 1000)),
        };
        let end = LoadSnapshot {
            loadavg: None,
            steal_and_total_ticks: Some((40, 1200)),
        };
        let phase = start.phase(&end);
        assert_eq!(phase.loadavg_at_start, Some([1.0, 0.5, 0.25]));
        assert_eq!(phase.cpu_stolen_pct, Some(5.0));
    }

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    fn sample() -> Machine {
        Machine {
            cores: 2,
            cpu: Some("AMD EPYC 7B13".into()),
            memory_gib: Some(7.8),
            os: "linux",
            kernel: Some("6.1.0".into()),
        }
    }

    #[test]
    fn conditions_keep_their_keys_and_fallbacks() {
        let m = sample();
        assert_eq!(
            m.conditions_json(),
            json!({ "cores": 2, "cpu": "AMD EPYC 7B13", "os": "linux", "kernel": "6.1.0" })
        );
        let unknown = Machine {
            cpu: None,
            kernel: None,
            ..m
        };
        let v = unknown.conditions_json();
        assert_eq!(
            (v["cpu"].clone(), v["kernel"].clone()),
            (json!("unknown"), json!(""))
        );
    }

    #[test]
    fn bench_keeps_its_keys_and_nulls() {
        let v = sample().bench_json(Some("dev VM"));
        let mut expected = vec!["cores", "cpu", "kernel", "label", "memory_gib", "os"];
        expected.sort_unstable();
        let mut got = keys(&v);
        got.sort_unstable();
        assert_eq!(got, expected);
        assert_eq!(v["label"], "dev VM");
        assert_eq!(v["memory_gib"], 7.8);
        let unknown = Machine {
            cpu: None,
            memory_gib: None,
            kernel: None,
            ..sample()
        }
        .bench_json(None);
        for key in ["label", "cpu", "memory_gib", "kernel"] {
            assert!(unknown[key].is_null(), "{key}: {unknown}");
        }
    }

    #[test]
    fn proc_lines_are_read_by_key() {
        let cpuinfo =
            "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz \nflags\t: fpu\n";
        assert_eq!(
            proc_value(cpuinfo, "model name").as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(
            proc_value("MemTotal:        8148412 kB\n", "MemTotal").as_deref(),
            Some("8148412 kB")
        );
        assert_eq!(proc_value("", "model name"), None);
        let here = Machine::probe();
        assert!(here.cores >= 1);
    }
}
