//! What a run sends when it is not `input.py`'s prompts: LLM workloads
//! shaped like the ones LLM teams benchmark with. [`lengths`] draws token
//! lengths from a distribution; [`prompt`] makes prompts of a token length
//! (exact under a local `tokenizer.json`); [`trace`] reads production
//! traces to replay (Mooncake, Azure, BurstGPT) and [`replay`] turns their
//! rows into a schedule; [`dataset`] reads ShareGPT conversations;
//! [`stages`] shapes a load that changes over the run; [`requests`] builds
//! each request from all of these.
//!
//! Every drawn thing (a length, a prompt's words, a conversation's turn
//! count) comes from a stream seeded by the run's seed and the request's
//! (or session's) own id, so a request is the same whichever worker or
//! shard sends it, and the same on the next run.

pub(crate) mod dataset;
pub(crate) mod lengths;
pub(crate) mod prompt;
pub(crate) mod replay;
pub(crate) mod requests;
pub(crate) mod stages;
pub(crate) mod trace;

use std::path::PathBuf;
use std::time::Duration;

pub use lengths::LengthDist;
pub use stages::{Stage, Stages};
pub use trace::TraceFormat;

/// Default tokens per Mooncake hash block.
pub const DEFAULT_BLOCK_TOKENS: u32 = 512;

/// Every prompt starts with one of `count` shared prefixes of `tokens`
/// tokens (a system prompt); the rest of it is its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedPrefix {
    /// Tokens of each prefix.
    pub tokens: u32,
    /// How many distinct prefixes.
    pub count: u32,
}

/// How many turns a conversation has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Turns {
    /// Drawn per session.
    Drawn(LengthDist),
    /// As many as the dataset's conversation has human turns
    /// (`--turns from-data` with `--payloads-format sharegpt`).
    FromData,
}

impl std::str::FromStr for Turns {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim() == "from-data" {
            return Ok(Self::FromData);
        }
        let dist: LengthDist = text.parse().map_err(|e: String| {
            format!("--turns: {e}; or from-data, the human turns of each --payloads-format sharegpt conversation")
        })?;
        if dist.max() > MAX_TURNS {
            return Err(format!(
                "--turns {text:?} allows conversations over {MAX_TURNS} turns; at most {MAX_TURNS}"
            ));
        }
        Ok(Self::Drawn(dist))
    }
}

/// Most turns a drawn conversation may have.
pub const MAX_TURNS: u32 = 1000;

/// A trace to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceOptions {
    /// The file.
    pub path: PathBuf,
    /// Its format; `None`: told from the file.
    pub format: Option<TraceFormat>,
    /// Play the trace this many times faster (2: twice the rate).
    pub speedup: f64,
    /// Skip the trace's first part: rows from this long after its first.
    pub start: Duration,
    /// Replay only this long of the trace (on its own clock).
    pub duration: Option<Duration>,
    /// Tokens per Mooncake hash block.
    pub block_tokens: u32,
    /// Sort rows by time (the whole trace in memory) instead of refusing
    /// rows out of order.
    pub sort: bool,
}

impl TraceOptions {
    /// Replays `path` as it is: format detected, real time, whole trace.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            format: None,
            speedup: 1.0,
            start: Duration::ZERO,
            duration: None,
            block_tokens: DEFAULT_BLOCK_TOKENS,
            sort: false,
        }
    }
}

/// What LLM requests carry beyond the payloads: token lengths, shared
/// prefixes, conversations, a trace. The default is none of it (every
/// request sends its payload as it is).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadOptions {
    /// Seed of the drawn lengths and of the prompts' words.
    pub seed: u64,
    /// A local Hugging Face `tokenizer.json`: prompt lengths exact under it.
    pub tokenizer: Option<PathBuf>,
    /// Prompt lengths, tokens (synthetic prompts).
    pub input_tokens: Option<LengthDist>,
    /// `max_tokens` of each request, drawn.
    pub output_tokens: Option<LengthDist>,
    /// Shared prefixes.
    pub prefix: Option<SharedPrefix>,
    /// Conversations: turns per session.
    pub turns: Option<Turns>,
    /// Conversations: the wait after an answer before the next turn.
    pub think_time: Duration,
    /// Send `ignore_eos: true` and `min_tokens` equal to `max_tokens`, so
    /// servers that take them answer exactly `max_tokens` tokens.
    pub ignore_eos: bool,
    /// Replay this trace.
    pub trace: Option<TraceOptions>,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        Self {
            seed: crate::config::DEFAULT_SEED,
            tokenizer: None,
            input_tokens: None,
            output_tokens: None,
            prefix: None,
            turns: None,
            think_time: Duration::ZERO,
            ignore_eos: false,
            trace: None,
        }
    }
}

impl WorkloadOptions {
    /// Whether any of it is asked for (the seed alone is not).
    pub fn is_set(&self) -> bool {
        *self
            != Self {
                seed: self.seed,
                ..Self::default()
            }
    }

    /// Whether prompts are made here rather than taken from payloads.
    pub(crate) fn synthetic(&self) -> bool {
        self.input_tokens.is_some() || self.trace.is_some()
    }
}

/// A 64-bit hash of `parts`, for seeding a request's own streams.
pub(crate) fn seed_of(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    for &part in parts {
        h ^= part.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}
