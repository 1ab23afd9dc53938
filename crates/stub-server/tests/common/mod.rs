//! Shared helpers of the integration tests: configs, a real HTTP client over
//! loopback, and a lock that keeps timing-sensitive tests from overlapping.

#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use model::wire::{ServerTiming, BATCH_SIZE_HEADER, SERVER_TIMING_HEADER};
use stub_server::{RunningServer, ServerConfig, ServiceTimeModel};

/// Timing tests share two cores with everything else; running them one at a
/// time keeps their tolerances honest.
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) async fn timing_lock() -> tokio::sync::MutexGuard<'static, ()> {
    TIMING.lock().await
}

/// A zero-cost config on a free loopback port.
pub(crate) fn config() -> ServerConfig {
    let mut c = ServerConfig::profile("zero-cost").unwrap();
    c.bind = "127.0.0.1:0".parse().unwrap();
    c
}

/// A deterministic config: `workers` workers, `base_ms` + `per_item_ms` per batch, no jitter.
pub(crate) fn timed_config(workers: usize, base_ms: f64, per_item_ms: f64) -> ServerConfig {
    ServerConfig {
        workers,
        service: ServiceTimeModel {
            base_ms,
            per_item_ms,
            jitter: 0.0,
            seed: 1,
        },
        ..config()
    }
}

pub(crate) fn start(config: ServerConfig) -> RunningServer {
    stub_server::spawn(config).unwrap()
}

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub(crate) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub(crate) fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub(crate) fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub(crate) fn timing(&self) -> ServerTiming {
        let value = self
            .headers
            .get(SERVER_TIMING_HEADER)
            .expect("Server-Timing header");
        ServerTiming::parse(value.to_str().unwrap())
    }

    pub(crate) fn infer_ms(&self) -> f64 {
        self.timing().infer_ms.expect("infer dur")
    }

    pub(crate) fn queue_ms(&self) -> f64 {
        self.timing().queue_ms.expect("queue dur")
    }

    pub(crate) fn batch_size(&self) -> usize {
        let value = self
            .headers
            .get(BATCH_SIZE_HEADER)
            .expect("X-Batch-Size header");
        value.to_str().unwrap().parse().unwrap()
    }
}

/// Sends one request, failing the test after 10 s rather than hanging.
pub(crate) async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: impl Into<Bytes>,
) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap();
    let exchange = async {
        let response = client.request(request).await.expect("response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("request hung")
}

pub(crate) async fn post(client: &HttpClient, url: &str, body: impl Into<Bytes>) -> Reply {
    send(client, Method::POST, url, body).await
}

pub(crate) async fn get(client: &HttpClient, url: &str) -> Reply {
    send(client, Method::GET, url, Bytes::new()).await
}

pub(crate) fn single(input: &str) -> String {
    serde_json::json!({"model": "example-model", "input": input}).to_string()
}

pub(crate) fn batch(inputs: &[String]) -> String {
    serde_json::json!({"model": "example-model", "inputs": inputs}).to_string()
}

pub(crate) fn base_url(server: &RunningServer) -> String {
    format!("http://{}", server.addr)
}
