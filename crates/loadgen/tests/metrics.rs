//! `--metrics-listen`: the live Prometheus metrics against the run's own
//! log and summary. A scrape by hand during and after a short run must
//! count exactly the log's rows (by error kind, by latency bucket, tokens);
//! a real Prometheus server scraping a 30-second run must find the P95
//! loadgen reports within the width of the bucket that holds it; bad
//! addresses are refused before any request; the deploy/ dashboard names
//! only metrics loadgen exports.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use model::log::{LogRow, Phase};
use stub_server::{FaultConfig, ServerConfig};

/// A running `loadgen`, its metrics address read from stderr and the
/// moment its summary was printed read from stdout.
struct Running {
    child: Child,
    metrics: SocketAddr,
    /// Unix seconds when loadgen said it lingers: its outputs are written.
    finished: mpsc::Receiver<f64>,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only this test's own child, lingering on purpose.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unix_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Starts loadgen with `args` and waits for its metrics line.
fn start(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env_remove("JOB_COMPLETION_INDEX")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = mpsc::channel();
    let (err_tx, err_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("loadgen: metrics at http://") {
                let addr: SocketAddr = rest.split('/').next().unwrap().parse().unwrap();
                let _ = addr_tx.send(addr);
            }
            // Said once the summary, the log and the JSON are written.
            if line.starts_with("loadgen: serving the final metrics") {
                let _ = done_tx.send(unix_s());
            }
            all.push_str(&line);
            all.push('\n');
        }
        let _ = err_tx.send(all);
    });
    // Drained so loadgen never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut BufReader::new(stdout), &mut std::io::sink()));
    let metrics = match addr_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            let stderr = err_rx.recv().unwrap_or_default();
            panic!("no metrics line from loadgen: {stderr}");
        }
    };
    Running {
        child,
        metrics,
        finished: done_rx,
        stderr: err_rx,
    }
}

impl Running {
    /// Waits for the run to end and its outputs to be written; returns when
    /// (Unix s).
    fn wait_finished(&mut self) -> f64 {
        match self.finished.recv_timeout(Duration::from_secs(120)) {
            Ok(at) => at,
            Err(_) => {
                let _ = self.child.kill();
                panic!(
                    "loadgen printed no summary: {}",
                    self.stderr.recv().unwrap_or_default()
                );
            }
        }
    }
}

/// `GET path` over a plain socket; the status line and the body.
fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// A scrape: every sample, keyed by its series (`name{labels}`).
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (head, body) = http_get(addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

fn measured_rows(path: &Path) -> Vec<LogRow> {
    model::log::read_log_file(path)
        .unwrap()
        .rows
        .into_iter()
        .filter(|r| r.phase == Phase::Measure)
        .collect()
}

fn fault_server() -> stub_server::RunningServer {
    let mut config = ServerConfig::profile("zero-cost").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.workers = 8;
    config.service.base_ms = 2.0;
    config.service.jitter = 0.5;
    config.faults = FaultConfig {
        error_rate: 0.1,
        reset_rate: 0.05,
        seed: 11,
        ..FaultConfig::default()
    };
    stub_server::spawn(config).unwrap()
}

/// Scraped during a short open-loop run and after it: the live series are
/// there from the start, and the totals are the log's rows exactly: the
/// count, the failures by kind, each latency bucket, the sum, the send
/// lateness count; nothing is left in flight.
#[test]
fn scraped_counters_equal_the_logs_rows() {
    let server = fault_server();
    let dir = common::temp_dir("metrics-fast");
    let log = dir.join("log.csv");
    let url = format!("http://{}/v1/infer", server.addr);
    let mut run = start(&[
        "--url",
        &url,
        "--rate",
        "200",
        "-z",
        "2s",
        "--warmup",
        "20",
        "-o",
        log.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-linger",
        "5m",
        "-q",
    ]);
    // While it runs: the series exist (registered before the first
    // request); wait until some rows are counted.
    let live = loop {
        let live = scrape(run.metrics);
        if live.get("loadgen_requests_total").is_some_and(|&n| n > 0.0) {
            break live;
        }
    };
    assert!(live.contains_key("loadgen_in_flight_requests"), "{live:?}");
    assert!(live.contains_key("loadgen_send_lateness_seconds_count"));
    run.wait_finished();
    let end = scrape(run.metrics);
    let rows = measured_rows(&log);
    assert!(rows.len() >= 300, "{} rows", rows.len());
    assert_eq!(end["loadgen_requests_total"], rows.len() as f64);
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for row in rows.iter().filter(|r| !r.ok) {
        *kinds.entry(row.error.clone()).or_default() += 1;
    }
    assert!(kinds.len() >= 2, "the faults gave too few kinds: {kinds:?}");
    let scraped_kinds: BTreeMap<String, u64> = end
        .iter()
        .filter_map(|(series, &n)| {
            let kind = series
                .strip_prefix("loadgen_errors_total{kind=\"")?
                .strip_suffix("\"}")?;
            Some((kind.to_owned(), n as u64))
        })
        .collect();
    assert_eq!(scraped_kinds, kinds);
    let ok: Vec<f64> = rows.iter().filter(|r| r.ok).map(|r| r.latency_ms).collect();
    assert_eq!(
        end["loadgen_request_latency_seconds_count"],
        ok.len() as f64
    );
    // The log rounds each latency to the microsecond: a row within half of
    // one of a bound may fall on either side of it.
    let half_us_ms = 0.0005;
    for bound in loadgen::metrics::LATENCY_BUCKETS_S {
        let bound_ms = bound * 1000.0;
        let surely = ok.iter().filter(|&&ms| ms < bound_ms - half_us_ms).count();
        let maybe = ok.iter().filter(|&&ms| ms <= bound_ms + half_us_ms).count();
        let series = format!("loadgen_request_latency_seconds_bucket{{le=\"{bound}\"}}");
        let counted = end[&series] as usize;
        assert!(
            (surely..=maybe).contains(&counted),
            "{series} {counted}, the log says {surely}..={maybe}"
        );
    }
    let sum_s: f64 = ok.iter().sum::<f64>() / 1000.0;
    // The log rounds each latency to the microsecond.
    assert!(
        (end["loadgen_request_latency_seconds_sum"] - sum_s).abs() < 1e-6 * ok.len() as f64 + 1e-6
    );
    assert_eq!(
        end["loadgen_send_lateness_seconds_count"],
        rows.len() as f64
    );
    assert_eq!(end["loadgen_in_flight_requests"], 0.0);
    // Not an LLM run: no token or TTFT series.
    assert!(!end.keys().any(|k| k.starts_with("loadgen_ttft_seconds")));
}

/// The labels of shard 1 of 2.
const SHARD: &str = "{shard=\"1\",shards=\"2\"}";

/// A streamed LLM run, one shard of two: TTFT and ITL observations and
/// the token counters are the shard's log's, labelled with the shard.
#[test]
fn llm_series_equal_the_logs_tokens_and_timings() {
    let server = common::simulator("llm-slots");
    let dir = common::temp_dir("metrics-llm");
    let log = dir.join("log.csv");
    let url = format!("http://{}", server.addr);
    let mut run = start(&[
        "--url",
        &url,
        "--api",
        "openai-chat",
        "--max-tokens",
        "6",
        "-n",
        "24",
        "-c",
        "4",
        "--shard",
        "1/2",
        "-o",
        log.to_str().unwrap(),
        "--metrics-listen",
        "[::1]:0",
        "--metrics-linger",
        "5m",
        "-q",
    ]);
    run.wait_finished();
    let end = scrape(run.metrics);
    assert!(
        !end.contains_key("loadgen_requests_total"),
        "unlabelled series: {end:?}"
    );
    assert_eq!(end[&format!("loadgen_requests_total{SHARD}")], 12.0);
    let rows = measured_rows(&log);
    assert_eq!(rows.len(), 12);
    let timings: Vec<_> = rows
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| r.llm.as_ref())
        .collect();
    assert_eq!(timings.len(), 12);
    let output: u64 = timings.iter().map(|t| t.output_tokens.unwrap_or(0)).sum();
    assert!(output > 0);
    assert_eq!(
        end[&format!("loadgen_output_tokens_total{SHARD}")],
        output as f64
    );
    let prompt: u64 = rows.iter().filter_map(|r| r.prompt_tokens).sum();
    assert_eq!(
        end[&format!("loadgen_prompt_tokens_total{SHARD}")],
        prompt as f64
    );
    let ttfts = timings.iter().filter(|t| t.ttft_ms.is_some()).count();
    assert_eq!(
        end[&format!("loadgen_ttft_seconds_count{SHARD}")],
        ttfts as f64
    );
    let gaps: usize = timings.iter().map(|t| t.itl_ms.len()).sum();
    assert!(gaps > 0);
    assert_eq!(
        end[&format!("loadgen_itl_seconds_count{SHARD}")],
        gaps as f64
    );
    // Closed loop: no schedule, no lateness.
    assert!(!end
        .keys()
        .any(|k| k.starts_with("loadgen_send_lateness_seconds")));
}

/// A capacity search labels each step's series with its index and rate.
#[test]
fn capacity_steps_are_labelled() {
    let server = common::simulator("zero-cost");
    let dir = common::temp_dir("metrics-capacity");
    let json = dir.join("capacity.json");
    let url = format!("http://{}/v1/infer", server.addr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "capacity",
            "--url",
            &url,
            "--json",
            json.to_str().unwrap(),
            "--start-rate",
            "20",
            "--max-rate",
            "40",
            "--step-duration",
            "1s",
            "--warmup",
            "0s",
            "--repeats",
            "1",
            "--time-limit",
            "20s",
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-linger",
            "5m",
            "-q",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    for line in stderr.by_ref().lines().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("loadgen: metrics at http://") {
            addr = Some(
                rest.split('/')
                    .next()
                    .unwrap()
                    .parse::<SocketAddr>()
                    .unwrap(),
            );
            break;
        }
    }
    let addr = addr.expect("a metrics line");
    // Said once the search is over and its JSON written.
    let lingering = stderr
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("loadgen: serving the final metrics"));
    assert!(lingering);
    let end = scrape(addr);
    let _ = child.kill();
    let _ = child.wait();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let steps = report["curve"].as_array().unwrap();
    assert!(!steps.is_empty());
    for (index, step) in steps.iter().enumerate() {
        let rate = step["offered_rps"].as_f64().unwrap();
        let series = format!("loadgen_requests_total{{step=\"{index}\",offered_rps=\"{rate}\"}}");
        let counted = end.get(&series).copied();
        assert!(
            counted.is_some_and(|n| n > 0.0),
            "{series} missing or zero in {end:?}"
        );
    }
}

/// A bad or taken address is refused before any request: exit 2, a
/// message saying what is allowed, no log written.
#[test]
fn bad_metrics_addresses_are_refused_before_any_request() {
    let dir = common::temp_dir("metrics-bad");
    let log = dir.join("log.csv");
    let out = common::loadgen(&[
        "--url",
        &common::dead_url(),
        "-n",
        "5",
        "-o",
        log.to_str().unwrap(),
        "--metrics-listen",
        "localhost:9464",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("IP:PORT such as 127.0.0.1:9464"),
        "{stderr}"
    );
    let out = common::loadgen(&["--metrics-linger", "11m", "--metrics-listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0s to 10m"));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let out = common::loadgen(&[
        "--url",
        &common::dead_url(),
        "-n",
        "5",
        "-o",
        log.to_str().unwrap(),
        "--metrics-listen",
        &taken_addr,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen"), "{stderr}");
    assert!(!log.exists(), "a request was made before the refusal");
}

/// The deploy/ dashboard loads as JSON, has the panels it promises, and
/// every query names only series loadgen exports (its families, a
/// histogram's with `_bucket`, `_sum` or `_count`).
#[test]
fn dashboard_queries_name_only_exported_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus");
    let text = std::fs::read_to_string(root.join("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exported = Vec::new();
    for family in loadgen::metrics::FAMILIES {
        exported.push(family.name.to_owned());
        if family.kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                exported.push(format!("{}{suffix}", family.name));
            }
        }
    }
    let panels = dashboard["panels"].as_array().unwrap();
    let mut titles = Vec::new();
    let mut named = 0;
    for panel in panels {
        titles.push(panel["title"].as_str().unwrap().to_lowercase());
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "a query that names no metric: {expr}");
            for name in names {
                assert!(
                    exported.contains(&name),
                    "{name} in {expr:?} is not a metric loadgen exports"
                );
                named += 1;
            }
        }
    }
    assert!(named >= 5);
    for wanted in ["latency", "ttft", "itl", "error", "rate"] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no panel for {wanted}: {titles:?}"
        );
    }
    // The scrape job points at loadgen's /metrics.
    let job = std::fs::read_to_string(root.join("prometheus.yml")).unwrap();
    assert!(job.contains("job_name: loadgen"), "{job}");
}

/// The `loadgen_...` identifiers in a PromQL expression (the only metric
/// prefix the dashboard may use; anything else is a function or label).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(found) = expr[i..].find("loadgen_") {
        let start = i + found;
        let boundary = start == 0
            || !(bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b'"');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.push(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// The Prometheus binary, if installed.
fn prometheus_binary() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("prometheus"))
        .find(|p| p.is_file())
}

/// Two free loopback ports: bound together (so they differ), noted and
/// released (Prometheus cannot be told to pick one and say which).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// A Prometheus server, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts it scraping `target` every second; returns once it logs
    /// that it is ready.
    fn start(binary: &Path, dir: &Path, addr: SocketAddr, target: SocketAddr) -> Self {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: loadgen\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let mut ready = false;
        let mut lines = stderr.lines();
        for line in lines.by_ref().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("Server is ready to receive web requests") {
                ready = true;
                break;
            }
        }
        assert!(ready, "prometheus did not start:\n{seen}");
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, addr }
    }

    /// An instant query at Unix time `at`: the first result's value.
    fn query(&self, expr: &str, at: f64) -> Option<f64> {
        let encoded: String = expr
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (head, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={encoded}&time={at:.3}"),
        );
        assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let result = json["data"]["result"].as_array()?.first()?.clone();
        result["value"][1].as_str()?.parse().ok()
    }
}

/// A real Prometheus scrapes a 30-second open-loop run every second; its
/// `histogram_quantile(0.95, ...)` over the run's increase agrees with
/// the P95 loadgen reports within the width of the bucket that holds it,
/// and its last scrape counts every request.
#[test]
fn prometheus_p95_over_the_run_agrees_with_loadgens() {
    let Some(binary) = prometheus_binary() else {
        common::skip("prometheus is not installed (Debian: apt-get install prometheus)");
        return;
    };
    let mut config = ServerConfig::profile("zero-cost").unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.workers = 8;
    // 20 ms +- 30%: the P95 sits inside a bucket, not on the server's floor.
    config.service.base_ms = 20.0;
    config.service.jitter = 0.3;
    let server = stub_server::spawn(config).unwrap();
    let dir = common::temp_dir("metrics-prometheus");
    let (metrics_port, prometheus_port) = free_ports();
    let metrics_addr: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let prometheus_addr: SocketAddr = format!("127.0.0.1:{prometheus_port}").parse().unwrap();
    let prometheus = Prometheus::start(&binary, &dir, prometheus_addr, metrics_addr);
    let url = format!("http://{}/v1/infer", server.addr);
    let log = dir.join("log.csv");
    let json = dir.join("summary.json");
    let started = unix_s();
    let mut run = start(&[
        "--url",
        &url,
        "--rate",
        "100",
        "--arrival",
        "poisson",
        "-z",
        "30s",
        // The series are registered before the warm-up: Prometheus sees
        // them at zero before the first measured request.
        "--warmup",
        "3s",
        "-o",
        log.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--metrics-listen",
        &metrics_addr.to_string(),
        "--metrics-linger",
        "5m",
        "-q",
    ]);
    assert_eq!(run.metrics, metrics_addr);
    let finished = run.wait_finished();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let total = summary["total"].as_f64().unwrap();
    let p95_s = summary["p95_ms"].as_f64().unwrap() / 1000.0;
    // Wait (on Prometheus's own data) for a scrape of the final totals.
    let at = loop {
        let now = unix_s();
        if prometheus.query("loadgen_requests_total", now) == Some(total) {
            break now;
        }
        assert!(
            now - finished < 30.0,
            "Prometheus never saw the totals ({total}): {:?}",
            prometheus.query("loadgen_requests_total", now)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let window_s = (at - started).ceil() as u64 + 2;
    let expr = format!(
        "histogram_quantile(0.95, sum by (le) (increase(loadgen_request_latency_seconds_bucket[{window_s}s])))"
    );
    let from_prometheus = prometheus.query(&expr, at).unwrap();
    let bounds = loadgen::metrics::LATENCY_BUCKETS_S;
    let upper = bounds.partition_point(|&b| b < p95_s);
    let (lo, hi) = (
        if upper == 0 { 0.0 } else { bounds[upper - 1] },
        bounds[upper],
    );
    // Said on stderr so a run of the test shows both numbers.
    eprintln!(
        "loadgen P95 {:.6} s ({} requests, bucket ({lo}, {hi}]); Prometheus `{expr}` = {from_prometheus:.6} s",
        p95_s, total
    );
    assert!(
        (from_prometheus - p95_s).abs() <= hi - lo,
        "Prometheus {from_prometheus} vs loadgen {p95_s}: more than the bucket's width {}",
        hi - lo
    );
    assert!(total >= 2500.0, "{total} requests in 30 s at 100/s");
}
