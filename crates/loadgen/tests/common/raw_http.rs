//! A raw HTTP/1.1 server for transport tests: it answers the simulator's
//! requests correctly, then treats its kept-alive connections as real
//! servers may (closes one right after its response, closes it on the next
//! request without answering, allows only so many requests on it), and
//! records the head of every request it read, byte for byte.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use model::output::expected_output;
use model::wire::{to_json_bytes, InferRequest, SingleResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// When the server closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// Only when the client does.
    Never,
    /// Right after each response, although the response said keep-alive
    /// (what llama.cpp's `llama-server` does after a streamed answer).
    AfterResponse,
    /// After one response, on reading the next request, unanswered.
    OnNextRequest,
    /// After this many responses, on reading the next request, unanswered
    /// (the request is counted in [`RawServer::over_limit`]).
    AfterRequests(u32),
}

/// The server's conduct.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conduct {
    /// The `Keep-Alive` header every response carries (none when empty).
    pub keep_alive: &'static str,
    /// When it closes a connection.
    pub close: Close,
}

/// What the server saw, shared with its thread.
#[derive(Default)]
struct Seen {
    heads: Mutex<Vec<String>>,
    connections: AtomicU64,
    over_limit: AtomicU64,
}

/// A raw server on its own thread and current-thread runtime.
pub(crate) struct RawServer {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawServer {
    /// Serves with `conduct` on a free loopback port.
    pub(crate) fn start(conduct: Conduct) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let stream = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        },
                        _ = &mut stopped => return,
                    };
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, conduct, shared.clone()));
                }
            });
        });
        Self {
            addr,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/v1/infer", self.addr)
    }

    /// The head (request line and headers) of every request read, in order.
    pub(crate) fn heads(&self) -> Vec<String> {
        self.seen.heads.lock().unwrap().clone()
    }

    /// Connections accepted.
    pub(crate) fn connections(&self) -> u64 {
        self.seen.connections.load(Ordering::SeqCst)
    }

    /// Requests that came on a connection past its allowance.
    pub(crate) fn over_limit(&self) -> u64 {
        self.seen.over_limit.load(Ordering::SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(mut stream: TcpStream, conduct: Conduct, seen: Arc<Seen>) {
    let mut buf = Vec::new();
    let mut answered = 0u32;
    while let Some((head, body)) = read_request(&mut stream, &mut buf).await {
        seen.heads.lock().unwrap().push(head);
        let limit = match conduct.close {
            Close::OnNextRequest => Some(1),
            Close::AfterRequests(n) => Some(n),
            Close::Never | Close::AfterResponse => None,
        };
        if limit == Some(answered) {
            if matches!(conduct.close, Close::AfterRequests(_)) {
                seen.over_limit.fetch_add(1, Ordering::SeqCst);
            }
            // Dropped with nothing unread: a clean close (FIN), no answer.
            return;
        }
        let json = answer(&body);
        let mut response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: keep-alive\r\n",
            json.len()
        );
        if !conduct.keep_alive.is_empty() {
            response.push_str(&format!("keep-alive: {}\r\n", conduct.keep_alive));
        }
        response.push_str("\r\n");
        let mut bytes = response.into_bytes();
        bytes.extend_from_slice(&json);
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
        answered += 1;
        if conduct.close == Close::AfterResponse {
            return;
        }
    }
}

/// The next request's head and body (by its `Content-Length`), or `None`
/// at the end of the stream.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.trim().parse().unwrap_or(0))
        .next()
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Some((head, body))
}

/// The simulator's answer to a single request (an empty object for
/// anything else).
fn answer(body: &[u8]) -> Vec<u8> {
    match InferRequest::parse(body) {
        Ok(InferRequest::Single(single)) => {
            let output = expected_output(&single.model, &single.input);
            to_json_bytes(&SingleResponse {
                model: single.model,
                output,
            })
        }
        _ => b"{}".to_vec(),
    }
}
