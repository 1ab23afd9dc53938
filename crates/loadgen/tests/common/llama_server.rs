//! llama.cpp's own C++ server, `llama-server` (built by
//! `xtask/llama/build_server.sh` into `<repo>/.llama-server/`), serving a
//! tiny random-weight model that `xtask/llama/make_gguf.py` writes: started
//! on a free loopback port, ready once `GET /health` answers 200, killed
//! when dropped. Nothing is downloaded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the server may take to load the model and answer `/health`.
const READY_WITHIN: Duration = Duration::from_secs(120);
/// Longest wait for a line of its output before `/health` is asked again:
/// its last line ("listening on ...") may come just before it listens.
const HEALTH_EVERY: Duration = Duration::from_millis(50);

/// A running `llama-server`, killed when dropped.
pub(crate) struct LlamaServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stderr so far (for a failing test's message).
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl LlamaServer {
    /// `http://127.0.0.1:PORT`, no path.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it printed so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binary, where `build_server.sh` puts it.
pub(crate) fn binary() -> PathBuf {
    root().join(".llama-server/bin/llama-server")
}

/// Writes the tiny model into `dir` and starts `llama-server` on it with
/// `args` after the model, host and port (e.g. `-np 2 --metrics`). `None`
/// (after [`super::skip`] said why) when the binary or its venv is missing.
pub(crate) fn start(dir: &Path, args: &[&str]) -> Option<LlamaServer> {
    let binary = binary();
    let python = root().join(".llama-server/venv/bin/python");
    for needed in [&binary, &python] {
        if !needed.exists() {
            super::skip(&format!(
                "{} is missing; run xtask/llama/build_server.sh (builds llama.cpp's llama-server, about 12 minutes on 2 cores)",
                needed.display()
            ));
            return None;
        }
    }
    let model = dir.join("tiny-llama.gguf");
    let made = Command::new(&python)
        .arg(root().join("xtask/llama/make_gguf.py"))
        .arg(&model)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success(), "make_gguf.py failed");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let port_text = port.to_string();
    let mut child = Command::new(&binary)
        .arg("-m")
        .arg(&model)
        .args(["--host", "127.0.0.1", "--port", &port_text])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Every line it prints is a moment to ask `/health` again (it answers
    // 503 while the model loads), and so is a short quiet spell.
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, lines) = mpsc::channel::<()>();
    let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
    let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
    for stream in [stdout, stderr] {
        let tx = tx.clone();
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
                let _ = tx.send(());
            }
        });
    }
    drop(tx);
    let server = LlamaServer {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        log,
    };
    let started = Instant::now();
    loop {
        if health(server.addr) == Some(200) {
            return Some(server);
        }
        assert!(
            started.elapsed() < READY_WITHIN,
            "llama-server did not answer /health with 200 within {READY_WITHIN:?}:\n{}",
            server.log()
        );
        match lines.recv_timeout(HEALTH_EVERY) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Both streams ended: it exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("llama-server exited before it was ready:\n{}", server.log())
            }
        }
    }
}

/// The status of `GET /health`, or `None` when nothing answers yet.
fn health(addr: SocketAddr) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.split_whitespace().nth(1)?.parse().ok()
}
