//! An LLM server simulator behind the OpenAI-compatible API
//! (`POST /v1/chat/completions`, `POST /v1/completions`), with continuous
//! batching, a prefix cache and a bounded KV cache as vLLM has them.
//!
//! # Steps
//!
//! One step loop runs every sequence. A step first gives each running
//! sequence that decodes its one token, then prompt tokens to the running
//! sequences still prefilling (chunked prefill, oldest first), then admits
//! waiting sequences while fewer than `max_num_seqs` run, each with a chunk
//! of what is left of the budget of `max_batched_tokens` tokens. It costs
//! `step_base_ms + step_per_seq_ms x running + prefill_per_token_ms x
//! prefilled tokens`, honoured by the precise timer; at its end every
//! sequence whose prompt is done emits one token, so a sequence's first
//! token comes at the end of the step that finished its prompt, and the
//! time to first token grows with the queue for a slot.
//!
//! # Prompt tokens
//!
//! Without `--tokenizer`, a prompt's tokens are its whitespace-separated
//! words (a word's identity is its text). With `--tokenizer FILE` (a local
//! Hugging Face `tokenizer.json`) they are the token ids the tokenizer
//! gives the prompt text, without special tokens (no BOS), as loadgen
//! counts them. A chat request's prompt is its messages' contents joined
//! with newlines, with no chat template applied (the simulator knows no
//! model's template), so its count is that of the joined contents.
//! `usage.prompt_tokens` is this count; an empty prompt counts one token,
//! since its prefill still takes a step.
//!
//! # Prefix cache (`--prefix-cache-blocks N`, 0 = off)
//!
//! Prompts are cut into blocks of `--kv-block-tokens` tokens (16, vLLM's
//! default). A block is identified by a hash chained over its tokens and
//! the hash of the block before, so a block hits only when the whole
//! prompt up to its end matches: only true prefixes are shared. When a
//! sequence is admitted, its leading full blocks found in the cache cost no
//! prefill (it starts prefilled past them); as in vLLM, at least its last
//! token is always computed, since the next token needs it. When its
//! prefill ends, all its prompt's full blocks go into the cache. The cache
//! holds `N` blocks and evicts the least recently used; a sequence's blocks
//! are used last-block-first, so that of one prompt the tail goes before
//! the head (vLLM frees a request's blocks in that order), keeping the
//! prefixes others can still hit. The cache is modelled apart from the KV
//! capacity below: its blocks do not count as used.
//!
//! # KV capacity (`--kv-cache-tokens N`, 0 = unlimited)
//!
//! Running sequences hold KV blocks for their prompt and the tokens they
//! have generated, rounded up to whole blocks (`N / --kv-block-tokens`
//! blocks in all). When a running sequence needs a block and none is
//! free, the newest running sequence is preempted, as vLLM's recompute
//! preemption does: its blocks are freed, it goes back to the front of the
//! waiting queue, and when it is admitted again its prompt and the tokens
//! it had already generated are prefilled anew before it generates the
//! next one. Tokens already sent are not sent again: the client sees a
//! longer gap. A step that preempted admits no one; a waiting sequence is
//! admitted only when its first chunk fits. A request whose prompt plus
//! answer could never fit alone is refused (400).
//!
//! # Answers
//!
//! Tokens are the words of `model::output::expected_output(model, prompt)`
//! (the first as it is, the others with their leading space), so a client
//! can verify a streamed answer; `max_tokens` cuts it (`finish_reason`
//! `length`, else `stop`), and with vLLM's `ignore_eos` the answer goes on,
//! repeated, to exactly `max_tokens`. Streams are server-sent events in OpenAI's chunk
//! format ending in `data: [DONE]`, with a `usage` chunk when the request
//! asks `stream_options.include_usage`; without `stream` the whole answer
//! comes as one JSON body with `usage`. A completions `prompt` may be a
//! list: one sequence, and one choice `index`, per prompt.
//!
//! `/metrics` reports the step loop under vLLM's metric names (see the
//! `metrics` module): requests running and waiting, KV usage,
//! preemptions, prefix-cache queries and hits, tokens, and the queue,
//! prefill, decode, first-token, inter-token and end-to-end times.
//!
//! # Write stamps (`--sse-stamps`)
//!
//! With it, every SSE event of a stream is preceded by a comment line
//! `: t=<ns>`, the wall-clock time (Unix ns) at which the server wrote the
//! event, so a client can tell its own delay in reading from the server's
//! in writing. SSE clients ignore comment lines. The stamp is taken when
//! the HTTP connection polls the event out of the response body (the
//! `FaultBody::Stream` poll), right before hyper encodes it and writes it
//! to the socket in that same poll of the connection: it includes no wait
//! in the server's queues, only the encoding and the write call after it.
//! Over HTTP/2 a stream's flow-control window can hold an event after its
//! stamp.

use std::collections::hash_map::DefaultHasher;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::config::ConfigError;
use crate::faults::FaultBody;
use crate::http::json;
use crate::metrics::{FinishReason, LlmMetrics, SequenceTimes};
use crate::timer::PreciseTimer;

/// The step loop's cost model and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    /// Most sequences running at once (vLLM's `--max-num-seqs`).
    pub max_num_seqs: usize,
    /// Fixed cost of one step, ms.
    pub step_base_ms: f64,
    /// Cost per running sequence in a step, ms.
    pub step_per_seq_ms: f64,
    /// Cost per prompt token prefilled in a step, ms.
    pub prefill_per_token_ms: f64,
    /// Tokens one step may process (decodes plus prefill chunks).
    pub max_batched_tokens: usize,
    /// Prompt tokens from this tokenizer; `None`: whitespace words.
    pub tokenizer: Option<PromptTokenizer>,
    /// Tokens per KV block, of the prefix cache and the KV capacity
    /// (vLLM's `--block-size`).
    pub kv_block_tokens: usize,
    /// Blocks the prefix cache holds; 0: no prefix cache.
    pub prefix_cache_blocks: usize,
    /// KV capacity of the running sequences, in tokens (whole blocks of
    /// it); 0: unlimited.
    pub kv_cache_tokens: usize,
    /// Write a `: t=<unix ns>` comment line before each SSE event.
    pub sse_stamps: bool,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            max_num_seqs: 8,
            step_base_ms: 20.0,
            step_per_seq_ms: 0.5,
            prefill_per_token_ms: 0.05,
            max_batched_tokens: 2048,
            tokenizer: None,
            kv_block_tokens: 16,
            prefix_cache_blocks: 0,
            kv_cache_tokens: 0,
            sse_stamps: false,
        }
    }
}

impl LlmConfig {
    /// The KV capacity in blocks; `None`: unlimited.
    fn kv_capacity_blocks(&self) -> Option<usize> {
        (self.kv_cache_tokens > 0).then(|| self.kv_cache_tokens / self.kv_block_tokens.max(1))
    }

    /// Blocks that hold `tokens` tokens.
    fn blocks(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.kv_block_tokens.max(1))
    }
}

/// A Hugging Face tokenizer read from a local `tokenizer.json`; equal to
/// another when read from the same path.
#[derive(Clone)]
pub struct PromptTokenizer {
    path: PathBuf,
    tokenizer: Arc<tokenizers::Tokenizer>,
}

impl PromptTokenizer {
    /// Reads `path`; a missing file or one that is not a tokenizer is an
    /// error naming `--tokenizer`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let bad = |why: String| ConfigError::Tokenizer {
            path: path.to_owned(),
            why,
        };
        if !path.is_file() {
            return Err(bad(
                "no such file; give a local Hugging Face tokenizer.json (nothing is downloaded)"
                    .to_owned(),
            ));
        }
        let tokenizer = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| bad(format!("not a Hugging Face tokenizer.json: {e}")))?;
        Ok(Self {
            path: path.to_owned(),
            tokenizer: Arc::new(tokenizer),
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The token ids of `text`, without special tokens.
    fn token_ids(&self, text: &str) -> Result<Vec<u32>, String> {
        self.tokenizer
            .encode(text, false)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|e| e.to_string())
    }
}

impl std::fmt::Debug for PromptTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PromptTokenizer").field(&self.path).finish()
    }
}

impl PartialEq for PromptTokenizer {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

/// A prompt as the step loop sees it.
#[derive(Debug, Clone, PartialEq)]
struct Prompt {
    /// Its tokens (at least one).
    tokens: usize,
    /// The chained hash of each of its full blocks; empty without a prefix
    /// cache.
    block_hashes: Vec<u64>,
}

/// The chained hashes of the full blocks of `tokens` (token identities).
fn block_hashes(tokens: &[u64], block_tokens: usize) -> Vec<u64> {
    let mut previous = 0u64;
    tokens
        .chunks_exact(block_tokens.max(1))
        .map(|block| {
            let mut hasher = DefaultHasher::new();
            previous.hash(&mut hasher);
            block.hash(&mut hasher);
            previous = hasher.finish();
            previous
        })
        .collect()
}

/// A word's identity as a token: a hash of its text.
fn word_identity(word: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    word.hash(&mut hasher);
    hasher.finish()
}

/// A block-level LRU set of prompt blocks, by chained hash.
struct PrefixCache {
    blocks: lru::LruCache<u64, ()>,
}

impl PrefixCache {
    fn new(capacity: NonZeroUsize) -> Self {
        Self {
            blocks: lru::LruCache::new(capacity),
        }
    }

    /// How many of `hashes`, from the first, are cached (without using
    /// them).
    fn leading_hits(&self, hashes: &[u64]) -> usize {
        hashes
            .iter()
            .take_while(|h| self.blocks.contains(h))
            .count()
    }

    /// Marks `hashes` used (present ones) or adds them, last first, so the
    /// first ends most recently used and a prompt's tail is evicted first.
    fn use_blocks(&mut self, hashes: &[u64]) {
        for hash in hashes.iter().rev() {
            self.blocks.put(*hash, ());
        }
    }
}

/// What a sequence's receiver gets.
enum Emit {
    Token(String),
    Done,
}

struct Sequence {
    prompt: Prompt,
    tokens: Vec<String>,
    finish: FinishReason,
    tx: mpsc::UnboundedSender<Emit>,
    /// Tokens sent to the client.
    emitted: usize,
    /// Tokens this admission computes before its next token: the prompt,
    /// plus the tokens emitted before a preemption.
    target: usize,
    /// Of `target`, those computed (or found in the prefix cache).
    prefilled: usize,
    /// Whether this admission's prefill has not yet ended.
    fresh: bool,
    /// KV blocks held.
    kv_blocks: usize,
    arrived: Instant,
    first_admitted: Option<Instant>,
    first_token_at: Option<Instant>,
    last_token_at: Option<Instant>,
}

impl Sequence {
    fn decoding(&self) -> bool {
        self.prefilled == self.target
    }
}

/// What one step does, for its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StepWork {
    running: usize,
    prefill_tokens: usize,
}

/// The scheduler's state: waiting and running sequences, the prefix cache
/// and the KV blocks. Time comes in as arguments, so steps can be worked
/// by hand in tests.
struct Batcher {
    config: LlmConfig,
    capacity_blocks: Option<usize>,
    waiting: VecDeque<Sequence>,
    running: Vec<Sequence>,
    /// KV blocks the running sequences hold.
    used_blocks: usize,
    cache: Option<PrefixCache>,
    metrics: Arc<LlmMetrics>,
}

impl Batcher {
    fn new(config: LlmConfig, metrics: Arc<LlmMetrics>) -> Self {
        Self {
            capacity_blocks: config.kv_capacity_blocks(),
            cache: NonZeroUsize::new(config.prefix_cache_blocks).map(PrefixCache::new),
            config,
            waiting: VecDeque::new(),
            running: Vec::new(),
            used_blocks: 0,
            metrics,
        }
    }

    fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    fn push(&mut self, sequence: Sequence) {
        self.waiting.push_back(sequence);
    }

    fn publish(&self) {
        self.metrics
            .set_occupancy(self.running.len(), self.waiting.len(), self.used_blocks);
    }

    /// Sends the newest running sequence back to the front of the queue,
    /// its blocks freed and its progress lost.
    fn preempt_newest(&mut self) {
        if let Some(mut sequence) = self.running.pop() {
            self.used_blocks -= sequence.kv_blocks;
            sequence.kv_blocks = 0;
            sequence.prefilled = 0;
            self.metrics.observe_preemption();
            self.waiting.push_front(sequence);
        }
    }

    /// Grows running sequence `index` to `blocks` blocks, preempting the
    /// newest until they fit; false when `index` itself was preempted.
    fn reserve(&mut self, index: usize, blocks: usize, preempted: &mut bool) -> bool {
        if let Some(capacity) = self.capacity_blocks {
            loop {
                let others = self.used_blocks - self.running[index].kv_blocks;
                if others + blocks <= capacity {
                    break;
                }
                let was_last = index + 1 == self.running.len();
                self.preempt_newest();
                *preempted = true;
                if was_last {
                    return false;
                }
            }
        }
        self.used_blocks = self.used_blocks - self.running[index].kv_blocks + blocks;
        self.running[index].kv_blocks = blocks;
        true
    }

    /// Plans the step that starts at `now`: who runs and how many prompt
    /// tokens it computes; `None` when nothing runs.
    fn schedule(&mut self, now: Instant) -> Option<StepWork> {
        // Clients that left free their slots before the step.
        let metrics = &self.metrics;
        let mut freed = 0;
        self.running.retain(|s| {
            let open = !s.tx.is_closed();
            if !open {
                freed += s.kv_blocks;
                metrics.observe_finished(FinishReason::Abort, None);
            }
            open
        });
        self.used_blocks -= freed;
        self.waiting.retain(|s| {
            let open = !s.tx.is_closed();
            if !open {
                metrics.observe_finished(FinishReason::Abort, None);
            }
            open
        });
        let mut preempted = false;
        // Decodes first, one token each, oldest first.
        let mut decoding = 0;
        let mut index = 0;
        while index < self.running.len() {
            let s = &self.running[index];
            if s.decoding() {
                let blocks = self.config.blocks(s.prompt.tokens + s.emitted);
                if !self.reserve(index, blocks, &mut preempted) {
                    break;
                }
                decoding += 1;
            }
            index += 1;
        }
        // Then prefill chunks of the running, oldest first.
        let mut budget = self.config.max_batched_tokens.saturating_sub(decoding);
        let mut prefill_tokens = 0;
        let mut index = 0;
        while index < self.running.len() {
            let s = &self.running[index];
            let chunk = (s.target - s.prefilled).min(budget);
            if chunk > 0 {
                let blocks = self.config.blocks(s.prefilled + chunk);
                if !self.reserve(index, blocks, &mut preempted) {
                    break;
                }
                self.running[index].prefilled += chunk;
                budget -= chunk;
                prefill_tokens += chunk;
            }
            index += 1;
        }
        // Then the waiting, while slots are free (and, as vLLM does, not in
        // a step that had to preempt).
        while !preempted && self.running.len() < self.config.max_num_seqs {
            let Some(s) = self.waiting.front() else {
                break;
            };
            let target = s.prompt.tokens + s.emitted;
            // At least the last token is computed: its output is the next
            // token.
            let cacheable = ((target - 1) / self.config.kv_block_tokens.max(1))
                .min(s.prompt.block_hashes.len());
            let hit_blocks = self
                .cache
                .as_ref()
                .map_or(0, |c| c.leading_hits(&s.prompt.block_hashes[..cacheable]));
            let hit = hit_blocks * self.config.kv_block_tokens;
            let chunk = (target - hit).min(budget);
            let blocks = self.config.blocks(hit + chunk);
            if let Some(capacity) = self.capacity_blocks {
                // Alone it always fits (a request that could not is
                // refused), so an empty batch always takes one.
                if !self.running.is_empty() && self.used_blocks + blocks > capacity {
                    break;
                }
            }
            let Some(mut s) = self.waiting.pop_front() else {
                break;
            };
            if let Some(cache) = &mut self.cache {
                cache.use_blocks(&s.prompt.block_hashes[..hit_blocks]);
                self.metrics.observe_prefix_lookup(target, hit);
            }
            if s.first_admitted.is_none() {
                s.first_admitted = Some(now);
                self.metrics
                    .observe_queue_time(now.saturating_duration_since(s.arrived).as_secs_f64());
            }
            s.target = target;
            s.prefilled = hit + chunk;
            s.fresh = true;
            s.kv_blocks = blocks;
            self.used_blocks += blocks;
            budget -= chunk;
            prefill_tokens += chunk;
            self.running.push(s);
        }
        self.publish();
        (!self.running.is_empty()).then_some(StepWork {
            running: self.running.len(),
            prefill_tokens,
        })
    }

    /// Ends the step at `now`: every sequence whose prompt is done emits
    /// one token; finished ones leave.
    fn complete(&mut self, now: Instant) {
        for s in self.running.iter_mut().filter(|s| s.decoding()) {
            if s.fresh {
                s.fresh = false;
                if let Some(cache) = &mut self.cache {
                    cache.use_blocks(&s.prompt.block_hashes);
                }
            }
            if let Some(token) = s.tokens.get(s.emitted) {
                let _ = s.tx.send(Emit::Token(token.clone()));
                s.emitted += 1;
                let first = s.first_token_at.is_none().then(|| {
                    (
                        s.prompt.tokens,
                        now.saturating_duration_since(s.arrived).as_secs_f64(),
                    )
                });
                let gap = s
                    .last_token_at
                    .map(|last| now.saturating_duration_since(last).as_secs_f64());
                s.first_token_at.get_or_insert(now);
                s.last_token_at = Some(now);
                self.metrics.observe_token(first, gap);
            }
        }
        let (finished, still): (Vec<Sequence>, Vec<Sequence>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|s| s.decoding() && s.emitted == s.tokens.len());
        self.running = still;
        self.used_blocks -= finished.iter().map(|s| s.kv_blocks).sum::<usize>();
        // The gauges drop before a finished answer ends: a client that has
        // read `[DONE]` and then reads /metrics sees its sequence gone,
        // also when it was the last one and the loop goes idle.
        self.publish();
        for s in finished {
            let since = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
                (Some(from), Some(to)) => to.saturating_duration_since(from).as_secs_f64(),
                _ => 0.0,
            };
            self.metrics.observe_finished(
                s.finish,
                Some(SequenceTimes {
                    prefill_s: since(s.first_admitted, s.first_token_at.or(Some(now))),
                    decode_s: since(s.first_token_at, s.last_token_at),
                    e2e_s: now.saturating_duration_since(s.arrived).as_secs_f64(),
                }),
            );
            let _ = s.tx.send(Emit::Done);
        }
    }
}

/// A sequence ready to enqueue: its prompt, its answer, its finish reason.
struct Planned {
    prompt: Prompt,
    tokens: Vec<String>,
    finish: &'static str,
}

/// One sequence's tokens as the step loop emits them; dropping it leaves
/// the sequence, whose slot the next step frees.
pub(crate) struct TokenStream {
    rx: mpsc::UnboundedReceiver<Emit>,
}

/// The step loop stopped (the server is shutting down) before the answer
/// was whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interrupted;

impl TokenStream {
    /// The next token as its step ends; `None` once the answer is whole.
    pub(crate) async fn next(&mut self) -> Result<Option<String>, Interrupted> {
        match self.rx.recv().await {
            Some(Emit::Token(token)) => Ok(Some(token)),
            Some(Emit::Done) => Ok(None),
            None => Err(Interrupted),
        }
    }
}

/// Handle to the step loop.
pub(crate) struct LlmEngine {
    submit: mpsc::UnboundedSender<Sequence>,
    config: LlmConfig,
    /// What `/metrics` reports of the LLM routes.
    pub(crate) metrics: Arc<LlmMetrics>,
}

impl LlmEngine {
    /// Starts the step loop on the current runtime; its metrics are
    /// labelled `model_name`.
    pub(crate) fn start(config: LlmConfig, model_name: &str) -> std::io::Result<Self> {
        let (submit, incoming) = mpsc::unbounded_channel();
        let metrics = Arc::new(LlmMetrics::new(model_name, config.kv_capacity_blocks()));
        let timer = PreciseTimer::start()?;
        let batcher = Batcher::new(config.clone(), metrics.clone());
        tokio::spawn(step_loop(batcher, incoming, timer));
        Ok(Self {
            submit,
            config,
            metrics,
        })
    }

    /// `text` as the step loop sees it.
    fn prompt(&self, text: &str) -> Result<Prompt, String> {
        let identities: Vec<u64> = match &self.config.tokenizer {
            Some(tokenizer) => tokenizer
                .token_ids(text)?
                .into_iter()
                .map(u64::from)
                .collect(),
            None => text.split_whitespace().map(word_identity).collect(),
        };
        let block_hashes = if self.config.prefix_cache_blocks > 0 {
            block_hashes(&identities, self.config.kv_block_tokens)
        } else {
            Vec::new()
        };
        Ok(Prompt {
            // At least one token: an empty prompt still needs a prefill.
            tokens: identities.len().max(1),
            block_hashes,
        })
    }

    /// Whether a sequence of `prompt_tokens` and an answer of
    /// `answer_tokens` fits the KV capacity alone; `Err` says why not.
    fn fits(&self, prompt_tokens: usize, answer_tokens: usize) -> Result<(), String> {
        let Some(capacity) = self.config.kv_capacity_blocks() else {
            return Ok(());
        };
        // The last token is emitted, never computed into the cache.
        let most = prompt_tokens + answer_tokens.saturating_sub(1);
        if self.config.blocks(most) <= capacity {
            return Ok(());
        }
        Err(format!(
            "a prompt of {prompt_tokens} tokens with an answer of {answer_tokens} tokens needs {most} tokens of KV cache, more than the server's {} (--kv-cache-tokens, in blocks of {}); send a shorter prompt or a smaller max_tokens",
            capacity * self.config.kv_block_tokens,
            self.config.kv_block_tokens
        ))
    }

    /// The answer to `prompt` from `model`, cut by `max_tokens` (or, with
    /// `ignore_eos`, made exactly that long), with its finish reason
    /// (`length` or `stop`); `Err` says why the prompt cannot run.
    fn plan(
        &self,
        model: &str,
        prompt: &str,
        max_tokens: Option<usize>,
        ignore_eos: bool,
    ) -> Result<Planned, String> {
        let all = model::output::answer_tokens(model, prompt);
        let limit = model::output::answer_length(all.len(), max_tokens, ignore_eos);
        let finish = if max_tokens == Some(limit) && (ignore_eos || limit < all.len()) {
            "length"
        } else {
            "stop"
        };
        let tokens: Vec<String> = (0..limit)
            .map(|k| model::output::answer_token(&all, k))
            .collect();
        let prompt = self
            .prompt(prompt)
            .map_err(|e| format!("cannot tokenize the prompt: {e}"))?;
        self.fits(prompt.tokens, tokens.len())?;
        Ok(Planned {
            prompt,
            tokens,
            finish,
        })
    }

    /// Starts generating the answer to `prompt` from `model`, at most
    /// `max_tokens` tokens (1 to 65536), on the step loop: the same
    /// sequence, and the same tokens, as the OpenAI routes run for it.
    /// `Err` says why it cannot run.
    pub(crate) fn generate(
        &self,
        model: &str,
        prompt: &str,
        max_tokens: Option<usize>,
    ) -> Result<TokenStream, String> {
        if let Some(n) = max_tokens.filter(|n| !(1..=MAX_TOKENS).contains(n)) {
            return Err(format!("max_tokens is {n}; allowed: 1 to {MAX_TOKENS}"));
        }
        let planned = self.plan(model, prompt, max_tokens, false)?;
        let reason = if planned.finish == "length" {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        Ok(TokenStream {
            rx: self.enqueue(planned.prompt, planned.tokens, reason),
        })
    }

    fn enqueue(
        &self,
        prompt: Prompt,
        tokens: Vec<String>,
        finish: FinishReason,
    ) -> mpsc::UnboundedReceiver<Emit> {
        let (tx, rx) = mpsc::unbounded_channel();
        let sequence = Sequence {
            target: prompt.tokens,
            prompt,
            tokens,
            finish,
            tx,
            emitted: 0,
            prefilled: 0,
            fresh: true,
            kv_blocks: 0,
            arrived: Instant::now(),
            first_admitted: None,
            first_token_at: None,
            last_token_at: None,
        };
        // A closed loop means the server is going away; the receiver then
        // ends at once and the client sees a cut stream.
        let _ = self.submit.send(sequence);
        rx
    }
}

async fn step_loop(
    mut batcher: Batcher,
    mut incoming: mpsc::UnboundedReceiver<Sequence>,
    timer: PreciseTimer,
) {
    loop {
        if batcher.is_idle() {
            match incoming.recv().await {
                Some(sequence) => batcher.push(sequence),
                None => return,
            }
        }
        while let Ok(sequence) = incoming.try_recv() {
            batcher.push(sequence);
        }
        let Some(work) = batcher.schedule(Instant::now()) else {
            continue;
        };
        let config = &batcher.config;
        let step_ms = config.step_base_ms
            + config.step_per_seq_ms * work.running as f64
            + config.prefill_per_token_ms * work.prefill_tokens as f64;
        let started = Instant::now();
        timer
            .sleep_until(started + Duration::from_secs_f64(step_ms.max(0.0) / 1000.0))
            .await;
        batcher.complete(Instant::now());
    }
}

/// `messages[].content` of a chat request.
#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    content: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The fields of a chat or completions request this server reads; others
/// (temperature, `ignore_eos`, ...) are accepted and ignored.
#[derive(Debug, Deserialize)]
struct LlmRequest {
    model: String,
    #[serde(default)]
    messages: Option<Vec<Message>>,
    #[serde(default)]
    prompt: Option<PromptField>,
    #[serde(default)]
    max_tokens: Option<usize>,
    /// vLLM's extension: generate `max_tokens` whatever the answer's end.
    #[serde(default)]
    ignore_eos: bool,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

/// Most tokens one answer may ask for (with `ignore_eos` an answer is as
/// long as asked).
const MAX_TOKENS: usize = 65_536;

/// Which endpoint was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
}

fn openai_error(status: StatusCode, message: String) -> Response<FaultBody> {
    json(
        status,
        json!({"error": {"message": message, "type": "invalid_request_error"}})
            .to_string()
            .into_bytes(),
    )
}

/// Answers an OpenAI-compatible request on `engine` for one of `models`
/// or `stream_model` (the gRPC streaming model, an LLM too: both protocols
/// answer it the same tokens).
pub(crate) async fn handle(
    engine: &LlmEngine,
    models: &[String],
    stream_model: &str,
    endpoint: Endpoint,
    body: &[u8],
) -> Response<FaultBody> {
    let request: LlmRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {e}"),
            )
        }
    };
    if !models.contains(&request.model) && request.model != stream_model {
        return openai_error(
            StatusCode::NOT_FOUND,
            format!("The model `{}` does not exist.", request.model),
        );
    }
    let prompts: Vec<String> = match (endpoint, &request.messages, &request.prompt) {
        (Endpoint::Chat, Some(messages), _) if !messages.is_empty() => vec![messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n")],
        (Endpoint::Completions, _, Some(PromptField::One(p))) => vec![p.clone()],
        (Endpoint::Completions, _, Some(PromptField::Many(ps)))
            if !ps.is_empty() && ps.len() <= 256 =>
        {
            ps.clone()
        }
        (Endpoint::Chat, ..) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "`messages` must be a non-empty list".into(),
            )
        }
        (Endpoint::Completions, ..) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "`prompt` must be a string or a list of 1 to 256 strings".into(),
            )
        }
    };
    if let Some(n) = request.max_tokens.filter(|n| !(1..=MAX_TOKENS).contains(n)) {
        return openai_error(
            StatusCode::BAD_REQUEST,
            format!("`max_tokens` is {n}; allowed: 1 to {MAX_TOKENS}"),
        );
    }
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    // Every prompt is checked before any is enqueued: a refused request
    // leaves nothing running.
    let mut sequences = Vec::new();
    for prompt in &prompts {
        match engine.plan(
            &request.model,
            prompt,
            request.max_tokens,
            request.ignore_eos,
        ) {
            Ok(planned) => sequences.push((planned.prompt, planned.tokens, planned.finish)),
            Err(why) => return openai_error(StatusCode::BAD_REQUEST, why),
        }
    }
    let choices: Vec<_> = sequences
        .into_iter()
        .map(|(prompt, tokens, finish)| {
            let (prompt_tokens, answer_tokens) = (prompt.tokens, tokens.len());
            let reason = if finish == "length" {
                FinishReason::Length
            } else {
                FinishReason::Stop
            };
            let rx = engine.enqueue(prompt, tokens, reason);
            (rx, finish, prompt_tokens, answer_tokens)
        })
        .collect();
    let object = match endpoint {
        Endpoint::Chat => "chat.completion",
        Endpoint::Completions => "text_completion",
    };
    let usage = json!({
        "prompt_tokens": choices.iter().map(|c| c.2).sum::<usize>(),
        "completion_tokens": choices.iter().map(|c| c.3).sum::<usize>(),
        "total_tokens": choices.iter().map(|c| c.2 + c.3).sum::<usize>(),
    });
    if !request.stream {
        let mut out = Vec::new();
        for (index, (mut rx, finish, ..)) in choices.into_iter().enumerate() {
            let mut text = String::new();
            while let Some(emit) = rx.recv().await {
                match emit {
                    Emit::Token(t) => text.push_str(&t),
                    Emit::Done => break,
                }
            }
            out.push(match endpoint {
                Endpoint::Chat => json!({"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": finish}),
                Endpoint::Completions => json!({"index": index, "text": text, "finish_reason": finish}),
            });
        }
        let body = json!({"id": "cmpl-stub", "object": object, "model": request.model, "choices": out, "usage": usage});
        return json(StatusCode::OK, body.to_string().into_bytes());
    }
    // Stream: every choice's tokens as they come, in one event stream.
    let (events, frames) = mpsc::unbounded_channel::<Bytes>();
    let model = request.model.clone();
    tokio::spawn(async move {
        let chunk_object = format!("{object}.chunk");
        let frame = |value: serde_json::Value| Bytes::from(format!("data: {value}\n\n"));
        let mut merged = mpsc::unbounded_channel::<(usize, Option<String>)>();
        let mut finishes = Vec::new();
        for (index, (mut rx, finish, ..)) in choices.into_iter().enumerate() {
            finishes.push(finish);
            let tx = merged.0.clone();
            tokio::spawn(async move {
                while let Some(emit) = rx.recv().await {
                    match emit {
                        Emit::Token(t) => {
                            if tx.send((index, Some(t))).is_err() {
                                return;
                            }
                        }
                        Emit::Done => {
                            let _ = tx.send((index, None));
                            return;
                        }
                    }
                }
            });
        }
        drop(merged.0);
        let mut open = finishes.len();
        while let Some((index, token)) = merged.1.recv().await {
            let choice = match (endpoint, &token) {
                (Endpoint::Chat, Some(t)) => {
                    json!({"index": index, "delta": {"content": t}, "finish_reason": null})
                }
                (Endpoint::Completions, Some(t)) => {
                    json!({"index": index, "text": t, "finish_reason": null})
                }
                (Endpoint::Chat, None) => {
                    json!({"index": index, "delta": {}, "finish_reason": finishes[index]})
                }
                (Endpoint::Completions, None) => {
                    json!({"index": index, "text": "", "finish_reason": finishes[index]})
                }
            };
            let chunk = json!({"id": "cmpl-stub", "object": chunk_object, "model": model, "choices": [choice]});
            if events.send(frame(chunk)).is_err() {
                return; // the client left
            }
            if token.is_none() {
                open -= 1;
                if open == 0 {
                    break;
                }
            }
        }
        if open > 0 {
            return; // the server went away mid-answer: the stream ends cut
        }
        if include_usage {
            let chunk = json!({"id": "cmpl-stub", "object": chunk_object, "model": model, "choices": [], "usage": usage});
            let _ = events.send(frame(chunk));
        }
        let _ = events.send(Bytes::from_static(b"data: [DONE]\n\n"));
    });
    let mut response = Response::new(FaultBody::Stream {
        frames,
        stamps: engine.config.sse_stamps,
    });
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sequence of prompt token identities `prompt` and an answer of
    /// `answer` tokens `t0`, `t1`, ...
    fn sequence(
        config: &LlmConfig,
        prompt: &[u64],
        answer: usize,
    ) -> (Sequence, mpsc::UnboundedReceiver<Emit>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let prompt = Prompt {
            tokens: prompt.len().max(1),
            block_hashes: block_hashes(prompt, config.kv_block_tokens),
        };
        let sequence = Sequence {
            target: prompt.tokens,
            prompt,
            tokens: (0..answer).map(|k| format!("t{k}")).collect(),
            finish: FinishReason::Length,
            tx,
            emitted: 0,
            prefilled: 0,
            fresh: true,
            kv_blocks: 0,
            arrived: Instant::now(),
            first_admitted: None,
            first_token_at: None,
            last_token_at: None,
        };
        (sequence, rx)
    }

    fn batcher(config: LlmConfig) -> Batcher {
        let metrics = Arc::new(LlmMetrics::new("m", config.kv_capacity_blocks()));
        Batcher::new(config, metrics)
    }

    /// Runs one step, 10 ms after `at`, which it moves on.
    fn step(batcher: &mut Batcher, at: &mut Instant) -> Option<StepWork> {
        let work = batcher.schedule(*at);
        *at += Duration::from_millis(10);
        if work.is_some() {
            batcher.complete(*at);
        }
        work
    }

    /// What a receiver got so far: tokens, then `DONE` if it ended.
    fn received(rx: &mut mpsc::UnboundedReceiver<Emit>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(emit) = rx.try_recv() {
            out.push(match emit {
                Emit::Token(t) => t,
                Emit::Done => "DONE".to_owned(),
            });
        }
        out
    }

    /// The value of the sample `name{...}` in `text`.
    fn sample(text: &str, name: &str) -> f64 {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    }

    fn metrics_text(batcher: &Batcher) -> String {
        let mut text = String::new();
        batcher.metrics.render(&mut text);
        text
    }

    #[test]
    fn a_shared_prefix_is_prefilled_once() {
        let config = LlmConfig {
            kv_block_tokens: 16,
            prefix_cache_blocks: 100,
            ..LlmConfig::default()
        };
        let mut b = batcher(config.clone());
        let mut at = Instant::now();
        let shared: Vec<u64> = (0..64).collect();
        let first: Vec<u64> = shared.iter().copied().chain(100..136).collect();
        let (s, _rx1) = sequence(&config, &first, 1);
        b.push(s);
        assert_eq!(step(&mut b, &mut at).unwrap().prefill_tokens, 100);
        // Same 64-token prefix (4 blocks), then 36 other tokens.
        let second: Vec<u64> = shared.iter().copied().chain(200..236).collect();
        let (s, _rx2) = sequence(&config, &second, 1);
        b.push(s);
        assert_eq!(step(&mut b, &mut at).unwrap().prefill_tokens, 36);
        // The very same prompt: 6 full blocks cached, but its last token is
        // computed all the same, so 96 of 100 are hits.
        let (s, _rx3) = sequence(&config, &first, 1);
        b.push(s);
        assert_eq!(step(&mut b, &mut at).unwrap().prefill_tokens, 4);
        // Same tokens after a different first one: no block matches.
        let shifted: Vec<u64> = std::iter::once(999).chain(1..100).collect();
        let (s, _rx4) = sequence(&config, &shifted, 1);
        b.push(s);
        assert_eq!(step(&mut b, &mut at).unwrap().prefill_tokens, 100);
        let text = metrics_text(&b);
        assert_eq!(sample(&text, "vllm:prefix_cache_queries_total"), 400.0);
        assert_eq!(sample(&text, "vllm:prefix_cache_hits_total"), 64.0 + 96.0);
        assert_eq!(sample(&text, "vllm:prompt_tokens_total"), 400.0);
    }

    #[test]
    fn without_a_prefix_cache_every_prompt_is_prefilled_whole() {
        let config = LlmConfig::default();
        let mut b = batcher(config.clone());
        let mut at = Instant::now();
        let prompt: Vec<u64> = (0..100).collect();
        for _ in 0..2 {
            let (s, _rx) = sequence(&config, &prompt, 1);
            b.push(s);
            assert_eq!(step(&mut b, &mut at).unwrap().prefill_tokens, 100);
        }
        assert_eq!(
            sample(&metrics_text(&b), "vllm:prefix_cache_queries_total"),
            0.0
        );
    }

    #[test]
    fn the_prefix_cache_evicts_the_least_recently_used_block_tail_first() {
        let mut cache = PrefixCache::new(NonZeroUsize::new(3).unwrap());
        let (a1, a2, b1, b2, c1) = (1, 2, 11, 12, 21);
        // Inserted last block first: a1 is the most recent, a2 the least.
        cache.use_blocks(&[a1, a2]);
        assert_eq!(cache.leading_hits(&[a1, a2]), 2);
        // b's two blocks need room for one: a2, A's tail, goes.
        cache.use_blocks(&[b1, b2]);
        assert_eq!(cache.leading_hits(&[a1, a2]), 1);
        assert_eq!(cache.leading_hits(&[b1, b2]), 2);
        // A hit on a1 makes it recent; the least recent is now b2.
        cache.use_blocks(&[a1]);
        cache.use_blocks(&[c1]);
        assert_eq!(cache.leading_hits(&[b1, b2]), 1);
        assert_eq!(cache.leading_hits(&[a1]), 1);
        assert_eq!(cache.leading_hits(&[c1]), 1);
        // Hits count from the first block: a missing first block hides
        // the cached ones after it.
        assert_eq!(cache.leading_hits(&[b2, b1]), 0);
    }

    #[test]
    fn block_hashes_chain_over_every_block_before() {
        let one = block_hashes(&[1, 2, 3, 4, 5, 6, 7], 2);
        assert_eq!(one.len(), 3, "only full blocks");
        let other = block_hashes(&[9, 2, 3, 4], 2);
        // The same second block after a different first one differs.
        assert_ne!(one[1], other[1]);
        assert_eq!(one[..2], block_hashes(&[1, 2, 3, 4], 2)[..]);
    }

    #[test]
    fn a_full_kv_cache_preempts_the_newest_which_recomputes_and_goes_on() {
        // 4 blocks of 4 tokens; two sequences of 4 prompt tokens and 8
        // answer tokens each need up to 3 blocks.
        let config = LlmConfig {
            kv_block_tokens: 4,
            kv_cache_tokens: 16,
            ..LlmConfig::default()
        };
        let mut b = batcher(config.clone());
        let mut at = Instant::now();
        let (a, mut rx_a) = sequence(&config, &[1, 2, 3, 4], 8);
        let (s, mut rx_b) = sequence(&config, &[5, 6, 7, 8], 8);
        b.push(a);
        b.push(s);
        // Step 1 prefills both (1 block each); steps 2-5 decode them at 2
        // blocks each (5 to 8 tokens).
        assert_eq!(step(&mut b, &mut at).unwrap().prefill_tokens, 8);
        for _ in 2..=5 {
            assert_eq!(
                step(&mut b, &mut at).unwrap(),
                StepWork {
                    running: 2,
                    prefill_tokens: 0
                }
            );
        }
        assert_eq!(received(&mut rx_b), ["t0", "t1", "t2", "t3", "t4"]);
        // Step 6: the older needs a third block; none is free, so the
        // newer is preempted.
        assert_eq!(
            step(&mut b, &mut at).unwrap(),
            StepWork {
                running: 1,
                prefill_tokens: 0
            }
        );
        assert_eq!(sample(&metrics_text(&b), "vllm:num_preemptions_total"), 1.0);
        assert_eq!(sample(&metrics_text(&b), "vllm:num_requests_waiting"), 1.0);
        // Steps 7-8: it cannot come back (9 tokens, 3 blocks) until the
        // older has finished.
        for _ in 7..=8 {
            assert_eq!(step(&mut b, &mut at).unwrap().running, 1);
        }
        assert_eq!(
            received(&mut rx_a),
            ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "DONE"]
        );
        // Step 9: back, it prefills its prompt and its 5 tokens again,
        // then goes on from its sixth token.
        assert_eq!(
            step(&mut b, &mut at).unwrap(),
            StepWork {
                running: 1,
                prefill_tokens: 9
            }
        );
        assert_eq!(received(&mut rx_b), ["t5"]);
        while step(&mut b, &mut at).is_some() {}
        assert_eq!(received(&mut rx_b), ["t6", "t7", "DONE"]);
        let text = metrics_text(&b);
        assert_eq!(sample(&text, "vllm:num_preemptions_total"), 1.0);
        assert_eq!(sample(&text, "vllm:generation_tokens_total"), 16.0);
        // Each prompt counted once, its recompute not.
        assert_eq!(sample(&text, "vllm:prompt_tokens_total"), 8.0);
        assert_eq!(sample(&text, "vllm:kv_cache_usage_perc"), 0.0);
        assert_eq!(sample(&text, "vllm:num_requests_running"), 0.0);
    }

    #[test]
    fn kv_usage_is_the_fraction_of_blocks_held() {
        let config = LlmConfig {
            kv_block_tokens: 4,
            kv_cache_tokens: 40,
            ..LlmConfig::default()
        };
        let mut b = batcher(config.clone());
        let mut at = Instant::now();
        // 6 prompt tokens: 2 of 10 blocks.
        let (s, _rx) = sequence(&config, &[1, 2, 3, 4, 5, 6], 3);
        b.push(s);
        b.schedule(at);
        assert_eq!(sample(&metrics_text(&b), "vllm:kv_cache_usage_perc"), 0.2);
        assert_eq!(sample(&metrics_text(&b), "vllm:gpu_cache_usage_perc"), 0.2);
        at += Duration::from_millis(10);
        b.complete(at);
    }

    #[test]
    fn a_request_that_never_fits_is_refused_before_it_runs() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let engine = LlmEngine::start(
                LlmConfig {
                    kv_block_tokens: 4,
                    kv_cache_tokens: 16,
                    ..LlmConfig::default()
                },
                "m",
            )
            .unwrap();
            // 4 + 12 - 1 = 15 tokens: 4 blocks, fits; 4 + 14 - 1: 5, not.
            assert!(engine.fits(4, 12).is_ok());
            let why = engine.fits(4, 14).unwrap_err();
            assert!(why.contains("--kv-cache-tokens"), "{why}");
        });
    }
}
