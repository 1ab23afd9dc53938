//! Everything checked and set up before the first request ([`prepare`]):
//! the options validated, the host resolved, TLS and the request format
//! built, the payloads loaded, the server's statistics snapshot taken; and
//! the lines that say what the run will do.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::api::{self, Api, ApiChoice};
use crate::client::Transport;
use crate::config::{ConfigError, ConnectionMode, LoadConfig};
use crate::error::LoadError;
use crate::payloads::Payloads;
use crate::server_stats::{self, Watch};
use crate::target::{self, Target};
use crate::tls::Tls;

/// Everything checked and set up before the first request: the options,
/// the resolved addresses, TLS, the request format and the payloads.
/// Whatever is wrong with them is an error here, before any load is sent.
// The fields are the crate's: `Prepared::run` (run.rs) takes them apart.
pub struct Prepared {
    pub(crate) config: LoadConfig,
    pub(crate) target: Target,
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) tls: Option<Tls>,
    pub(crate) api: Arc<dyn Api>,
    pub(crate) payloads: Payloads,
    /// The server's statistics around the run, the snapshot before it taken.
    pub(crate) stats: Option<Watch>,
}

/// Validates `config`, resolves the host, builds the TLS client and the
/// request format, and loads the payloads.
pub async fn prepare(config: LoadConfig) -> Result<Prepared, LoadError> {
    let target = config.validate()?;
    let addrs = target::resolve(&target).await?;
    let tls = if target.is_tls() {
        let resume = config.connection == ConnectionMode::Pooled || config.tls.resume;
        Some(Tls::new(&config.tls, &target.host, config.http2, resume)?)
    } else {
        None
    };
    // Formats that check the server before the load (KServe v2) do it over
    // a transport of their own, with the run's TLS settings.
    let probe = Transport::new(target.clone(), addrs.clone(), tls.clone(), &config, 0);
    let context = api::BuildContext {
        batch_size: config.batch_size,
        model: &config.model,
        url_path: &target.path_and_query,
        probe: &probe,
    };
    let api = api::build(&config.api, context).await?;
    if config.verify == Some(true) && !api.can_verify() {
        return Err(ConfigError::Invalid(format!(
            "--verify: --api {} cannot check outputs here ({}); drop --verify, output digests are logged either way",
            api.name(),
            api.why_unverifiable()
        ))
        .into());
    }
    let target = match api.request_path() {
        Some(path) => target.with_path(path).map_err(ConfigError::from)?,
        None => target,
    };
    let payloads = Payloads::load(&config.payloads, &config.model)?;
    let chat = matches!(
        &config.api,
        ApiChoice::OpenAi(o) if o.endpoint == api::openai::OpenAiEndpoint::Chat
    );
    if payloads.has_messages() && !chat {
        return Err(ConfigError::Invalid(format!(
            "--payloads: `messages` lines are for --api openai-chat, not --api {}",
            api.name()
        ))
        .into());
    }
    let stats = match (&config.server_stats_path, api.stats_path()) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ConfigError::Invalid(format!(
                "--server-stats: --api {} has no statistics endpoint",
                api.name()
            ))
            .into())
        }
        (Some(file), Some(path)) => {
            let metrics = match &config.server_metrics_url {
                None => None,
                Some(url) => {
                    let metrics = Target::parse(url).map_err(ConfigError::from)?;
                    let addrs = target::resolve(&metrics).await?;
                    let tls = if metrics.is_tls() {
                        Some(Tls::new(&config.tls, &metrics.host, false, true)?)
                    } else {
                        None
                    };
                    let path = metrics.path_and_query.clone();
                    Some((Transport::new(metrics, addrs, tls, &config, 0), path))
                }
            };
            // The probe's requests name their paths, so the one that checked
            // the API before the load serves here too.
            let watch =
                server_stats::Watch::start(probe, path, metrics, &config.model, file.clone())
                    .await?;
            Some(watch)
        }
    };
    Ok(Prepared {
        config,
        target,
        addrs,
        tls,
        api,
        payloads,
        stats,
    })
}

impl Prepared {
    /// HTTP version and transport, e.g. `HTTP/1.1 over TLS (ALPN http/1.1)`.
    pub(crate) fn protocol(&self) -> String {
        match (&self.tls, self.config.http2) {
            (None, false) => "HTTP/1.1".into(),
            (None, true) => "HTTP/2 cleartext (prior knowledge)".into(),
            (Some(tls), http2) => format!(
                "{} over TLS (ALPN {}{})",
                if http2 { "HTTP/2" } else { "HTTP/1.1" },
                tls.alpn,
                if http2 { ", required" } else { "" }
            ),
        }
    }

    /// Whether outputs are verified: by default only where the endpoint is
    /// known to give the simulator's answers (`--api simulator`); with
    /// `--verify` wherever the API can check them.
    pub(crate) fn verifies(&self) -> bool {
        self.api.can_verify()
            && self
                .config
                .verify
                .unwrap_or_else(|| self.api.verifies_by_default())
    }

    /// What the run will do, a line each, for the start of its output:
    /// target and addresses, protocol and certificate checks, the API and
    /// whether outputs are verified.
    pub fn start_lines(&self) -> Vec<String> {
        let addrs: Vec<String> = self.addrs.iter().map(SocketAddr::to_string).collect();
        let mut lines = vec![
            format!("target: {} -> {}", self.target, addrs.join(", ")),
            format!("protocol: {}", self.protocol()),
        ];
        if let Some(tls) = &self.tls {
            lines.push(format!("TLS: server certificate {}", tls.verification));
        }
        let checks = match (self.verifies(), self.config.verify) {
            (true, Some(true)) => {
                "outputs verified against the simulator's expected outputs (--verify)".to_owned()
            }
            (true, _) => {
                "outputs verified against the simulator's expected outputs (--no-verify for an endpoint with other answers)".to_owned()
            }
            (false, Some(false)) => {
                "outputs not verified (--no-verify); output digests are logged".to_owned()
            }
            (false, _) if self.api.can_verify() => {
                "outputs not verified: a real model gives its own answers; output digests are logged (--verify checks them against the simulator's, for servers that give those)".to_owned()
            }
            (false, _) => format!(
                "outputs not verified ({}); output digests are logged",
                self.api.why_unverifiable()
            ),
        };
        lines.push(format!("api: {}; {checks}", self.api.name()));
        lines
    }
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("target", &self.target)
            .field("addrs", &self.addrs)
            .field("api", &self.api.name())
            .finish_non_exhaustive()
    }
}
