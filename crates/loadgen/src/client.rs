//! HTTP transport: one POST over a fresh or pooled connection, timed with
//! `Instant`, with every failure mapped to a stable error kind.
//!
//! hyper's low-level `client::conn` API is used directly (not a high-level
//! client) so that connection set-up can be timed on its own and the
//! per-request mode really opens and closes one TCP connection per request.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::config::{ConnectionMode, Target};

/// Why an HTTP exchange produced no usable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// Nothing listens on the port.
    ConnectRefused,
    /// The TCP connection or HTTP handshake failed another way.
    ConnectError,
    /// The exchange took longer than the timeout.
    Timeout,
    /// The server closed or reset the connection before a full response.
    ConnectionReset,
    /// The status and headers arrived, then the body was cut short (the
    /// connection or stream ended before `Content-Length` was reached).
    TruncatedBody,
    /// Any other I/O or protocol failure.
    IoError,
}

impl TransportError {
    /// The `error` column value.
    pub fn kind(self) -> &'static str {
        match self {
            Self::ConnectRefused => "connect_refused",
            Self::ConnectError => "connect_error",
            Self::Timeout => "timeout",
            Self::ConnectionReset => "connection_reset",
            Self::TruncatedBody => "truncated_body",
            Self::IoError => "io_error",
        }
    }
}

/// A complete response, body read to the end.
#[derive(Debug)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// When the last body byte arrived.
    pub finished_at: Instant,
    /// Time spent opening a connection for this request, ms (0 when a
    /// pooled connection was reused).
    pub connect_ms: f64,
}

/// The failure of an exchange, with what is known of its timing.
#[derive(Debug)]
pub struct HttpFailure {
    /// What went wrong.
    pub error: TransportError,
    /// When the failure was observed.
    pub finished_at: Instant,
    /// Connection set-up time, when a connection was opened.
    pub connect_ms: Option<f64>,
}

type Body = Full<Bytes>;

/// Sends POSTs to one target according to the connection mode.
pub struct Transport {
    target: Target,
    addrs: Vec<SocketAddr>,
    mode: ConnectionMode,
    http2: bool,
    timeout: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
    idle_http1: Mutex<Vec<http1::SendRequest<Body>>>,
    max_idle: usize,
    shared_http2: tokio::sync::Mutex<Option<http2::SendRequest<Body>>>,
}

impl Transport {
    /// A transport for `target`, whose resolved addresses are `addrs`.
    /// `max_idle` bounds the pooled HTTP/1.1 connections kept open.
    pub fn new(
        target: Target,
        addrs: Vec<SocketAddr>,
        mode: ConnectionMode,
        http2: bool,
        timeout: Duration,
        headers: Vec<(HeaderName, HeaderValue)>,
        max_idle: usize,
    ) -> Self {
        Self {
            target,
            addrs,
            mode,
            http2,
            timeout,
            headers,
            idle_http1: Mutex::new(Vec::new()),
            max_idle,
            shared_http2: tokio::sync::Mutex::new(None),
        }
    }

    /// POSTs `body` and reads the whole response, within the timeout
    /// (which covers connection set-up, as `input.py`'s client timeout does).
    pub async fn post(&self, body: Bytes) -> Result<HttpResponse, HttpFailure> {
        let connect_ms = std::sync::Arc::new(Mutex::new(None));
        let exchange = self.exchange(body, connect_ms.clone());
        let result = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout),
        };
        let connect = connect_ms.lock().map(|g| *g).unwrap_or(None);
        match result {
            Ok((status, headers, body)) => Ok(HttpResponse {
                status,
                headers,
                body,
                finished_at: Instant::now(),
                connect_ms: connect.unwrap_or(0.0),
            }),
            Err(error) => Err(HttpFailure {
                error,
                finished_at: Instant::now(),
                connect_ms: connect,
            }),
        }
    }

    async fn exchange(
        &self,
        body: Bytes,
        connect_ms: std::sync::Arc<Mutex<Option<f64>>>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), TransportError> {
        let note_connect = |ms: f64| {
            if let Ok(mut slot) = connect_ms.lock() {
                *slot = Some(ms);
            }
        };
        if self.http2 {
            let mut sender = match self.mode {
                ConnectionMode::PerRequest => {
                    let (sender, ms) = self.connect_http2().await?;
                    note_connect(ms);
                    sender
                }
                ConnectionMode::Pooled => {
                    let (sender, ms) = self.shared_http2_sender().await?;
                    if let Some(ms) = ms {
                        note_connect(ms);
                    }
                    sender
                }
            };
            let request = self.request(self.target.uri.to_string(), body)?;
            let response = sender.send_request(request).await.map_err(classify)?;
            return read_response(response).await;
        }
        let (mut sender, ms) = match self.mode {
            ConnectionMode::PerRequest => self.connect_http1().await?,
            ConnectionMode::Pooled => match self.take_idle_http1().await {
                Some(sender) => (sender, 0.0),
                None => self.connect_http1().await?,
            },
        };
        note_connect(ms);
        let request = self.request(self.target.path_and_query.clone(), body)?;
        let response = sender.send_request(request).await.map_err(classify)?;
        let result = read_response(response).await;
        if result.is_ok() && self.mode == ConnectionMode::Pooled {
            self.return_idle_http1(sender);
        }
        // In per-request mode the sender is dropped here, which ends the
        // connection task and closes the socket, as closing httpx's client does.
        result
    }

    fn request(&self, uri: String, body: Bytes) -> Result<Request<Body>, TransportError> {
        let mut builder = Request::post(uri);
        if !self.http2 {
            builder = builder.header(http::header::HOST, self.target.authority.as_str());
        }
        builder = builder
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "*/*")
            .header(
                http::header::USER_AGENT,
                concat!("loadgen/", env!("CARGO_PKG_VERSION")),
            );
        let mut request = builder
            .body(Full::new(body))
            .map_err(|_| TransportError::IoError)?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        Ok(request)
    }

    async fn connect_tcp(&self) -> Result<(TcpStream, f64), TransportError> {
        let started = Instant::now();
        let mut last = TransportError::ConnectError;
        for addr in &self.addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    // Requests are small writes answered at once: Nagle's
                    // algorithm would only add delay.
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, elapsed_ms(started)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = TransportError::ConnectRefused;
                }
                Err(_) => last = TransportError::ConnectError,
            }
        }
        Err(last)
    }

    async fn connect_http1(&self) -> Result<(http1::SendRequest<Body>, f64), TransportError> {
        let (stream, connect_ms) = self.connect_tcp().await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| TransportError::ConnectError)?;
        tokio::spawn(async move {
            // Errors surface on the request future; nothing to do here.
            let _ = connection.await;
        });
        Ok((sender, connect_ms))
    }

    async fn connect_http2(&self) -> Result<(http2::SendRequest<Body>, f64), TransportError> {
        let started = Instant::now();
        let (stream, _) = self.connect_tcp().await?;
        let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|_| TransportError::ConnectError)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((sender, elapsed_ms(started)))
    }

    /// One multiplexed HTTP/2 connection shared by every request, reopened
    /// when it closes.
    async fn shared_http2_sender(
        &self,
    ) -> Result<(http2::SendRequest<Body>, Option<f64>), TransportError> {
        let mut shared = self.shared_http2.lock().await;
        if let Some(sender) = shared.as_ref() {
            if !sender.is_closed() {
                return Ok((sender.clone(), None));
            }
        }
        let (sender, ms) = self.connect_http2().await?;
        *shared = Some(sender.clone());
        Ok((sender, Some(ms)))
    }

    async fn take_idle_http1(&self) -> Option<http1::SendRequest<Body>> {
        loop {
            let candidate = self.idle_http1.lock().ok()?.pop()?;
            let mut sender = candidate;
            // A connection returns to the pool once its response body is
            // read; `ready` waits the instant until hyper can send again and
            // fails if the server closed it meanwhile.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn return_idle_http1(&self, sender: http1::SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle_http1.lock() {
            if idle.len() < self.max_idle {
                idle.push(sender);
            }
        }
    }
}

async fn read_response(
    response: http::Response<hyper::body::Incoming>,
) -> Result<(StatusCode, HeaderMap, Bytes), TransportError> {
    let (parts, body) = response.into_parts();
    // The head arrived: any failure now means the body was cut short.
    let body = body
        .collect()
        .await
        .map_err(|_| TransportError::TruncatedBody)?
        .to_bytes();
    Ok((parts.status, parts.headers, body))
}

/// Maps a hyper error to an error kind by its cause.
fn classify(err: hyper::Error) -> TransportError {
    if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        return TransportError::ConnectionReset;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return match io.kind() {
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                    TransportError::ConnectionReset
                }
                _ => TransportError::IoError,
            };
        }
        source = e.source();
    }
    TransportError::IoError
}

/// Milliseconds since `start`, as a float.
pub fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}
