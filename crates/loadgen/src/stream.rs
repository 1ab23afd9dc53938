//! The byte stream under an HTTP connection: plain TCP or TLS over TCP,
//! one type so the lean HTTP/1.1 exchange and hyper's HTTP/2 run over
//! either without a generic parameter leaking into every caller.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A connected stream.
#[derive(Debug)]
pub(crate) enum Stream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://` (boxed: a TLS session is a few kilobytes).
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether an idle connection can still carry a request: the server
    /// may have closed it while it sat in a pool.
    ///
    /// Tokio's readiness flag cannot be trusted to say so: it is cleared
    /// by the read that took the last bytes of the previous response, and
    /// set again only when the reactor next turns. A client thread that
    /// goes straight from one response to the next request (the closed
    /// loop on a current-thread shard) does not turn it, so a close that
    /// arrived in between is still unknown. So when the flag says nothing
    /// is there, one non-blocking `MSG_PEEK` asks the kernel: an end of
    /// stream, an error or bytes nobody asked for make the connection
    /// unusable. When the flag says ready, a read tells a close (or
    /// unexpected bytes) from a stale flag. Over TLS the read goes through
    /// the session first, which consumes what a server may send an idle
    /// client (TLS 1.3 session tickets) and reports only application data
    /// or the end; then the socket must have nothing left.
    pub(crate) fn is_reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self {
            Self::Plain(tcp) => match tcp.poll_read_ready(&mut cx) {
                Poll::Pending => nothing_pending(tcp),
                Poll::Ready(Err(_)) => false,
                Poll::Ready(Ok(())) => {
                    let mut probe = [0u8; 1];
                    matches!(
                        tcp.try_read(&mut probe),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock
                    )
                }
            },
            Self::Tls(tls) => {
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                matches!(
                    Pin::new(&mut **tls).poll_read(&mut cx, &mut buf),
                    Poll::Pending
                ) && nothing_pending(tls.get_ref().0)
            }
        }
    }
}

/// Whether the kernel holds nothing to read on `tcp`, neither bytes nor an
/// end of stream nor an error: one non-blocking peek, whatever tokio's
/// readiness flag says.
fn nothing_pending(tcp: &TcpStream) -> bool {
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    // Tokio's sockets are non-blocking, so the peek returns at once.
    matches!(
        socket2::SockRef::from(tcp).peek(&mut probe),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    )
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}
