//! The server's Prometheus metrics through a run (`--server-metrics-url
//! URL --server-metrics FILE`): scraped once before the first request,
//! every `--server-metrics-interval` while the load runs and once after
//! the last response, each sample stamped on the engine's own clock (the
//! clock of the log's `timestamp_ms`), so a queue seen on the server lines
//! up with the rows that waited in it. The series is written as
//! `model::server_metrics::ServerMetrics`.
//!
//! Names are kept as the server wrote them, known or not;
//! `model::server_metrics::Role` knows which names of vLLM, SGLang, TGI
//! and llama.cpp's server mean the same thing, and the line printed at the
//! end says what the run saw under those meanings.
//!
//! The metrics are a view on the run, never a condition of it: a URL that
//! cannot be reached, answers an error or answers something other than
//! Prometheus text is a warning, and the run goes on.

pub mod parse;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use model::server_metrics::{MetricSample, Role, ServerMetrics, SCHEMA_VERSION};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::Transport;
use crate::engine::Clock;

/// The default `--server-metrics-interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest `--server-metrics-interval`: a scrape costs the server a
/// page of text, and a shorter one shows no more of a queue than the
/// step loop's own pace does.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest `--server-metrics-interval`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(600);
/// Longest wait for one scrape's answer: a slow metrics page must not hold
/// the end of the run for a whole request timeout.
pub(crate) const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// `--server-metrics-interval`: a duration from 100ms to 10m.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let value = model::args::parse_duration(text)?;
    if (MIN_INTERVAL..=MAX_INTERVAL).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{text:?} is out of range; the scrape interval must be at least 100ms and at most 10m (e.g. 1s, 500ms)"
        ))
    }
}

/// What to scrape, set up before the run.
pub(crate) struct MetricsTarget {
    /// The URL as given.
    pub(crate) url: String,
    /// Its path and query.
    pub(crate) path: String,
    /// A connection to it; `None` when its host did not resolve (then
    /// `unreachable` says why).
    pub(crate) transport: Option<Transport>,
    pub(crate) unreachable: Option<String>,
    pub(crate) interval: Duration,
    pub(crate) file: PathBuf,
}

/// A scrape loop running beside the load.
pub(crate) struct Scraper {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Outcome>,
    url: String,
    interval: Duration,
    file: PathBuf,
}

/// What the loop gathered.
#[derive(Default)]
struct Outcome {
    samples: Vec<MetricSample>,
    scrapes: usize,
    failures: usize,
    first_failure: Option<String>,
}

impl MetricsTarget {
    /// Starts scraping now: the first scrape is taken before this returns
    /// control to the load, so the series starts before the first request.
    pub(crate) async fn start(self, clock: Clock) -> Scraper {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let MetricsTarget {
            url,
            path,
            transport,
            unreachable,
            interval,
            file,
        } = self;
        let mut outcome = Outcome::default();
        if let Some(reason) = unreachable {
            outcome.fail(&url, reason);
        }
        if let Some(transport) = &transport {
            scrape(transport, &path, &url, &clock, &mut outcome).await;
        }
        let task_url = url.clone();
        let task = tokio::spawn(async move {
            let Some(transport) = transport else {
                return outcome;
            };
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate, and the first scrape is taken.
            ticker.tick().await;
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    _ = ticker.tick() => {
                        scrape(&transport, &path, &task_url, &clock, &mut outcome).await;
                    }
                }
            }
            // After the last response, so counters cover the whole run.
            scrape(&transport, &path, &task_url, &clock, &mut outcome).await;
            outcome
        });
        Scraper {
            stop,
            task,
            url,
            interval,
            file,
        }
    }
}

impl Scraper {
    /// Takes the last scrape, writes the series and says what it saw (on
    /// stderr, with any warning); never fails the run.
    pub(crate) async fn finish(self) {
        let _ = self.stop.send(());
        let outcome = match self.task.await {
            Ok(outcome) => outcome,
            Err(e) => {
                eprintln!("loadgen: WARNING: server metrics: the scrape loop ended early ({e})");
                Outcome::default()
            }
        };
        if outcome.failures > 0 {
            eprintln!(
                "loadgen: WARNING: server metrics: {} of {} scrapes of {} failed (first: {}); the run went on without them",
                outcome.failures,
                outcome.scrapes,
                self.url,
                outcome.first_failure.as_deref().unwrap_or("-")
            );
        }
        let metrics = ServerMetrics {
            schema_version: SCHEMA_VERSION,
            url: self.url.clone(),
            interval_ms: self.interval.as_secs_f64() * 1000.0,
            samples: outcome.samples,
        };
        let written = metrics
            .to_json()
            .map_err(|e| e.to_string())
            .and_then(|text| std::fs::write(&self.file, text).map_err(|e| e.to_string()));
        match written {
            Ok(()) => eprintln!(
                "loadgen: server metrics: {} of {} scrapes of {} -> {}{}",
                outcome.scrapes - outcome.failures,
                outcome.scrapes,
                self.url,
                self.file.display(),
                describe(&metrics)
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            Err(e) => eprintln!(
                "loadgen: WARNING: server metrics: cannot write {}: {e}",
                self.file.display()
            ),
        }
    }
}

impl Outcome {
    fn fail(&mut self, url: &str, reason: String) {
        self.scrapes += 1;
        self.failures += 1;
        if self.first_failure.is_none() {
            // Said at once as well: a wrong URL is worth knowing while the
            // run is still going.
            eprintln!("loadgen: WARNING: server metrics: {url}: {reason}; the run goes on");
            self.first_failure = Some(reason);
        }
    }
}

/// One scrape: its samples stamped with the time its answer came.
async fn scrape(
    transport: &Transport,
    path: &str,
    url: &str,
    clock: &Clock,
    outcome: &mut Outcome,
) {
    let answer = tokio::time::timeout(SCRAPE_TIMEOUT, transport.get(path)).await;
    let t_ms = clock.wall_ms(Instant::now());
    let body = match answer {
        Err(_) => {
            return outcome.fail(
                url,
                format!("no answer within {}s", SCRAPE_TIMEOUT.as_secs()),
            )
        }
        Ok(Err(e)) => return outcome.fail(url, format!("GET failed ({})", e.kind())),
        Ok(Ok((status, _))) if !status.is_success() => {
            return outcome.fail(url, format!("answered {status}"))
        }
        Ok(Ok((_, body))) => body,
    };
    let text = String::from_utf8_lossy(&body);
    match parse::parse(&text) {
        Ok(samples) if samples.is_empty() => outcome.fail(url, "answered no samples".to_owned()),
        Ok(samples) => {
            outcome.scrapes += 1;
            outcome
                .samples
                .extend(samples.into_iter().map(|s| MetricSample {
                    t_ms,
                    name: s.name,
                    labels: s.labels,
                    value: s.value,
                }));
        }
        Err(e) => outcome.fail(url, e.to_string()),
    }
}

/// Which server's names a series carries, by their prefix.
fn family(metrics: &ServerMetrics) -> Option<&'static str> {
    [
        ("vllm:", "vLLM names"),
        ("sglang:", "SGLang names"),
        ("tgi_", "TGI names"),
        ("llamacpp:", "llama.cpp server names"),
        ("nv_", "Triton names"),
    ]
    .into_iter()
    .find(|(prefix, _)| metrics.samples.iter().any(|s| s.name.starts_with(prefix)))
    .map(|(_, family)| family)
}

/// What the run saw, in common meanings: the most sequences running and
/// waiting, the KV cache's peak, preemptions, prefix-cache hits and the
/// mean queue time over the run; `None` when no known name was exposed.
pub(crate) fn describe(metrics: &ServerMetrics) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(family) = family(metrics) {
        parts.push(family.to_owned());
    }
    if let Some(v) = metrics.max(Role::Running) {
        parts.push(format!("running at most {v}"));
    }
    if let Some(v) = metrics.max(Role::Waiting) {
        parts.push(format!("waiting at most {v}"));
    }
    if let Some(v) = metrics.max(Role::KvUsage) {
        parts.push(format!("KV cache at most {:.0}%", v * 100.0));
    }
    if let Some(v) = metrics.delta(Role::Preemptions) {
        parts.push(format!("{v} preemptions"));
    }
    if let (Some(q), Some(h)) = (
        metrics.delta(Role::PrefixQueries),
        metrics.delta(Role::PrefixHits),
    ) {
        if q > 0.0 {
            parts.push(format!("prefix cache hit {:.0}%", 100.0 * h / q));
        }
    }
    if let Some(mean) = metrics
        .histogram_delta(Role::QueueTime)
        .and_then(|h| h.mean())
    {
        parts.push(format!("queue time mean {:.1} ms", mean * 1000.0));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_bounded_and_the_message_says_so() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["10ms", "0s", "11m"] {
            let err = parse_interval(bad).unwrap_err();
            assert!(
                err.contains("at least 100ms and at most 10m"),
                "{bad}: {err}"
            );
        }
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn the_description_reads_llama_servers_names() {
        let samples = parse::parse(include_str!("../../tests/data/llama_server_metrics.txt"))
            .unwrap()
            .into_iter()
            .map(|s| MetricSample {
                t_ms: 1.0,
                name: s.name,
                labels: s.labels,
                value: s.value,
            })
            .collect();
        let metrics = ServerMetrics {
            schema_version: SCHEMA_VERSION,
            url: String::new(),
            interval_ms: 1000.0,
            samples,
        };
        assert_eq!(
            describe(&metrics).as_deref(),
            Some("llama.cpp server names, running at most 0, waiting at most 0")
        );
    }
}
