//! HTTP transport: one request over a fresh or pooled connection, timed
//! with `Instant`, with every failure mapped to a stable error kind.
//!
//! HTTP/1.1 goes through the lean exchange in [`crate::http1`] (one task,
//! one write, no per-request `http` types); HTTP/2 through hyper's
//! low-level `client::conn`; both over plain TCP or TLS ([`crate::tls`]).
//! Connections are opened by hand, so the TCP connect and the TLS
//! handshake are timed on their own (`connect_ms`, `tls_ms`) and the
//! per-request mode really opens and closes one connection per request.
//!
//! A pooled connection the server closed while it sat idle is a normal
//! event (its keep-alive timeout ran out, or it closes after every streamed
//! answer, as llama.cpp's `llama-server` does), and the close can reach us
//! only after the request went out on it. So a request whose reused
//! connection ended before any byte of a response came is sent again, once,
//! on a new connection, as curl and browsers do; the row counts it in
//! `retries`, and its latency still runs from the request's intended start.
//! The shared HTTP/2 connection likewise: a request the server did not
//! process because the connection went away (GOAWAY, or closed before the
//! request was sent) goes out again on a new one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use model::wire::{ServerTiming, BATCH_SIZE_HEADER, SERVER_TIMING_HEADER};
use tokio::net::TcpStream;

use crate::config::{ConnectionMode, LoadConfig};
use crate::http1::{Arrival, BodyReader, Http1Connection, Http1Response, RequestHead, ResponseUse};
use crate::shards;
use crate::stream::Stream;
use crate::target::Target;
use crate::tls::Tls;

/// Why an HTTP exchange produced no usable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransportError {
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
    /// The server's certificate chains to no trusted root.
    TlsUnknownIssuer,
    /// The server's certificate is not valid for the URL's host.
    TlsNameMismatch,
    /// The server's certificate has expired.
    TlsExpired,
    /// Any other TLS failure: an alert (a client certificate refused, no
    /// common protocol version or cipher), or no `h2` under `--http2`.
    TlsHandshake,
}

impl TransportError {
    /// The kind of an I/O error on an open connection: the peer closing or
    /// resetting it is `connection_reset`, anything else `io_error`.
    /// A TLS failure (an alert the server sent after the handshake, when it
    /// refuses a client certificate under TLS 1.3) has its TLS kind.
    pub(crate) fn from_io(err: &std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        if let Some(tls) = crate::tls::classify_io(err) {
            return tls;
        }
        match err.kind() {
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                Self::ConnectionReset
            }
            _ => Self::IoError,
        }
    }

    /// The `error` column value.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::ConnectRefused => "connect_refused",
            Self::ConnectError => "connect_error",
            Self::Timeout => "timeout",
            Self::ConnectionReset => "connection_reset",
            Self::TruncatedBody => "truncated_body",
            Self::IoError => "io_error",
            Self::TlsUnknownIssuer => "tls_unknown_issuer",
            Self::TlsNameMismatch => "tls_name_mismatch",
            Self::TlsExpired => "tls_expired",
            Self::TlsHandshake => "tls_handshake",
        }
    }
}

/// What the server reported about its own handling of a request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct ServerFacts {
    /// `Server-Timing: queue;dur=`, ms.
    pub queue_ms: Option<f64>,
    /// `Server-Timing: infer;dur=`, ms.
    pub service_ms: Option<f64>,
    /// `X-Batch-Size`: items in the batch the server executed.
    pub server_batch_size: Option<u32>,
}

impl ServerFacts {
    /// From the raw `Server-Timing` and `X-Batch-Size` values, either absent.
    pub(crate) fn from_values(server_timing: Option<&str>, batch_size: Option<&str>) -> Self {
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
pub(crate) struct HttpResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// What the server said about its queue, execution and batch.
    pub facts: ServerFacts,
    /// The whole body.
    pub body: Bytes,
    /// When the last body byte arrived.
    pub finished_at: Instant,
    /// Time spent opening a TCP connection for this request, ms (0 when a
    /// pooled connection was reused).
    pub connect_ms: f64,
    /// Time spent in the TLS handshake for this request, ms (0 when a
    /// pooled connection was reused; `None` without TLS).
    pub tls_ms: Option<f64>,
    /// The reader the body went to as it arrived, when one was given
    /// (a streamed answer; its body is then not kept), for the API that
    /// made it to take back.
    pub reader: Option<Box<dyn BodyReader>>,
    /// Times the request was sent again on a new connection because the
    /// reused one turned out closed.
    pub retries: u32,
}

/// The failure of an exchange, with what is known of its timing.
#[derive(Debug)]
pub(crate) struct HttpFailure {
    /// What went wrong.
    pub error: TransportError,
    /// When the failure was observed.
    pub finished_at: Instant,
    /// TCP connect time, when a connection was opened.
    pub connect_ms: Option<f64>,
    /// TLS handshake time, when one was attempted.
    pub tls_ms: Option<f64>,
    /// Times the request was sent again on a new connection before it
    /// failed.
    pub retries: u32,
}

/// What set-up a request paid for, filled in as it happens (a failure
/// keeps what was measured before it).
#[derive(Debug, Clone, Copy, Default)]
struct SetUp {
    connect_ms: Option<f64>,
    tls_ms: Option<f64>,
    retries: u32,
}

type Body = Full<Bytes>;

/// The pooled HTTP/2 connection and which one it is: the requests that
/// find it gone reopen it once, not once each.
struct SharedHttp2 {
    sender: http2::SendRequest<Body>,
    generation: u64,
}

/// A response before the transport stamps its timing on it.
struct Exchanged {
    status: StatusCode,
    facts: ServerFacts,
    body: Bytes,
}

/// Sends requests to one target according to the connection mode.
pub(crate) struct Transport {
    target: Target,
    addrs: Vec<SocketAddr>,
    tls: Option<Tls>,
    method: Method,
    mode: ConnectionMode,
    http2: bool,
    timeout: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
    http1_head: RequestHead,
    /// Idle keep-alive connections, one pool per shard (see
    /// [`crate::shards::current`]) plus one for the caller's runtime.
    idle_http1: Vec<Mutex<Vec<Http1Connection<Stream>>>>,
    max_idle: usize,
    shared_http2: tokio::sync::Mutex<Option<SharedHttp2>>,
    /// TCP connections established (for the summary). One relaxed add per
    /// connect, which already costs a syscall and a round trip.
    connections_opened: AtomicU64,
}

impl Transport {
    /// A transport for `target`, whose resolved addresses are `addrs`, over
    /// TLS when `tls` is given, with the connection settings of `config`;
    /// `shard_count` shards get a connection pool each. Each pool keeps at
    /// most as many idle connections as requests can be in flight.
    pub(crate) fn new(
        target: Target,
        addrs: Vec<SocketAddr>,
        tls: Option<Tls>,
        config: &LoadConfig,
        shard_count: usize,
    ) -> Self {
        let max_idle = match &config.open_loop {
            Some(open) => open.max_in_flight,
            None => config.concurrency,
        };
        let http1_head = RequestHead::new(
            &config.method,
            &target.path_and_query,
            &target.authority,
            &config.headers,
        );
        Self {
            target,
            addrs,
            tls,
            method: config.method.clone(),
            mode: config.connection,
            http2: config.http2,
            timeout: config.timeout,
            headers: config.headers.clone(),
            http1_head,
            idle_http1: (0..=shard_count).map(|_| Mutex::new(Vec::new())).collect(),
            max_idle,
            shared_http2: tokio::sync::Mutex::new(None),
            connections_opened: AtomicU64::new(0),
        }
    }

    /// TCP connections established since creation or the last
    /// [`Transport::reset_connections_opened`].
    pub(crate) fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// Restarts the connection count (after the warm-up).
    pub(crate) fn reset_connections_opened(&self) {
        self.connections_opened.store(0, Ordering::Relaxed);
    }

    /// Sends `body` and reads the whole response, within the timeout
    /// (which covers connection set-up, as `input.py`'s client timeout does).
    /// Over HTTP/1.1 only what `wanted` names of the response is kept.
    /// With a `reader`, a successful response's body goes to it as it
    /// arrives, and comes back in the response instead of the body.
    pub(crate) async fn post(
        &self,
        body: Bytes,
        wanted: ResponseUse,
        mut reader: Option<Box<dyn BodyReader>>,
    ) -> Result<HttpResponse, HttpFailure> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut setup = SetUp::default();
        let result = if self.http2 {
            let exchange = self.exchange_http2(body, wanted, reader.as_deref_mut(), &mut setup);
            tokio::time::timeout_at(deadline, exchange)
                .await
                .unwrap_or(Err(TransportError::Timeout))
        } else {
            self.exchange_http1(body, wanted, reader.as_deref_mut(), deadline, &mut setup)
                .await
        };
        match result {
            Ok(done) => Ok(HttpResponse {
                status: done.status,
                facts: done.facts,
                body: done.body,
                finished_at: Instant::now(),
                connect_ms: setup.connect_ms.unwrap_or(0.0),
                tls_ms: self.tls.as_ref().map(|_| setup.tls_ms.unwrap_or(0.0)),
                reader,
                retries: setup.retries,
            }),
            Err(error) => Err(HttpFailure {
                error,
                finished_at: Instant::now(),
                connect_ms: setup.connect_ms,
                tls_ms: setup.tls_ms,
                retries: setup.retries,
            }),
        }
    }

    /// `GET path` on a connection of its own, the whole body read, within
    /// the timeout: for what an API checks before the load (a server's
    /// readiness, a model's metadata), never on the load path.
    pub(crate) async fn get(&self, path: &str) -> Result<(StatusCode, Bytes), TransportError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut setup = SetUp::default();
        if self.http2 {
            let exchange = async {
                let mut sender = self.connect_http2(&mut setup).await?;
                let uri = format!(
                    "{}://{}{path}",
                    self.target.scheme.name(),
                    self.target.authority
                );
                let request = Request::get(uri)
                    .header(http::header::ACCEPT, "application/json")
                    .body(Full::new(Bytes::new()))
                    .map_err(|_| TransportError::IoError)?;
                let response = sender.send_request(request).await.map_err(classify)?;
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|_| TransportError::TruncatedBody)?
                    .to_bytes();
                Ok((status, body))
            };
            return tokio::time::timeout_at(deadline, exchange)
                .await
                .unwrap_or(Err(TransportError::Timeout));
        }
        let stream = tokio::time::timeout_at(deadline, self.connect(&mut setup))
            .await
            .unwrap_or(Err(TransportError::Timeout))?;
        let head = RequestHead::new(&Method::GET, path, &self.target.authority, &self.headers);
        let response = Http1Connection::new(stream)
            .exchange(&head, b"", ResponseUse::ALL, deadline)
            .await?;
        Ok((response.status, response.body))
    }

    async fn exchange_http1(
        &self,
        body: Bytes,
        wanted: ResponseUse,
        mut reader: Option<&mut (dyn BodyReader + 'static)>,
        deadline: tokio::time::Instant,
        setup: &mut SetUp,
    ) -> Result<Exchanged, TransportError> {
        let (conn, response) = match self.take_idle_http1() {
            Some(mut conn) => match conn
                .exchange_reading(
                    &self.http1_head,
                    &body,
                    wanted,
                    deadline,
                    reader.as_deref_mut(),
                )
                .await
            {
                // The reused connection ended before any byte of an answer
                // (the write or the first read met the server's close): the
                // server did not answer it, so it goes out again, once. The
                // reader has been given nothing.
                Err(TransportError::ConnectionReset) if conn.nothing_received() => {
                    setup.retries += 1;
                    self.exchange_http1_fresh(&body, wanted, reader, deadline, setup)
                        .await?
                }
                done => (conn, done?),
            },
            None => {
                self.exchange_http1_fresh(&body, wanted, reader, deadline, setup)
                    .await?
            }
        };
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

    /// One exchange on a new connection.
    async fn exchange_http1_fresh(
        &self,
        body: &[u8],
        wanted: ResponseUse,
        reader: Option<&mut (dyn BodyReader + 'static)>,
        deadline: tokio::time::Instant,
        setup: &mut SetUp,
    ) -> Result<(Http1Connection<Stream>, Http1Response), TransportError> {
        let stream = tokio::time::timeout_at(deadline, self.connect(setup))
            .await
            .unwrap_or(Err(TransportError::Timeout))?;
        let mut conn = Http1Connection::new(stream);
        let response = conn
            .exchange_reading(&self.http1_head, body, wanted, deadline, reader)
            .await?;
        Ok((conn, response))
    }

    async fn exchange_http2(
        &self,
        body: Bytes,
        wanted: ResponseUse,
        reader: Option<&mut (dyn BodyReader + 'static)>,
        setup: &mut SetUp,
    ) -> Result<Exchanged, TransportError> {
        let uri = self.target.uri.to_string();
        let response = match self.mode {
            ConnectionMode::PerRequest => {
                let mut sender = self.connect_http2(setup).await?;
                let request = self.request(uri, body)?;
                sender.send_request(request).await.map_err(classify)?
            }
            ConnectionMode::Pooled => {
                let (mut sender, generation) = self.shared_http2_sender(None, setup).await?;
                let opened = setup.connect_ms.is_some();
                let request = self.request(uri.clone(), body.clone())?;
                match sender.send_request(request).await {
                    Ok(response) => response,
                    // The connection was already going away when the
                    // request reached it: send it on a new one.
                    Err(e) if !opened && not_processed(&e) => {
                        setup.retries += 1;
                        let (mut sender, _) =
                            self.shared_http2_sender(Some(generation), setup).await?;
                        let request = self.request(uri, body)?;
                        sender.send_request(request).await.map_err(classify)?
                    }
                    Err(e) => return Err(classify(e)),
                }
            }
        };
        let (parts, mut body) = response.into_parts();
        // The head arrived: any failure now means the body was cut short.
        // An error's body is read whole, for its message.
        let reader = reader.filter(|_| parts.status.is_success());
        let body = if let Some(reader) = reader {
            // Frame by frame, each stamped as it comes; kept only when
            // asked for.
            let mut body_len = 0;
            let mut kept = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| TransportError::TruncatedBody)?;
                if let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) {
                    if body_len + data.len() > crate::http1::MAX_BODY_BYTES {
                        return Err(TransportError::IoError);
                    }
                    body_len += data.len();
                    let arrival = Arrival {
                        body_len,
                        at: Instant::now(),
                        unix_ns: crate::http1::unix_ns_now(),
                    };
                    reader.push(data, &arrival);
                    if wanted.body {
                        kept.extend_from_slice(data);
                    }
                }
            }
            Bytes::from(kept)
        } else {
            body.collect()
                .await
                .map_err(|_| TransportError::TruncatedBody)?
                .to_bytes()
        };
        Ok(Exchanged {
            status: parts.status,
            facts: ServerFacts::from_headers(&parts.headers),
            body,
        })
    }

    fn request(&self, uri: String, body: Bytes) -> Result<Request<Body>, TransportError> {
        let builder = Request::builder()
            .method(self.method.clone())
            .uri(uri)
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

    /// Opens a connection: TCP to the first address that accepts, then the
    /// TLS handshake when the target is `https`, each timed into `setup`.
    async fn connect(&self, setup: &mut SetUp) -> Result<Stream, TransportError> {
        let started = Instant::now();
        let mut last = TransportError::ConnectError;
        let mut tcp = None;
        for addr in &self.addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = connect_failure(&e),
            }
        }
        setup.connect_ms = Some(elapsed_ms(started));
        let tcp = tcp.ok_or(last)?;
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        // Requests are small writes answered at once: Nagle's algorithm
        // would only add delay.
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let handshake_started = Instant::now();
        let outcome = tls.handshake(tcp).await;
        setup.tls_ms = Some(elapsed_ms(handshake_started));
        Ok(Stream::Tls(Box::new(outcome?)))
    }

    /// A new HTTP/2 connection (over TLS, ALPN has agreed on `h2`).
    async fn connect_http2(
        &self,
        setup: &mut SetUp,
    ) -> Result<http2::SendRequest<Body>, TransportError> {
        let stream = self.connect(setup).await?;
        let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|_| TransportError::ConnectError)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// One multiplexed HTTP/2 connection shared by every request, and its
    /// generation; reopened when it closes, or when the request that found
    /// generation `gone` going away asks and no one has reopened it since.
    /// Only the request that opens it pays the set-up.
    async fn shared_http2_sender(
        &self,
        gone: Option<u64>,
        setup: &mut SetUp,
    ) -> Result<(http2::SendRequest<Body>, u64), TransportError> {
        let mut shared = self.shared_http2.lock().await;
        let mut generation = 0;
        if let Some(current) = shared.as_ref() {
            if !current.sender.is_closed() && gone != Some(current.generation) {
                return Ok((current.sender.clone(), current.generation));
            }
            generation = current.generation + 1;
        }
        let sender = self.connect_http2(setup).await?;
        *shared = Some(SharedHttp2 {
            sender: sender.clone(),
            generation,
        });
        Ok((sender, generation))
    }

    /// An idle pooled connection the server has not closed, if any.
    fn take_idle_http1(&self) -> Option<Http1Connection<Stream>> {
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

    fn return_idle_http1(&self, conn: Http1Connection<Stream>) {
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
pub(crate) fn connect_failure(err: &std::io::Error) -> TransportError {
    use std::io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused => TransportError::ConnectRefused,
        ConnectionReset | ConnectionAborted => TransportError::ConnectionReset,
        _ => TransportError::ConnectError,
    }
}

/// Whether an HTTP/2 request that failed this way was certainly not
/// processed by the server, so it may be sent again: it never left (the
/// connection closed first), the server's graceful GOAWAY excluded its
/// stream, or the server refused the stream (RFC 9113 section 8.7).
fn not_processed(err: &hyper::Error) -> bool {
    if err.is_canceled() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return match h2.reason() {
                Some(h2::Reason::REFUSED_STREAM) => true,
                Some(h2::Reason::NO_ERROR) => h2.is_go_away() && h2.is_remote(),
                _ => false,
            };
        }
        source = e.source();
    }
    false
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
pub(crate) fn elapsed_ms(start: Instant) -> f64 {
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
