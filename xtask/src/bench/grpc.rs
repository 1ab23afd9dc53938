//! The gRPC bench (`cargo xtask bench --grpc-only`): `loadgen` beside
//! `perf_analyzer`, Triton's own load generator, against a real Triton's
//! unary model, over gRPC (the bars) and over HTTP (the same table beside),
//! at concurrency 1, 8 and 32, in interleaved rounds.
//!
//! perf_analyzer comes from the `tritonclient==2.51.0` manylinux wheel
//! (`tritonclient-2.51.0.data/data/bin/perf_analyzer`, the release of the
//! bundled tritonserver), and needs `libcudart.so.12` (the
//! `nvidia-cuda-runtime-cu12` wheel) and Debian's `libb64-0d`. The bench
//! installs what is missing into `.bench-tools/` (git-ignored): the wheels
//! with Triton's venv's pip, libb64 with `apt-get download` unpacked there
//! when the system has none; nothing is installed system-wide.
//!
//! Both clients send the same thing: request i carries input.py's prompt
//! i as a `BYTES` tensor of shape [1, 1] (perf_analyzer's `--input-data`
//! holds the 400 prompts), a fixed number of requests at a fixed
//! concurrency (`loadgen -n N -c C`, `perf_analyzer --request-count N
//! --concurrency-range C`), connections opened within the run by both.
//! Over HTTP perf_analyzer sends and reads JSON tensors, as loadgen's
//! KServe v2 client does. Latency is each client's own P50 and P99. A
//! client's CPU is `getrusage` of the reaped process, and its requests are
//! what Triton's statistics counted during its run, so the CPU per request
//! divides the same things for both (start-up included).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use model::summary::RunSummary;
use serde::Serialize;
use serde_json::json;

use super::accounting::ClientCpu;
use super::bars::{bar, Bar};
use super::pinning::Pinning;
use super::{Bins, TaskError};
use crate::process::{self, ServerProcess};
use crate::{python, triton, workspace};

/// Concurrencies measured.
pub(super) const CONCURRENCIES: [usize; 3] = [1, 8, 32];
/// The model (serve.py's unary model).
const MODEL: &str = "example-model";
/// How far loadgen's P50 and P99 may be from perf_analyzer's.
const LATENCY_TOLERANCE: f64 = 0.10;
/// The pinned peer.
const TRITONCLIENT: &str = "tritonclient==2.51.0";
/// The CUDA runtime perf_analyzer links.
const CUDA_RUNTIME: &str = "nvidia-cuda-runtime-cu12==12.9.79";
/// The model's service time per batch, ms (no jitter): short, so the
/// clients' own costs show in the latencies.
const SERVICE_MS: &str = "2";
/// Model instances.
const INSTANCES: &str = "4";

/// Requests of one run at concurrency `c`: about two seconds of load.
fn requests(c: usize) -> usize {
    400 + 100 * c
}

/// The two protocols, in the order measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Protocol {
    Grpc,
    Http,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
        }
    }
}

/// The clients compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum Client {
    #[serde(rename = "loadgen")]
    Loadgen,
    #[serde(rename = "perf_analyzer")]
    PerfAnalyzer,
}

/// One run of one client.
#[derive(Debug, Clone, Serialize)]
struct Run {
    round: usize,
    protocol: Protocol,
    concurrency: usize,
    client: Client,
    p50_ms: f64,
    p99_ms: f64,
    /// What Triton counted during the run.
    requests: u64,
    cpu: ClientCpu,
    cpu_us_per_request: f64,
}

/// perf_analyzer and what it needs to run.
struct PerfAnalyzer {
    bin: PathBuf,
    /// Directories of libcudart and (when unpacked here) libb64.
    library_path: String,
    version: String,
}

/// Runs the gRPC bench; returns its record and its bars.
pub(super) fn measure(
    bins: &Bins,
    pin: &Pinning,
    dir: &Path,
    rounds: usize,
) -> Result<(serde_json::Value, Vec<Bar>), TaskError> {
    let root = workspace::root()?;
    let venv_python = triton::ensure_venv(&root)?;
    let tools = ensure_perf_analyzer(&root, &venv_python)?;
    println!("perf_analyzer: {} ({})", tools.bin.display(), tools.version);
    let data = dir.join("grpc-input-data.json");
    write_input_data(&data)?;

    pin.as_server();
    let mut cmd = Command::new(&venv_python);
    cmd.arg(root.join("xtask/triton/serve.py"))
        .args(["--model", MODEL, "--http-port", "0"])
        .args([
            "--base-ms",
            SERVICE_MS,
            "--per-item-ms",
            "0",
            "--jitter",
            "0",
        ])
        .args(["--instances", INSTANCES, "--max-batch-size", "32"]);
    let server_command = super::clients::describe(&cmd);
    let server = ServerProcess::start_command_with_grpc(
        cmd,
        &dir.join("grpc-triton.log"),
        Duration::from_secs(180),
    );
    pin.release();
    let server = server?;
    let Some(grpc_url) = server.grpc_url.clone() else {
        return Err(TaskError::Step("Triton announced no gRPC port".into()));
    };
    let http_url = server.base_url.clone();
    println!("Triton: {server_command}\n  HTTP {http_url}, gRPC {grpc_url}");
    warm_up(bins, &grpc_url, &http_url, dir)?;

    let mut runs = Vec::new();
    for round in 0..rounds {
        for protocol in [Protocol::Grpc, Protocol::Http] {
            for c in CONCURRENCIES {
                // Alternate which client goes first, round by round.
                let order = if round % 2 == 0 {
                    [Client::Loadgen, Client::PerfAnalyzer]
                } else {
                    [Client::PerfAnalyzer, Client::Loadgen]
                };
                for client in order {
                    let url = match protocol {
                        Protocol::Grpc => &grpc_url,
                        Protocol::Http => &http_url,
                    };
                    let tag = format!("grpc-r{round}-{}-c{c}-{client:?}", protocol.name());
                    let before = served(&http_url)?;
                    pin.as_client();
                    let measured = match client {
                        Client::Loadgen => run_loadgen(bins, url, protocol, c, dir, &tag),
                        Client::PerfAnalyzer => {
                            run_perf_analyzer(&tools, url, protocol, c, &data, dir, &tag)
                        }
                    };
                    pin.release();
                    let (p50_ms, p99_ms, cpu) = measured?;
                    let requests = served(&http_url)?.saturating_sub(before);
                    let cpu_us_per_request =
                        (cpu.user_s + cpu.system_s) * 1e6 / requests.max(1) as f64;
                    println!(
                        "  round {round} {:4} c={c:2} {:13} P50 {p50_ms:7.3} ms  P99 {p99_ms:7.3} ms  {requests} requests  {cpu_us_per_request:6.1} us CPU/request",
                        protocol.name(),
                        format!("{client:?}")
                    );
                    runs.push(Run {
                        round,
                        protocol,
                        concurrency: c,
                        client,
                        p50_ms,
                        p99_ms,
                        requests,
                        cpu,
                        cpu_us_per_request,
                    });
                }
            }
        }
    }
    drop(server);

    let table = table(&runs);
    println!("\n{}", table.text);
    let bars = bars(&table);
    let record = json!({
        "server": server_command,
        "perf_analyzer": { "path": tools.bin, "version": tools.version, "package": TRITONCLIENT },
        "requests_per_run": CONCURRENCIES.iter().map(|&c| (c.to_string(), requests(c))).collect::<std::collections::BTreeMap<_, _>>(),
        "rounds": rounds,
        "table": table.rows,
        "table_text": table.text,
        "runs": runs,
    });
    Ok((record, bars))
}

/// `GET /v2/models/{MODEL}/stats` on Triton's HTTP port: its successful
/// requests so far.
fn served(base_url: &str) -> Result<u64, TaskError> {
    let failed = |why: String| TaskError::Step(format!("Triton's statistics: {why}"));
    let authority = base_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).map_err(|e| failed(e.to_string()))?;
    send_stats_request(&mut stream, authority).map_err(|e| failed(e.to_string()))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| failed(e.to_string()))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .ok_or_else(|| failed("no HTTP response".into()))?;
    let stats: serde_json::Value =
        serde_json::from_str(body).map_err(|e| failed(format!("not JSON ({e})")))?;
    stats["model_stats"][0]["inference_stats"]["success"]["count"]
        .as_u64()
        .ok_or_else(|| failed(format!("no success count in {body}")))
}

/// Writes the statistics request in one write: `write!` on the socket
/// would send each piece of the format on its own, and Triton's HTTP front
/// end misreads a path that arrives in pieces (it answered for a model
/// "example-models").
fn send_stats_request(stream: &mut impl Write, authority: &str) -> std::io::Result<()> {
    let request = format!(
        "GET /v2/models/{MODEL}/stats HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())
}

/// perf_analyzer's `--input-data`: input.py's 400 prompts.
fn write_input_data(path: &Path) -> Result<(), TaskError> {
    let data: Vec<serde_json::Value> = (0..model::BASELINE_REQUESTS)
        .map(|i| json!({ "input": { "content": [model::payload::baseline_input(i)], "shape": [1] } }))
        .collect();
    let text = serde_json::to_string(&json!({ "data": data }))
        .map_err(|e| TaskError::Step(e.to_string()))?;
    fs::write(path, text).map_err(|source| TaskError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Requests of the warm-up over each protocol, at the largest concurrency.
const WARM_UP_REQUESTS: usize = 200;

/// Calls the fresh Triton over both protocols before anything is
/// measured. A model instance's first calls are slow (its Python stub
/// starts: the first five calls of a fresh Triton took 22-29 ms against
/// 4.6 ms at the median, seen in loadgen's log at c=1), and four
/// instances need calls enough to reach each; without this, whichever
/// client runs first in round one pays them in its P99 (of 500 requests,
/// its top five).
fn warm_up(bins: &Bins, grpc_url: &str, http_url: &str, dir: &Path) -> Result<(), TaskError> {
    let c = CONCURRENCIES[CONCURRENCIES.len() - 1];
    for (url, api) in [(grpc_url, "kserve-v2-grpc"), (http_url, "kserve-v2")] {
        let log = dir.join(format!("grpc-warm-up-{api}.csv"));
        let mut cmd = Command::new(&bins.loadgen);
        cmd.args(["--url", url, "--api", api, "--model", MODEL, "-q"])
            .args(["-c", &c.to_string(), "-n", &WARM_UP_REQUESTS.to_string()])
            .args(["--out".as_ref(), log.as_os_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let status = process::run_with_deadline(&mut cmd, Duration::from_secs(120))?;
        if !status.success() {
            return Err(TaskError::Step(format!(
                "the warm-up `{}` exited with {status}",
                super::clients::describe(&cmd)
            )));
        }
    }
    println!("warm-up: {WARM_UP_REQUESTS} calls over gRPC and over HTTP at c={c}, not measured");
    Ok(())
}

/// One loadgen run: its P50, P99 and CPU.
fn run_loadgen(
    bins: &Bins,
    url: &str,
    protocol: Protocol,
    c: usize,
    dir: &Path,
    tag: &str,
) -> Result<(f64, f64, ClientCpu), TaskError> {
    let json_path = dir.join(format!("{tag}.json"));
    let api = match protocol {
        Protocol::Grpc => "kserve-v2-grpc",
        Protocol::Http => "kserve-v2",
    };
    let mut cmd = Command::new(&bins.loadgen);
    cmd.args(["--url", url, "--api", api, "--model", MODEL, "-q"])
        .args(["-c", &c.to_string(), "-n", &requests(c).to_string()])
        .args(["--json".as_ref(), json_path.as_os_str()])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let before = ClientCpu::of_reaped_children();
    let status = process::run_with_deadline(&mut cmd, Duration::from_secs(120))?;
    let cpu = ClientCpu::of_reaped_children().since(before);
    if !status.success() {
        return Err(TaskError::Step(format!(
            "`{}` exited with {status}",
            super::clients::describe(&cmd)
        )));
    }
    let summary: RunSummary = crate::json::read_contract(&json_path)?;
    match (summary.p50_ms, summary.p99_ms) {
        (Some(p50), Some(p99)) => Ok((p50, p99, cpu)),
        _ => Err(TaskError::Step(format!(
            "{}: no latency percentiles",
            json_path.display()
        ))),
    }
}

/// One perf_analyzer run: its P50, P99 and CPU.
fn run_perf_analyzer(
    tools: &PerfAnalyzer,
    url: &str,
    protocol: Protocol,
    c: usize,
    data: &Path,
    dir: &Path,
    tag: &str,
) -> Result<(f64, f64, ClientCpu), TaskError> {
    let csv = dir.join(format!("{tag}.csv"));
    let out = dir.join(format!("{tag}.out"));
    let file = fs::File::create(&out).map_err(|source| TaskError::Io {
        path: out.clone(),
        source,
    })?;
    let err = file.try_clone().map_err(|source| TaskError::Io {
        path: out.clone(),
        source,
    })?;
    let mut cmd = Command::new(&tools.bin);
    cmd.env("LD_LIBRARY_PATH", &tools.library_path)
        .args(["-m", MODEL, "-u", url.trim_start_matches("http://")])
        .args(["-i", protocol.name()])
        .args(["--concurrency-range", &format!("{c}:{c}")])
        .args(["--request-count", &requests(c).to_string()])
        .arg("--input-data")
        .arg(data)
        .args(["--shape", "input:1"])
        .arg("-f")
        .arg(&csv)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err);
    if protocol == Protocol::Http {
        cmd.args([
            "--input-tensor-format",
            "json",
            "--output-tensor-format",
            "json",
        ]);
    }
    let before = ClientCpu::of_reaped_children();
    let status = process::run_with_deadline(&mut cmd, Duration::from_secs(120))?;
    let cpu = ClientCpu::of_reaped_children().since(before);
    if !status.success() {
        return Err(TaskError::Step(format!(
            "perf_analyzer exited with {status}; its output is {}",
            out.display()
        )));
    }
    let text = fs::read_to_string(&csv).map_err(|source| TaskError::Io {
        path: csv.clone(),
        source,
    })?;
    let (p50_us, p99_us) = perf_analyzer_latencies(&text)
        .ok_or_else(|| TaskError::Step(format!("{}: no p50/p99 latency", csv.display())))?;
    Ok((p50_us / 1000.0, p99_us / 1000.0, cpu))
}

/// `p50 latency` and `p99 latency` (us) of perf_analyzer's CSV report.
fn perf_analyzer_latencies(csv: &str) -> Option<(f64, f64)> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next()?.split(',').collect();
    let row: Vec<&str> = lines.next()?.split(',').collect();
    let column = |name: &str| {
        let k = header.iter().position(|h| h.trim() == name)?;
        row.get(k)?.trim().parse::<f64>().ok()
    };
    Some((column("p50 latency")?, column("p99 latency")?))
}

/// perf_analyzer, installed into `.bench-tools/` when it is not there yet.
fn ensure_perf_analyzer(root: &Path, venv_python: &Path) -> Result<PerfAnalyzer, TaskError> {
    let tools = root.join(".bench-tools");
    let bin = tools.join("bin").join("perf_analyzer");
    let cuda = tools.join("cuda");
    let cudart_dir = cuda.join("nvidia").join("cuda_runtime").join("lib");
    let failed = |why: String| {
        TaskError::Step(format!(
            "perf_analyzer cannot be installed into {}: {why}",
            tools.display()
        ))
    };
    if !bin.exists() {
        let wheels = tools.join("wheels");
        println!(
            "installing perf_analyzer ({TRITONCLIENT}'s manylinux wheel) into {}",
            tools.display()
        );
        python::run(
            Command::new(venv_python)
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                ])
                .args([
                    "--platform",
                    "manylinux1_x86_64",
                    "--python-version",
                    "3.11",
                ])
                .arg("-d")
                .arg(&wheels)
                .arg(TRITONCLIENT),
            "pip download tritonclient",
        )
        .map_err(failed)?;
        let wheel = fs::read_dir(&wheels)
            .map_err(|e| failed(e.to_string()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("tritonclient-2.51.0") && n.ends_with(".whl"))
            })
            .ok_or_else(|| failed("the wheel was not downloaded".into()))?;
        fs::create_dir_all(bin.parent().unwrap_or(&tools)).map_err(|e| failed(e.to_string()))?;
        // A wheel is a zip: Python's zipfile takes the one member out.
        let extract = "import sys, zipfile, os\n\
            z = zipfile.ZipFile(sys.argv[1])\n\
            open(sys.argv[2], 'wb').write(z.read('tritonclient-2.51.0.data/data/bin/perf_analyzer'))\n\
            os.chmod(sys.argv[2], 0o755)";
        python::run(
            Command::new(venv_python)
                .args(["-c", extract])
                .arg(&wheel)
                .arg(&bin),
            "unpack perf_analyzer",
        )
        .map_err(failed)?;
    }
    if !cudart_dir.join("libcudart.so.12").exists() {
        println!(
            "installing {CUDA_RUNTIME} (libcudart.so.12) into {}",
            cuda.display()
        );
        python::run(
            Command::new(venv_python)
                .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
                .arg(&cuda)
                .arg(CUDA_RUNTIME),
            "pip install nvidia-cuda-runtime-cu12",
        )
        .map_err(failed)?;
    }
    let mut library_path = vec![cudart_dir];
    if let Some(dir) = libb64(&tools).map_err(failed)? {
        library_path.push(dir);
    }
    let library_path = std::env::join_paths(&library_path)
        .map_err(|e| failed(e.to_string()))?
        .to_string_lossy()
        .into_owned();
    let version = Command::new(&bin)
        .env("LD_LIBRARY_PATH", &library_path)
        .arg("--version")
        .output()
        .map_err(|e| failed(format!("{} does not run: {e}", bin.display())))?;
    let version = version_line(&version.stdout, &version.stderr);
    if !version.contains("2.51.0") {
        return Err(failed(format!(
            "`perf_analyzer --version` printed {version:?}, not 2.51.0 (a library missing? LD_LIBRARY_PATH={library_path})"
        )));
    }
    Ok(PerfAnalyzer {
        bin,
        library_path,
        version,
    })
}

/// The line of `perf_analyzer --version` that names the version: 2.51.0
/// prints it on stderr, not stdout, so both are read.
fn version_line(stdout: &[u8], stderr: &[u8]) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    );
    text.lines()
        .find(|line| line.contains("Version"))
        .unwrap_or(text.trim())
        .trim()
        .to_owned()
}

/// Where libb64 is: `None` when the system has it (Debian's `libb64-0d`),
/// else the directory it was unpacked into under `tools` (`apt-get
/// download`, `dpkg-deb -x`: nothing installed system-wide).
fn libb64(tools: &Path) -> Result<Option<PathBuf>, String> {
    let system = Command::new("ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libb64.so.0d"));
    if system {
        return Ok(None);
    }
    let unpacked = tools.join("libb64");
    let lib = unpacked.join("usr/lib/x86_64-linux-gnu");
    if lib.join("libb64.so.0d").exists() {
        return Ok(Some(lib));
    }
    let debs = tools.join("debs");
    fs::create_dir_all(&debs).map_err(|e| e.to_string())?;
    println!("downloading Debian's libb64-0d into {}", debs.display());
    python::run(
        Command::new("apt-get")
            .args(["download", "libb64-0d"])
            .current_dir(&debs),
        "apt-get download libb64-0d",
    )?;
    let deb = fs::read_dir(&debs)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download left no .deb")?;
    python::run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
        "dpkg-deb -x libb64-0d",
    )?;
    Ok(Some(lib))
}

/// The comparison, one row per protocol and concurrency.
struct Table {
    rows: Vec<serde_json::Value>,
    text: String,
    /// Per gRPC row: P50 and P99 within the tolerance, CPU no more.
    grpc_verdicts: Vec<(usize, bool, bool, String)>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Medians over the rounds, and the median of the per-round ratios
/// loadgen / perf_analyzer (this VM drifts between rounds; a round's two
/// runs are side by side).
fn table(runs: &[Run]) -> Table {
    let mut rows = Vec::new();
    let mut grpc_verdicts = Vec::new();
    let mut text = String::from(
        "protocol  c   loadgen P50  perf_analyzer P50  ratio | loadgen P99  perf_analyzer P99  ratio | CPU us/req loadgen  perf_analyzer  ratio\n",
    );
    for protocol in [Protocol::Grpc, Protocol::Http] {
        for c in CONCURRENCIES {
            let of = |client: Client| -> Vec<&Run> {
                runs.iter()
                    .filter(|r| r.protocol == protocol && r.concurrency == c && r.client == client)
                    .collect()
            };
            let (ours, theirs) = (of(Client::Loadgen), of(Client::PerfAnalyzer));
            let pick =
                |runs: &[&Run], f: fn(&Run) -> f64| median(runs.iter().map(|r| f(r)).collect());
            let ratio = |f: fn(&Run) -> f64| {
                median(
                    ours.iter()
                        .filter_map(|o| {
                            theirs
                                .iter()
                                .find(|t| t.round == o.round)
                                .map(|t| f(o) / f(t))
                        })
                        .collect(),
                )
            };
            let p50 = (
                pick(&ours, |r| r.p50_ms),
                pick(&theirs, |r| r.p50_ms),
                ratio(|r| r.p50_ms),
            );
            let p99 = (
                pick(&ours, |r| r.p99_ms),
                pick(&theirs, |r| r.p99_ms),
                ratio(|r| r.p99_ms),
            );
            let cpu = (
                pick(&ours, |r| r.cpu_us_per_request),
                pick(&theirs, |r| r.cpu_us_per_request),
                ratio(|r| r.cpu_us_per_request),
            );
            text.push_str(&format!(
                "{:8} {c:2}  {:9.3} ms  {:15.3} ms  {:5.3} | {:9.3} ms  {:15.3} ms  {:5.3} | {:14.1}  {:13.1}  {:5.3}\n",
                protocol.name(),
                p50.0, p50.1, p50.2, p99.0, p99.1, p99.2, cpu.0, cpu.1, cpu.2
            ));
            rows.push(json!({
                "protocol": protocol,
                "concurrency": c,
                "loadgen_p50_ms": p50.0, "perf_analyzer_p50_ms": p50.1, "p50_ratio": p50.2,
                "loadgen_p99_ms": p99.0, "perf_analyzer_p99_ms": p99.1, "p99_ratio": p99.2,
                "loadgen_cpu_us_per_request": cpu.0, "perf_analyzer_cpu_us_per_request": cpu.1, "cpu_ratio": cpu.2,
            }));
            if protocol == Protocol::Grpc {
                let within = |r: f64| (r - 1.0).abs() <= LATENCY_TOLERANCE;
                grpc_verdicts.push((
                    c,
                    within(p50.2) && within(p99.2),
                    cpu.2 <= 1.0,
                    format!(
                        "c={c}: P50 {:.3} vs {:.3} ms (ratio {:.3}), P99 {:.3} vs {:.3} ms (ratio {:.3}), CPU {:.1} vs {:.1} us/request (ratio {:.3})",
                        p50.0, p50.1, p50.2, p99.0, p99.1, p99.2, cpu.0, cpu.1, cpu.2
                    ),
                ));
            }
        }
    }
    Table {
        rows,
        text,
        grpc_verdicts,
    }
}

/// The bars, over gRPC: latency within 10% of perf_analyzer's at every
/// concurrency, and no more CPU per request.
fn bars(table: &Table) -> Vec<Bar> {
    let details: Vec<String> = table.grpc_verdicts.iter().map(|v| v.3.clone()).collect();
    let all = |f: fn(&(usize, bool, bool, String)) -> bool| {
        (!table.grpc_verdicts.is_empty()).then(|| table.grpc_verdicts.iter().all(f))
    };
    vec![
        bar(
            "grpc: loadgen P50 and P99 within 10% of perf_analyzer's at c=1, 8, 32",
            all(|v| v.1),
            details.join("; "),
        ),
        bar(
            "grpc: loadgen client CPU per request no more than perf_analyzer's",
            all(|v| v.2),
            details.join("; "),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statistics_request_leaves_in_one_write() {
        /// Records each write it is given.
        #[derive(Default)]
        struct Writes(Vec<Vec<u8>>);
        impl Write for Writes {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.push(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut writes = Writes::default();
        send_stats_request(&mut writes, "127.0.0.1:8000").unwrap();
        assert_eq!(
            writes.0,
            [b"GET /v2/models/example-model/stats HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nConnection: close\r\n\r\n".to_vec()]
        );
    }

    #[test]
    fn perf_analyzers_version_is_read_from_stderr_too() {
        // What 2.51.0 prints: nothing on stdout.
        let stderr = b"Perf Analyzer Version 2.51.0 (commit unknown)\n";
        assert_eq!(
            version_line(b"", stderr),
            "Perf Analyzer Version 2.51.0 (commit unknown)"
        );
        assert_eq!(version_line(b"", b""), "");
    }

    #[test]
    fn perf_analyzers_csv_gives_its_percentiles() {
        let csv = "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,Avg latency,request/response,response wait\n\
                   8,1520.3,25,1000,300,10,2000,10,5,3100,3600,3900,4800,3200,1520,0\n";
        assert_eq!(perf_analyzer_latencies(csv), Some((3100.0, 4800.0)));
        assert_eq!(perf_analyzer_latencies("Concurrency\n1\n"), None);
    }

    #[test]
    fn ratios_pair_runs_of_the_same_round() {
        let run = |round, client, p50_ms, cpu_us_per_request| Run {
            round,
            protocol: Protocol::Grpc,
            concurrency: 1,
            client,
            p50_ms,
            p99_ms: p50_ms * 2.0,
            requests: 100,
            cpu: ClientCpu::default(),
            cpu_us_per_request,
        };
        let runs = [
            run(0, Client::Loadgen, 2.0, 50.0),
            run(0, Client::PerfAnalyzer, 2.0, 100.0),
            run(1, Client::Loadgen, 4.4, 50.0),
            run(1, Client::PerfAnalyzer, 4.0, 100.0),
        ];
        let table = table(&runs);
        let c1 = &table.grpc_verdicts[0];
        assert_eq!(c1.0, 1);
        // Ratios 1.0 and 1.1: their median 1.05 is within 10%.
        assert!(c1.1, "{}", c1.3);
        assert!(c1.2, "half the CPU");
        assert_eq!(table.rows[0]["p50_ratio"], json!(1.05));
    }
}
