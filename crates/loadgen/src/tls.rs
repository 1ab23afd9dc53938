//! TLS through rustls: the client configuration a run's options describe,
//! the handshake, and the error kind of a failed one.
//!
//! Roots are the platform's store (`rustls-native-certs`) plus any
//! `--cacert` file, checked by rustls's WebPKI verifier, except that a
//! certificate whose named issuer is trusted but did not sign it (a
//! self-signed certificate named like a trusted one) is an unknown issuer
//! (see [`RootsVerifier`]); `--insecure` replaces verification with a verifier that
//! accepts any certificate (the handshake's signatures are still checked,
//! so the connection is still a working TLS connection); `--cert`/`--key`
//! present a client certificate (mutual TLS). The server name (SNI, and the
//! name the certificate must carry) is the URL's host; an IP literal is
//! matched against the certificate's IP addresses and sends no SNI.
//!
//! ALPN offers exactly one protocol: `h2` with `--http2` (which then
//! requires it), `http/1.1` otherwise, so the server never picks a
//! protocol the client did not mean to measure.
//!
//! Session resumption follows the connection mode: pooled connections may
//! resume a session (a reconnect after a server closed a keep-alive
//! connection is cheap, as in any pooling client), while a new connection
//! per request pays a full handshake each time, as `input.py`'s
//! client-per-request does, unless `--tls-resume` says to resume (what
//! wrk and oha do with a new connection per request).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::client::TransportError;

/// What a run asks of TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Extra trusted roots, PEM (`--cacert`).
    pub cacert: Option<PathBuf>,
    /// Accept any server certificate (`--insecure`).
    pub insecure: bool,
    /// Client certificate chain, PEM (`--cert`).
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key, PEM (`--key`).
    pub client_key: Option<PathBuf>,
    /// Resume TLS sessions on new connections even when every request opens
    /// one (`--tls-resume`); pooled connections always may.
    pub resume: bool,
}

/// Why the TLS configuration cannot be built; said before any request.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("{what} {path}: {reason}")]
    Pem {
        /// Which option named the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `--cert` without `--key` or the reverse.
    #[error("mutual TLS needs both --cert and --key")]
    HalfClientAuth,
    /// The host cannot be a TLS server name.
    #[error("{0:?} cannot be used as a TLS server name")]
    ServerName(String),
    /// rustls refused the configuration (e.g. a key that does not match).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// How server certificates are checked, for the summary and the start line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verification {
    /// Against these many roots: from the platform store, and from `--cacert`.
    Roots {
        /// Roots from the platform store.
        platform: usize,
        /// Roots from `--cacert`.
        cacert: usize,
    },
    /// Not at all (`--insecure`).
    Skipped,
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Roots { platform, cacert } => write!(
                f,
                "verified against {platform} platform roots + {cacert} from --cacert"
            ),
            Self::Skipped => write!(f, "NOT verified (--insecure)"),
        }
    }
}

/// Opens TLS sessions to one server.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    /// What rustls said of the first failed handshake: an error kind is
    /// coarse (`tls_handshake` covers a CA certificate served as a leaf as
    /// much as a protocol mismatch), and the run's summary says why.
    first_failure: Arc<OnceLock<String>>,
    /// How certificates are checked.
    pub verification: Verification,
    /// The one protocol ALPN offers.
    pub alpn: &'static str,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .field("verification", &self.verification)
            .field("alpn", &self.alpn)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// A client for `host` with `options`; `http2` makes ALPN offer (and
    /// the handshake require) `h2`; `resume` allows session resumption.
    pub(crate) fn new(
        options: &TlsOptions,
        host: &str,
        http2: bool,
        resume: bool,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let (builder, verification) = if options.insecure {
            let verifier = Arc::new(AcceptAnyCertificate { provider });
            (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier),
                Verification::Skipped,
            )
        } else {
            let (roots, platform, cacert) = roots(options.cacert.as_deref())?;
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(RootsVerifier { inner })),
                Verification::Roots { platform, cacert },
            )
        };
        let mut config = match (&options.client_cert, &options.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "--cert")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
                    what: "--key",
                    path: key.clone(),
                    reason: format!("no usable private key ({e})"),
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::Config(e.to_string()))?
            }
            _ => return Err(TlsError::HalfClientAuth),
        };
        let alpn = if http2 { "h2" } else { "http/1.1" };
        config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
        if !resume {
            config.resumption = Resumption::disabled();
        }
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| TlsError::ServerName(host.to_owned()))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            first_failure: Arc::new(OnceLock::new()),
            verification,
            alpn,
        })
    }

    /// Runs the handshake over `tcp`; a failure has a precise kind, and
    /// a handshake that did not agree on the protocol ALPN offered (a
    /// server without h2, under `--http2`) is `tls_handshake`.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, TransportError> {
        let stream = match self.connector.connect(self.server_name.clone(), tcp).await {
            Ok(stream) => stream,
            Err(e) => {
                let kind = classify_io(&e).unwrap_or(TransportError::TlsHandshake);
                self.first_failure.get_or_init(|| explain(&e));
                return Err(kind);
            }
        };
        if self.alpn == "h2" && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            self.first_failure.get_or_init(|| {
                "the server did not agree to h2 through ALPN (--http2 requires it)".into()
            });
            return Err(TransportError::TlsHandshake);
        }
        Ok(stream)
    }

    /// Notes a TLS failure found after the handshake (a server that
    /// refuses the client's certificate says so under TLS 1.3 only once
    /// the handshake is over), if none was noted before.
    pub(crate) fn note_failure(&self, err: &std::io::Error) {
        self.first_failure.get_or_init(|| explain(err));
    }

    /// Why the first failed handshake failed, if one did.
    pub(crate) fn first_failure(&self) -> Option<&str> {
        self.first_failure.get().map(String::as_str)
    }
}

/// rustls's words for a failed handshake, with a hint where the cause is
/// a common mistake.
fn explain(err: &std::io::Error) -> String {
    let text = err.to_string();
    let tls = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    match tls {
        // webpki's reason reaches rustls only as an opaque `Other` error.
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(_)))
            if text.contains("CaUsedAsEndEntity") =>
        {
            format!("{text}: the server presents a CA certificate (basicConstraints CA:TRUE, what `openssl req -x509` makes by default) as its own; issue it a leaf certificate, or add -addext basicConstraints=critical,CA:FALSE")
        }
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            format!("{text}: trust its CA with --cacert FILE.pem (a self-signed certificate is its own CA: pass the certificate itself), or skip verification with --insecure")
        }
        _ => text,
    }
}

/// The kind of a TLS failure carried inside an I/O error, or `None` when
/// the error is not TLS's (a reset, a plain EOF).
pub(crate) fn classify_io(err: &std::io::Error) -> Option<TransportError> {
    let tls = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(classify(tls))
}

/// The kind of a rustls error.
pub(crate) fn classify(err: &rustls::Error) -> TransportError {
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => TransportError::TlsUnknownIssuer,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TransportError::TlsNameMismatch
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                TransportError::TlsExpired
            }
            _ => TransportError::TlsHandshake,
        },
        _ => TransportError::TlsHandshake,
    }
}

/// The platform's roots plus the `--cacert` file's, and how many of each.
fn roots(cacert: Option<&Path>) -> Result<(RootCertStore, usize, usize), TlsError> {
    let mut store = RootCertStore::empty();
    // Certificates the platform store cannot parse are skipped: one bad
    // file in /etc/ssl/certs must not stop a run that names its own CA.
    let native = rustls_native_certs::load_native_certs();
    let (platform, _) = store.add_parsable_certificates(native.certs);
    let mut extra = 0;
    if let Some(path) = cacert {
        for cert in read_certs(path, "--cacert")? {
            store.add(cert).map_err(|e| TlsError::Pem {
                what: "--cacert",
                path: path.to_owned(),
                reason: format!("not a usable CA certificate ({e})"),
            })?;
            extra += 1;
        }
    }
    Ok((store, platform, extra))
}

/// Every certificate in a PEM file; none is an error.
fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Pem {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// rustls's WebPKI verification against the roots, with one error said as
/// what it means. webpki looks for a certificate's issuer by name: when a
/// trusted certificate carries that name but did not sign it, the signature
/// check against it fails (`BadSignature`, or, when its key is of another
/// type, an algorithm that does not fit the key). That is what a
/// self-signed server certificate gets whenever a trusted root has its
/// name (Debian's `ssl-cert-snakeoil` is `CN=localhost`, and so are most
/// self-signed test certificates): its issuer is not trusted, just as
/// when no trusted certificate has the name. So it is `UnknownIssuer`,
/// `tls_unknown_issuer`, in both cases. Signatures of the handshake itself
/// keep their errors.
#[derive(Debug)]
struct RootsVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for RootsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature
                    | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. },
                ) => rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// `--insecure`: any certificate is accepted; the handshake's signatures
/// are still verified with the provider's algorithms.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_have_their_kinds() {
        let cert = |e| classify(&rustls::Error::InvalidCertificate(e));
        assert_eq!(
            cert(CertificateError::UnknownIssuer),
            TransportError::TlsUnknownIssuer
        );
        assert_eq!(
            cert(CertificateError::NotValidForName),
            TransportError::TlsNameMismatch
        );
        assert_eq!(cert(CertificateError::Expired), TransportError::TlsExpired);
        assert_eq!(
            cert(CertificateError::Revoked),
            TransportError::TlsHandshake
        );
        assert_eq!(
            classify(&rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
            )),
            TransportError::TlsHandshake
        );
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::Expired),
        );
        assert_eq!(classify_io(&io), Some(TransportError::TlsExpired));
        assert_eq!(
            classify_io(&std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            None
        );
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap();
        let options = TlsOptions {
            cacert: Some(empty.clone()),
            ..TlsOptions::default()
        };
        let err = Tls::new(&options, "localhost", false, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--cacert ") && err.contains("no PEM certificate"),
            "{err}"
        );
        let options = TlsOptions {
            cacert: Some(dir.path().join("missing.pem")),
            ..TlsOptions::default()
        };
        assert!(Tls::new(&options, "localhost", false, true).is_err());
        let half = TlsOptions {
            client_cert: Some(empty),
            ..TlsOptions::default()
        };
        assert!(matches!(
            Tls::new(&half, "localhost", false, true),
            Err(TlsError::HalfClientAuth)
        ));
    }
}
