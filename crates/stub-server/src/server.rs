//! Accepting connections, graceful shutdown, and running a server on its own
//! runtime for tests and tools.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::{ConfigError, ServerConfig};
use crate::http::App;
use crate::linger::{LingeringStream, UnreadBody, WatchedBody};
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;

/// Largest request head or HTTP/2 header list accepted, in bytes.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Most bytes of an unread request body a connection reads and discards
/// before it closes, after answering without reading it (a 413): see
/// [`LINGER_MAX_TIME`].
pub const LINGER_MAX_BYTES: u64 = 64 << 20;

/// Longest a connection keeps reading and discarding an unread request
/// body after its answer (a lingering close, as nginx's), so a client that
/// writes its whole body before reading gets to read the answer rather than
/// a reset; it stops sooner at [`LINGER_MAX_BYTES`], after 2 s without
/// data, when the client closes, or when the server shuts down.
pub const LINGER_MAX_TIME: Duration = Duration::from_secs(10);

/// How long shutdown waits for in-flight requests before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration failed [`ServerConfig::validate`].
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Setting up the listener, runtime or server thread failed.
    #[error("cannot start the server: {0}")]
    Io(#[from] std::io::Error),
}

/// How many connections the kernel may hold for the server before it
/// accepts them. The standard library (and so tokio) listens with 128: a
/// load test that opens 1,000 connections at once overflows that queue,
/// the kernel drops the SYNs it cannot hold, and those clients retry a
/// second later, which showed as a TTFT P99 of 1.1 s at 1,000 streams
/// that was the listen queue's, not the server's. Real servers listen
/// with far more (nginx 511, uvicorn 2048); Linux caps the value at
/// `net.core.somaxconn`.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds `addr` for the server, non-blocking, listening with
/// [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    let listen = || -> std::io::Result<std::net::TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        // As the standard library does, so a restarted server can bind at
        // once.
        #[cfg(unix)]
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    listen().map_err(|source| ServerError::Bind { addr, source })
}

/// Serves `config` on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish (up to 30 s) and returns.
/// With `config.grpc_bind`, it binds that address too and serves KServe v2
/// over gRPC there ([`serve_with_grpc`]).
pub async fn serve(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    let grpc = match config.grpc_bind {
        Some(addr) => Some(TcpListener::from_std(bind(addr)?)?),
        None => None,
    };
    serve_with_grpc(config, listener, grpc, shutdown).await
}

/// Like [`serve`], with the gRPC listener bound by the caller (or none),
/// `config.grpc_bind` aside: HTTP on `listener`, KServe v2 over gRPC on
/// `grpc`, both on the same queue, statistics and step loop, both stopped
/// by `shutdown`.
pub async fn serve_with_grpc(
    config: ServerConfig,
    listener: TcpListener,
    grpc: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate()?;
    let metrics = Arc::new(Metrics::new());
    let (scheduler, dispatcher) = Scheduler::start(&config, metrics.clone())?;
    let config_llm = config.llm.clone();
    // vLLM labels its metrics with its (first) served model name.
    let model_name = config.models.first().cloned().unwrap_or_default();
    let app = Arc::new(App {
        faults: crate::faults::FaultInjector::new(&config.faults),
        config,
        scheduler: scheduler.clone(),
        metrics,
        kserve_stats: crate::kserve::Stats::default(),
        llm: crate::llm::LlmEngine::start(config_llm, &model_name)?,
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Explicit bounds on what a client can make us buffer: request heads
    // (HTTP/1.1) and header lists (HTTP/2) beyond 64 KiB are refused.
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(4096)
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let (stop_tx, stop_rx) = watch::channel(());
    // The gRPC listener and its connections hold receivers too, so the
    // drain below waits for them as for HTTP connections.
    if let Some(grpc) = grpc {
        tokio::spawn(crate::grpc::accept_loop(grpc, app.clone(), stop_rx.clone()));
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    tokio::spawn(serve_connection(stream, builder.clone(), app.clone(), stop_rx.clone()));
                }
                Err(e) => {
                    // Typically out of file descriptors: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    drop(stop_rx);
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(());
    if tokio::time::timeout(SHUTDOWN_GRACE, stop_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            "in-flight requests did not finish within {SHUTDOWN_GRACE:?}; dropping them"
        );
    }
    scheduler.close();
    let _ = dispatcher.await;
    tracing::info!("stopped");
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    builder: auto::Builder<TokioExecutor>,
    app: Arc<App>,
    mut stop: watch::Receiver<()>,
) {
    // Small responses must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    // An HTTP/1 request answered before its body was read (a 413) leaves
    // the rest of the body coming: the connection then closes lingering,
    // so the client reads the answer instead of a reset.
    let unread = UnreadBody::default();
    let stream = LingeringStream::new(stream, unread.clone(), stop.clone());
    let service = service_fn(move |request: Request<Incoming>| {
        let app = app.clone();
        unread.clear();
        let watch = (request.version() < Version::HTTP_2).then(|| unread.clone());
        let request = request.map(|body| WatchedBody::new(body, watch));
        async move { Ok::<_, Infallible>(app.handle(request).await) }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error during shutdown");
            }
        }
    }
}

/// A server running on its own runtime in its own OS thread.
///
/// Stops gracefully on [`RunningServer::shutdown`] or when dropped.
#[derive(Debug)]
pub struct RunningServer {
    /// The address it listens on (the real port when port 0 was asked for).
    pub addr: SocketAddr,
    /// The gRPC address, with [`ServerConfig::grpc_bind`].
    pub grpc_addr: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

impl RunningServer {
    /// The inference endpoint, `http://ADDR/v1/infer`.
    pub fn url(&self) -> String {
        format!("http://{}/v1/infer", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish and joins the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "server ended with an error"),
                Err(_) => tracing::warn!("server thread panicked"),
            }
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Binds `config.bind` (and `config.grpc_bind`) and runs the server on a
/// dedicated multi-thread runtime in its own OS thread, so it never shares
/// a runtime with the client under test. Returns once the sockets are
/// listening.
pub fn spawn(config: ServerConfig) -> Result<RunningServer, ServerError> {
    config.validate()?;
    let std_listener = bind(config.bind)?;
    let addr = std_listener.local_addr()?;
    let grpc_listener = match config.grpc_bind {
        Some(grpc_addr) => Some(bind(grpc_addr)?),
        None => None,
    };
    let grpc_addr = grpc_listener
        .as_ref()
        .map(std::net::TcpListener::local_addr)
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stub-server")
        .build()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("stub-server {addr}"))
        .spawn(move || {
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener)?;
                let grpc = grpc_listener.map(TcpListener::from_std).transpose()?;
                serve_with_grpc(config, listener, grpc, async move {
                    let _ = stop_rx.await;
                })
                .await
            })
        })?;
    Ok(RunningServer {
        addr,
        grpc_addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With std's backlog of 128, the kernel drops the SYNs of every
    /// connection past the 129th that the server has not accepted yet,
    /// and those clients wait a second for their retry. `bind` holds
    /// many more: 600 connections complete their handshakes while
    /// nothing accepts them.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_listen_queue_holds_hundreds_of_connections_not_yet_accepted() {
        let listener = bind("127.0.0.1:0".parse().expect("an address")).expect("bind");
        let addr = listener.local_addr().expect("local address");
        let mut held = Vec::new();
        for i in 0..600 {
            // A dropped SYN is retried after a second: half of that means
            // the queue was full.
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(stream) => held.push(stream),
                Err(e) => panic!("connection {i} did not complete while nothing accepted: {e}"),
            }
        }
        assert_eq!(held.len(), 600);
        drop(listener);
    }
}
