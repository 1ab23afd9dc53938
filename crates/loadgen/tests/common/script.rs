//! A scripted HTTP/1.1 server for streamed answers: every connection gets
//! the same script of writes and waits (deadlines from the request's
//! arrival, all connections on one thread), and the
//! server records when it wrote each chunk, on the test's own monotonic
//! clock.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// One step of a scripted answer.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Sleep until this long after the request arrived.
    At(Duration),
    /// Write these bytes as one HTTP chunk.
    Chunk(Vec<u8>),
    /// Write these bytes raw (a status line and headers, a broken frame).
    Raw(Vec<u8>),
    /// Close the connection now.
    Close,
}

/// What the server did for one request: when it had read it, and when
/// each of its chunks was written.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub request_id: u64,
    pub arrived: Instant,
    pub chunks: Vec<Instant>,
}

pub(crate) type SentLog = Arc<Mutex<Vec<Sent>>>;

/// Serves every connection the same script, one thread per connection.
pub(crate) struct ScriptServer {
    pub addr: SocketAddr,
    pub sent: SentLog,
}

impl ScriptServer {
    /// Serves `script` on a free loopback port, from one thread with a
    /// current-thread runtime: one thread for every connection keeps the
    /// server from competing with the client for this machine's two CPUs.
    pub(crate) fn start(script: Vec<Step>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = SentLog::default();
        let log = sent.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let script = Arc::new(script);
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (script, log) = (script.clone(), log.clone());
                    tokio::spawn(async move { serve(stream, &script, &log).await });
                }
            });
        });
        Self { addr, sent }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Reads a request (head and `Content-Length` body), plays `script`, and
/// again, until the client closes the connection or the script does.
async fn serve(stream: TcpStream, script: &[Step], log: &SentLog) {
    let _ = stream.set_nodelay(true);
    let (read, mut out) = stream.into_split();
    let mut reader = BufReader::new(read);
    while answer(&mut reader, &mut out, script, log).await {}
}

/// One request and its answer; `false` when the connection is done.
async fn answer(
    reader: &mut BufReader<OwnedReadHalf>,
    out: &mut OwnedWriteHalf,
    script: &[Step],
    log: &SentLog,
) -> bool {
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).await.is_err() {
        return false;
    }
    let arrived = Instant::now();
    // The payloads are input.py's: "Request {id}: ...".
    let text = String::from_utf8_lossy(&body);
    let request_id = text
        .split("Request ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or(u64::MAX);
    let mut sent = Sent {
        request_id,
        arrived,
        chunks: Vec::new(),
    };
    let done = play(out, script, arrived, &mut sent).await;
    log.lock().unwrap().push(sent);
    done
}

async fn play(
    out: &mut OwnedWriteHalf,
    script: &[Step],
    arrived: Instant,
    sent: &mut Sent,
) -> bool {
    for step in script {
        let written = match step {
            Step::At(after) => {
                tokio::time::sleep_until((arrived + *after).into()).await;
                Ok(())
            }
            Step::Chunk(bytes) => {
                let mut frame = format!("{:x}\r\n", bytes.len()).into_bytes();
                frame.extend_from_slice(bytes);
                frame.extend_from_slice(b"\r\n");
                let written = out.write_all(&frame).await;
                sent.chunks.push(Instant::now());
                written
            }
            Step::Raw(bytes) => out.write_all(bytes).await,
            Step::Close => return false,
        };
        if written.is_err() {
            return false;
        }
    }
    true
}

pub(crate) const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

pub(crate) fn delta(text: &str) -> Vec<u8> {
    format!(
        "data: {}\n\n",
        serde_json::json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
    )
    .into_bytes()
}

pub(crate) fn finish() -> Vec<u8> {
    b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n".to_vec()
}

pub(crate) fn usage(tokens: u64) -> Vec<u8> {
    format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":{tokens},\"total_tokens\":{}}}}}\n\n", tokens + 3).into_bytes()
}

pub(crate) fn done() -> Vec<u8> {
    b"data: [DONE]\n\n".to_vec()
}

/// The head, a role-only first chunk, `tokens` tokens (the first at
/// `first`, then every `gap`), a finish chunk, optional usage, `[DONE]`.
pub(crate) fn schedule(first: Duration, gap: Duration, tokens: u32, with_usage: bool) -> Vec<Step> {
    let mut script = vec![
        Step::Raw(SSE_HEAD.to_vec()),
        // A role-only delta and a keep-alive comment: neither is a token.
        Step::Chunk(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n: ping\n\n".to_vec()),
    ];
    for k in 0..tokens {
        script.push(Step::At(first + gap * k));
        script.push(Step::Chunk(delta(&format!(" t{k}"))));
    }
    script.push(Step::Chunk(finish()));
    if with_usage {
        script.push(Step::Chunk(usage(u64::from(tokens))));
    }
    script.push(Step::Chunk(done()));
    script.push(Step::Chunk(Vec::new())); // the last chunk
    script
}

/// `event` preceded by a write stamp, as stub-server `--sse-stamps`
/// writes it: `: t=<Unix ns>` on the line before the event's fields.
pub(crate) fn stamped(stamp_ns: u64, event: &[u8]) -> Vec<u8> {
    let mut bytes = format!(": t={stamp_ns}\n").into_bytes();
    bytes.extend_from_slice(event);
    bytes
}
