//! HTTP transport: one POST over a fresh or pooled connection, timed with
//! `Instant`, with every failure mapped to a stable error kind.
//!
//! HTTP/1.1 goes through the lean exchange in [`crate::http1`] (one task,
//! one write, no per-request `http` types); HTTP/2 through hyper's
//! low-level `client::conn`. Connections are opened by hand in both, so
//! connection set-up is timed on its own and the per-request mode really
//! opens and closes one TCP connection per request.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use model::wire::{ServerTiming, BATCH_SIZE_HEADER, SERVER_TIMING_HEADER};
use tokio::net::TcpStream;

use crate::config::{ConnectionMode, LoadConfig, Target};
use crate::http1::{Http1Connection, RequestHead, ResponseUse};
use crate::shards;

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
    /// The kind of an I/O error on an open connection: the peer closing or
    /// resetting it is `connection_reset`, anything else `io_error`.
    pub fn from_io(err: &std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match err.kind() {
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                Self::ConnectionReset
            }
            _ => Self::IoError,
        }
    }

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

/// What the server reported about its own handling of a request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ServerFacts {
    /// `Server-Timing: queue;dur=`, ms.
    pub queue_ms: Option<f64>,
    /// `Server-Timing: infer;dur=`, ms.
    pub service_ms: Option<f64>,
    /// `X-Batch-Size`: items in the batch the server executed.
    pub server_batch_size: Option<u32>,
}

impl ServerFacts {
    /// From the raw `Server-Timing` and `X-Batch-Size` values, either absent.
    pub fn from_values(server_timing: Option<&str>, batch_size: Option<&str>) -> Self {
        let timing = server_timing.map(ServerTiming::parse).unwrap_or_default();
        Self {
            queue_ms: timing.queue_ms,
            service_ms: timing.infer_ms,
            server_batch_size: batch_size.and_then(|v| v.trim().parse().ok()),
        }
    }

    fn from_headers(headers: &HeaderMap) -> Self {
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Self::from_values(value(SERVER_TIMING_HEADER), value(BATCH_SIZE_HEADER))
    }
}

/// A complete response, body read to the end.
#[derive(Debug)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// What the server said about its queue, execution and batch.
    pub facts: ServerFacts,
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

/// A response before the transport stamps its timing on it.
struct Exchanged {
    status: StatusCode,
    facts: ServerFacts,
    body: Bytes,
}

/// Sends POSTs to one target according to the connection mode.
pub struct Transport {
    target: Target,
    addrs: Vec<SocketAddr>,
    mode: ConnectionMode,
    http2: bool,
    timeout: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
    http1_head: RequestHead,
    /// Idle keep-alive connections, one pool per shard (see
    /// [`crate::shards::current`]) plus one for the caller's runtime.
    idle_http1: Vec<Mutex<Vec<Http1Connection<TcpStream>>>>,
    max_idle: usize,
    shared_http2: tokio::sync::Mutex<Option<http2::SendRequest<Body>>>,
}

impl Transport {
    /// A transport for `target`, whose resolved addresses are `addrs`, with
    /// the connection settings of `config`; `shard_count` shards get a
    /// connection pool each. Each pool keeps at most as many idle
    /// connections as requests can be in flight.
    pub fn new(
        target: Target,
        addrs: Vec<SocketAddr>,
        config: &LoadConfig,
        shard_count: usize,
    ) -> Self {
        let max_idle = match &config.open_loop {
            Some(open) => open.max_in_flight,
            None => config.concurrency,
        };
        let http1_head =
            RequestHead::post(&target.path_and_query, &target.authority, &config.headers);
        Self {
            target,
            addrs,
            mode: config.connection,
            http2: config.http2,
            timeout: config.timeout,
            headers: config.headers.clone(),
            http1_head,
            idle_http1: (0..=shard_count).map(|_| Mutex::new(Vec::new())).collect(),
            max_idle,
            shared_http2: tokio::sync::Mutex::new(None),
        }
    }

    /// POSTs `body` and reads the whole response, within the timeout
    /// (which covers connection set-up, as `input.py`'s client timeout does).
    /// Over HTTP/1.1 only what `wanted` names of the response is kept.
    pub async fn post(
        &self,
        body: Bytes,
        wanted: ResponseUse,
    ) -> Result<HttpResponse, HttpFailure> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut connect_ms = None;
        let result = if self.http2 {
            let exchange = self.exchange_http2(body, &mut connect_ms);
            tokio::time::timeout_at(deadline, exchange)
                .await
                .unwrap_or(Err(TransportError::Timeout))
        } else {
            self.exchange_http1(body, wanted, deadline, &mut connect_ms)
                .await
        };
        match result {
            Ok(done) => Ok(HttpResponse {
                status: done.status,
                facts: done.facts,
                body: done.body,
                finished_at: Instant::now(),
                connect_ms: connect_ms.unwrap_or(0.0),
            }),
            Err(error) => Err(HttpFailure {
                error,
                finished_at: Instant::now(),
                connect_ms,
            }),
        }
    }

    async fn exchange_http1(
        &self,
        body: Bytes,
        wanted: ResponseUse,
        deadline: tokio::time::Instant,
        connect_ms: &mut Option<f64>,
    ) -> Result<Exchanged, TransportError> {
        let mut conn = match self.take_idle_http1() {
            Some(conn) => conn,
            None => {
                let (stream, ms) = tokio::time::timeout_at(deadline, self.connect_tcp())
                    .await
                    .unwrap_or(Err(TransportError::Timeout))?;
                *connect_ms = Some(ms);
                Http1Connection::new(stream)
            }
        };
        let response = conn
            .exchange(&self.http1_head, &body, wanted, deadline)
            .await?;
        if response.reusable && self.mode == ConnectionMode::Pooled {
            self.return_idle_http1(conn);
        }
        // In per-request mode the connection is dropped here, which closes
        // the socket, as closing httpx's client does.
        Ok(Exchanged {
            status: response.status,
            facts: response.facts,
            body: response.body,
        })
    }

    async fn exchange_http2(
        &self,
        body: Bytes,
        connect_ms: &mut Option<f64>,
    ) -> Result<Exchanged, TransportError> {
        let mut sender = match self.mode {
            ConnectionMode::PerRequest => {
                let (sender, ms) = self.connect_http2().await?;
                *connect_ms = Some(ms);
                sender
            }
            ConnectionMode::Pooled => {
                let (sender, ms) = self.shared_http2_sender().await?;
                *connect_ms = ms;
                sender
            }
        };
        let request = self.request(self.target.uri.to_string(), body)?;
        let response = sender.send_request(request).await.map_err(classify)?;
        let (parts, body) = response.into_parts();
        // The head arrived: any failure now means the body was cut short.
        let body = body
            .collect()
            .await
            .map_err(|_| TransportError::TruncatedBody)?
            .to_bytes();
        Ok(Exchanged {
            status: parts.status,
            facts: ServerFacts::from_headers(&parts.headers),
            body,
        })
    }

    fn request(&self, uri: String, body: Bytes) -> Result<Request<Body>, TransportError> {
        let builder = Request::post(uri)
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
                Err(e) => last = connect_failure(&e),
            }
        }
        Err(last)
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

    /// An idle pooled connection the server has not closed, if any.
    fn take_idle_http1(&self) -> Option<Http1Connection<TcpStream>> {
        if self.mode != ConnectionMode::Pooled {
            return None;
        }
        let mut idle = self.idle_http1.get(shards::current())?.lock().ok()?;
        while let Some(mut conn) = idle.pop() {
            if conn.is_reusable() {
                return Some(conn);
            }
        }
        None
    }

    fn return_idle_http1(&self, conn: Http1Connection<TcpStream>) {
        let Some(pool) = self.idle_http1.get(shards::current()) else {
            return;
        };
        if let Ok(mut idle) = pool.lock() {
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
        }
    }
}

/// Maps a failed connect to an error kind. A non-blocking connect whose
/// handshake completed into a listener that then went away (a server
/// killed mid-run) fails with a reset, not a refusal: say so.
fn connect_failure(err: &std::io::Error) -> TransportError {
    use std::io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused => TransportError::ConnectRefused,
        ConnectionReset | ConnectionAborted => TransportError::ConnectionReset,
        _ => TransportError::ConnectError,
    }
}

/// Maps a hyper error to an error kind by its cause.
fn classify(err: hyper::Error) -> TransportError {
    if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        return TransportError::ConnectionReset;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return TransportError::from_io(io);
        }
        source = e.source();
    }
    TransportError::IoError
}

/// Milliseconds since `start`, as a float.
pub fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn connect_failures_say_what_the_server_did() {
        let kind = |k: ErrorKind| connect_failure(&Error::from(k));
        assert_eq!(
            kind(ErrorKind::ConnectionRefused),
            TransportError::ConnectRefused
        );
        assert_eq!(
            kind(ErrorKind::ConnectionReset),
            TransportError::ConnectionReset
        );
        assert_eq!(
            kind(ErrorKind::ConnectionAborted),
            TransportError::ConnectionReset
        );
        assert_eq!(kind(ErrorKind::TimedOut), TransportError::ConnectError);
    }
}
