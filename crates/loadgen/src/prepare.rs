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
use crate::grpc::KServeGrpc;
use crate::payloads::Payloads;
use crate::server_metrics;
use crate::server_stats::{self, Source, Watch};
use crate::target::{self, Target};
use crate::tls::Tls;
use crate::workload::replay::Trace;
use crate::workload::requests::Requests;
use crate::workload::Turns;

/// How a run's requests travel: HTTP requests whose bodies an [`Api`]
/// writes and judges, or gRPC calls.
#[derive(Clone)]
pub(crate) enum Protocol {
    /// An HTTP body format.
    Http(Arc<dyn Api>),
    /// KServe v2 over gRPC.
    Grpc(Arc<KServeGrpc>),
}

impl Protocol {
    /// The API's name on the command line and in summaries.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Http(api) => api.name(),
            Self::Grpc(_) => "kserve-v2-grpc",
        }
    }

    /// Whether outputs can be checked against the simulator's.
    pub(crate) fn can_verify(&self) -> bool {
        match self {
            Self::Http(api) => api.can_verify(),
            Self::Grpc(grpc) => grpc.can_verify(),
        }
    }

    /// Whether outputs are checked when the user says nothing.
    pub(crate) fn verifies_by_default(&self) -> bool {
        match self {
            Self::Http(api) => api.verifies_by_default(),
            Self::Grpc(_) => false,
        }
    }

    /// Why outputs cannot be checked, for messages.
    pub(crate) fn why_unverifiable(&self) -> String {
        match self {
            Self::Http(api) => api.why_unverifiable(),
            Self::Grpc(grpc) => grpc.why_unverifiable(),
        }
    }

    /// Whether rows carry the LLM columns.
    pub(crate) fn token_metrics(&self) -> bool {
        match self {
            Self::Http(api) => api.token_metrics(),
            Self::Grpc(grpc) => grpc.token_metrics(),
        }
    }
}

/// Everything checked and set up before the first request: the options,
/// the resolved addresses, TLS, the request format and the payloads.
/// Whatever is wrong with them is an error here, before any load is sent.
// The fields are the crate's: `Prepared::run` (run.rs) takes them apart.
pub struct Prepared {
    pub(crate) config: LoadConfig,
    pub(crate) target: Target,
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) tls: Option<Tls>,
    pub(crate) protocol: Protocol,
    /// What each request carries (payloads, or LLM workloads).
    pub(crate) requests: Arc<Requests>,
    /// The trace to replay, checked.
    pub(crate) trace: Option<Trace>,
    /// The server's statistics around the run, the snapshot before it taken.
    pub(crate) stats: Option<Watch>,
    /// The metrics endpoint to scrape through the run.
    pub(crate) metrics: Option<server_metrics::MetricsTarget>,
}

/// Validates `config`, resolves the host, builds the TLS client and the
/// request format, and loads the payloads.
pub async fn prepare(config: LoadConfig) -> Result<Prepared, LoadError> {
    let target = config.validate()?;
    let addrs = target::resolve(&target).await?;
    let grpc_options = match &config.api {
        ApiChoice::KServeV2Grpc(options) => Some(options),
        _ => None,
    };
    let tls = if target.is_tls() {
        let resume = config.connection == ConnectionMode::Pooled || config.tls.resume;
        // gRPC is HTTP/2 only: ALPN offers and requires h2.
        let http2 = config.http2 || grpc_options.is_some();
        Some(Tls::new(&config.tls, &target.host, http2, resume)?)
    } else {
        None
    };
    // Formats that check the server before the load (KServe v2) do it over
    // a transport of their own, with the run's TLS settings.
    let probe = Transport::new(target.clone(), addrs.clone(), tls.clone(), &config, 0);
    let protocol = match grpc_options {
        Some(options) => Protocol::Grpc(Arc::new(
            KServeGrpc::connect(options, &config, &target, addrs.clone(), tls.clone()).await?,
        )),
        None => {
            let context = api::BuildContext {
                batch_size: config.batch_size,
                model: &config.model,
                url_path: &target.path_and_query,
                probe: &probe,
            };
            Protocol::Http(api::build(&config.api, context).await?)
        }
    };
    if config.verify == Some(true) && !protocol.can_verify() {
        return Err(ConfigError::Invalid(format!(
            "--verify: --api {} cannot check outputs here ({}); drop --verify, output digests are logged either way",
            protocol.name(),
            protocol.why_unverifiable()
        ))
        .into());
    }
    let target = match &protocol {
        Protocol::Http(api) => match api.request_path() {
            Some(path) => target.with_path(path).map_err(ConfigError::from)?,
            None => target,
        },
        Protocol::Grpc(_) => target,
    };
    let from_data = config.workload.turns == Some(Turns::FromData);
    let payloads = Payloads::load(&config.payloads, &config.model, from_data)?;
    let chat = matches!(
        &config.api,
        ApiChoice::OpenAi(o) if o.endpoint == api::openai::OpenAiEndpoint::Chat
    );
    if payloads.has_messages() && !chat {
        return Err(ConfigError::Invalid(format!(
            "--payloads: `messages` lines are for --api openai-chat, not --api {}",
            protocol.name()
        ))
        .into());
    }
    if payloads.has_messages() && config.workload.turns.is_some() {
        return Err(ConfigError::Invalid(
            "--turns builds each conversation's messages itself; give --payloads lines with \"input\" (or --input-tokens), not \"messages\"".into(),
        )
        .into());
    }
    let run_max_tokens = match &config.api {
        ApiChoice::OpenAi(options) => options
            .extra_body
            .as_ref()
            .and_then(|e| e.get("max_tokens"))
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .or(options.max_tokens),
        _ => None,
    };
    let mut requests = Requests::new(&config.workload, payloads, run_max_tokens)?;
    let trace = match &config.workload.trace {
        Some(options) => {
            let trace = Trace::open(options)?;
            let (input_tokens, output_tokens) = trace.mean_lengths();
            requests.set_trace_means(input_tokens, output_tokens);
            Some(trace)
        }
        None => None,
    };
    let metrics = match &config.server_metrics_url {
        None => None,
        Some(url) => Some(metrics_target(&config, url).await?),
    };
    let source = match &protocol {
        Protocol::Http(api) => api.stats_path().map(|path| Source::Http { probe, path }),
        Protocol::Grpc(grpc) => Some(Source::Grpc(grpc.clone())),
    };
    let stats = match (&config.server_stats_path, source) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ConfigError::Invalid(format!(
                "--server-stats: --api {} has no statistics endpoint",
                protocol.name()
            ))
            .into())
        }
        (Some(file), Some(source)) => {
            let fallback = match &config.server_metrics_url {
                Some(url) => metrics_transport(&config, url).await?.ok(),
                None => None,
            };
            // The probe's requests name their paths, so the one that checked
            // the API before the load serves here too.
            let watch =
                server_stats::Watch::start(source, fallback, &config.model, file.clone()).await?;
            Some(watch)
        }
    };
    // Without a file for the series the URL served only as Triton's fallback.
    let metrics = metrics.filter(|_| config.server_metrics_path.is_some());
    Ok(Prepared {
        config,
        target,
        addrs,
        tls,
        protocol,
        requests: Arc::new(requests),
        trace,
        stats,
        metrics,
    })
}

impl Prepared {
    /// HTTP version and transport, e.g. `HTTP/1.1 over TLS (ALPN http/1.1)`.
    pub(crate) fn protocol(&self) -> String {
        if let Protocol::Grpc(grpc) = &self.protocol {
            return grpc.protocol();
        }
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
        self.protocol.can_verify()
            && self
                .config
                .verify
                .unwrap_or_else(|| self.protocol.verifies_by_default())
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
            (false, _) if self.protocol.can_verify() => {
                "outputs not verified: a real model gives its own answers; output digests are logged (--verify checks them against the simulator's, for servers that give those)".to_owned()
            }
            (false, _) => format!(
                "outputs not verified ({}); output digests are logged",
                self.protocol.why_unverifiable()
            ),
        };
        lines.push(format!("api: {}; {checks}", self.protocol.name()));
        if self.describes_workload() {
            lines.extend(self.requests.describe(self.trace.is_some()));
        }
        if let Some(trace) = &self.trace {
            lines.push(trace.describe());
        }
        if let Some(stages) = &self.config.stages {
            lines.push(if self.config.stages_step_concurrency {
                format!("stages: {stages} (duration:workers), the closed loop's workers stepped at each stage's start")
            } else {
                format!(
                    "stages: {stages} (duration:rate), the open loop's rate ramped linearly within each stage from {} req/s",
                    self.config.open_loop.as_ref().map_or(0.0, |o| o.rate_rps)
                )
            });
        }
        lines
    }

    /// Whether the run sends an LLM workload (its start lines say what).
    pub(crate) fn describes_workload(&self) -> bool {
        self.config.workload.is_set()
            || matches!(
                self.config.payloads,
                crate::config::PayloadSource::ShareGpt(_)
            )
    }
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("target", &self.target)
            .field("addrs", &self.addrs)
            .field("api", &self.protocol.name())
            .finish_non_exhaustive()
    }
}

/// The metrics endpoint to scrape through the run.
async fn metrics_target(
    config: &LoadConfig,
    url: &str,
) -> Result<server_metrics::MetricsTarget, LoadError> {
    let (transport, path, unreachable) = match metrics_transport(config, url).await? {
        Ok((transport, path)) => (Some(transport), path, None),
        Err(why) => (None, String::new(), Some(why)),
    };
    Ok(server_metrics::MetricsTarget {
        url: url.to_owned(),
        path,
        transport,
        unreachable,
        interval: config.server_metrics_interval,
        file: config.server_metrics_path.clone().unwrap_or_default(),
    })
}

/// A connection to the metrics endpoint and its path. A URL that does not
/// parse is refused before any request (`Err`); one whose host does not
/// resolve is the inner `Err`, a warning when scraping starts: the metrics
/// are a view on the run, not a condition of it.
async fn metrics_transport(
    config: &LoadConfig,
    url: &str,
) -> Result<Result<(Transport, String), String>, LoadError> {
    let parsed = Target::parse(url).map_err(|e| {
        ConfigError::Invalid(format!(
            "--server-metrics-url {url:?}: {e} (allowed: an http:// or https:// URL of a Prometheus text endpoint, e.g. http://127.0.0.1:8000/metrics)"
        ))
    })?;
    let path = parsed.path_and_query.clone();
    // Its own connection settings: HTTP/1.1 (a metrics port rarely speaks
    // HTTP/2 without TLS), one connection, a short timeout.
    let scrape_config = LoadConfig {
        http2: false,
        connection: ConnectionMode::Pooled,
        concurrency: 1,
        open_loop: None,
        timeout: config.timeout.min(server_metrics::SCRAPE_TIMEOUT),
        ..config.clone()
    };
    let addrs = match target::resolve(&parsed).await {
        Ok(addrs) => addrs,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let tls = if parsed.is_tls() {
        Some(Tls::new(&config.tls, &parsed.host, false, true)?)
    } else {
        None
    };
    Ok(Ok((
        Transport::new(parsed, addrs, tls, &scrape_config, 0),
        path,
    )))
}
