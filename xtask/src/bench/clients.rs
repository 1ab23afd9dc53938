//! The clients the bench runs (`loadgen`, `loadgen` with busy polling,
//! `wrk`, `oha`): one timed run each, its output read into a [`ClientRun`].
//! Each client's command line and output format is a module of its own.

mod loadgen;
mod oha;
mod wrk;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub(super) use loadgen::{loadgen_command, loadgen_has_flag};
pub(super) use oha::oha_command;
pub(super) use wrk::{write_wrk_script, wrk_command};

use super::accounting::{self, ClientCpu};
use super::cgroup::CpuCap;
use super::peers::Peers;
use super::{Bins, TaskError};
use crate::process;

/// What every client run shares.
pub(super) struct Load<'a> {
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
pub(super) enum Reuse {
    /// Each connection carries request after request (every client's default).
    KeepAlive,
    /// A new connection (over TLS: a full handshake) for every request.
    PerRequest,
}

/// One measured run of a client.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(super) struct ClientRun {
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
    pub(super) fn cpu_us_per_request(&self) -> Option<f64> {
        (self.requests > 0)
            .then(|| (self.cpu.user_s + self.cpu.system_s) * 1e6 / self.requests as f64)
    }

    /// The server's CPU time per request this client completed, us: with
    /// the server the bottleneck, what decides req/s.
    pub(super) fn server_cpu_us_per_request(&self) -> Option<f64> {
        let cpu_s = self.server_cpu_s?;
        (self.requests > 0).then(|| cpu_s * 1e6 / self.requests as f64)
    }

    /// Context switches (voluntary + involuntary) per completed request.
    pub(super) fn switches_per_request(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.cpu.context_switches as f64 / self.requests as f64)
    }
}

/// The busy-poll window of the `loadgen-busy-poll` runs: loadgen's
/// setting for a client pinned to cores of its own (see
/// `crates/loadgen/src/busy_poll.rs`), off by default.
pub(super) const BUSY_POLL_US: u64 = 50;

/// A client the bench runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Client {
    /// `loadgen` with its defaults.
    Loadgen,
    /// `loadgen --busy-poll-us BUSY_POLL_US`.
    LoadgenBusyPoll,
    Wrk,
    Oha,
}

impl Client {
    /// Its name in bench.json (`clients`, `ratios`).
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Loadgen => "loadgen",
            Self::LoadgenBusyPoll => "loadgen-busy-poll",
            Self::Wrk => "wrk",
            Self::Oha => "oha",
        }
    }

    /// Whether it can run here (wrk and oha may be missing).
    pub(super) fn available(self, peers: &Peers) -> bool {
        match self {
            Self::Wrk => peers.wrk.path.is_some(),
            Self::Oha => peers.oha.path.is_some(),
            Self::Loadgen | Self::LoadgenBusyPoll => true,
        }
    }

    /// One timed run against `load`, with the server's CPU over it;
    /// `None` for a missing peer.
    pub(super) fn run(
        self,
        bins: &Bins,
        peers: &Peers,
        load: &Load,
        script: &Path,
        tag: &str,
    ) -> Result<Option<ClientRun>, TaskError> {
        let tag = format!("{}-{tag}", self.name());
        let server_cpu_s = || load.server_pid.and_then(accounting::process_tree_cpu_s);
        let before = server_cpu_s();
        let mut run = match self {
            Self::Loadgen => loadgen::run(&bins.loadgen, load, &tag, None)?,
            Self::LoadgenBusyPoll => loadgen::run(&bins.loadgen, load, &tag, Some(BUSY_POLL_US))?,
            Self::Wrk => match &peers.wrk.path {
                Some(bin) => wrk::run(bin, load, script, &tag)?,
                None => return Ok(None),
            },
            Self::Oha => match &peers.oha.path {
                Some(bin) => oha::run(bin, load, &tag)?,
                None => return Ok(None),
            },
        };
        run.server_cpu_s = server_cpu_s()
            .zip(before)
            .map(|(after, before)| after - before);
        Ok(Some(run))
    }

    /// The command line it runs with, for the record (empty for a missing
    /// peer).
    pub(super) fn command(self, bins: &Bins, peers: &Peers, load: &Load, script: &Path) -> String {
        let json = Path::new("loadgen.json");
        match self {
            Self::Loadgen => describe(&loadgen_command(&bins.loadgen, load, json, None)),
            Self::LoadgenBusyPoll => describe(&loadgen_command(
                &bins.loadgen,
                load,
                json,
                Some(BUSY_POLL_US),
            )),
            Self::Wrk => peers
                .wrk
                .path
                .as_deref()
                .map(|w| describe(&wrk_command(w, load, script)))
                .unwrap_or_default(),
            Self::Oha => peers
                .oha
                .path
                .as_deref()
                .map(|o| describe(&oha_command(o, load)))
                .unwrap_or_default(),
        }
    }
}

/// What a client printed (stdout and stderr, in `path`) and the CPU it used.
struct Output {
    text: String,
    path: PathBuf,
    cpu: ClientCpu,
}

fn client_limit(load: &Load) -> Duration {
    load.duration + Duration::from_secs(60)
}

/// Runs a client to completion (under the load's CPU cap, if any).
fn output_of(cmd: Command, load: &Load, what: &str) -> Result<Output, TaskError> {
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
    Ok(Output { text, path, cpu })
}

/// The command line as a user would type it, for the record.
pub(super) fn describe(cmd: &Command) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn load<'a>(url: &'a str, cacert: Option<&'a Path>, reuse: Reuse) -> Load<'a> {
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
}
