//! Test helpers: a tiny HTTP server with injectable faults, temp paths and
//! log reading, shared by the integration tests.
#![allow(dead_code)]

pub(crate) mod llama_server;
pub(crate) mod raw_http;
pub(crate) mod recorder;
pub(crate) mod script;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use model::output::expected_output;
use model::wire::{to_json_bytes, BatchResponse, InferRequest, SingleResponse};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// How the fault server answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Behavior {
    /// Correct answers after `service`.
    Ok { service: Duration },
    /// This status with a JSON error body.
    Status(u16),
    /// 200 with a body that is not JSON.
    NotJson,
    /// 200 with one output too few.
    WrongLength,
    /// 200 with wrong outputs.
    WrongOutput,
    /// Never answers within any test timeout.
    Stall,
    /// Accepts connections and drops them at once.
    Reset,
    /// One request at a time, each taking `service`; request number `at`
    /// (0-based) takes `stall` instead: a server-wide pause.
    StallOnce {
        at: u64,
        stall: Duration,
        service: Duration,
    },
}

/// A fault server on its own thread and runtime.
pub(crate) struct FaultServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultServer {
    pub(crate) fn url(&self) -> String {
        format!("http://{}/v1/infer", self.addr)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) fn spawn(behavior: Behavior) -> FaultServer {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            let serial = Arc::new(Mutex::new(()));
            let counter = Arc::new(AtomicU64::new(0));
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => return,
                };
                if behavior == Behavior::Reset {
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let serial = serial.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let serial = serial.clone();
                        let counter = counter.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            Ok::<_, hyper::Error>(answer(behavior, &body, &serial, &counter).await)
                        }
                    });
                    // HTTP/1.1 and HTTP/2 (prior knowledge) on one port, as
                    // the simulator.
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                });
            }
        });
    });
    FaultServer {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    }
}

async fn answer(
    behavior: Behavior,
    body: &[u8],
    serial: &Mutex<()>,
    counter: &AtomicU64,
) -> hyper::Response<Full<Bytes>> {
    let n = counter.fetch_add(1, Ordering::SeqCst);
    let request = match InferRequest::parse(body) {
        Ok(r) => r,
        Err(e) => {
            return respond(
                400,
                format!(
                    "{{\"error\":{{\"code\":\"{}\",\"message\":\"bad\"}}}}",
                    e.code()
                )
                .into_bytes(),
                0,
            )
        }
    };
    let model = request.model().to_owned();
    let mut outputs: Vec<String> = request
        .inputs()
        .iter()
        .map(|i| expected_output(&model, i))
        .collect();
    match behavior {
        Behavior::Ok { service } => tokio::time::sleep(service).await,
        Behavior::Status(code) => {
            return respond(
                code,
                br#"{"error":{"code":"queue_full","message":"later"}}"#.to_vec(),
                0,
            )
        }
        Behavior::NotJson => return respond(200, b"<html>oops</html>".to_vec(), 1),
        Behavior::WrongLength => {
            outputs.pop();
        }
        Behavior::WrongOutput => outputs = outputs.iter().map(|o| format!("{o}!")).collect(),
        Behavior::Stall => tokio::time::sleep(Duration::from_secs(3600)).await,
        Behavior::Reset => {}
        Behavior::StallOnce { at, stall, service } => {
            let _guard = serial.lock().await;
            tokio::time::sleep(if n == at { stall } else { service }).await;
        }
    }
    let size = request.inputs().len();
    let json = match request {
        InferRequest::Single(_) => to_json_bytes(&SingleResponse {
            model,
            output: outputs.pop().unwrap_or_default(),
        }),
        InferRequest::Batch(_) => to_json_bytes(&BatchResponse { model, outputs }),
    };
    respond(200, json, size)
}

fn respond(status: u16, body: Vec<u8>, batch: usize) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("server-timing", "queue;dur=1.500, infer;dur=2.000")
        .header("x-batch-size", batch.to_string())
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Says why a test did not run, straight to stderr (the harness captures
/// `println!` of a passing test); under CI (`CI` set), where everything a
/// test needs is installed, a missing prerequisite is a failure instead.
pub(crate) fn skip(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{why} (CI is set, so this is a failure, not a skip)"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// A port nothing listens on: bind, note the port, close.
pub(crate) fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/v1/infer")
}

/// A fresh, empty directory for one test, removed when dropped; it derefs
/// to its path.
pub(crate) struct TestDir(tempfile::TempDir);

impl std::ops::Deref for TestDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        self.0.path()
    }
}

/// A fresh, empty directory whose name starts with `name`.
pub(crate) fn temp_dir(name: &str) -> TestDir {
    TestDir(
        tempfile::Builder::new()
            .prefix(&format!("loadgen-test-{name}-"))
            .tempdir()
            .unwrap(),
    )
}

/// Percentile of sorted samples, linear interpolation (numpy's default).
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Successful latencies of a log file, sorted.
pub(crate) fn ok_latencies(path: &std::path::Path) -> Vec<f64> {
    let log = model::log::read_log_file(path).unwrap();
    let mut v: Vec<f64> = log
        .rows
        .iter()
        .filter(|r| r.ok)
        .map(|r| r.latency_ms)
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// A simulator with profile `name` on a free loopback port, in this process.
pub(crate) fn simulator(name: &str) -> stub_server::RunningServer {
    let mut config = stub_server::ServerConfig::profile(name).unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    stub_server::spawn(config).unwrap()
}

/// A quick config against `url` with a CSV log in `dir`.
pub(crate) fn config(url: &str, dir: &std::path::Path) -> loadgen::LoadConfig {
    loadgen::LoadConfig {
        url: url.to_owned(),
        log_path: Some(dir.join("log.csv")),
        timeout: Duration::from_secs(5),
        ..loadgen::LoadConfig::default()
    }
}

/// Responses with status 200 a simulator has sent so far (these `/metrics`
/// polls included): how a test sees that a run is under way.
pub(crate) fn served(addr: SocketAddr) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix("stub_requests_total{code=\"200\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs the `loadgen` binary with `args` and waits for its output.
pub(crate) fn loadgen(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .unwrap()
}
