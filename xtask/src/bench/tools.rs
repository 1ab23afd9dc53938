//! The programs the bench runs: peer detection and versions, CPU pinning,
//! nginx with a static JSON answer, and one timed run of `loadgen`, `wrk` or
//! `oha` with its output parsed.
//!
//! Nothing here installs anything: a missing peer is reported as missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::tls::Certificate;
use super::TaskError;
use crate::process::{self, ProcessError};

/// A peer program and what we know of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Peer {
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

/// Finds `name` on `PATH` or in the extra directories (cargo installs to
/// `~/.cargo/bin`, nginx lives in `/usr/sbin`, often off a user's `PATH`).
pub fn find(name: &str, version_args: &[&str]) -> Peer {
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

/// Pins the calling thread (and so every process it spawns afterwards) to
/// `cpus`: the effect of `taskset -c`. Returns false where not supported.
pub fn pin_self(cpus: &[usize]) -> bool {
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
pub fn cpu_list(cpus: &[usize]) -> String {
    match (cpus.first(), cpus.last()) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => String::new(),
    }
}

/// One measured run of a client.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClientRun {
    /// Completed requests per second.
    pub rps: f64,
    /// Median latency, microseconds.
    pub p50_us: Option<f64>,
    /// Requests that failed or answered non-2xx.
    pub errors: u64,
    /// Requests completed (the denominator of the per-request costs).
    pub requests: u64,
    /// What the client process itself used.
    pub cpu: ClientCpu,
    /// CPU seconds the server used during the run, where known.
    pub server_cpu_s: Option<f64>,
}

impl ClientRun {
    /// The client's CPU time (user + system) per completed request, us: what
    /// it costs to generate load, whoever was the bottleneck. On N cores a
    /// client can send at most about N / this many requests per second.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        (self.requests > 0)
            .then(|| (self.cpu.user_s + self.cpu.system_s) * 1e6 / self.requests as f64)
    }

    /// The server's CPU time per request this client completed, us: with
    /// the server the bottleneck, what decides req/s.
    pub fn server_cpu_us_per_request(&self) -> Option<f64> {
        let cpu_s = self.server_cpu_s?;
        (self.requests > 0).then(|| cpu_s * 1e6 / self.requests as f64)
    }

    /// Context switches (voluntary + involuntary) per completed request.
    pub fn switches_per_request(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.cpu.context_switches as f64 / self.requests as f64)
    }
}

/// CPU time and context switches of a finished child process, from
/// `getrusage(RUSAGE_CHILDREN)` taken before and after it is reaped (the
/// servers run on and are reaped later, so the difference is the client's).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ClientCpu {
    /// User-mode CPU seconds.
    pub user_s: f64,
    /// Kernel-mode CPU seconds.
    pub system_s: f64,
    /// Voluntary plus involuntary context switches.
    pub context_switches: u64,
}

impl ClientCpu {
    /// Totals of every child reaped so far.
    fn of_reaped_children() -> Self {
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

    fn since(self, before: Self) -> Self {
        Self {
            user_s: self.user_s - before.user_s,
            system_s: self.system_s - before.system_s,
            context_switches: self
                .context_switches
                .saturating_sub(before.context_switches),
        }
    }
}

/// A CPU bandwidth cap for client processes: a cgroup whose CFS quota lets
/// its members use `share` of one CPU. Capped, a client (not the server) is
/// the bottleneck, so its requests per second measure what it gets out of
/// its CPU, free of the server-side effects that decide the uncapped runs.
/// The cgroup is removed when this is dropped.
#[derive(Debug)]
pub struct CpuCap {
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
    pub fn create(share: f64) -> Option<Self> {
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
    fn wrap(&self, cmd: &Command) -> Command {
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

/// What every client run shares.
pub struct Load<'a> {
    /// Target URL.
    pub url: &'a str,
    /// Open connections.
    pub connections: usize,
    /// Client threads (wrk's `-t`; loadgen and oha use one runtime thread
    /// per CPU they are pinned to).
    pub threads: usize,
    /// How long to send.
    pub duration: Duration,
    /// JSON body to POST.
    pub body: &'a str,
    /// Scratch directory.
    pub dir: &'a Path,
    /// Run each client under this CPU cap.
    pub cap: Option<&'a CpuCap>,
    /// The server's process id: its CPU per request is recorded.
    pub server_pid: Option<u32>,
    /// For an https URL with a self-signed certificate: the certificate
    /// loadgen trusts (`--cacert`). wrk never verifies certificates and oha
    /// is told not to (`--insecure`).
    pub cacert: Option<&'a Path>,
    /// Whether each client keeps its connections or opens one per request.
    pub reuse: Reuse,
}

/// Connection reuse in a client run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Each connection carries request after request (every client's default).
    KeepAlive,
    /// A new connection (over TLS: a full handshake) for every request.
    PerRequest,
}

/// CPU seconds (user + system, all threads) used so far by process `pid`
/// and its live children (nginx's workers), from `/proc`; `None` where
/// `/proc` cannot tell.
pub fn process_tree_cpu_s(pid: u32) -> Option<f64> {
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

fn client_limit(load: &Load) -> Duration {
    load.duration + Duration::from_secs(60)
}

/// Runs a client to completion; its output text and the CPU it used.
fn output_of(cmd: Command, load: &Load, what: &str) -> Result<(String, ClientCpu), TaskError> {
    let (limit, dir) = (client_limit(load), load.dir);
    let mut cmd = match load.cap {
        Some(cap) => cap.wrap(&cmd),
        None => cmd,
    };
    let path = dir.join(format!("{what}.out"));
    let file = fs::File::create(&path).map_err(|source| TaskError::Io {
        path: path.clone(),
        source,
    })?;
    let err = file.try_clone().map_err(|source| TaskError::Io {
        path: path.clone(),
        source,
    })?;
    cmd.stdin(Stdio::null()).stdout(file).stderr(err);
    let before = ClientCpu::of_reaped_children();
    let status = process::run_with_deadline(&mut cmd, limit)?;
    let cpu = ClientCpu::of_reaped_children().since(before);
    let text = fs::read_to_string(&path).map_err(|source| TaskError::Io {
        path: path.clone(),
        source,
    })?;
    // loadgen exits 1 when some request failed: the count is in its JSON.
    let loadgen_partial = what.starts_with("loadgen") && status.code() == Some(1);
    if !(status.success() || loadgen_partial) {
        return Err(TaskError::Step(format!(
            "{what} exited with {status}; output in {}",
            path.display()
        )));
    }
    Ok((text, cpu))
}

/// The command line as a user would type it, for the record.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains([' ', '"', '{']) {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `loadgen` in a closed loop for the duration, no per-request log, with
/// `--busy-poll-us` when given.
pub fn loadgen_command(bin: &Path, load: &Load, json: &Path, busy_poll_us: Option<u64>) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["--url", load.url, "-q", "-c"])
        .arg(load.connections.to_string())
        .arg("-z")
        .arg(format!("{}ms", load.duration.as_millis()))
        .arg("--json")
        .arg(json)
        // wrk and oha check nothing in the answer; loadgen does the same work
        // here, so the ratios compare request engines, not features.
        .arg("--no-verify");
    if let Some(us) = busy_poll_us {
        cmd.arg("--busy-poll-us").arg(us.to_string());
    }
    if let Some(cacert) = load.cacert {
        cmd.arg("--cacert").arg(cacert);
    }
    // Pooled is loadgen's default outside the baseline profile.
    if load.reuse == Reuse::PerRequest {
        cmd.args(["--connection", "per-request"]);
        // wrk and oha resume the TLS session on each new connection; loadgen
        // only does when asked (its default is input.py's full handshake).
        if load.cacert.is_some() {
            cmd.arg("--tls-resume");
        }
    }
    cmd
}

/// Whether this `loadgen` build lists `flag` (e.g. `--busy-poll-us`) in its
/// help: an older one given with `--bin-dir` may not have it.
pub fn loadgen_has_flag(bin: &Path, flag: &str) -> bool {
    Command::new(bin)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|out| help_lists_flag(&String::from_utf8_lossy(&out.stdout), flag))
}

/// Whether clap's `help` text lists `flag` as an option of its own, not
/// merely as the start of a longer one (`--cacert` in `--cacert-dir`).
fn help_lists_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(at, _)| {
        help[at + flag.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'))
    })
}

/// Runs loadgen and reads its `--json` summary.
pub fn run_loadgen(
    bin: &Path,
    load: &Load,
    tag: &str,
    busy_poll_us: Option<u64>,
) -> Result<ClientRun, TaskError> {
    let json = load.dir.join(format!("loadgen-{tag}.json"));
    let cmd = loadgen_command(bin, load, &json, busy_poll_us);
    let (_, cpu) = output_of(cmd, load, &format!("loadgen-{tag}"))?;
    let text = fs::read_to_string(&json).map_err(|source| TaskError::Io {
        path: json.clone(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| TaskError::Step(format!("{}: {e}", json.display())))?;
    let rps = v["throughput_rps"].as_f64().unwrap_or(0.0);
    Ok(ClientRun {
        rps,
        p50_us: v["p50_ms"].as_f64().map(|ms| ms * 1000.0),
        errors: v["failed"].as_u64().unwrap_or(0),
        requests: v["total"].as_u64().unwrap_or(0),
        cpu,
        server_cpu_s: None,
    })
}

/// The Lua script that makes wrk POST `body` as JSON.
pub fn write_wrk_script(dir: &Path, body: &str) -> Result<PathBuf, TaskError> {
    let path = dir.join("post.lua");
    // A Lua long bracket needs no escaping of the JSON inside.
    let script = format!(
        "wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    fs::write(&path, script).map_err(|source| TaskError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// `wrk` with the POST script and its latency distribution.
pub fn wrk_command(bin: &Path, load: &Load, script: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg(format!("-t{}", load.threads.min(load.connections)))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(script);
    // wrk has no switch for it, but honours the server closing the
    // connection after a response that asked for it: it reconnects (over
    // TLS with a full handshake, wrk keeps no sessions).
    if load.reuse == Reuse::PerRequest {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(load.url);
    cmd
}

/// Runs wrk and parses `Requests/sec`, the 50% latency and error counts.
pub fn run_wrk(bin: &Path, load: &Load, script: &Path, tag: &str) -> Result<ClientRun, TaskError> {
    let (text, cpu) = output_of(wrk_command(bin, load, script), load, &format!("wrk-{tag}"))?;
    let run = parse_wrk(&text)
        .ok_or_else(|| TaskError::Step(format!("cannot parse wrk output:\n{text}")))?;
    Ok(ClientRun { cpu, ..run })
}

fn parse_wrk(text: &str) -> Option<ClientRun> {
    let mut run = ClientRun::default();
    let mut saw_rps = false;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().ok()?;
            saw_rps = true;
        } else if let Some(v) = line.strip_prefix("50%") {
            run.p50_us = parse_wrk_duration_us(v.trim());
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            run.requests = count.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            run.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    saw_rps.then_some(run)
}

fn parse_wrk_duration_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let n: f64 = number.trim().parse().ok()?;
    Some(match unit.trim() {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        _ => return None,
    })
}

/// `oha` for the duration, JSON output.
pub fn oha_command(bin: &Path, load: &Load) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("-z")
        .arg(format!("{}s", load.duration.as_secs().max(1)))
        .arg("-c")
        .arg(load.connections.to_string())
        .args(["-m", "POST", "-H", "Content-Type: application/json", "-d"])
        .arg(load.body)
        .args(["--no-tui", "--output-format", "json"]);
    if load.cacert.is_some() {
        cmd.arg("--insecure");
    }
    if load.reuse == Reuse::PerRequest {
        cmd.arg("--disable-keepalive");
    }
    cmd.arg(load.url);
    cmd
}

/// Runs oha and reads `summary.requestsPerSec` and the median.
pub fn run_oha(bin: &Path, load: &Load, tag: &str) -> Result<ClientRun, TaskError> {
    let (text, cpu) = output_of(oha_command(bin, load), load, &format!("oha-{tag}"))?;
    let start = text.find('{').unwrap_or(0);
    let v: serde_json::Value = serde_json::from_str(&text[start..])
        .map_err(|e| TaskError::Step(format!("cannot parse oha output ({e}):\n{text}")))?;
    let ok = v["statusCodeDistribution"]["200"].as_u64().unwrap_or(0);
    let total: u64 = v["statusCodeDistribution"]
        .as_object()
        .map(|m| m.values().filter_map(|c| c.as_u64()).sum())
        .unwrap_or(0);
    // oha cancels the requests in flight when the duration ends and lists
    // them as "aborted due to deadline": not failures of the server.
    let failed_other: u64 = v["errorDistribution"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(kind, _)| !kind.contains("deadline"))
                .filter_map(|(_, c)| c.as_u64())
                .sum()
        })
        .unwrap_or(0);
    Ok(ClientRun {
        rps: v["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        p50_us: v["latencyPercentiles"]["p50"].as_f64().map(|s| s * 1e6),
        errors: total - ok + failed_other,
        requests: total,
        cpu,
        server_cpu_s: None,
    })
}

/// nginx answering every request with a static JSON file, on its own
/// prefix directory, stopped (SIGQUIT, then SIGKILL) when dropped.
pub struct Nginx {
    child: Child,
    /// The URL to load.
    pub url: String,
}

impl Nginx {
    /// The master's process id (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `bin` with `workers` worker processes on a free loopback port,
    /// over TLS 1.3 with `tls` when given.
    pub fn start(
        bin: &Path,
        dir: &Path,
        workers: usize,
        body: &str,
        tls: Option<&Certificate>,
    ) -> Result<Self, TaskError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TaskError::Io { path, source }
        };
        let root = dir.join("html/v1");
        fs::create_dir_all(&root).map_err(io(&root))?;
        fs::create_dir_all(dir.join("tmp")).map_err(io(dir))?;
        fs::write(root.join("infer"), body).map_err(io(&root))?;
        // Ask the OS for a free port, then hand it to nginx (a tiny race
        // that cannot matter on a bench machine).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io(dir))?
            .port();
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, nginx_conf(dir, workers, port, tls)).map_err(io(&conf_path))?;
        let log = dir.join("stderr.log");
        let stderr = fs::File::create(&log).map_err(io(&log))?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|source| {
                TaskError::Process(ProcessError::Spawn {
                    program: bin.display().to_string(),
                    source,
                })
            })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let nginx = Self {
            child,
            url: format!("{scheme}://127.0.0.1:{port}/v1/infer"),
        };
        // Ready when the port accepts (never a blind sleep).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(TaskError::Step(format!(
                    "nginx did not listen within 10 s; see {}",
                    dir.join("error.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

/// nginx's configuration: `workers` workers serving `dir/html` on
/// 127.0.0.1:`port`, over TLS 1.3 only with `tls` when given.
fn nginx_conf(dir: &Path, workers: usize, port: u16, tls: Option<&Certificate>) -> String {
    let d = dir.display();
    let (ssl, tls_lines) = match tls {
        Some(c) => (
            " ssl",
            format!(
                "    ssl_protocols TLSv1.3;\n    ssl_certificate {};\n    ssl_certificate_key {};\n",
                c.cert.display(),
                c.key.display()
            ),
        ),
        None => ("", String::new()),
    };
    // The static module answers POST to a file with 405; error_page turns
    // that into the file itself with 200, so loadgen, wrk and oha send
    // exactly what they send to the simulator.
    format!(
        "daemon off;\nworker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 100000000;\n\
           client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n\
           uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
           server {{\n    listen 127.0.0.1:{port}{ssl};\n{tls_lines}    root {d}/html;\n    default_type application/json;\n\
             location / {{ error_page 405 =200 $uri; }}\n  }}\n}}\n"
    )
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child with a valid signal number.
            unsafe {
                libc::kill(pid, libc::SIGQUIT);
            }
        }
        for _ in 0..250 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_parsed() {
        let text =
            "Running 5s test @ http://127.0.0.1:1/v1/infer\n  1 threads and 32 connections\n\
            Latency Distribution\n     50%  625.00us\n     75%    1.20ms\n\
            384356 requests in 5.01s, 208.57MB read\n  Non-2xx or 3xx responses: 3\n\
            Socket errors: connect 0, read 2, write 0, timeout 1\nRequests/sec:  76679.03\n";
        let run = parse_wrk(text).unwrap();
        assert_eq!(run.rps, 76679.03);
        assert_eq!(run.p50_us, Some(625.0));
        assert_eq!(run.errors, 6);
        assert_eq!(run.requests, 384356);
        assert_eq!(parse_wrk_duration_us("1.20ms"), Some(1200.0));
        assert!(parse_wrk("garbage").is_none());
    }

    #[test]
    fn per_request_costs_divide_by_completed_requests() {
        let run = ClientRun {
            requests: 400_000,
            cpu: ClientCpu {
                user_s: 1.0,
                system_s: 3.0,
                context_switches: 2_000,
            },
            ..ClientRun::default()
        };
        assert_eq!(run.cpu_us_per_request(), Some(10.0));
        assert_eq!(run.switches_per_request(), Some(0.005));
        assert_eq!(ClientRun::default().cpu_us_per_request(), None);
    }

    #[test]
    fn child_cpu_counts_a_reaped_child() {
        let before = ClientCpu::of_reaped_children();
        // A child that burns a little CPU: a shell loop.
        let status = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let used = ClientCpu::of_reaped_children().since(before);
        assert!(used.user_s + used.system_s > 0.0, "{used:?}");
    }

    fn load<'a>(url: &'a str, cacert: Option<&'a Path>, reuse: Reuse) -> Load<'a> {
        Load {
            url,
            connections: 32,
            threads: 1,
            duration: Duration::from_secs(3),
            body: "{}",
            dir: Path::new("/tmp"),
            cap: None,
            server_pid: None,
            cacert,
            reuse,
        }
    }

    #[test]
    fn plain_keep_alive_commands_are_unchanged() {
        let plain = load("http://127.0.0.1:1/v1/infer", None, Reuse::KeepAlive);
        let json = Path::new("l.json");
        assert_eq!(
            describe(&loadgen_command(Path::new("loadgen"), &plain, json, None)),
            "loadgen --url http://127.0.0.1:1/v1/infer -q -c 32 -z 3000ms --json l.json --no-verify"
        );
        assert_eq!(
            describe(&wrk_command(
                Path::new("wrk"),
                &plain,
                Path::new("post.lua")
            )),
            "wrk -t1 -c32 -d3s --latency -s post.lua http://127.0.0.1:1/v1/infer"
        );
        let oha = describe(&oha_command(Path::new("oha"), &plain));
        assert!(
            oha.ends_with("--no-tui --output-format json http://127.0.0.1:1/v1/infer"),
            "{oha}"
        );
    }

    #[test]
    fn tls_per_request_commands_trust_the_certificate_and_close_each_connection() {
        let url = "https://127.0.0.1:1/v1/infer";
        let cert = Path::new("/tmp/b/cert.pem");
        let tls = load(url, Some(cert), Reuse::PerRequest);
        let loadgen = describe(&loadgen_command(
            Path::new("loadgen"),
            &tls,
            Path::new("l.json"),
            None,
        ));
        assert!(
            loadgen.ends_with(
                "--no-verify --cacert /tmp/b/cert.pem --connection per-request --tls-resume"
            ),
            "{loadgen}"
        );
        assert_eq!(
            describe(&wrk_command(Path::new("wrk"), &tls, Path::new("post.lua"))),
            format!("wrk -t1 -c32 -d3s --latency -s post.lua -H 'Connection: close' {url}")
        );
        let oha = describe(&oha_command(Path::new("oha"), &tls));
        assert!(
            oha.ends_with(&format!("--insecure --disable-keepalive {url}")),
            "{oha}"
        );
        // Keep-alive over TLS: only the trust settings.
        let kept = load(url, Some(cert), Reuse::KeepAlive);
        let oha = describe(&oha_command(Path::new("oha"), &kept));
        assert!(oha.ends_with(&format!("--insecure {url}")), "{oha}");
        let loadgen = describe(&loadgen_command(
            Path::new("loadgen"),
            &kept,
            Path::new("l.json"),
            None,
        ));
        assert!(loadgen.ends_with("--cacert /tmp/b/cert.pem"), "{loadgen}");
    }

    #[test]
    fn a_flag_counts_only_as_a_whole_option_of_the_help() {
        let help = "Options:\n      --cacert-dir <DIR>  Trust every PEM in DIR\n      --busy-poll-us <US>  Spin\n";
        assert!(help_lists_flag(help, "--busy-poll-us"));
        assert!(!help_lists_flag(help, "--cacert"));
        assert!(help_lists_flag("      --cacert <FILE>\n", "--cacert"));
        assert!(help_lists_flag("--insecure", "--insecure"));
        assert!(!help_lists_flag("", "--cacert"));
    }

    #[test]
    fn nginx_speaks_tls_1_3_only_when_given_a_certificate() {
        let dir = Path::new("/tmp/n");
        let plain = nginx_conf(dir, 2, 8080, None);
        assert!(plain.contains("    listen 127.0.0.1:8080;\n"), "{plain}");
        assert!(!plain.contains("ssl"), "{plain}");
        let cert = Certificate {
            cert: PathBuf::from("/tmp/n/cert.pem"),
            key: PathBuf::from("/tmp/n/key.pem"),
        };
        let tls = nginx_conf(dir, 2, 8443, Some(&cert));
        for line in [
            "    listen 127.0.0.1:8443 ssl;\n",
            "    ssl_protocols TLSv1.3;\n",
            "    ssl_certificate /tmp/n/cert.pem;\n",
            "    ssl_certificate_key /tmp/n/key.pem;\n",
            "keepalive_requests 100000000;",
        ] {
            assert!(tls.contains(line), "{line:?} not in:\n{tls}");
        }
        // Everything else is the plaintext configuration.
        let stripped: String = tls
            .lines()
            .filter(|l| !l.trim_start().starts_with("ssl_"))
            .map(|l| format!("{}\n", l.replace(":8443 ssl;", ":8080;")))
            .collect();
        assert_eq!(stripped, plain);
    }

    #[test]
    fn cpu_lists_read_like_taskset() {
        assert_eq!(cpu_list(&[0]), "0");
        assert_eq!(cpu_list(&[8, 9, 10]), "8-10");
    }

    #[test]
    fn proc_stat_lines_give_parent_and_cpu_ticks() {
        let line = "4242 (nginx: worker (x)) S 4241 4241 4241 0 -1 4194624 100 0 0 0 1234 567 0 0 20 0 1 0 99 0 0";
        let stat = ProcStat::parse(line).unwrap();
        assert_eq!((stat.parent, stat.cpu_ticks), (4241, 1234 + 567));
        assert!(ProcStat::parse("garbage").is_none());
        let own = process_tree_cpu_s(std::process::id()).unwrap();
        assert!(own >= 0.0);
    }

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
