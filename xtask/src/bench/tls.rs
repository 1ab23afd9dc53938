//! The HTTPS comparison: nginx serving the static JSON over TLS 1.3 with a
//! self-signed certificate made at bench time, and `loadgen`, `wrk` and
//! `oha` against it twice, in interleaved rounds like every other
//! comparison: with keep-alive connections (what TLS adds to each request:
//! record encryption) and with a new connection per request (a full TLS
//! handshake per request, which dominates).
//!
//! Trust: `loadgen` verifies nginx's certificate against the generated one
//! (`--cacert`); `wrk` never verifies a certificate and `oha` is told not to
//! (`--insecure`), so if anything `loadgen` does more work per handshake.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::bars::{bar, Bar};
use super::clients::{self, Client, Load, Reuse};
use super::compare::{compare_clients, Comparison};
use super::nginx::Nginx;
use super::peers::Peers;
use super::pinning::Pinning;
use super::{Bins, TaskError};

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub(super) struct Certificate {
    /// The certificate (also what `loadgen --cacert` trusts: it is its own
    /// issuer).
    pub cert: PathBuf,
    /// Its private key, readable by its owner only.
    pub key: PathBuf,
}

impl Certificate {
    /// The names the certificate is valid for: the bench connects to
    /// 127.0.0.1; `localhost` for anyone trying the URL by name.
    const NAMES: [&'static str; 2] = ["localhost", "127.0.0.1"];

    /// Generates a self-signed certificate for [`Self::NAMES`] (rcgen's
    /// default key, ECDSA P-256) and writes `cert.pem` and `key.pem` into
    /// `dir`. A fresh key every bench run: nothing is kept or trusted
    /// beyond the run.
    pub(super) fn generate(dir: &Path) -> Result<Self, TaskError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TaskError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let names: Vec<String> = Self::NAMES.iter().map(|n| (*n).to_owned()).collect();
        let made = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TaskError::Step(format!("cannot make the TLS certificate: {e}")))?;
        let cert = dir.join("cert.pem");
        fs::write(&cert, made.cert.pem()).map_err(io(&cert))?;
        let key = dir.join("key.pem");
        // nginx's master reads the key before it drops root, so owner-only
        // is enough; a key in the shared temp directory should be no more.
        let mut file = private_file(&key).map_err(io(&key))?;
        file.write_all(made.key_pair.serialize_pem().as_bytes())
            .map_err(io(&key))?;
        Ok(Self { cert, key })
    }
}

/// Creates (or truncates) `path` with mode 0600 where the OS has modes.
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// A directory removed when this is dropped: the certificate's private key
/// is of no use after the run and should not linger in the temp directory.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        // Nothing to do about a failure here; the bench's result stands.
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The two regimes, as the other comparisons record theirs (`clients`,
/// `ratios`, ...), and how they were set up.
pub(super) struct Results {
    /// Keep-alive connections.
    pub keepalive: Comparison,
    /// A new connection per request.
    pub per_request: Comparison,
    /// The server and trust settings, for the record.
    pub settings: serde_json::Value,
}

/// Why `loadgen` is left out of the TLS rounds, if it is: a build without
/// TLS (e.g. an older one given with `--bin-dir`) has no `--cacert`.
const NO_CACERT: &str = "this loadgen build has no --cacert (no https support)";

/// Starts nginx over TLS on the server CPUs and runs both regimes against
/// it. `template` gives the connections, threads, duration, body and
/// scratch directory; the URL, server and connection settings are set here.
pub(super) fn measure(
    bins: &Bins,
    peers: &Peers,
    pin: &Pinning,
    template: &Load,
    nginx_bin: &Path,
    workers: usize,
    rounds: usize,
) -> Result<Results, TaskError> {
    // The same world-readable temp directory as the plaintext nginx (its
    // workers run as `nobody`), a directory of its own for the certificate.
    let dir = std::env::temp_dir().join(format!("latency-bench-nginx-tls-{}", std::process::id()));
    // Declared before nginx, so dropped (the directory and its key
    // removed) after nginx has stopped, on every path out of here.
    let _cleanup = RemovedOnDrop(dir.clone());
    let cert = Certificate::generate(&dir)?;
    pin.as_server();
    let nginx = Nginx::start(nginx_bin, &dir, workers, template.body, Some(&cert));
    pin.release();
    let nginx = nginx?;
    let with_loadgen = clients::loadgen_has_flag(&bins.loadgen, "--cacert");
    if !with_loadgen {
        println!("  loadgen left out of the TLS rounds: {NO_CACERT}");
    }
    // As in the plaintext rounds, loadgen also runs with busy polling where
    // connections are kept (it is what removes the server's wake-up cost);
    // with a new connection per request the handshake dominates, and both
    // variants would measure the same thing.
    let busy_poll = clients::loadgen_has_flag(&bins.loadgen, "--busy-poll-us");
    let clients_for = |reuse: Reuse| -> Vec<Client> {
        let mut clients = Vec::new();
        if with_loadgen {
            clients.push(Client::Loadgen);
            if busy_poll && reuse == Reuse::KeepAlive {
                clients.push(Client::LoadgenBusyPoll);
            }
        }
        clients.extend([Client::Wrk, Client::Oha]);
        clients
    };
    let regime = |reuse: Reuse, tag: &str| -> Result<Comparison, TaskError> {
        println!("throughput: nginx over TLS 1.3, {tag}, {workers} worker(s)");
        let load = Load {
            url: &nginx.url,
            server_pid: Some(nginx.pid()),
            cacert: Some(&cert.cert),
            reuse,
            ..*template
        };
        let mut v = compare_clients(bins, peers, pin, &load, rounds, tag, &clients_for(reuse))?;
        if !with_loadgen {
            v.loadgen_skipped = Some(NO_CACERT);
        }
        Ok(v)
    };
    let keepalive = regime(Reuse::KeepAlive, "tls-keepalive")?;
    let per_request = regime(Reuse::PerRequest, "tls-per-request")?;
    let settings = json!({
        "protocol": "TLSv1.3 only (nginx ssl_protocols TLSv1.3)",
        "certificate": format!(
            "self-signed, rcgen's default key (ECDSA P-256), for {}; made per bench run, removed after it",
            Certificate::NAMES.join(", ")
        ),
        "trust": {
            "loadgen": "--cacert CERT.pem (verifies)",
            "wrk": "no verification (wrk never verifies)",
            "oha": "--insecure (no verification)",
        },
        "per_request": {
            "loadgen": "--connection per-request --tls-resume (wrk and oha resume sessions too)",
            "wrk": "-H 'Connection: close' (nginx closes, wrk reconnects)",
            "oha": "--disable-keepalive",
        },
        "server_command": "nginx -p DIR -c DIR/nginx.conf (listen 127.0.0.1:PORT ssl; ssl_certificate, ssl_certificate_key)",
    });
    Ok(Results {
        keepalive,
        per_request,
        settings,
    })
}

/// The TLS bars, one per regime: `loadgen` not the slowest of the three.
/// `results` is `None` where nginx is missing.
pub(super) fn bars(results: Option<&Results>) -> Vec<Bar> {
    let regimes = [("keep-alive", "keepalive"), ("per-request", "per_request")];
    regimes
        .into_iter()
        .map(|(title, field)| {
            let name = format!("loadgen not the slowest of the three over TLS ({title})");
            let Some(results) = results else {
                return bar(&name, None, "nginx missing".into());
            };
            let v = if field == "keepalive" {
                &results.keepalive
            } else {
                &results.per_request
            };
            if let Some(why) = v.loadgen_skipped {
                return bar(&name, None, why.to_owned());
            }
            // Judged, as the plaintext bars are, on busy polling where it ran,
            // with the defaults' ratios reported beside them.
            let ours = v.judged_loadgen();
            let ratios: Vec<(String, Option<(f64, String)>)> = ["wrk", "oha"]
                .into_iter()
                .map(|peer| {
                    let pair = format!("{ours}/{peer}");
                    let ratio = v.paired_ratio(&pair);
                    (pair, ratio)
                })
                .collect();
            let medians: Vec<Option<f64>> = ratios
                .iter()
                .map(|(_, r)| r.as_ref().map(|r| r.0))
                .collect();
            let mut detail = ratios
                .iter()
                .map(|(pair, r)| {
                    let text = r.as_ref().map_or("missing", |r| r.1.as_str());
                    format!("{pair} = {text}")
                })
                .collect::<Vec<_>>()
                .join("; ");
            if ours != "loadgen" {
                for peer in ["wrk", "oha"] {
                    if let Some((_, text)) = v.paired_ratio(&format!("loadgen/{peer}")) {
                        detail.push_str(&format!("; defaults: loadgen/{peer} = {text}"));
                    }
                }
            }
            bar(
                &name,
                not_slowest(&medians),
                format!("{detail}; medians of per-round ratios, met when one is >= 1"),
            )
        })
        .collect()
}

/// Whether ours is not the slowest, from the median of its per-round req/s
/// ratios against each peer (`None` for a missing peer): met when it is at
/// least as fast as one peer present; `None` when no peer is.
fn not_slowest(ratios: &[Option<f64>]) -> Option<bool> {
    ratios
        .iter()
        .flatten()
        .map(|r| *r >= 1.0)
        .reduce(|a, b| a || b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadgen_is_the_slowest_only_below_every_peer() {
        assert_eq!(not_slowest(&[Some(0.9), Some(1.2)]), Some(true));
        assert_eq!(not_slowest(&[Some(1.0), Some(0.5)]), Some(true));
        assert_eq!(not_slowest(&[Some(0.9), Some(0.99)]), Some(false));
        assert_eq!(not_slowest(&[None, Some(0.8)]), Some(false));
        assert_eq!(not_slowest(&[None, None]), None);
    }

    fn comparison(wrk: f64, oha: Option<f64>) -> Comparison {
        let mut pairs = vec![("loadgen/wrk", wrk)];
        pairs.extend(oha.map(|oha| ("loadgen/oha", oha)));
        super::super::bars::tests::comparison(&pairs)
    }

    #[test]
    fn one_bar_per_regime_judged_on_the_paired_ratios() {
        let results = Results {
            keepalive: comparison(0.97, Some(1.4)),
            per_request: comparison(0.8, None),
            settings: json!({}),
        };
        let bars = bars(Some(&results));
        assert_eq!(bars.len(), 2);
        assert_eq!(
            bars[0].bar,
            "loadgen not the slowest of the three over TLS (keep-alive)"
        );
        assert_eq!(bars[0].met, Some(true));
        assert_eq!(bars[1].met, Some(false));
        let detail = &bars[1].detail;
        assert!(detail.contains("loadgen/oha = missing"), "{detail}");
        assert!(super::bars(None).iter().all(|b| b.met.is_none()));
    }

    #[test]
    fn a_loadgen_without_tls_leaves_the_bars_unmeasured() {
        let mut skipped = comparison(1.0, Some(1.0));
        skipped.loadgen_skipped = Some(NO_CACERT);
        let results = Results {
            keepalive: skipped.clone(),
            per_request: skipped,
            settings: json!({}),
        };
        for b in bars(Some(&results)) {
            assert!(b.met.is_none());
            assert_eq!(b.detail, NO_CACERT);
        }
    }

    /// Where nginx and curl are installed: nginx as configured here serves
    /// the body over TLS 1.3 to a client that verifies the generated
    /// certificate for 127.0.0.1, and refuses TLS 1.2.
    #[test]
    fn nginx_serves_tls_1_3_only_with_the_generated_certificate_where_installed() {
        let _children = super::super::accounting::child_processes_lock();
        let (Some(nginx_bin), Some(curl)) = (
            super::super::peers::find("nginx", &["-v"]).path,
            super::super::peers::find("curl", &["--version"]).path,
        ) else {
            return;
        };
        let dir = std::env::temp_dir().join(format!("xtask-tls-nginx-test-{}", std::process::id()));
        let cert = Certificate::generate(&dir).expect("certificate");
        let body = r#"{"output":"ok"}"#;
        let nginx = Nginx::start(&nginx_bin, &dir, 1, body, Some(&cert)).expect("nginx");
        assert!(nginx.url.starts_with("https://127.0.0.1:"), "{}", nginx.url);
        let post = |tls_args: &[&str]| {
            std::process::Command::new(&curl)
                .args(["-sS", "--max-time", "10", "--cacert"])
                .arg(&cert.cert)
                .args(tls_args)
                .args([
                    "-X",
                    "POST",
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    "{}",
                ])
                .arg(&nginx.url)
                .output()
                .expect("curl runs")
        };
        let ok = post(&["--tlsv1.3"]);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&ok.stdout), body);
        assert!(!post(&["--tls-max", "1.2"]).status.success());
        drop(nginx);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_certificate_and_a_private_key_are_written_as_pem() {
        let dir = std::env::temp_dir().join(format!("xtask-tls-test-{}", std::process::id()));
        let made = Certificate::generate(&dir).expect("certificate");
        let cert = fs::read_to_string(&made.cert).expect("cert.pem");
        let key = fs::read_to_string(&made.key).expect("key.pem");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&made.key).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
