//! Server configuration: the named profiles and the checks every knob passes.

use std::net::{Ipv4Addr, SocketAddr};

use crate::cost::ServiceTimeModel;
use crate::faults::FaultConfig;

/// Requests may carry at most this many inputs (and never more than
/// `max_queue`, which could not admit them); more is a 400 `too_many_items`.
pub const MAX_ITEMS_PER_REQUEST: usize = 256;

/// The address the server binds unless told otherwise.
pub(crate) const DEFAULT_BIND: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8000);

/// Bodies larger than this are refused with 413 unless configured otherwise.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The name of the gRPC decoupled (streaming) model unless told otherwise.
pub const DEFAULT_STREAM_MODEL: &str = "llm-stream";

/// The profile used when none is named: the scenario of the task.
pub const DEFAULT_PROFILE: &str = "placeholder";

/// Names of the built-in profiles, for `--profile`.
pub const PROFILES: [&str; 5] = [
    "placeholder",
    "zero-cost",
    "gpt2-medium",
    "bert-base",
    "llm-slots",
];

/// Upper bound on `base_ms` and `per_item_ms`: an hour is already absurd.
const MAX_COST_MS: f64 = 3_600_000.0;

/// Upper bound on `--batch-window-ms`.
const MAX_WINDOW_MS: f64 = 60_000.0;

/// Everything that shapes the simulated service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Executors (replicas) that run batches in parallel.
    pub workers: usize,
    /// Cost of one executed batch.
    pub service: ServiceTimeModel,
    /// Most items in one executed batch.
    pub max_batch: usize,
    /// Whether idle workers gather queued items across requests.
    pub dynamic_batching: bool,
    /// With dynamic batching, how long after the oldest queued request a
    /// worker waits for the batch to fill, in ms (Triton's `max_queue_delay`).
    pub batch_window_ms: f64,
    /// With dynamic batching, batch sizes formed at once when the queue can
    /// make one (Triton's `preferred_batch_size`); empty: none.
    pub preferred_batch_sizes: Vec<usize>,
    /// Most items waiting in the queue; beyond it requests get 503.
    pub max_queue: usize,
    /// Largest accepted request body, in bytes; beyond it requests get 413.
    pub max_body_bytes: usize,
    /// Model names the server answers for; others get 404 `unknown_model`.
    pub models: Vec<String>,
    /// The LLM routes' step loop (`/v1/chat/completions`, `/v1/completions`).
    pub llm: crate::llm::LlmConfig,
    /// The datatype of the KServe v2 model's input tensor (text as
    /// `BYTES`, or numbers); its output is always `BYTES`.
    pub kserve_input_datatype: model::kserve::Datatype,
    /// Injected faults (all off unless asked for; off in every profile).
    pub faults: FaultConfig,
    /// Address of the KServe v2 gRPC listener; `None`: no gRPC (port 0
    /// picks a free port).
    pub grpc_bind: Option<SocketAddr>,
    /// The gRPC decoupled model that streams an LLM's tokens on
    /// `ModelStreamInfer` (served besides `models`).
    pub grpc_stream_model: String,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `--profile` named no built-in profile.
    #[error("unknown profile `{name}`; known profiles: {}", PROFILES.join(", "))]
    UnknownProfile {
        /// The name given.
        name: String,
    },
    /// A knob holds a value outside its allowed range.
    #[error("invalid --{flag} {value}: {allowed}")]
    Invalid {
        /// The flag's name, without dashes.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// `--tokenizer` named no readable tokenizer.
    #[error("invalid --tokenizer {}: {why}", path.display())]
    Tokenizer {
        /// The file given.
        path: std::path::PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// The most sequences the LLM step loop runs at once.
pub(crate) const MAX_NUM_SEQS: usize = 100_000;

impl ServerConfig {
    /// The built-in profile `name`, bound to `127.0.0.1:8000`.
    ///
    /// - `placeholder`: the task's scenario, 2 workers, 100 ms + 2 ms/item,
    ///   jitter 0.1, no dynamic batching.
    /// - `zero-cost`: no service time at all, 64 workers, for benchmarks.
    /// - `gpt2-medium`: one worker, ~440 ms per batch almost regardless of
    ///   size, like the measured GPT-2-medium decode of 32 tokens.
    /// - `bert-base`: one worker, 4.2 ms + 0.045 ms/item with dynamic
    ///   batching, like the measured BERT-base forward pass.
    /// - `llm-slots`: the LLM routes with 8 sequence slots, steps of 6 ms +
    ///   0.4 ms per running sequence, 0.05 ms per prefilled prompt token:
    ///   under `input.py`'s 20 concurrent streams, 12 wait for a slot and
    ///   their time to first token is a whole answer's time or more.
    pub fn profile(name: &str) -> Result<ServerConfig, ConfigError> {
        let placeholder = ServerConfig {
            bind: DEFAULT_BIND,
            workers: 2,
            service: ServiceTimeModel {
                base_ms: 100.0,
                per_item_ms: 2.0,
                jitter: 0.1,
                seed: 42,
            },
            max_batch: 32,
            dynamic_batching: false,
            batch_window_ms: 5.0,
            preferred_batch_sizes: Vec::new(),
            max_queue: 4096,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            models: vec![model::DEFAULT_MODEL.to_owned()],
            kserve_input_datatype: model::kserve::Datatype::Bytes,
            llm: crate::llm::LlmConfig::default(),
            faults: FaultConfig::default(),
            grpc_bind: None,
            grpc_stream_model: DEFAULT_STREAM_MODEL.to_owned(),
        };
        let config = match name {
            "placeholder" => placeholder,
            "zero-cost" => ServerConfig {
                workers: 64,
                service: ServiceTimeModel {
                    base_ms: 0.0,
                    per_item_ms: 0.0,
                    jitter: 0.0,
                    seed: 42,
                },
                max_queue: 65_536,
                ..placeholder
            },
            "gpt2-medium" => ServerConfig {
                workers: 1,
                service: ServiceTimeModel {
                    base_ms: 440.0,
                    per_item_ms: 0.2,
                    jitter: 0.12,
                    seed: 42,
                },
                max_batch: 64,
                ..placeholder
            },
            "bert-base" => ServerConfig {
                workers: 1,
                service: ServiceTimeModel {
                    base_ms: 4.2,
                    per_item_ms: 0.045,
                    jitter: 0.05,
                    seed: 42,
                },
                max_batch: 256,
                dynamic_batching: true,
                batch_window_ms: 2.0,
                ..placeholder
            },
            "llm-slots" => ServerConfig {
                llm: crate::llm::LlmConfig {
                    max_num_seqs: 8,
                    step_base_ms: 6.0,
                    step_per_seq_ms: 0.4,
                    prefill_per_token_ms: 0.05,
                    max_batched_tokens: 2048,
                    ..crate::llm::LlmConfig::default()
                },
                ..placeholder
            },
            _ => {
                return Err(ConfigError::UnknownProfile {
                    name: name.to_owned(),
                })
            }
        };
        Ok(config)
    }

    /// Checks every knob, naming the first one out of range and what it allows.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(flag: &'static str, value: impl ToString, allowed: &'static str) -> ConfigError {
            ConfigError::Invalid {
                flag,
                value: value.to_string(),
                allowed,
            }
        }
        let cost_ok = |ms: f64| ms.is_finite() && (0.0..=MAX_COST_MS).contains(&ms);
        if !(1..=4096).contains(&self.workers) {
            return Err(invalid(
                "workers",
                self.workers,
                "must be an integer from 1 to 4096",
            ));
        }
        if !cost_ok(self.service.base_ms) {
            return Err(invalid(
                "base-ms",
                self.service.base_ms,
                "must be a finite number of ms from 0 to 3600000",
            ));
        }
        if !cost_ok(self.service.per_item_ms) {
            return Err(invalid(
                "per-item-ms",
                self.service.per_item_ms,
                "must be a finite number of ms from 0 to 3600000",
            ));
        }
        let jitter = self.service.jitter;
        if !(jitter.is_finite() && (0.0..=2.0).contains(&jitter)) {
            return Err(invalid(
                "jitter",
                jitter,
                "must be a number from 0 to 2 (sd of the log multiplier)",
            ));
        }
        if !(1..=65_536).contains(&self.max_batch) {
            return Err(invalid(
                "max-batch",
                self.max_batch,
                "must be an integer from 1 to 65536",
            ));
        }
        let window = self.batch_window_ms;
        if !(window.is_finite() && (0.0..=MAX_WINDOW_MS).contains(&window)) {
            return Err(invalid(
                "batch-window-ms",
                window,
                "must be a finite number of ms from 0 to 60000",
            ));
        }
        if self
            .preferred_batch_sizes
            .iter()
            .any(|&p| p == 0 || p > self.max_batch)
        {
            return Err(invalid(
                "preferred-batch-size",
                format!("{:?}", self.preferred_batch_sizes),
                "each must be an integer from 1 to --max-batch",
            ));
        }
        let llm = &self.llm;
        // Up to 100,000: a load generator's scale bench runs 10,000
        // streams on one step loop, and each running sequence costs the
        // loop only its own token per step.
        if !(1..=MAX_NUM_SEQS).contains(&llm.max_num_seqs) {
            return Err(invalid(
                "max-num-seqs",
                llm.max_num_seqs,
                "must be an integer from 1 to 100000",
            ));
        }
        for (flag, ms) in [
            ("step-base-ms", llm.step_base_ms),
            ("step-per-seq-ms", llm.step_per_seq_ms),
            ("prefill-per-token-ms", llm.prefill_per_token_ms),
        ] {
            if !cost_ok(ms) {
                return Err(invalid(
                    flag,
                    ms,
                    "must be a finite number of ms from 0 to 3600000",
                ));
            }
        }
        if !(1..=(1 << 20)).contains(&llm.max_batched_tokens) {
            return Err(invalid(
                "max-batched-tokens",
                llm.max_batched_tokens,
                "must be an integer from 1 to 1048576",
            ));
        }
        if !(1..=1024).contains(&llm.kv_block_tokens) {
            return Err(invalid(
                "kv-block-tokens",
                llm.kv_block_tokens,
                "must be an integer from 1 to 1024 tokens per block",
            ));
        }
        if llm.prefix_cache_blocks > 100_000_000 {
            return Err(invalid(
                "prefix-cache-blocks",
                llm.prefix_cache_blocks,
                "must be an integer from 0 (no prefix cache) to 100000000 blocks",
            ));
        }
        if llm.kv_cache_tokens != 0
            && !(llm.kv_block_tokens..=1_000_000_000).contains(&llm.kv_cache_tokens)
        {
            return Err(invalid(
                "kv-cache-tokens",
                llm.kv_cache_tokens,
                "must be 0 (unlimited) or an integer from --kv-block-tokens to 1000000000 tokens",
            ));
        }
        if !(1..=10_000_000).contains(&self.max_queue) {
            return Err(invalid(
                "max-queue",
                self.max_queue,
                "must be an integer from 1 to 10000000 items",
            ));
        }
        if !(1..=(1 << 30)).contains(&self.max_body_bytes) {
            return Err(invalid(
                "max-body-bytes",
                self.max_body_bytes,
                "must be an integer from 1 to 1073741824 bytes",
            ));
        }
        if self.models.is_empty() {
            return Err(invalid(
                "models",
                "(none)",
                "must name at least one model, comma-separated",
            ));
        }
        if let Some(bad) = self
            .models
            .iter()
            .find(|m| m.is_empty() || m.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(invalid(
                "models",
                format!("{bad:?}"),
                "model names must be non-empty and hold no whitespace",
            ));
        }
        let stream = &self.grpc_stream_model;
        if stream.is_empty() || stream.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "grpc-stream-model",
                format!("{stream:?}"),
                "must be a non-empty model name without whitespace",
            ));
        }
        if self.models.contains(stream) {
            return Err(invalid(
                "grpc-stream-model",
                stream,
                "must differ from every name in --models (those are batching models)",
            ));
        }
        self.faults.validate()?;
        Ok(())
    }

    /// The most inputs one request may carry.
    pub(crate) fn max_items_per_request(&self) -> usize {
        MAX_ITEMS_PER_REQUEST.min(self.max_queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_is_valid_and_placeholder_is_the_scenario() {
        for name in PROFILES {
            let config = ServerConfig::profile(name).unwrap();
            config.validate().unwrap();
            assert!(config.faults.is_off(), "{name} injects no faults");
        }
        let p = ServerConfig::profile(DEFAULT_PROFILE).unwrap();
        assert_eq!((p.workers, p.max_batch, p.max_queue), (2, 32, 4096));
        assert_eq!(p.service.base_ms, 100.0);
        assert_eq!(p.service.per_item_ms, 2.0);
        assert_eq!(p.service.jitter, 0.1);
        assert_eq!(p.service.seed, 42);
        assert!(!p.dynamic_batching);
        assert_eq!(p.bind, DEFAULT_BIND);
        assert_eq!(p.models, ["example-model"]);
    }

    #[test]
    fn unknown_profile_lists_the_known_ones() {
        let err = ServerConfig::profile("gpu").unwrap_err().to_string();
        assert!(
            err.contains("placeholder") && err.contains("zero-cost"),
            "{err}"
        );
    }

    #[test]
    fn bad_knobs_are_named_with_what_is_allowed() {
        let base = ServerConfig::profile("placeholder").unwrap();
        let cases: Vec<(ServerConfig, &str)> = vec![
            (
                ServerConfig {
                    workers: 0,
                    ..base.clone()
                },
                "workers",
            ),
            (
                ServerConfig {
                    max_batch: 0,
                    ..base.clone()
                },
                "max-batch",
            ),
            (
                ServerConfig {
                    max_queue: 0,
                    ..base.clone()
                },
                "max-queue",
            ),
            (
                ServerConfig {
                    max_body_bytes: 0,
                    ..base.clone()
                },
                "max-body-bytes",
            ),
            (
                ServerConfig {
                    batch_window_ms: -1.0,
                    ..base.clone()
                },
                "batch-window-ms",
            ),
            (
                ServerConfig {
                    models: vec![],
                    ..base.clone()
                },
                "models",
            ),
            (
                ServerConfig {
                    models: vec!["a b".into()],
                    ..base.clone()
                },
                "models",
            ),
        ];
        for (config, flag) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(
                err.contains(&format!("--{flag}")) && err.contains("must"),
                "{err}"
            );
        }
        let mut c = base.clone();
        c.llm.max_num_seqs = 10_000;
        assert!(c.validate().is_ok(), "10,000 streams on one step loop");
        c.llm.max_num_seqs = MAX_NUM_SEQS + 1;
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("--max-num-seqs") && err.contains("from 1 to 100000"),
            "{err}"
        );
        let mut c = base.clone();
        c.service.base_ms = f64::NAN;
        assert!(c.validate().unwrap_err().to_string().contains("--base-ms"));
        let mut c = base.clone();
        c.service.per_item_ms = -2.0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--per-item-ms"));
        let mut c = base;
        c.service.jitter = 2.5;
        assert!(c.validate().unwrap_err().to_string().contains("--jitter"));
    }
}
