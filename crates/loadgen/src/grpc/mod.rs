//! KServe v2 over gRPC (`--api kserve-v2-grpc`), the protocol Triton
//! serves on its port 8001 and the only one its decoupled (streaming LLM)
//! models answer on.
//!
//! gRPC is not a body format on an HTTP/1.1 connection, so it is not an
//! [`crate::api::Api`]: the engine carries its calls on a link of their
//! own ([`crate::engine::Link::Grpc`]), and everything around the engine
//! (closed and open loop, the micro-batcher, rows, summary, the server's
//! statistics) stays the same.
//!
//! - [`channel`]: the transport. HTTP/2 connections opened by hand (TCP,
//!   then TLS with ALPN `h2` from the run's `--cacert`, `--insecure`,
//!   `--cert`, `--key`, then the HTTP/2 handshake), so set-up is timed
//!   (`connect_ms`, `tls_ms`) and `--connection per-request` really opens
//!   one per call; pooled, one multiplexed connection carries every call.
//!   tonic's generated client runs over it (tonic's own transport is not
//!   built), and what goes wrong on the way is a gRPC status.
//! - [`kserve`]: the calls. Before the load `ServerReady`, `ModelReady`,
//!   `ModelMetadata` and `ModelConfig` settle the tensors with the checks
//!   and defaults of the HTTP API; then `ModelInfer` (items stacked along
//!   dimension 0), or `ModelStreamInfer` with `--streaming`, every response
//!   a token; `ModelStatistics` for `--server-stats`.
//!
//! A call that does not end OK is a row whose error is the status's kind,
//! `grpc_<code>` (`grpc_unavailable`, `grpc_invalid_argument`,
//! `grpc_deadline_exceeded`, ...), then `: ` and the server's message.
//! Failures before any stream exists keep the transport's kinds
//! (`connect_refused`, `tls_unknown_issuer`, ...), as over HTTP.

pub(crate) mod channel;
pub(crate) mod kserve;

pub(crate) use kserve::KServeGrpc;
pub use kserve::KServeGrpcOptions;
