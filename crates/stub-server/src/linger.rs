//! Lingering close: a connection that answers without reading the whole
//! request body (a 413) keeps reading, and discarding, what the client
//! still sends before it closes, as nginx's `lingering_close` does.
//!
//! Closing a socket with unread data in it makes the kernel send a reset
//! instead of a clean end. A client that writes its whole body before it
//! reads (Python's http.client and requests do) is still writing when that
//! reset arrives: it fails with a broken pipe and never reads the answer
//! waiting for it. So after an HTTP/1 request body was left unread, the
//! connection's shutdown sends the answer and a FIN, then reads until the
//! client closes, for at most [`LINGER_MAX_BYTES`] and [`LINGER_MAX_TIME`]
//! (and [`LINGER_IDLE`] without data), or until the server shuts down.
//! Only then is the socket closed. A connection that read every body
//! closes at once, as before.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::server::{LINGER_MAX_BYTES, LINGER_MAX_TIME};

/// How long a lingering connection waits for more data before it closes.
pub(crate) const LINGER_IDLE: Duration = Duration::from_secs(2);

/// When a lingering close stops reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Most bytes read and discarded.
    pub(crate) bytes: u64,
    /// Longest time spent reading.
    pub(crate) time: Duration,
    /// Longest wait for the next bytes.
    pub(crate) idle: Duration,
}

/// The bounds every connection lingers within.
pub(crate) const BOUNDS: Bounds = Bounds {
    bytes: LINGER_MAX_BYTES,
    time: LINGER_MAX_TIME,
    idle: LINGER_IDLE,
};

/// Whether the connection's latest request left its body unread; shared by
/// the request body ([`WatchedBody`], which sets it) and the connection's
/// stream ([`LingeringStream`], which reads it on shutdown).
#[derive(Debug, Clone, Default)]
pub(crate) struct UnreadBody(Arc<AtomicBool>);

impl UnreadBody {
    /// A new request begins: nothing is left unread yet.
    pub(crate) fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A request body that, dropped before its end, marks its connection for
/// a lingering close.
#[derive(Debug)]
pub(crate) struct WatchedBody<B: Body> {
    inner: B,
    finished: bool,
    unread: Option<UnreadBody>,
}

impl<B: Body> WatchedBody<B> {
    /// Watches `inner`; `unread` is `None` where no lingering is needed
    /// (HTTP/2, whose streams end without closing the connection).
    pub(crate) fn new(inner: B, unread: Option<UnreadBody>) -> WatchedBody<B> {
        WatchedBody {
            inner,
            finished: false,
            unread,
        }
    }
}

impl<B> Body for WatchedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.finished = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for WatchedBody<B> {
    fn drop(&mut self) {
        if let Some(unread) = &self.unread {
            if !self.finished && !self.inner.is_end_stream() {
                unread.set();
            }
        }
    }
}

/// A connection's stream whose shutdown lingers when its latest request
/// body was left unread; reads and writes pass straight through.
pub(crate) struct LingeringStream<S> {
    stream: S,
    unread: UnreadBody,
    stop: Option<watch::Receiver<()>>,
    shutdown: Shutdown,
}

enum Shutdown {
    /// Not asked yet.
    Open,
    /// The FIN is sent; reading what the client still sends.
    Lingering(Box<Drain>),
    /// Done: nothing more to do.
    Closed,
}

impl<S> LingeringStream<S> {
    /// Wraps `stream`; `stop` (the server's shutdown signal) cuts a
    /// lingering close short.
    pub(crate) fn new(
        stream: S,
        unread: UnreadBody,
        stop: watch::Receiver<()>,
    ) -> LingeringStream<S> {
        LingeringStream {
            stream,
            unread,
            stop: Some(stop),
            shutdown: Shutdown::Open,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LingeringStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    /// Sends the FIN (after everything written), then, if a request body
    /// was left unread, drains the client within [`BOUNDS`].
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.shutdown {
                Shutdown::Open => {
                    std::task::ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
                    this.shutdown = match this.stop.take() {
                        Some(stop) if this.unread.get() => {
                            Shutdown::Lingering(Box::new(Drain::new(BOUNDS, stop)))
                        }
                        _ => Shutdown::Closed,
                    };
                }
                Shutdown::Lingering(drain) => {
                    let end = std::task::ready!(drain.poll_drain(&mut this.stream, cx));
                    tracing::debug!(?end, bytes = drain.read, "lingering close done");
                    this.shutdown = Shutdown::Closed;
                }
                Shutdown::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// Why a lingering close stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DrainEnd {
    /// The client closed (the usual end).
    Eof,
    /// The read failed (a reset, typically).
    Error,
    /// [`Bounds::bytes`] were read.
    Bytes,
    /// [`Bounds::time`] passed.
    Time,
    /// Nothing arrived for [`Bounds::idle`].
    Idle,
    /// The server is shutting down.
    Stopped,
}

/// Reads and discards until the client closes or a bound is reached.
pub(crate) struct Drain {
    bounds: Bounds,
    /// Bytes read and discarded so far.
    read: u64,
    deadline: Instant,
    /// Fires at the idle limit or the deadline, whichever comes first.
    timer: Pin<Box<Sleep>>,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Drain {
    pub(crate) fn new(bounds: Bounds, mut stop: watch::Receiver<()>) -> Drain {
        let now = Instant::now();
        let deadline = now + bounds.time;
        Drain {
            bounds,
            read: 0,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline.min(now + bounds.idle))),
            stop: Box::pin(async move {
                // A send, or the sender gone: either way the server stops.
                let _ = stop.changed().await;
            }),
        }
    }

    /// Polls the drain of `reader` to its end.
    pub(crate) fn poll_drain<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<DrainEnd> {
        if self.stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(DrainEnd::Stopped);
        }
        let mut scratch = [0u8; 16 * 1024];
        // A bounded number of reads per poll, so a fast sender cannot keep
        // this task from yielding.
        for _ in 0..64 {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    return Poll::Ready(DrainEnd::Eof)
                }
                Poll::Ready(Ok(())) => {
                    self.read += buf.filled().len() as u64;
                    if self.read >= self.bounds.bytes {
                        return Poll::Ready(DrainEnd::Bytes);
                    }
                    let now = Instant::now();
                    if now >= self.deadline {
                        return Poll::Ready(DrainEnd::Time);
                    }
                    let idle_until = self.deadline.min(now + self.bounds.idle);
                    self.timer.as_mut().reset(idle_until);
                }
                Poll::Ready(Err(_)) => return Poll::Ready(DrainEnd::Error),
                Poll::Pending => {
                    return match self.timer.as_mut().poll(cx) {
                        Poll::Ready(()) if Instant::now() >= self.deadline => {
                            Poll::Ready(DrainEnd::Time)
                        }
                        Poll::Ready(()) => Poll::Ready(DrainEnd::Idle),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const SHORT: Bounds = Bounds {
        bytes: 1 << 20,
        time: Duration::from_millis(600),
        idle: Duration::from_millis(200),
    };

    /// Drains `reader` within `bounds`: why it stopped, bytes read, time taken.
    async fn drain<R: AsyncRead + Unpin>(
        reader: &mut R,
        bounds: Bounds,
        stop: watch::Receiver<()>,
    ) -> (DrainEnd, u64, Duration) {
        let started = std::time::Instant::now();
        let mut drain = Drain::new(bounds, stop);
        let end = std::future::poll_fn(|cx| drain.poll_drain(reader, cx)).await;
        (end, drain.read, started.elapsed())
    }

    #[tokio::test]
    async fn ends_when_the_client_closes() {
        let (_stop_tx, stop) = watch::channel(());
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            client.write_all(&vec![7u8; 300_000]).await.unwrap();
            client.shutdown().await.unwrap();
        });
        let (end, read, _) = drain(&mut server, SHORT, stop).await;
        writer.await.unwrap();
        assert_eq!((end, read), (DrainEnd::Eof, 300_000));
    }

    #[tokio::test]
    async fn stops_at_the_byte_bound_of_an_endless_sender() {
        let (_stop_tx, stop) = watch::channel(());
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            let block = vec![0u8; 8192];
            while client.write_all(&block).await.is_ok() {}
        });
        let (end, read, took) = drain(&mut server, SHORT, stop).await;
        assert_eq!(end, DrainEnd::Bytes);
        assert!(
            (SHORT.bytes..SHORT.bytes + 16 * 1024).contains(&read),
            "{read}"
        );
        assert!(took < SHORT.time, "{took:?}");
        drop(server);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn stops_at_the_time_bound_of_a_trickle() {
        let (_stop_tx, stop) = watch::channel(());
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            // One byte every 20 ms: never idle for long, never many bytes.
            while client.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let (end, read, took) = drain(&mut server, SHORT, stop).await;
        assert_eq!(end, DrainEnd::Time);
        assert!(read > 0 && read < 100, "{read}");
        assert!(
            took >= SHORT.time && took < SHORT.time + Duration::from_millis(500),
            "{took:?}"
        );
        drop(server);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn stops_when_the_client_goes_quiet() {
        let (_stop_tx, stop) = watch::channel(());
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(b"some bytes, then silence").await.unwrap();
        let (end, read, took) = drain(&mut server, SHORT, stop).await;
        assert_eq!((end, read), (DrainEnd::Idle, 24));
        assert!(took >= SHORT.idle && took < SHORT.time, "{took:?}");
        drop(client);
    }

    #[tokio::test]
    async fn stops_when_the_server_shuts_down() {
        let (stop_tx, stop) = watch::channel(());
        let (_client, mut server) = tokio::io::duplex(64 * 1024);
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stop_tx.send(()).unwrap();
            stop_tx
        });
        let (end, _, took) = drain(&mut server, SHORT, stop).await;
        assert_eq!(end, DrainEnd::Stopped);
        assert!(took < SHORT.idle, "{took:?}");
        drop(stopper.await.unwrap());
    }

    #[test]
    fn a_body_dropped_before_its_end_marks_the_connection() {
        use http_body_util::{BodyExt, Full};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let unread = UnreadBody::default();
        // Read to its end: nothing to linger for.
        let body = WatchedBody::new(Full::new(Bytes::from_static(b"abc")), Some(unread.clone()));
        runtime.block_on(body.collect()).unwrap();
        assert!(!unread.get());
        // Dropped unread: the connection must linger.
        drop(WatchedBody::new(
            Full::new(Bytes::from_static(b"abc")),
            Some(unread.clone()),
        ));
        assert!(unread.get());
        unread.clear();
        // An empty body is never unread.
        drop(WatchedBody::new(
            Full::new(Bytes::new()),
            Some(unread.clone()),
        ));
        assert!(!unread.get());
        // Unwatched (HTTP/2): nothing marked.
        drop(WatchedBody::new(
            Full::new(Bytes::from_static(b"abc")),
            None,
        ));
        assert!(!unread.get());
    }
}
