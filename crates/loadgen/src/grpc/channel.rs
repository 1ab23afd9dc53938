//! gRPC's transport: HTTP/2 connections to one server, opened and timed
//! here, and the tower service tonic's generated client calls through.
//!
//! A connection is TCP to the first resolved address that accepts, then,
//! for `https://`, the TLS handshake ([`crate::tls`], ALPN offering and
//! requiring `h2`), then HTTP/2's handshake, each failure with the
//! transport's kind ([`TransportError`]). Pooled (the default), one
//! connection carries every call, multiplexed, and is opened again when it
//! closes; only the call that opens it pays for it. `--connection
//! per-request` opens one per call and closes it after.
//!
//! Once a call is on a stream, what goes wrong is a gRPC status, as gRPC's
//! own clients say it (PROTOCOL-HTTP2.md): a stream the server resets is
//! mapped by its HTTP/2 error code (`REFUSED_STREAM` is `UNAVAILABLE`,
//! `ENHANCE_YOUR_CALM` `RESOURCE_EXHAUSTED`, `CANCEL` `CANCELLED`, the
//! others `INTERNAL`), a connection lost mid-call is `UNAVAILABLE`. When
//! what ended the connection was TLS (a server refusing the client's
//! certificate says so under TLS 1.3 only after the handshake, when the
//! first call is under way), the call's error is that TLS kind instead
//! ([`call_error`]), as over HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::codegen::Service;
use tonic::{Code, Status};

use crate::client::{connect_failure, elapsed_ms, TransportError};
use crate::config::ConnectionMode;
use crate::stream::Stream;
use crate::target::Target;
use crate::tls::Tls;

/// The sending half of one HTTP/2 connection.
type Sender = http2::SendRequest<tonic::body::Body>;

/// How a connection ended: `None` while it is open, then the I/O error
/// that ended it, if one did, with its kind.
type Ending = watch::Receiver<Option<Option<(TransportError, String)>>>;

/// What a call's connection set-up cost, filled in as it happens.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SetUp {
    /// TCP connect, ms, when this call opened a connection.
    pub connect_ms: Option<f64>,
    /// TLS handshake, ms, when this call ran one.
    pub tls_ms: Option<f64>,
}

/// HTTP/2 connections to one gRPC server.
pub(crate) struct Channel {
    addrs: Vec<SocketAddr>,
    tls: Option<Tls>,
    /// `http://host:port` or `https://...`: what tonic puts in `:scheme`
    /// and `:authority`.
    origin: Uri,
    mode: ConnectionMode,
    /// The pooled connection, while it is open.
    shared: Mutex<Option<H2Service>>,
    /// Held by the one call that opens the pooled connection, so the
    /// others wait for it instead of opening their own.
    opening: tokio::sync::Mutex<()>,
    /// TCP connections established, for the summary.
    connections_opened: AtomicU64,
}

impl Channel {
    /// A channel to `target` at `addrs`, over TLS when `tls` is given.
    pub(crate) fn new(
        target: &Target,
        addrs: Vec<SocketAddr>,
        tls: Option<Tls>,
        mode: ConnectionMode,
    ) -> Self {
        // A target's scheme and authority always make a URI.
        let origin = format!("{}://{}", target.scheme.name(), target.authority)
            .parse()
            .unwrap_or_default();
        Self {
            addrs,
            tls,
            origin,
            mode,
            shared: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            connections_opened: AtomicU64::new(0),
        }
    }

    /// `scheme://authority` of the server.
    pub(crate) fn origin(&self) -> &Uri {
        &self.origin
    }

    /// Whether calls go over TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// TCP connections established since creation or the last reset.
    pub(crate) fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// Restarts the connection count (after the warm-up).
    pub(crate) fn reset_connections_opened(&self) {
        self.connections_opened.store(0, Ordering::Relaxed);
    }

    /// A service to make one call through: on the pooled connection
    /// (opened first if it is not open), or on a new one.
    pub(crate) async fn service(&self, setup: &mut SetUp) -> Result<H2Service, TransportError> {
        match self.mode {
            ConnectionMode::PerRequest => self.open(setup).await,
            ConnectionMode::Pooled => {
                if let Some(service) = self.pooled() {
                    return Ok(service);
                }
                let _opening = self.opening.lock().await;
                // Another call may have opened it while this one waited.
                if let Some(service) = self.pooled() {
                    return Ok(service);
                }
                let service = self.open(setup).await?;
                if let Ok(mut shared) = self.shared.lock() {
                    *shared = Some(service.clone());
                }
                Ok(service)
            }
        }
    }

    /// The pooled connection, unless it is closed (or none was opened).
    fn pooled(&self) -> Option<H2Service> {
        let shared = self.shared.lock().ok()?;
        shared.as_ref().filter(|s| !s.sender.is_closed()).cloned()
    }

    /// Opens a connection: TCP, TLS when the target is `https`, HTTP/2.
    async fn open(&self, setup: &mut SetUp) -> Result<H2Service, TransportError> {
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
        // Calls are small writes answered at once: Nagle's algorithm
        // would only add delay.
        let _ = tcp.set_nodelay(true);
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                let handshake_started = Instant::now();
                let outcome = tls.handshake(tcp).await;
                setup.tls_ms = Some(elapsed_ms(handshake_started));
                Stream::Tls(Box::new(outcome?))
            }
        };
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|_| TransportError::ConnectError)?;
        let (ended, ending) = watch::channel(None);
        let tls = self.tls.clone();
        tokio::spawn(async move {
            // Ends when every sender is dropped (a per-request connection
            // after its call) or the server closes it.
            let cause = connection.await.err().and_then(|e| {
                let io = io_source(&e)?;
                let kind = lost_kind(io);
                if let Some(tls) = &tls {
                    if kind.kind().starts_with("tls_") {
                        tls.note_failure(io);
                    }
                }
                Some((kind, io.to_string()))
            });
            let _ = ended.send(Some(cause));
        });
        Ok(H2Service { sender, ending })
    }
}

/// The kind of the I/O error that ended a connection. HTTP/2 keeps only
/// the words of an error it read (h2 stores an I/O error as its kind and
/// message), so a TLS alert the server sent after the handshake (a client
/// certificate refused) is known by rustls's words for it.
fn lost_kind(io: &std::io::Error) -> TransportError {
    match TransportError::from_io(io) {
        TransportError::IoError if io.to_string().contains("received fatal alert") => {
            TransportError::TlsHandshake
        }
        kind => kind,
    }
}

/// The I/O error under a hyper error, if there is one.
fn io_source(err: &hyper::Error) -> Option<&std::io::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = e.source();
    }
    None
}

/// One HTTP/2 connection as the tower service tonic's client calls: its
/// errors, and those of the response body, are gRPC statuses.
#[derive(Clone)]
pub(crate) struct H2Service {
    sender: Sender,
    ending: Ending,
}

impl Service<http::Request<tonic::body::Body>> for H2Service {
    type Response = http::Response<CallBody>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Status>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        // A closed connection fails the call itself, with its status.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let response = self.sender.send_request(request);
        let mut ending = self.ending.clone();
        Box::pin(async move {
            let err = match response.await {
                Ok(response) => return Ok(response.map(CallBody)),
                Err(err) => err,
            };
            if err.is_canceled() || err.is_closed() {
                // The connection ended under the call: its task says why
                // as soon as it finishes, which is at once.
                let ended = ending.wait_for(Option::is_some);
                if let Ok(Ok(state)) = tokio::time::timeout(ENDING_WAIT, ended).await {
                    if let Some(Some((kind, why))) = state.clone() {
                        return Err(lost_status(kind, why));
                    }
                }
            }
            Err(transport_status(&err))
        })
    }
}

/// A response body whose errors are gRPC statuses.
pub(crate) struct CallBody(Incoming);

impl hyper::body::Body for CallBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.0)
            .poll_frame(cx)
            .map_err(|e| transport_status(&e))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// How long a call cut by its connection's end waits for the connection's
/// task to say why.
const ENDING_WAIT: Duration = Duration::from_millis(100);

/// Why a connection ended, when it was an I/O or TLS failure: the source
/// of the status of the calls it cut, found by [`call_error`].
#[derive(Debug, thiserror::Error)]
#[error("{why}")]
struct ConnectionLost {
    kind: TransportError,
    why: String,
}

/// `UNAVAILABLE`, for a call whose connection ended with `kind`.
fn lost_status(kind: TransportError, why: String) -> Status {
    let mut status = Status::unavailable(format!("the connection failed mid-call ({why})"));
    status.set_source(std::sync::Arc::new(ConnectionLost { kind, why }));
    status
}

/// The row's error for a call that ended with `status`: a TLS failure
/// that ended its connection keeps its TLS kind (`tls_handshake: ...`),
/// as over HTTP; any other status is its `grpc_<code>` kind.
pub(crate) fn call_error(status: &Status) -> String {
    let lost = std::error::Error::source(status)
        .and_then(|s| s.downcast_ref::<ConnectionLost>())
        .filter(|lost| lost.kind.kind().starts_with("tls_"));
    match lost {
        Some(lost) => with_message(lost.kind.kind(), &lost.why),
        None => status_error(status),
    }
}

/// The status of an HTTP/2 failure, by gRPC's rules.
fn transport_status(err: &hyper::Error) -> Status {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            if let Some(reason) = h2.reason() {
                return reset_status(reason, h2.is_go_away());
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return lost_status(lost_kind(io), io.to_string());
        }
        source = e.source();
    }
    if err.is_canceled() || err.is_closed() || err.is_incomplete_message() {
        return Status::new(
            Code::Unavailable,
            "the connection closed mid-call".to_owned(),
        );
    }
    Status::new(Code::Unknown, err.to_string())
}

/// A stream reset with `reason` (or a connection the server went away
/// from), as gRPC maps HTTP/2 error codes.
fn reset_status(reason: h2::Reason, go_away: bool) -> Status {
    if go_away && reason == h2::Reason::NO_ERROR {
        return Status::new(
            Code::Unavailable,
            "the server closed the connection (GOAWAY) before answering".to_owned(),
        );
    }
    let code = match reason {
        h2::Reason::REFUSED_STREAM => Code::Unavailable,
        h2::Reason::CANCEL => Code::Cancelled,
        h2::Reason::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
        h2::Reason::INADEQUATE_SECURITY => Code::PermissionDenied,
        _ => Code::Internal,
    };
    Status::new(code, format!("the HTTP/2 stream was reset ({reason:?})"))
}

/// The row's error kind of a status code: `grpc_` and the code's name.
pub(crate) fn code_kind(code: Code) -> &'static str {
    match code {
        Code::Ok => "grpc_ok",
        Code::Cancelled => "grpc_cancelled",
        Code::Unknown => "grpc_unknown",
        Code::InvalidArgument => "grpc_invalid_argument",
        Code::DeadlineExceeded => "grpc_deadline_exceeded",
        Code::NotFound => "grpc_not_found",
        Code::AlreadyExists => "grpc_already_exists",
        Code::PermissionDenied => "grpc_permission_denied",
        Code::ResourceExhausted => "grpc_resource_exhausted",
        Code::FailedPrecondition => "grpc_failed_precondition",
        Code::Aborted => "grpc_aborted",
        Code::OutOfRange => "grpc_out_of_range",
        Code::Unimplemented => "grpc_unimplemented",
        Code::Internal => "grpc_internal",
        Code::Unavailable => "grpc_unavailable",
        Code::DataLoss => "grpc_data_loss",
        Code::Unauthenticated => "grpc_unauthenticated",
    }
}

/// The row's error for a status: its kind, then `: ` and the message on
/// one line (at most 200 characters), as `http_<status>: <message>` is
/// written for HTTP.
pub(crate) fn status_error(status: &Status) -> String {
    with_message(code_kind(status.code()), status.message())
}

/// `kind: message`, the message on one line and at most 200 characters;
/// the kind alone when there is no message.
pub(crate) fn with_message(kind: &str, message: &str) -> String {
    let one_line: String = message
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    if one_line.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {one_line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_map_as_grpc_says() {
        let code = |reason, go_away| reset_status(reason, go_away).code();
        assert_eq!(code(h2::Reason::INTERNAL_ERROR, false), Code::Internal);
        assert_eq!(code(h2::Reason::PROTOCOL_ERROR, false), Code::Internal);
        assert_eq!(code(h2::Reason::REFUSED_STREAM, false), Code::Unavailable);
        assert_eq!(
            code(h2::Reason::ENHANCE_YOUR_CALM, false),
            Code::ResourceExhausted
        );
        assert_eq!(code(h2::Reason::CANCEL, false), Code::Cancelled);
        assert_eq!(code(h2::Reason::NO_ERROR, true), Code::Unavailable);
    }

    #[test]
    fn errors_start_with_the_kind_and_keep_the_message_on_one_line() {
        let status = Status::invalid_argument("unexpected shape\n for input 'x'");
        assert_eq!(
            status_error(&status),
            "grpc_invalid_argument: unexpected shape for input 'x'"
        );
        assert_eq!(status_error(&Status::internal("")), "grpc_internal");
        let long = Status::unavailable("x".repeat(500));
        assert_eq!(status_error(&long).len(), "grpc_unavailable: ".len() + 200);
        assert_eq!(code_kind(Code::DeadlineExceeded), "grpc_deadline_exceeded");
    }
}
