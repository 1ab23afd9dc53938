//! An OpenAI-compatible server that records every request body and
//! answers request `n` (counting from 0 in arrival order) with the text
//! `answer-n`, whole or streamed as the request asks, with `usage` (its
//! prompt counted in whitespace words). A test reads back what the client
//! sent, and which answer each request got.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The bodies received, in arrival order.
pub(crate) type Bodies = Arc<Mutex<Vec<Value>>>;

/// A recording server on its own thread and runtime.
pub(crate) struct Recorder {
    pub addr: SocketAddr,
    pub bodies: Bodies,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bodies so far.
    pub(crate) fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the server on a free loopback port.
pub(crate) fn start() -> Recorder {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Bodies::default();
    let log = bodies.clone();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => return,
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            Ok::<_, hyper::Error>(answer(&body, &log))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                });
            }
        });
    });
    Recorder {
        addr,
        bodies,
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// The words of a body's prompt: its messages' contents, or its prompt.
fn prompt_words(body: &Value) -> usize {
    let words = |v: &Value| v.as_str().map_or(0, |s| s.split_whitespace().count());
    match body.get("messages").and_then(Value::as_array) {
        Some(messages) => messages.iter().map(|m| words(&m["content"])).sum(),
        None => words(&body["prompt"]),
    }
}

fn answer(body: &[u8], log: &Bodies) -> hyper::Response<Full<Bytes>> {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let n = {
        let mut bodies = log.lock().unwrap();
        bodies.push(value.clone());
        bodies.len() - 1
    };
    let text = format!("answer-{n}");
    let chat = value.get("messages").is_some();
    let usage = json!({"prompt_tokens": prompt_words(&value), "completion_tokens": 1, "total_tokens": prompt_words(&value) + 1});
    let (content_type, bytes) = if value["stream"] == json!(true) {
        let chunk = if chat {
            json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
        } else {
            json!({"choices": [{"index": 0, "text": text, "finish_reason": null}]})
        };
        let finish =
            json!({"choices": [{"index": 0, "delta": {}, "text": "", "finish_reason": "stop"}]});
        let usage = json!({"choices": [], "usage": usage});
        (
            "text/event-stream",
            format!("data: {chunk}\n\ndata: {finish}\n\ndata: {usage}\n\ndata: [DONE]\n\n"),
        )
    } else {
        let choice = if chat {
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"})
        } else {
            json!({"index": 0, "text": text, "finish_reason": "stop"})
        };
        (
            "application/json",
            json!({"choices": [choice], "usage": usage}).to_string(),
        )
    };
    hyper::Response::builder()
        .status(200)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(bytes)))
        .unwrap()
}
