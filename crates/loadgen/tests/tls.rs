//! https end to end over loopback: an in-test rustls server whose
//! certificates are made here (rcgen), against loadgen's TLS client.
//! Each failure case checks the exact error kind every row gets.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use loadgen::{ConnectionMode, LoadConfig, TlsOptions};
use model::output::expected_output;
use model::wire::{to_json_bytes, BatchResponse, InferRequest, SingleResponse};
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncReadExt;

/// A CA and the key it signs with.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    /// A leaf for `names` (DNS names or IP addresses), valid now unless
    /// `expired`.
    fn leaf(&self, names: &[&str], expired: bool) -> (Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        (params.signed_by(&key, &self.cert, &self.key).unwrap(), key)
    }

    fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.cert.pem()).unwrap();
        path
    }
}

fn der(cert: &Certificate) -> CertificateDer<'static> {
    cert.der().clone()
}

fn key_der(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// How the test server is set up.
struct ServerSetup {
    cert: Certificate,
    key: KeyPair,
    alpn: Vec<&'static str>,
    /// Require a client certificate signed by this CA.
    client_ca: Option<CertificateDer<'static>>,
}

/// Requests the server answered, by HTTP version.
#[derive(Default)]
struct Seen {
    http1: AtomicU64,
    h2: AtomicU64,
    /// TLS sessions that were resumed rather than negotiated in full.
    resumed: AtomicU64,
}

struct TlsServer {
    port: u16,
    seen: Arc<Seen>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsServer {
    fn url(&self, host: &str) -> String {
        format!("https://{host}:{}/v1/infer", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(setup: ServerSetup) -> TlsServer {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match setup.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(vec![der(&setup.cert)], key_der(&setup.key))
        .unwrap();
    config.alpn_protocols = setup.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let counts = seen.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let (tcp, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => return,
                };
                let acceptor = acceptor.clone();
                let counts = counts.clone();
                tokio::spawn(async move {
                    let tls = match acceptor.accept(tcp).into_fallible().await {
                        Ok(tls) => tls,
                        Err((_, mut tcp)) => {
                            // Read what the client still sends until it
                            // closes: closing with unread bytes would reset
                            // the connection, and the reset could overtake
                            // the alert that tells the client why.
                            let mut sink = [0u8; 4096];
                            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
                            return;
                        }
                    };
                    if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                        counts.resumed.fetch_add(1, Ordering::SeqCst);
                    }
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let counts = counts.clone();
                        async move {
                            let slot = if req.version() == hyper::Version::HTTP_2 {
                                &counts.h2
                            } else {
                                &counts.http1
                            };
                            slot.fetch_add(1, Ordering::SeqCst);
                            let body = req.into_body().collect().await?.to_bytes();
                            Ok::<_, hyper::Error>(answer(&body))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    TlsServer {
        port,
        seen,
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// The simulator's answer, so loadgen verifies every output.
fn answer(body: &[u8]) -> hyper::Response<Full<Bytes>> {
    let Ok(request) = InferRequest::parse(body) else {
        return hyper::Response::builder()
            .status(400)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
    };
    let model = request.model().to_owned();
    let mut outputs: Vec<String> = request
        .inputs()
        .iter()
        .map(|i| expected_output(&model, i))
        .collect();
    let json = match request {
        InferRequest::Single(_) => to_json_bytes(&SingleResponse {
            model,
            output: outputs.pop().unwrap_or_default(),
        }),
        InferRequest::Batch(_) => to_json_bytes(&BatchResponse { model, outputs }),
    };
    hyper::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json)))
        .unwrap()
}

fn server_for(ca: &Ca, names: &[&str], expired: bool) -> TlsServer {
    let (cert, key) = ca.leaf(names, expired);
    serve(ServerSetup {
        cert,
        key,
        alpn: vec!["h2", "http/1.1"],
        client_ca: None,
    })
}

/// 12 requests at concurrency 3 against `url` with `tls`, logged in `dir`.
fn config(url: &str, dir: &Path, tls: TlsOptions, connection: ConnectionMode) -> LoadConfig {
    LoadConfig {
        requests: Some(12),
        concurrency: 3,
        connection,
        tls,
        ..common::config(url, dir)
    }
}

async fn run(config: LoadConfig) -> (loadgen::RunSummary, Vec<model::log::LogRow>) {
    let log = config.log_path.clone().unwrap();
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    (summary, model::log::read_log_file(&log).unwrap().rows)
}

fn trusting(ca_pem: &Path) -> TlsOptions {
    TlsOptions {
        cacert: Some(ca_pem.to_owned()),
        ..TlsOptions::default()
    }
}

/// Every row failed with `kind`, and the summary counts them.
fn all_failed_with(summary: &loadgen::RunSummary, rows: &[model::log::LogRow], kind: &str) {
    assert_eq!(summary.failed, 12, "{summary:?}");
    assert_eq!(summary.errors.get(kind), Some(&12), "{:?}", summary.errors);
    assert!(rows
        .iter()
        .all(|r| r.error == kind && !r.ok && r.status_code == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_with_cacert_and_timed_per_connection() {
    let dir = common::temp_dir("tls-ok");
    let ca = Ca::new("test CA");
    let ca_pem = ca.write(&dir);
    let server = server_for(&ca, &["localhost", "127.0.0.1"], false);
    for (host, connection) in [
        ("127.0.0.1", ConnectionMode::PerRequest),
        ("localhost", ConnectionMode::Pooled),
    ] {
        let c = config(&server.url(host), &dir, trusting(&ca_pem), connection);
        let (summary, rows) = run(c).await;
        assert_eq!((summary.succeeded, summary.failed), (12, 0), "{summary:?}");
        assert!(summary.verified);
        assert_eq!(summary.protocol, "HTTP/1.1 over TLS (ALPN http/1.1)");
        let verification = summary.tls_verification.as_deref().unwrap();
        assert!(
            verification.ends_with("+ 1 from --cacert"),
            "{verification}"
        );
        let handshakes = rows.iter().filter(|r| r.tls_ms.unwrap() > 0.0).count();
        match connection {
            // Every request paid a handshake of its own.
            ConnectionMode::PerRequest => assert_eq!(handshakes, 12),
            // At most one handshake per worker; reused connections log 0.
            ConnectionMode::Pooled => {
                assert!((1..=3).contains(&handshakes), "{handshakes}");
                assert!(rows.iter().all(|r| r.tls_ms.is_some()));
            }
        }
    }
    assert_eq!(server.seen.http1.load(Ordering::SeqCst), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_connections_resume_sessions_only_when_asked() {
    let dir = common::temp_dir("tls-resume");
    let ca = Ca::new("test CA");
    let ca_pem = ca.write(&dir);
    let server = server_for(&ca, &["127.0.0.1"], false);
    let url = server.url("127.0.0.1");
    let (summary, _) = run(config(
        &url,
        &dir,
        trusting(&ca_pem),
        ConnectionMode::PerRequest,
    ))
    .await;
    assert_eq!(summary.succeeded, 12);
    assert_eq!(
        server.seen.resumed.load(Ordering::SeqCst),
        0,
        "full handshakes, as input.py"
    );
    let resume = TlsOptions {
        resume: true,
        ..trusting(&ca_pem)
    };
    let (summary, _) = run(config(&url, &dir, resume, ConnectionMode::PerRequest)).await;
    assert_eq!(summary.succeeded, 12);
    // The first connections of the run negotiate in full (as many as run
    // at once); later ones resume the tickets they left.
    let resumed = server.seen.resumed.load(Ordering::SeqCst);
    assert!(resumed >= 6, "{resumed} of 12 resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_issuer_without_cacert_and_insecure_passes() {
    let dir = common::temp_dir("tls-issuer");
    let ca = Ca::new("private CA");
    let server = server_for(&ca, &["127.0.0.1"], false);
    let url = server.url("127.0.0.1");
    let c = config(&url, &dir, TlsOptions::default(), ConnectionMode::Pooled);
    let (summary, rows) = run(c).await;
    all_failed_with(&summary, &rows, "tls_unknown_issuer");
    // A failed handshake is timed too, and the summary says what to do.
    assert!(rows.iter().all(|r| r.tls_ms.is_some()));
    let why = summary.tls_first_failure.unwrap_or_default();
    assert!(why.contains("trust its CA with --cacert"), "{why}");

    let insecure = TlsOptions {
        insecure: true,
        ..TlsOptions::default()
    };
    let (summary, _) = run(config(&url, &dir, insecure, ConnectionMode::Pooled)).await;
    assert_eq!(summary.succeeded, 12, "{summary:?}");
    assert_eq!(
        summary.tls_verification.as_deref(),
        Some("NOT verified (--insecure)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_or_expired_is_refused() {
    let dir = common::temp_dir("tls-name");
    let ca = Ca::new("test CA");
    let ca_pem = ca.write(&dir);
    let other = server_for(&ca, &["other.example"], false);
    let c = config(
        &other.url("127.0.0.1"),
        &dir,
        trusting(&ca_pem),
        ConnectionMode::Pooled,
    );
    let (summary, rows) = run(c).await;
    all_failed_with(&summary, &rows, "tls_name_mismatch");

    let expired = server_for(&ca, &["127.0.0.1"], true);
    let c = config(
        &expired.url("127.0.0.1"),
        &dir,
        trusting(&ca_pem),
        ConnectionMode::Pooled,
    );
    let (summary, rows) = run(c).await;
    all_failed_with(&summary, &rows, "tls_expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_served_as_the_leaf_is_a_handshake_failure_with_a_hint() {
    let dir = common::temp_dir("tls-ca-leaf");
    // What `openssl req -x509` makes: self-signed, CA:TRUE, the host's name.
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let ca_pem = dir.join("self-signed.pem");
    std::fs::write(&ca_pem, cert.pem()).unwrap();
    let server = serve(ServerSetup {
        cert,
        key,
        alpn: vec!["http/1.1"],
        client_ca: None,
    });
    let c = config(
        &server.url("127.0.0.1"),
        &dir,
        trusting(&ca_pem),
        ConnectionMode::Pooled,
    );
    let (summary, rows) = run(c).await;
    all_failed_with(&summary, &rows, "tls_handshake");
    let why = summary.tls_first_failure.unwrap_or_default();
    assert!(why.contains("presents a CA certificate"), "{why}");
}

/// A self-signed leaf, CA:FALSE, named `CN=localhost` and valid for
/// `localhost` and 127.0.0.1, with a key of `alg`: what `openssl req -x509
/// -subj /CN=localhost -addext basicConstraints=critical,CA:FALSE` makes.
fn self_signed_leaf(alg: &'static rcgen::SignatureAlgorithm) -> (Certificate, KeyPair) {
    let key = KeyPair::generate_for(alg).unwrap();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let mut params = CertificateParams::new(names).unwrap();
    params.is_ca = IsCa::ExplicitNoCa;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.self_signed(&key).unwrap();
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_self_signed_leaf_is_an_unknown_issuer() {
    let dir = common::temp_dir("tls-self-signed");
    let (cert, key) = self_signed_leaf(&rcgen::PKCS_ECDSA_P256_SHA256);
    let leaf_pem = dir.join("leaf.pem");
    std::fs::write(&leaf_pem, cert.pem()).unwrap();
    let server = serve(ServerSetup {
        cert,
        key,
        alpn: vec!["http/1.1"],
        client_ca: None,
    });
    let url = server.url("localhost");
    // Trusted: another self-signed certificate of the same name, with a key
    // of the same type and of another type (as Debian's RSA snakeoil
    // `CN=localhost` in the platform store is to an ECDSA leaf); and the
    // platform's roots alone.
    let mut trusts = Vec::new();
    for (name, alg) in [
        ("same-name-p256.pem", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("same-name-ed25519.pem", &rcgen::PKCS_ED25519),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, self_signed_leaf(alg).0.pem()).unwrap();
        trusts.push(trusting(&path));
    }
    trusts.push(TlsOptions::default());
    for tls in trusts {
        let c = config(&url, &dir, tls.clone(), ConnectionMode::Pooled);
        let (summary, rows) = run(c).await;
        all_failed_with(&summary, &rows, "tls_unknown_issuer");
        let why = summary.tls_first_failure.unwrap_or_default();
        assert!(
            why.contains("pass the certificate itself"),
            "{:?}: {why}",
            tls.cacert
        );
    }
    // What the hint says works: the certificate itself as the CA.
    let c = config(&url, &dir, trusting(&leaf_pem), ConnectionMode::Pooled);
    let (summary, _) = run(c).await;
    assert_eq!((summary.succeeded, summary.failed), (12, 0), "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_is_negotiated_by_alpn_and_required_with_http2() {
    let dir = common::temp_dir("tls-h2");
    let ca = Ca::new("test CA");
    let ca_pem = ca.write(&dir);
    let server = server_for(&ca, &["127.0.0.1"], false);
    let mut c = config(
        &server.url("127.0.0.1"),
        &dir,
        trusting(&ca_pem),
        ConnectionMode::Pooled,
    );
    c.http2 = true;
    let (summary, rows) = run(c).await;
    assert_eq!(summary.succeeded, 12, "{summary:?}");
    assert_eq!(summary.protocol, "HTTP/2 over TLS (ALPN h2, required)");
    assert_eq!(server.seen.h2.load(Ordering::SeqCst), 12);
    assert_eq!(server.seen.http1.load(Ordering::SeqCst), 0);
    // One shared connection: one handshake.
    assert_eq!(rows.iter().filter(|r| r.tls_ms.unwrap() > 0.0).count(), 1);

    // A server that speaks only HTTP/1.1 cannot satisfy --http2.
    let (cert, key) = ca.leaf(&["127.0.0.1"], false);
    let http1_only = serve(ServerSetup {
        cert,
        key,
        alpn: vec!["http/1.1"],
        client_ca: None,
    });
    let mut c = config(
        &http1_only.url("127.0.0.1"),
        &dir,
        trusting(&ca_pem),
        ConnectionMode::Pooled,
    );
    c.http2 = true;
    let (summary, rows) = run(c).await;
    all_failed_with(&summary, &rows, "tls_handshake");
    assert_eq!(http1_only.seen.http1.load(Ordering::SeqCst), 0);
    assert!(summary.tls_first_failure.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepted_with_a_client_certificate_and_refused_without() {
    let dir = common::temp_dir("tls-mtls");
    let ca = Ca::new("server CA");
    let ca_pem = ca.write(&dir);
    let clients = Ca::new("client CA");
    let (client_cert, client_key) = clients.leaf(&["loadgen-client"], false);
    let cert_path = dir.join("client.pem");
    let key_path = dir.join("client.key");
    std::fs::write(&cert_path, client_cert.pem()).unwrap();
    std::fs::write(&key_path, client_key.serialize_pem()).unwrap();
    let (cert, key) = ca.leaf(&["127.0.0.1"], false);
    let server = serve(ServerSetup {
        cert,
        key,
        alpn: vec!["http/1.1"],
        client_ca: Some(der(&clients.cert)),
    });
    let url = server.url("127.0.0.1");
    let with_cert = TlsOptions {
        client_cert: Some(cert_path.clone()),
        client_key: Some(key_path.clone()),
        ..trusting(&ca_pem)
    };
    let (summary, _) = run(config(&url, &dir, with_cert, ConnectionMode::PerRequest)).await;
    assert_eq!(summary.succeeded, 12, "{summary:?}");

    let (summary, rows) = run(config(
        &url,
        &dir,
        trusting(&ca_pem),
        ConnectionMode::PerRequest,
    ))
    .await;
    all_failed_with(&summary, &rows, "tls_handshake");

    // A certificate from a CA the server does not trust is refused too.
    let strangers = Ca::new("unknown CA");
    let (stranger, stranger_key) = strangers.leaf(&["someone"], false);
    std::fs::write(&cert_path, stranger.pem()).unwrap();
    std::fs::write(&key_path, stranger_key.serialize_pem()).unwrap();
    let wrong_cert = TlsOptions {
        client_cert: Some(cert_path),
        client_key: Some(key_path),
        ..trusting(&ca_pem)
    };
    let (summary, rows) = run(config(&url, &dir, wrong_cert, ConnectionMode::PerRequest)).await;
    all_failed_with(&summary, &rows, "tls_handshake");
    assert_eq!(server.seen.http1.load(Ordering::SeqCst), 12);
}

#[test]
fn the_binary_says_where_it_connects_and_how() {
    let dir = common::temp_dir("tls-bin");
    let ca = Ca::new("test CA");
    let server = server_for(&ca, &["127.0.0.1"], false);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--url",
            &server.url("127.0.0.1"),
            "-n",
            "4",
            "-c",
            "2",
            "-k",
        ])
        .args(["--json".as_ref(), dir.join("s.json").as_os_str()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}{stdout}");
    let port = server.port;
    assert!(
        stderr.contains(&format!(
            "loadgen: target: https://127.0.0.1:{port}/v1/infer -> 127.0.0.1:{port}\n"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("loadgen: protocol: HTTP/1.1 over TLS (ALPN http/1.1)\n"));
    assert!(stderr.contains("loadgen: TLS: server certificate NOT verified (--insecure)\n"));
    assert!(stdout.contains("TLS: server certificate NOT verified (--insecure)"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("s.json")).unwrap()).unwrap();
    assert_eq!(json["tls_verification"], "NOT verified (--insecure)");
    assert_eq!(
        json["resolved"],
        serde_json::json!([format!("127.0.0.1:{port}")])
    );
}
