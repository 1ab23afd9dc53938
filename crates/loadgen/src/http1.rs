//! A lean HTTP/1.1 client exchange for the load path: one `write` of a
//! precomputed request head plus the body, then the response read in the
//! same task and parsed with `httparse`.
//!
//! Why not hyper's client here: hyper drives each connection in a task of
//! its own and hands requests and responses through channels, so every
//! request crosses tasks (and, on a multi-thread runtime, threads) and
//! builds `http` types that a load generator mostly throws away. A load
//! generator sends one request at a time per connection, so the exchange
//! can be a plain function of the connection, as in wrk. HTTP/2 stays on
//! hyper (`client.rs`).
//!
//! What it speaks: requests with `Content-Length`; responses framed by
//! `Content-Length`, `Transfer-Encoding: chunked` or connection close;
//! interim 1xx responses skipped; `Connection: close` and HTTP/1.0 honoured
//! (the connection is then not reused), and so is `Keep-Alive: timeout=N,
//! max=M` (a connection is not reused once idle for about N seconds, nor
//! past the M requests the server still allows on it). Failures map to the
//! same error kinds as the hyper path: nothing of the response before the
//! connection ended is `connection_reset`, a cut body is `truncated_body`,
//! anything unparseable is `io_error`.

use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use model::wire::{BATCH_SIZE_HEADER, SERVER_TIMING_HEADER};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use crate::client::{ServerFacts, TransportError};
use crate::race::{race, Finished};
use crate::stream::Stream;

/// Largest response head accepted (status line and headers).
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest response body accepted; a bigger one is an `io_error`, not an
/// allocation the server chooses.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Most response headers parsed.
const MAX_HEADERS: usize = 64;
/// Free space kept in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;
/// How much sooner than a server's `Keep-Alive: timeout` an idle connection
/// is given up (half the timeout when that is shorter): the server's idle
/// clock starts when it wrote the response, before ours, and the next
/// request still has to reach it.
const KEEP_ALIVE_MARGIN: Duration = Duration::from_secs(1);

/// The fixed part of every request: request line and headers up to (not
/// including) `Content-Length`, built once per run.
#[derive(Debug, Clone)]
pub(crate) struct RequestHead {
    prefix: Vec<u8>,
}

impl RequestHead {
    /// A `method path_and_query` head for `authority` (every request
    /// carries a body and its `Content-Length`, whatever the method).
    /// `extra` headers replace the default ones of the same name (`Host`
    /// included).
    pub(crate) fn new(
        method: &Method,
        path_and_query: &str,
        authority: &str,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Self {
        let defaults: [(HeaderName, &[u8]); 4] = [
            (http::header::HOST, authority.as_bytes()),
            (http::header::CONTENT_TYPE, b"application/json"),
            (http::header::ACCEPT, b"*/*"),
            (
                http::header::USER_AGENT,
                concat!("loadgen/", env!("CARGO_PKG_VERSION")).as_bytes(),
            ),
        ];
        let mut prefix = Vec::with_capacity(256);
        prefix.extend_from_slice(method.as_str().as_bytes());
        prefix.push(b' ');
        prefix.extend_from_slice(path_and_query.as_bytes());
        prefix.extend_from_slice(b" HTTP/1.1\r\n");
        let overridden = |name: &HeaderName| extra.iter().any(|(n, _)| n == name);
        let headers = defaults
            .iter()
            .filter(|(name, _)| !overridden(name))
            .map(|(name, value)| (name.as_str().as_bytes(), *value))
            .chain(
                extra
                    .iter()
                    .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
            );
        for (name, value) in headers {
            prefix.extend_from_slice(name);
            prefix.extend_from_slice(b": ");
            prefix.extend_from_slice(value);
            prefix.extend_from_slice(b"\r\n");
        }
        Self { prefix }
    }
}

/// What a response said, body read to the end.
#[derive(Debug)]
pub(crate) struct Http1Response {
    /// HTTP status.
    pub status: StatusCode,
    /// `Server-Timing` and `X-Batch-Size`, parsed.
    pub facts: ServerFacts,
    /// The whole body (de-chunked).
    pub body: Bytes,
    /// Whether the connection may carry another request.
    pub reusable: bool,
}

/// Reads a successful response's body as it arrives: a streamed answer
/// is parsed while it streams, so its cost is spread over the answer
/// instead of paid at its end (1,000 answers that end in the same step
/// used to stall the reads of every other stream for their whole parse),
/// and neither its bytes nor a record per read are kept. A response
/// with an error status is read whole instead, for its message.
pub(crate) trait BodyReader: Send + std::fmt::Debug {
    /// The (de-chunked) body bytes that came with the read at `arrival`;
    /// `arrival.body_len` counts every body byte so far, these included.
    fn push(&mut self, bytes: &[u8], arrival: &Arrival);

    /// The reader itself, for the API that made it to take back.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

/// By `at`, the first `body_len` bytes of the (de-chunked) body had
/// arrived: what a streamed answer's timing is read from. Bytes that came
/// in one read share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arrival {
    /// Body bytes arrived so far.
    pub body_len: usize,
    /// When the read that brought them returned.
    pub at: std::time::Instant,
    /// The same moment on the wall clock, Unix ns (`None` when unknown):
    /// what a server's write stamps (`: t=<ns>`, see `api::stamps`) are
    /// compared with. Read from `SystemTime` at the read rather than
    /// converted from `at`: `Instant` is the monotonic clock, which NTP
    /// slews apart from the wall clock, so a conversion through one pair
    /// of readings taken seconds later could be off by more than the
    /// delays it measures. One more clock read per read, only while
    /// arrivals are tracked.
    pub unix_ns: Option<u64>,
}

/// The wall clock now, Unix ns (`None` before 1970 or after 2554).
pub(crate) fn unix_ns_now() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
}

/// What the caller reads of a response besides its status, framing and
/// `X-Batch-Size`. The rest is still consumed off the connection but not
/// copied or parsed: a load generator that neither verifies nor logs would
/// only throw it away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponseUse {
    /// Return the body (else an empty one).
    pub body: bool,
    /// Parse `Server-Timing` (else its durations are `None`).
    pub server_timing: bool,
}

impl ResponseUse {
    /// Everything.
    pub(crate) const ALL: Self = Self {
        body: true,
        server_timing: true,
    };
}

/// One HTTP/1.1 connection, its buffers and its deadline timer. Generic over
/// the stream so the parser can be tested over an in-memory pipe.
#[derive(Debug)]
pub(crate) struct Http1Connection<S> {
    wire: Wire<S>,
    /// One timer for the connection's whole life, moved to each exchange's
    /// deadline. Why not `tokio::time::timeout` per request: that registers
    /// and removes a timer-wheel entry (under the driver's lock) for every
    /// request, while moving a registered deadline later is one atomic
    /// update; the wheel only sees the entry again when the old deadline
    /// comes round.
    deadline: Pin<Box<Sleep>>,
    /// When the last response was read: the start of the idle time the
    /// server's `Keep-Alive: timeout` bounds.
    idle_since: Instant,
    /// Longest idle time after which the connection is still reused (the
    /// server's timeout less a margin), when the server gave one.
    idle_limit: Option<Duration>,
    /// Requests the server still allows on this connection, when it said
    /// (`Keep-Alive: max`).
    requests_left: Option<u32>,
}

/// The stream and its buffers: everything an exchange reads and writes.
#[derive(Debug)]
struct Wire<S> {
    stream: S,
    read_buf: BytesMut,
    write_buf: Vec<u8>,
    /// Whether the body of the exchange in progress goes to a
    /// [`BodyReader`]: then each read's time is taken (a clock read per
    /// read, so only for streamed answers).
    track_arrivals: bool,
    last_read_at: std::time::Instant,
    /// `last_read_at` on the wall clock, Unix ns.
    last_read_unix_ns: Option<u64>,
    /// Body bytes given to the reader so far.
    fed: usize,
    /// Whether any byte arrived since the exchange in progress (or the
    /// last one) began.
    received: bool,
}

/// What a response's `Keep-Alive` header said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct KeepAlive {
    /// `timeout=N`: how long the server keeps an idle connection open.
    timeout: Option<Duration>,
    /// `max=M`: how many requests (this one included) the server allows.
    max: Option<u32>,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// The parts of a response head the exchange needs.
#[derive(Debug)]
struct Head {
    status: StatusCode,
    framing: Framing,
    reusable: bool,
    facts: ServerFacts,
    keep_alive: KeepAlive,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Http1Connection<S> {
    /// Wraps an open stream. Must be called within a tokio runtime with
    /// its timer enabled; the connection is then used on that runtime only.
    pub(crate) fn new(stream: S) -> Self {
        Self {
            wire: Wire {
                stream,
                read_buf: BytesMut::with_capacity(READ_CHUNK),
                write_buf: Vec::with_capacity(1024),
                track_arrivals: false,
                last_read_at: std::time::Instant::now(),
                last_read_unix_ns: None,
                fed: 0,
                received: false,
            },
            deadline: Box::pin(tokio::time::sleep_until(Instant::now())),
            idle_since: Instant::now(),
            idle_limit: None,
            requests_left: None,
        }
    }

    /// Sends `head` + `body` and reads the whole response, or fails with
    /// `timeout` at `deadline`. After any failure the connection is in an
    /// unknown state: drop it ([`Http1Connection::nothing_received`] says
    /// whether the request may be sent again on another).
    pub(crate) async fn exchange(
        &mut self,
        head: &RequestHead,
        body: &[u8],
        wanted: ResponseUse,
        deadline: Instant,
    ) -> Result<Http1Response, TransportError> {
        self.exchange_reading(head, body, wanted, deadline, None)
            .await
    }

    /// [`Http1Connection::exchange`], with a successful response's body
    /// given to `reader` as it arrives (and not returned).
    pub(crate) async fn exchange_reading(
        &mut self,
        head: &RequestHead,
        body: &[u8],
        wanted: ResponseUse,
        deadline: Instant,
        reader: Option<&mut (dyn BodyReader + 'static)>,
    ) -> Result<Http1Response, TransportError> {
        self.deadline.as_mut().reset(deadline);
        // The deadline is polled only when its timer fires, not on every
        // read of a streamed answer (see `crate::race`).
        let exchanged = race(
            self.wire.exchange(head, body, wanted, reader),
            self.deadline.as_mut(),
        )
        .await;
        let (mut response, keep_alive) = match exchanged {
            Finished::Work(response) => response,
            Finished::Guard(()) => Err(TransportError::Timeout),
        }?;
        // This request used one of the requests the server allows.
        if let Some(left) = &mut self.requests_left {
            *left = left.saturating_sub(1);
        }
        if let Some(timeout) = keep_alive.timeout {
            self.idle_limit = Some(timeout.saturating_sub(KEEP_ALIVE_MARGIN.min(timeout / 2)));
        }
        if let Some(max) = keep_alive.max {
            // Each response may restate the allowance (Apache counts it
            // down, cpp-httplib repeats its total): keep the tighter.
            let left = max.saturating_sub(1);
            self.requests_left = Some(self.requests_left.map_or(left, |l| l.min(left)));
        }
        if self.requests_left == Some(0) || self.idle_limit == Some(Duration::ZERO) {
            response.reusable = false;
        }
        if self.idle_limit.is_some() {
            // A clock read only for servers that said how long they wait.
            self.idle_since = Instant::now();
        }
        Ok(response)
    }

    /// After a failed exchange: whether not one byte of a response had
    /// arrived, so the server did not answer this request (a kept-alive
    /// connection it had already closed); the request may then go out
    /// again on a new connection.
    pub(crate) fn nothing_received(&self) -> bool {
        !self.wire.received
    }

    /// Whether the connection has sat idle past what the server's
    /// `Keep-Alive: timeout` allows (with a margin).
    fn idle_too_long(&self) -> bool {
        self.idle_limit
            .is_some_and(|limit| self.idle_since.elapsed() >= limit)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    async fn exchange(
        &mut self,
        head: &RequestHead,
        body: &[u8],
        wanted: ResponseUse,
        reader: Option<&mut (dyn BodyReader + 'static)>,
    ) -> Result<(Http1Response, KeepAlive), TransportError> {
        self.track_arrivals = reader.is_some();
        self.received = false;
        self.write_request(head, body).await?;
        let head = self.read_head(wanted).await?;
        // An error's body is read whole, for its message.
        let reader = reader.filter(|_| head.status.is_success());
        let keep = wanted.body || (self.track_arrivals && reader.is_none());
        self.fed = 0;
        let body = self.read_body(head.framing, keep, reader).await?;
        let response = Http1Response {
            status: head.status,
            facts: head.facts,
            body: if keep { body } else { Bytes::new() },
            reusable: head.reusable && head.framing != Framing::UntilClose,
        };
        Ok((response, head.keep_alive))
    }

    async fn write_request(
        &mut self,
        head: &RequestHead,
        body: &[u8],
    ) -> Result<(), TransportError> {
        self.write_buf.clear();
        self.write_buf.extend_from_slice(&head.prefix);
        self.write_buf.extend_from_slice(b"content-length: ");
        self.write_buf
            .extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        self.write_buf.extend_from_slice(b"\r\n\r\n");
        self.write_buf.extend_from_slice(body);
        self.stream
            .write_all(&self.write_buf)
            .await
            .map_err(|e| TransportError::from_io(&e))?;
        // A no-op on TCP; over TLS it pushes out the last record.
        self.stream
            .flush()
            .await
            .map_err(|e| TransportError::from_io(&e))
    }

    /// Reads until a final (non-1xx) response head is complete.
    async fn read_head(&mut self, wanted: ResponseUse) -> Result<Head, TransportError> {
        loop {
            // An empty buffer (the usual state before a response) has
            // nothing to parse: read first.
            if !self.read_buf.is_empty() {
                if let Some((consumed, head)) = parse_head(&self.read_buf, wanted.server_timing)? {
                    self.read_buf.advance(consumed);
                    match head {
                        Some(head) => return Ok(head),
                        None => continue, // an interim 1xx: the real answer follows
                    }
                }
                if self.read_buf.len() >= MAX_HEAD_BYTES {
                    return Err(TransportError::IoError);
                }
            }
            if self.fill().await.map_err(|e| TransportError::from_io(&e))? == 0 {
                return Err(TransportError::ConnectionReset);
            }
        }
    }

    /// Reads the body; with a `reader`, every new byte goes to it as it
    /// arrives and only `keep` makes the body returned as well.
    async fn read_body(
        &mut self,
        framing: Framing,
        keep: bool,
        mut reader: Option<&mut (dyn BodyReader + 'static)>,
    ) -> Result<Bytes, TransportError> {
        // The head arrived: any failure from here on means the body was cut.
        match framing {
            Framing::Empty => Ok(Bytes::new()),
            Framing::Length(len) => {
                loop {
                    self.feed(reader.as_deref_mut(), self.read_buf.len().min(len));
                    if self.read_buf.len() >= len {
                        break;
                    }
                    self.fill_body().await?;
                }
                if !keep {
                    // The common case, so skip the copy too.
                    self.read_buf.advance(len);
                    return Ok(Bytes::new());
                }
                Ok(self.take(len))
            }
            Framing::UntilClose => loop {
                // Only a clean end of stream ends such a body; a reset cuts it.
                self.feed(reader.as_deref_mut(), self.read_buf.len());
                match self.fill().await {
                    Ok(0) => return Ok(self.take(self.read_buf.len())),
                    Ok(_) if self.read_buf.len() > MAX_BODY_BYTES => {
                        return Err(TransportError::IoError)
                    }
                    Ok(_) => {}
                    Err(_) => return Err(TransportError::TruncatedBody),
                }
            },
            Framing::Chunked => self.read_chunked(keep, reader).await,
        }
    }

    async fn read_chunked(
        &mut self,
        keep: bool,
        mut reader: Option<&mut (dyn BodyReader + 'static)>,
    ) -> Result<Bytes, TransportError> {
        let mut body = Vec::new();
        // Body bytes so far, kept or not.
        let mut body_len = 0;
        loop {
            match next_chunk(&self.read_buf)? {
                Some(Chunk::Data { header, len }) => {
                    if body_len + len > MAX_BODY_BYTES {
                        return Err(TransportError::IoError);
                    }
                    while self.read_buf.len() < header + len + 2 {
                        self.fill_body().await?;
                    }
                    if &self.read_buf[header + len..header + len + 2] != b"\r\n" {
                        return Err(TransportError::IoError);
                    }
                    let data = &self.read_buf[header..header + len];
                    body_len += len;
                    if let Some(reader) = reader.as_deref_mut() {
                        reader.push(data, &self.arrival(body_len));
                    }
                    if keep || reader.is_none() {
                        body.extend_from_slice(data);
                    }
                    self.read_buf.advance(header + len + 2);
                }
                Some(Chunk::Last { consumed }) => {
                    self.read_buf.advance(consumed);
                    return Ok(Bytes::from(body));
                }
                None => {
                    if self.read_buf.len() >= MAX_HEAD_BYTES {
                        return Err(TransportError::IoError);
                    }
                    self.fill_body().await?;
                }
            }
        }
    }

    /// Copies the first `len` buffered bytes out, so the read buffer stays
    /// unshared and is reused for the next response without reallocating.
    fn take(&mut self, len: usize) -> Bytes {
        let body = Bytes::copy_from_slice(&self.read_buf[..len]);
        self.read_buf.advance(len);
        body
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 4 {
            self.read_buf.reserve(READ_CHUNK);
        }
        let read = self.stream.read_buf(&mut self.read_buf).await;
        if matches!(read, Ok(n) if n > 0) {
            self.received = true;
        }
        if self.track_arrivals {
            self.last_read_at = std::time::Instant::now();
            self.last_read_unix_ns = unix_ns_now();
        }
        read
    }

    /// The last read's arrival, `body_len` body bytes in.
    fn arrival(&self, body_len: usize) -> Arrival {
        Arrival {
            body_len,
            at: self.last_read_at,
            unix_ns: self.last_read_unix_ns,
        }
    }

    /// Gives `reader` the body bytes that arrived since it was last fed,
    /// the body being the first `body_len` buffered bytes.
    fn feed(&mut self, reader: Option<&mut (dyn BodyReader + 'static)>, body_len: usize) {
        if let Some(reader) = reader {
            if body_len > self.fed {
                reader.push(&self.read_buf[self.fed..body_len], &self.arrival(body_len));
                self.fed = body_len;
            }
        }
    }

    /// A read inside the body: the end of the stream or an error cuts it.
    async fn fill_body(&mut self) -> Result<(), TransportError> {
        match self.fill().await {
            Ok(0) | Err(_) => Err(TransportError::TruncatedBody),
            Ok(_) => Ok(()),
        }
    }
}

impl Http1Connection<Stream> {
    /// Whether an idle pooled connection can still carry a request: not
    /// idle past the server's `Keep-Alive: timeout`, and not closed (see
    /// [`Stream::is_reusable`]); bytes nobody asked for make it unusable.
    pub(crate) fn is_reusable(&mut self) -> bool {
        !self.idle_too_long() && self.wire.read_buf.is_empty() && self.wire.stream.is_reusable()
    }
}

/// Parses a response head from the start of `buf`. `Ok(None)`: incomplete.
/// `Ok(Some((n, None)))`: an interim 1xx response of `n` bytes to skip.
/// `Server-Timing` is only parsed when `server_timing` is asked for: its
/// durations only reach the per-request log, and parsing them cost more
/// than the rest of the head.
fn parse_head(
    buf: &[u8],
    server_timing: bool,
) -> Result<Option<(usize, Option<Head>)>, TransportError> {
    // Uninitialised slots: zeroing 64 headers per response cost more than
    // parsing the few a server sends.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut headers,
    );
    let consumed = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(TransportError::IoError),
    };
    let code = response.code.ok_or(TransportError::IoError)?;
    let status = StatusCode::from_u16(code).map_err(|_| TransportError::IoError)?;
    if status.is_informational() && code != 101 {
        return Ok(Some((consumed, None)));
    }
    let mut head = Head {
        status,
        framing: Framing::UntilClose,
        // HTTP/1.1 keeps the connection open unless told otherwise;
        // HTTP/1.0 closes it unless told otherwise.
        reusable: response.version == Some(1),
        facts: ServerFacts::default(),
        keep_alive: KeepAlive::default(),
    };
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let (mut timing, mut batch_size) = (None, None);
    for header in response.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("content-length") {
            let parsed = parse_length(value)?;
            if length.is_some_and(|l| l != parsed) {
                return Err(TransportError::IoError);
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = last_token_is(value, b"chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(value, b"close") {
                head.reusable = false;
            } else if has_token(value, b"keep-alive") {
                head.reusable = true;
            }
        } else if name.eq_ignore_ascii_case("keep-alive") {
            head.keep_alive = parse_keep_alive(value);
        } else if name.eq_ignore_ascii_case(SERVER_TIMING_HEADER) {
            if server_timing {
                timing = std::str::from_utf8(value).ok();
            }
        } else if name.eq_ignore_ascii_case(BATCH_SIZE_HEADER) {
            batch_size = std::str::from_utf8(value).ok();
        }
    }
    head.facts = ServerFacts::from_values(timing, batch_size);
    head.framing = if code == 204 || code == 304 || code == 101 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(len) => Framing::Length(len),
            None => Framing::UntilClose,
        }
    };
    if code == 101 {
        head.reusable = false;
    }
    Ok(Some((consumed, Some(head))))
}

/// A `Content-Length` value: ASCII digits only (no sign, unlike
/// `str::parse`), at most [`MAX_BODY_BYTES`].
fn parse_length(value: &[u8]) -> Result<usize, TransportError> {
    let digits = value.trim_ascii();
    if digits.is_empty() {
        return Err(TransportError::IoError);
    }
    digits
        .iter()
        .try_fold(0usize, |len, &b| {
            let digit = b.wrapping_sub(b'0');
            (digit <= 9).then_some(())?;
            let len = len.checked_mul(10)?.checked_add(usize::from(digit))?;
            (len <= MAX_BODY_BYTES).then_some(len)
        })
        .ok_or(TransportError::IoError)
}

/// A `Keep-Alive` value, `timeout=5, max=100` (RFC 2068 section 19.7.1.1,
/// as Apache, nginx and cpp-httplib send it). Parameters it does not know
/// or cannot read are ignored, as if not sent.
fn parse_keep_alive(value: &[u8]) -> KeepAlive {
    let mut keep_alive = KeepAlive::default();
    for parameter in tokens(value) {
        let Some(at) = parameter.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, number) = (
            parameter[..at].trim_ascii(),
            parameter[at + 1..].trim_ascii(),
        );
        let Some(number) = std::str::from_utf8(number)
            .ok()
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if name.eq_ignore_ascii_case(b"timeout") {
            keep_alive.timeout = Some(Duration::from_secs(u64::from(number)));
        } else if name.eq_ignore_ascii_case(b"max") {
            keep_alive.max = Some(number);
        }
    }
    keep_alive
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

fn last_token_is(value: &[u8], token: &[u8]) -> bool {
    tokens(value)
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case(token))
}

/// One step of a chunked body, found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
enum Chunk {
    /// `len` data bytes start after a `header`-byte size line.
    Data { header: usize, len: usize },
    /// The last chunk and its trailers end after `consumed` bytes.
    Last { consumed: usize },
}

/// Reads a chunk-size line (and, for the last chunk, the trailers).
/// `Ok(None)`: more bytes are needed.
fn next_chunk(buf: &[u8]) -> Result<Option<Chunk>, TransportError> {
    let Some(line_end) = find_crlf(buf) else {
        return Ok(None);
    };
    // httparse reads the hex size (digits only: no sign, no spaces before
    // it) and skips chunk extensions (`;name=value`).
    let len = match httparse::parse_chunk_size(&buf[..line_end + 2]) {
        Ok(httparse::Status::Complete((_, size))) => {
            usize::try_from(size).map_err(|_| TransportError::IoError)?
        }
        Ok(httparse::Status::Partial) | Err(_) => return Err(TransportError::IoError),
    };
    if len > MAX_BODY_BYTES {
        return Err(TransportError::IoError);
    }
    let header = line_end + 2;
    if len > 0 {
        return Ok(Some(Chunk::Data { header, len }));
    }
    // Trailer lines up to an empty line.
    let mut at = header;
    loop {
        let Some(end) = find_crlf(&buf[at..]) else {
            return Ok(None);
        };
        if end == 0 {
            return Ok(Some(Chunk::Last { consumed: at + 2 }));
        }
        at += end + 2;
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, DuplexStream};

    /// Nothing optional.
    const MINIMAL: ResponseUse = ResponseUse {
        body: false,
        server_timing: false,
    };

    /// A `POST path_and_query` head for `authority`.
    fn post(
        path_and_query: &str,
        authority: &str,
        extra: &[(HeaderName, HeaderValue)],
    ) -> RequestHead {
        RequestHead::new(&Method::POST, path_and_query, authority, extra)
    }

    /// A deadline no test reaches.
    fn far() -> Instant {
        Instant::now() + std::time::Duration::from_secs(60)
    }

    fn head() -> RequestHead {
        post("/v1/infer", "127.0.0.1:8000", &[])
    }

    /// Runs one exchange against a peer that reads the request, then
    /// writes `reply` in pieces of `piece` bytes and closes (or not).
    async fn exchange_with(
        reply: &'static [u8],
        piece: usize,
        close: bool,
    ) -> (Result<Http1Response, TransportError>, Vec<u8>) {
        let (client, mut server) = duplex(1 << 20);
        let peer = tokio::spawn(async move {
            let mut request = vec![0u8; 4096];
            let n = server.read(&mut request).await.unwrap_or(0);
            request.truncate(n);
            for part in reply.chunks(piece.max(1)) {
                if server.write_all(part).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            if !close {
                // Keep the stream open until the client is done.
                let mut rest = [0u8; 16];
                let _ = server.read(&mut rest).await;
            }
            request
        });
        let mut conn: Http1Connection<DuplexStream> = Http1Connection::new(client);
        let result = conn
            .exchange(&head(), br#"{"a":1}"#, ResponseUse::ALL, far())
            .await;
        drop(conn);
        (result, peer.await.unwrap_or_default())
    }

    /// What a [`BodyReader`] was given.
    #[derive(Debug, Default)]
    struct Collect {
        bytes: Vec<u8>,
        body_lens: Vec<usize>,
    }

    impl BodyReader for Collect {
        fn push(&mut self, bytes: &[u8], arrival: &Arrival) {
            self.bytes.extend_from_slice(bytes);
            self.body_lens.push(arrival.body_len);
        }

        fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
            self
        }
    }

    /// One exchange, the body given to a reader, against a peer that
    /// writes `reply`'s head in one piece, then the rest in pieces of
    /// `piece` bytes, then closes.
    async fn read_by_reader(
        reply: &'static [u8],
        piece: usize,
    ) -> (Result<Http1Response, TransportError>, Collect) {
        let head_len = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(reply.len(), |at| at + 4);
        let (client, mut server) = duplex(1 << 20);
        let peer = tokio::spawn(async move {
            let mut request = vec![0u8; 4096];
            let _ = server.read(&mut request).await;
            let (head, body) = reply.split_at(head_len);
            for part in std::iter::once(head).chain(body.chunks(piece)) {
                if server.write_all(part).await.is_err() {
                    break;
                }
                // Each piece its own read.
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
            }
        });
        let mut conn = Http1Connection::new(client);
        let mut reader: Box<dyn BodyReader> = Box::new(Collect::default());
        let result = conn
            .exchange_reading(&head(), b"{}", MINIMAL, far(), Some(&mut *reader))
            .await;
        drop(conn);
        let _ = peer.await;
        let collect = reader
            .into_any()
            .downcast::<Collect>()
            .map(|c| *c)
            .unwrap_or_default();
        (result, collect)
    }

    #[tokio::test]
    async fn a_reader_is_given_the_body_as_it_arrives_in_every_framing() {
        let replies: [&'static [u8]; 3] = [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world",
        ];
        for reply in replies {
            let (result, got) = read_by_reader(reply, 3).await;
            let response = result.expect("a response");
            assert_eq!(response.status, StatusCode::OK);
            assert_eq!(
                got.bytes,
                b"hello world",
                "{}",
                String::from_utf8_lossy(reply)
            );
            // Given in more than one push, each counting the body so far.
            assert!(got.body_lens.len() >= 2, "{:?}", got.body_lens);
            assert!(got.body_lens.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(got.body_lens.last(), Some(&11));
            // And not kept besides.
            assert!(response.body.is_empty());
        }
    }

    #[tokio::test]
    async fn an_error_status_body_is_read_whole_and_not_given_to_the_reader() {
        let reply = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy";
        let (result, got) = read_by_reader(reply, 5).await;
        let response = result.expect("a response");
        assert_eq!(response.status.as_u16(), 503);
        assert_eq!(&response.body[..], b"busy");
        assert!(got.bytes.is_empty() && got.body_lens.is_empty());
    }

    #[tokio::test]
    async fn the_request_is_one_write_with_its_length() {
        let extra = [(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer t"),
        )];
        let h = post("/v1/infer?x=1", "localhost:9", &extra);
        let (client, mut server) = duplex(4096);
        let mut conn = Http1Connection::new(client);
        let send = tokio::spawn(async move {
            conn.exchange(&h, b"{}", ResponseUse::ALL, far())
                .await
                .map(|r| r.status)
        });
        let mut got = vec![0u8; 4096];
        let n = server.read(&mut got).await.unwrap();
        let text = String::from_utf8_lossy(&got[..n]).into_owned();
        server
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(send.await.unwrap(), Ok(StatusCode::NO_CONTENT));
        assert_eq!(
            text,
            concat!(
                "POST /v1/infer?x=1 HTTP/1.1\r\nhost: localhost:9\r\n",
                "content-type: application/json\r\naccept: */*\r\n",
                "user-agent: loadgen/",
                env!("CARGO_PKG_VERSION"),
                "\r\nauthorization: Bearer t\r\ncontent-length: 2\r\n\r\n{}"
            )
        );
    }

    #[test]
    fn extra_headers_replace_defaults() {
        let extra = [(http::header::HOST, HeaderValue::from_static("example"))];
        let h = post("/", "127.0.0.1:1", &extra);
        let text = String::from_utf8(h.prefix).unwrap();
        assert_eq!(text.matches("host:").count(), 1);
        assert!(text.ends_with("host: example\r\n"), "{text}");
    }

    #[tokio::test]
    async fn content_length_body_byte_by_byte() {
        let reply: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer-Timing: queue;dur=1.5, infer;dur=2\r\nX-Batch-Size: 3\r\n\r\nhello";
        let (result, request) = exchange_with(reply, 1, false).await;
        let response = result.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(&response.body[..], b"hello");
        assert_eq!(
            response.facts,
            ServerFacts {
                queue_ms: Some(1.5),
                service_ms: Some(2.0),
                server_batch_size: Some(3),
            }
        );
        assert!(response.reusable);
        assert!(request.ends_with(b"content-length: 7\r\n\r\n{\"a\":1}"));
    }

    #[tokio::test]
    async fn chunked_body_with_extensions_and_trailers() {
        let reply: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for piece in [1, 3, 1000] {
            let (result, _) = exchange_with(reply, piece, false).await;
            let response = result.unwrap();
            assert_eq!(&response.body[..], b"Wikipedia in \r\n\r\nchunks.");
            assert!(response.reusable);
        }
    }

    #[tokio::test]
    async fn interim_responses_are_skipped() {
        let reply: &[u8] =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 2\r\nRetry-After: 1\r\n\r\n{}";
        let response = exchange_with(reply, 7, false).await.0.unwrap();
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(&response.body[..], b"{}");
    }

    #[tokio::test]
    async fn close_delimited_and_http10_bodies_end_the_connection() {
        let reply: &[u8] = b"HTTP/1.1 200 OK\r\n\r\nuntil close";
        let response = exchange_with(reply, 4, true).await.0.unwrap();
        assert_eq!(&response.body[..], b"until close");
        assert!(!response.reusable);
        let reply: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert!(!exchange_with(reply, 100, false).await.0.unwrap().reusable);
        let reply: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
        assert!(!exchange_with(reply, 100, false).await.0.unwrap().reusable);
    }

    #[tokio::test]
    async fn failures_have_the_hyper_path_kinds() {
        let cases: [(&'static [u8], TransportError); 7] = [
            (b"", TransportError::ConnectionReset),
            (
                b"HTTP/1.1 200 OK\r\nContent-",
                TransportError::ConnectionReset,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                TransportError::TruncatedBody,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                TransportError::TruncatedBody,
            ),
            (b"NOT HTTP AT ALL\r\n\r\n", TransportError::IoError),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                TransportError::IoError,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                TransportError::IoError,
            ),
        ];
        for (reply, kind) in cases {
            let (result, _) = exchange_with(reply, 3, true).await;
            assert_eq!(
                result.err(),
                Some(kind),
                "{:?}",
                String::from_utf8_lossy(reply)
            );
        }
    }

    #[tokio::test]
    async fn oversized_heads_and_bodies_are_refused() {
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        let reply: &'static [u8] = Box::leak(huge.into_bytes().into_boxed_slice());
        assert_eq!(
            exchange_with(reply, 1000, true).await.0.err(),
            Some(TransportError::IoError)
        );
        let endless = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        let reply: &'static [u8] = Box::leak(endless.into_bytes().into_boxed_slice());
        assert_eq!(
            exchange_with(reply, 4096, false).await.0.err(),
            Some(TransportError::IoError)
        );
    }

    /// One exchange per entry of `uses`, in order, over a connection whose
    /// peer has already written `replies` (and stays open).
    async fn exchanges_after(replies: &[u8], uses: &[ResponseUse]) -> Vec<Http1Response> {
        let (client, mut server) = duplex(1 << 16);
        let mut conn = Http1Connection::new(client);
        server.write_all(replies).await.unwrap();
        let mut responses = Vec::new();
        for (k, wanted) in uses.iter().enumerate() {
            let body = k.to_string();
            let response = conn
                .exchange(&head(), body.as_bytes(), *wanted, far())
                .await;
            responses.push(response.unwrap());
        }
        responses
    }

    #[tokio::test]
    async fn two_responses_in_one_read_are_kept_apart() {
        let replies = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\noneHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo";
        let [first, second] =
            <[_; 2]>::try_from(exchanges_after(replies, &[ResponseUse::ALL; 2]).await).unwrap();
        assert_eq!(
            (&first.body[..], &second.body[..]),
            (&b"one"[..], &b"two"[..])
        );
    }

    #[tokio::test]
    async fn a_discarded_body_is_consumed_but_not_returned() {
        let replies = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\noneHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nthree";
        let uses = [MINIMAL, MINIMAL, ResponseUse::ALL];
        let [first, second, third] =
            <[_; 3]>::try_from(exchanges_after(replies, &uses).await).unwrap();
        assert_eq!((first.body.len(), second.body.len()), (0, 0));
        assert_eq!(
            (third.status, &third.body[..]),
            (StatusCode::CREATED, &b"three"[..])
        );
    }

    #[test]
    fn content_length_is_digits_only_and_bounded() {
        assert_eq!(parse_length(b"0"), Ok(0));
        assert_eq!(parse_length(b" 290 "), Ok(290));
        assert_eq!(parse_length(b"67108864"), Ok(MAX_BODY_BYTES));
        for bad in [
            &b""[..],
            b"  ",
            b"+5",
            b"-1",
            b"1 2",
            b"0x10",
            b"67108865",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_length(bad), Err(TransportError::IoError), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn server_timing_is_parsed_only_when_asked_for() {
        let reply = "HTTP/1.1 200 OK\r\nServer-Timing: queue;dur=1.5, infer;dur=2\r\nX-Batch-Size: 3\r\nContent-Length: 0\r\n\r\n";
        let replies = reply.repeat(2);
        let uses = [ResponseUse::ALL, MINIMAL];
        let [all, minimal] =
            <[_; 2]>::try_from(exchanges_after(replies.as_bytes(), &uses).await).unwrap();
        assert_eq!(
            (
                all.facts.queue_ms,
                all.facts.service_ms,
                all.facts.server_batch_size
            ),
            (Some(1.5), Some(2.0), Some(3))
        );
        assert_eq!(
            (
                minimal.facts.queue_ms,
                minimal.facts.service_ms,
                minimal.facts.server_batch_size
            ),
            (None, None, Some(3))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_exchange_times_out_at_its_deadline() {
        let (client, _server) = duplex(1 << 16);
        let mut conn = Http1Connection::new(client);
        let started = Instant::now();
        let deadline = started + std::time::Duration::from_millis(750);
        let result = conn
            .exchange(&head(), b"{}", ResponseUse::ALL, deadline)
            .await;
        assert_eq!(result.err(), Some(TransportError::Timeout));
        assert_eq!(
            Instant::now() - started,
            std::time::Duration::from_millis(750)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_connection_times_out_at_the_new_deadline_not_the_old() {
        let second = std::time::Duration::from_secs(1);
        let (client, mut server) = duplex(1 << 16);
        let mut conn = Http1Connection::new(client);
        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        let first = conn
            .exchange(&head(), b"1", ResponseUse::ALL, Instant::now() + second)
            .await;
        assert_eq!(first.map(|r| r.status), Ok(StatusCode::OK));
        // The first deadline passes while the second exchange waits: only
        // the second deadline may end it.
        tokio::time::advance(second / 2).await;
        let started = Instant::now();
        let result = conn
            .exchange(&head(), b"2", ResponseUse::ALL, started + 3 * second)
            .await;
        assert_eq!(result.err(), Some(TransportError::Timeout));
        assert_eq!(Instant::now() - started, 3 * second);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_reset_cuts_a_close_delimited_body() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\n\r\npart of a bo")
                .unwrap();
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt on a live socket with a valid linger struct;
            // a zero linger makes the close below send RST, not FIN.
            unsafe {
                libc::setsockopt(
                    stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    std::ptr::from_ref(&linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut conn = Http1Connection::new(tcp);
        let result = conn.exchange(&head(), b"{}", ResponseUse::ALL, far()).await;
        server.join().unwrap();
        assert_eq!(result.err(), Some(TransportError::TruncatedBody));
    }

    #[tokio::test]
    async fn an_idle_connection_closed_by_the_server_is_not_reused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut conn = Http1Connection::new(Stream::Plain(client));
        assert!(conn.is_reusable());
        drop(server);
        // The FIN reaches the reactor on its next turn.
        let mut waited = 0;
        while conn.is_reusable() && waited < 1000 {
            tokio::task::yield_now().await;
            waited += 1;
        }
        assert!(!conn.is_reusable());
    }

    #[test]
    fn keep_alive_parameters_are_read_and_oddities_ignored() {
        let parsed = |v: &[u8]| parse_keep_alive(v);
        let secs = |s| Some(std::time::Duration::from_secs(s));
        assert_eq!(
            parsed(b"timeout=5, max=100"),
            KeepAlive {
                timeout: secs(5),
                max: Some(100)
            }
        );
        assert_eq!(
            parsed(b" Timeout = 2 ,MAX=7, other=x"),
            KeepAlive {
                timeout: secs(2),
                max: Some(7)
            }
        );
        for odd in [
            &b""[..],
            b"timeout",
            b"timeout=-1",
            b"timeout=5s",
            b"max=",
            b"max=+3",
        ] {
            assert_eq!(parsed(odd), KeepAlive::default(), "{odd:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_timeout_and_max_bound_reuse() {
        let reply =
            "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=2\r\nContent-Length: 2\r\n\r\nok";
        let (client, mut server) = duplex(1 << 16);
        let mut conn = Http1Connection::new(client);
        server.write_all(reply.repeat(2).as_bytes()).await.unwrap();
        let first = conn.exchange(&head(), b"1", ResponseUse::ALL, far()).await;
        assert!(first.unwrap().reusable);
        // Idle for the timeout less the margin (1 s) is too long.
        let step = std::time::Duration::from_millis(3999);
        tokio::time::advance(step).await;
        assert!(!conn.idle_too_long());
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        assert!(conn.idle_too_long());
        // max=2: the second request was the last the server allows.
        let second = conn.exchange(&head(), b"2", ResponseUse::ALL, far()).await;
        assert!(!second.unwrap().reusable);
        // A timeout of 0 keeps nothing; a short one keeps half of it.
        let (client, mut server) = duplex(1 << 16);
        let mut conn = Http1Connection::new(client);
        let reply = "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=0\r\nContent-Length: 2\r\n\r\nok";
        server.write_all(reply.as_bytes()).await.unwrap();
        let only = conn.exchange(&head(), b"1", ResponseUse::ALL, far()).await;
        assert!(!only.unwrap().reusable);
        assert_eq!(conn.idle_limit, Some(std::time::Duration::ZERO));
    }

    #[tokio::test]
    async fn a_close_before_any_byte_of_the_response_is_told_apart() {
        // The peer reads the request and closes: nothing came back.
        let (client, mut server) = duplex(1 << 16);
        let mut conn = Http1Connection::new(client);
        let peer = tokio::spawn(async move {
            let mut request = [0u8; 4096];
            let _ = server.read(&mut request).await;
        });
        let result = conn.exchange(&head(), b"{}", ResponseUse::ALL, far()).await;
        peer.await.unwrap();
        assert_eq!(result.err(), Some(TransportError::ConnectionReset));
        assert!(conn.nothing_received());
        // Part of a head, then the close: the server did answer.
        let (client, mut server) = duplex(1 << 16);
        let mut conn = Http1Connection::new(client);
        let peer = tokio::spawn(async move {
            let mut request = [0u8; 4096];
            let _ = server.read(&mut request).await;
            let _ = server.write_all(b"HTTP/1.1 200 OK\r\nContent-").await;
        });
        let result = conn.exchange(&head(), b"{}", ResponseUse::ALL, far()).await;
        peer.await.unwrap();
        assert_eq!(result.err(), Some(TransportError::ConnectionReset));
        assert!(!conn.nothing_received());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_close_the_reactor_has_not_seen_yet_is_noticed() {
        use std::os::fd::AsRawFd;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let fd = client.as_raw_fd();
        let mut conn = Http1Connection::new(Stream::Plain(client));
        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        let response = conn.exchange(&head(), b"{}", ResponseUse::ALL, far()).await;
        assert!(response.unwrap().reusable);
        let mut request = [0u8; 4096];
        let _ = server.read(&mut request).await;
        drop(server);
        // Wait for the close in the kernel (poll(2)), never yielding to the
        // runtime: its reactor has not seen the close, as when a client
        // goes straight from one response to its next request.
        let mut pollfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for a socket this test owns.
        let ready = unsafe { libc::poll(&mut pollfd, 1, 10_000) };
        assert_eq!(ready, 1, "the close did not arrive");
        assert!(!conn.is_reusable());
    }

    mod fuzz {
        //! Property tests of the response parsers: never a panic on any
        //! bytes, and a valid head or chunk read the same wherever the
        //! bytes are cut.
        use super::super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 512,
                ..ProptestConfig::default()
            }
        }

        /// A valid response head with a `Content-Length`, and the framing
        /// it means (none for 204 and 304, whatever the length says).
        fn valid_head() -> impl Strategy<Value = (Vec<u8>, Framing)> {
            (
                200u16..600,
                0usize..100_000,
                prop::collection::vec(("[a-z][a-z0-9-]{0,10}", "[ -~]{0,20}"), 0..6),
            )
                .prop_map(|(status, len, extra)| {
                    let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {len}\r\n");
                    for (name, value) in extra {
                        if ["content-length", "transfer-encoding", "connection"]
                            .contains(&name.as_str())
                        {
                            continue;
                        }
                        head.push_str(&format!("x-{name}: {}\r\n", value.trim()));
                    }
                    head.push_str("\r\n");
                    let framing = if len == 0 || status == 204 || status == 304 {
                        Framing::Empty
                    } else {
                        Framing::Length(len)
                    };
                    (head.into_bytes(), framing)
                })
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn parse_head_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), timing in any::<bool>()) {
                if let Ok(Some((consumed, _))) = parse_head(&bytes, timing) {
                    prop_assert!(consumed <= bytes.len());
                }
            }

            #[test]
            fn a_valid_head_parses_whole_and_waits_when_cut((head, framing) in valid_head(), cut in any::<prop::sample::Index>()) {
                let parsed = parse_head(&head, true);
                let Ok(Some((consumed, Some(h)))) = parsed else {
                    return Err(TestCaseError::fail(format!("{parsed:?}")));
                };
                prop_assert_eq!(consumed, head.len());
                prop_assert_eq!(h.framing, framing);
                let at = cut.index(head.len());
                prop_assert!(matches!(parse_head(&head[..at], true), Ok(None)), "cut at {at}");
            }

            #[test]
            fn next_chunk_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                if let Ok(Some(Chunk::Data { header, len })) = next_chunk(&bytes) {
                    prop_assert!(header <= bytes.len() && len > 0);
                }
                if let Ok(Some(Chunk::Last { consumed })) = next_chunk(&bytes) {
                    prop_assert!(consumed <= bytes.len());
                }
            }

            #[test]
            fn a_valid_chunk_is_found_wherever_the_bytes_end(
                data in prop::collection::vec(any::<u8>(), 1..300),
                ext in prop::option::of("[a-z]{1,5}=[a-z0-9]{1,5}"),
                upper in any::<bool>(),
                cut in any::<prop::sample::Index>(),
            ) {
                let size = if upper { format!("{:X}", data.len()) } else { format!("{:x}", data.len()) };
                let line = match &ext {
                    Some(ext) => format!("{size};{ext}\r\n"),
                    None => format!("{size}\r\n"),
                };
                let mut encoded = line.clone().into_bytes();
                encoded.extend_from_slice(&data);
                encoded.extend_from_slice(b"\r\n");
                prop_assert_eq!(
                    next_chunk(&encoded),
                    Ok(Some(Chunk::Data { header: line.len(), len: data.len() }))
                );
                // Before its size line is complete a chunk is not there yet.
                let at = cut.index(line.len() - 1);
                prop_assert_eq!(next_chunk(&encoded[..at]), Ok(None));
                // A signed size is refused, as Content-Length's is.
                let signed = format!("+{size}\r\n");
                prop_assert!(next_chunk(signed.as_bytes()).is_err());
            }
        }
    }
}
