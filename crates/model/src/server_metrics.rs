//! `server_metrics.json`: a server's Prometheus samples scraped through a
//! run, on the client's clock, the contract between loadgen (which scrapes
//! `--server-metrics-url` and writes it) and `report` (which reads it for
//! the diagnosis and the what-if engine).
//!
//! The file is a flat time series: one [`MetricSample`] per sample of each
//! scrape, `t_ms` the client's wall clock when the scrape's answer came
//! (ms since the Unix epoch, the clock of the log's `timestamp_ms`), `name`
//! the metric's name as exposed (a histogram's `_bucket`, `_sum` and
//! `_count` samples each under their own name, a bucket's bound in the
//! label `le`), `labels` its labels and `value` its value. Names are kept
//! as the server wrote them; [`Role`] knows which names of vLLM, SGLang,
//! TGI and llama.cpp's server mean the same thing, so a reader asks for a
//! role and gets whichever the server exposed.
//!
//! Counters and histograms are read over the run as the last scrape less
//! the first ([`ServerMetrics::delta`], [`ServerMetrics::histogram_delta`]),
//! gauges over time ([`ServerMetrics::series`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::contract::{self, Contract, ContractError};

/// Version of this layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything a scraper writes for one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMetrics {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The endpoint scraped.
    pub url: String,
    /// The interval asked between scrapes, ms.
    pub interval_ms: f64,
    /// Every sample of every scrape, in scrape order.
    pub samples: Vec<MetricSample>,
}

/// One sample of one scrape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    /// When the scrape's answer came, ms since the Unix epoch (client clock).
    pub t_ms: f64,
    /// The metric's name as exposed (`vllm:num_requests_running`,
    /// `vllm:request_queue_time_seconds_bucket`).
    pub name: String,
    /// Its labels (`le` for a histogram bucket).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Contract for ServerMetrics {
    const SCHEMA_VERSION: u32 = SCHEMA_VERSION;
    const WHAT: &'static str = "a server metrics time series (loadgen --server-metrics-url)";
}

/// What a metric means, whichever server exposed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sequences in a slot (prefilling or decoding), a gauge.
    Running,
    /// Sequences waiting for a slot, a gauge.
    Waiting,
    /// Fraction of the KV cache in use, 0 to 1, a gauge.
    KvUsage,
    /// Preemptions so far, a counter.
    Preemptions,
    /// Prompt tokens looked up in the prefix cache, a counter.
    PrefixQueries,
    /// Of those, tokens found cached, a counter.
    PrefixHits,
    /// Arrival to first admission, seconds, a histogram.
    QueueTime,
    /// First admission to first token, seconds, a histogram.
    PrefillTime,
    /// First token to last, seconds, a histogram.
    DecodeTime,
    /// Arrival to first token, seconds, a histogram.
    Ttft,
}

impl Role {
    /// The names servers expose it under, most specific first: vLLM's
    /// (and the simulator's), its older ones, SGLang's, TGI's and
    /// llama.cpp's server's where they have it.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Role::Running => &[
                "vllm:num_requests_running",
                "sglang:num_running_reqs",
                "tgi_batch_current_size",
                "llamacpp:requests_processing",
            ],
            Role::Waiting => &[
                "vllm:num_requests_waiting",
                "sglang:num_queue_reqs",
                "tgi_queue_size",
                "llamacpp:requests_deferred",
            ],
            Role::KvUsage => &[
                "vllm:kv_cache_usage_perc",
                "vllm:gpu_cache_usage_perc",
                "sglang:token_usage",
                "llamacpp:kv_cache_usage_ratio",
            ],
            Role::Preemptions => &["vllm:num_preemptions_total", "vllm:num_preemptions"],
            Role::PrefixQueries => &[
                "vllm:prefix_cache_queries_total",
                "vllm:gpu_prefix_cache_queries_total",
            ],
            Role::PrefixHits => &[
                "vllm:prefix_cache_hits_total",
                "vllm:gpu_prefix_cache_hits_total",
            ],
            Role::QueueTime => &[
                "vllm:request_queue_time_seconds",
                "tgi_request_queue_duration",
            ],
            Role::PrefillTime => &["vllm:request_prefill_time_seconds"],
            Role::DecodeTime => &["vllm:request_decode_time_seconds"],
            Role::Ttft => &[
                "vllm:time_to_first_token_seconds",
                "sglang:time_to_first_token_seconds",
            ],
        }
    }
}

/// A histogram over the run: the last scrape less the first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramDelta {
    /// Observations in the run.
    pub count: f64,
    /// Their sum (in the metric's unit, seconds for the times).
    pub sum: f64,
    /// Cumulative counts by upper bound, ascending (`+Inf` last).
    pub buckets: Vec<(f64, f64)>,
}

impl HistogramDelta {
    /// The mean observation; `None` without observations.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
}

impl ServerMetrics {
    /// Reads the file at `path`, its version first.
    pub fn read(path: &Path) -> Result<Self, ContractError> {
        contract::read(path)
    }

    /// The file's text: pretty JSON with a final newline.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        contract::to_json(self)
    }

    /// The first of `role`'s names that any sample carries.
    pub fn name_of(&self, role: Role) -> Option<&'static str> {
        role.names()
            .iter()
            .find(|name| self.samples.iter().any(|s| s.name == **name))
            .copied()
    }

    /// `name`'s value at each scrape, summed over its label sets (a gauge
    /// per model or engine adds up), in time order.
    pub fn series_of(&self, name: &str) -> Vec<(f64, f64)> {
        self.sum_by_time(|s| s.name == name)
    }

    /// [`ServerMetrics::series_of`] for whichever name of `role` the
    /// server exposed; empty when none.
    pub fn series(&self, role: Role) -> Vec<(f64, f64)> {
        self.name_of(role)
            .map_or_else(Vec::new, |name| self.series_of(name))
    }

    /// A counter's increase over the run (last scrape less first);
    /// `None` when the server exposed none of `role`'s names.
    pub fn delta(&self, role: Role) -> Option<f64> {
        let series = self.series(role);
        Some(series.last()?.1 - series.first()?.1)
    }

    /// The largest value a gauge took at a scrape.
    pub fn max(&self, role: Role) -> Option<f64> {
        self.series(role)
            .into_iter()
            .map(|(_, v)| v)
            .reduce(f64::max)
    }

    /// A histogram's increase over the run; `None` when the server
    /// exposed none of `role`'s names or fewer than two scrapes of it.
    pub fn histogram_delta(&self, role: Role) -> Option<HistogramDelta> {
        let base = role.names().iter().find(|base| {
            let count = format!("{base}_count");
            self.samples.iter().any(|s| s.name == count)
        })?;
        let delta = |name: &str| {
            let series = self.series_of(name);
            match (series.first(), series.last()) {
                (Some(first), Some(last)) if series.len() >= 2 => Some(last.1 - first.1),
                _ => None,
            }
        };
        let count = delta(&format!("{base}_count"))?;
        let sum = delta(&format!("{base}_sum"))?;
        let bucket_name = format!("{base}_bucket");
        let mut bounds: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.name == bucket_name)
            .filter_map(|s| parse_bound(s.labels.get("le")?))
            .collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let buckets = bounds
            .into_iter()
            .filter_map(|le| {
                let series = self.sum_by_time(|s| {
                    s.name == bucket_name
                        && s.labels.get("le").and_then(|t| parse_bound(t)) == Some(le)
                });
                let (first, last) = (series.first()?, series.last()?);
                Some((le, last.1 - first.1))
            })
            .collect();
        Some(HistogramDelta {
            count,
            sum,
            buckets,
        })
    }

    fn sum_by_time(&self, keep: impl Fn(&MetricSample) -> bool) -> Vec<(f64, f64)> {
        let mut by_time: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in self.samples.iter().filter(|s| keep(s)) {
            if !(s.t_ms.is_finite() && s.value.is_finite()) {
                continue;
            }
            // Samples of one scrape share its time exactly; the key orders
            // them (times are positive epoch milliseconds).
            let entry = by_time.entry(s.t_ms.to_bits()).or_insert((s.t_ms, 0.0));
            entry.1 += s.value;
        }
        let mut out: Vec<(f64, f64)> = by_time.into_values().collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// A bucket bound: a number, or `+Inf`.
fn parse_bound(text: &str) -> Option<f64> {
    match text.trim() {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        t => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_ms: f64, name: &str, labels: &[(&str, &str)], value: f64) -> MetricSample {
        MetricSample {
            t_ms,
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        }
    }

    fn series() -> ServerMetrics {
        let mut samples = Vec::new();
        for (i, (running, queue_sum, queue_count, hits)) in [
            (2.0, 0.5, 2.0, 10.0),
            (8.0, 3.5, 10.0, 50.0),
            (4.0, 4.0, 12.0, 90.0),
        ]
        .into_iter()
        .enumerate()
        {
            let t = 1_700_000_000_000.0 + 1000.0 * i as f64;
            // Two engines: their gauges add up.
            for engine in ["0", "1"] {
                samples.push(sample(
                    t,
                    "vllm:num_requests_running",
                    &[("engine", engine)],
                    running / 2.0,
                ));
            }
            samples.push(sample(t, "vllm:prefix_cache_hits_total", &[], hits));
            samples.push(sample(
                t,
                "vllm:request_queue_time_seconds_sum",
                &[],
                queue_sum,
            ));
            samples.push(sample(
                t,
                "vllm:request_queue_time_seconds_count",
                &[],
                queue_count,
            ));
            for (le, share) in [("0.5", 0.5), ("+Inf", 1.0)] {
                samples.push(sample(
                    t,
                    "vllm:request_queue_time_seconds_bucket",
                    &[("le", le)],
                    queue_count * share,
                ));
            }
        }
        ServerMetrics {
            schema_version: SCHEMA_VERSION,
            url: "http://127.0.0.1:8000/metrics".to_owned(),
            interval_ms: 1000.0,
            samples,
        }
    }

    #[test]
    fn gauges_add_up_over_labels_and_counters_are_differenced() {
        let m = series();
        assert_eq!(m.max(Role::Running), Some(8.0));
        assert_eq!(m.series(Role::Running).len(), 3);
        assert_eq!(m.delta(Role::PrefixHits), Some(80.0));
        assert_eq!(m.delta(Role::Preemptions), None, "not exposed");
        let queue = m.histogram_delta(Role::QueueTime).unwrap();
        assert_eq!((queue.count, queue.sum), (10.0, 3.5));
        assert_eq!(queue.mean(), Some(0.35));
        assert_eq!(queue.buckets, [(0.5, 5.0), (f64::INFINITY, 10.0)]);
    }

    #[test]
    fn another_servers_names_fill_the_same_role() {
        let m = ServerMetrics {
            samples: vec![
                sample(1.0, "llamacpp:requests_processing", &[], 3.0),
                sample(2.0, "llamacpp:requests_processing", &[], 4.0),
            ],
            ..series()
        };
        assert_eq!(
            m.name_of(Role::Running),
            Some("llamacpp:requests_processing")
        );
        assert_eq!(m.max(Role::Running), Some(4.0));
    }

    #[test]
    fn the_file_round_trips_and_another_version_is_refused() {
        let m = series();
        let dir = std::env::temp_dir().join(format!("server-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.json");
        std::fs::write(&path, m.to_json().unwrap()).unwrap();
        assert_eq!(ServerMetrics::read(&path).unwrap(), m);
        let text = m
            .to_json()
            .unwrap()
            .replace("\"schema_version\": 1", "\"schema_version\": 9");
        std::fs::write(&path, text).unwrap();
        let err = ServerMetrics::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("schema_version") && err.contains("m.json"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
