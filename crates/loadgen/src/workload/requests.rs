//! What each request carries: its prompt (a payload, a dataset's turn, or
//! a synthetic prompt of a drawn length), its `max_tokens`, and for a
//! conversation its whole history. Built once per request on the load
//! path, from streams seeded by the run's seed and the request's own id,
//! so nothing is held per request beforehand.
//!
//! - Synthetic prompts (`--input-tokens DIST`): the length drawn per
//!   request; with `--prefix-tokens N --prefix-count K` the prompt starts
//!   with one of K prefixes of N tokens (picked per request), then its own
//!   drawn length of unique words, so `input_tokens` is N plus the draw.
//! - Trace rows: the row's input length, and Mooncake's hash ids: block
//!   `h` is the words of a stream seeded by `h` alone, so two requests
//!   that share their first k ids share their first k blocks of text
//!   (`--trace-block-tokens` each, the last one possibly cut short); past
//!   the ids, words of the request's own.
//! - Conversations: turn t of session s sends every earlier message and
//!   answer and its new user message (a drawn-length prompt, the
//!   dataset's turn t, or the payload of its request id).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stats::SplitMix64;

use super::lengths::LengthDist;
use super::prompt::{PromptBuilder, PromptError};
use super::trace::TraceRow;
use super::{seed_of, Turns, WorkloadOptions};
use crate::payloads::Payloads;

/// One request's content.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spec {
    /// The model to name.
    pub model: Arc<str>,
    /// The prompt text (a conversation's contents joined by newlines).
    pub input: String,
    /// Chat messages as JSON text, when not one user message of `input`.
    pub messages: Option<Arc<str>>,
    /// The prompt length asked for, tokens.
    pub input_tokens: Option<u32>,
    /// `max_tokens` to send.
    pub max_tokens: Option<u32>,
    /// `min_tokens` to send (with `ignore_eos`).
    pub min_tokens: Option<u32>,
}

/// The streams a request draws from, one each, so adding a draw to one
/// never shifts another.
#[derive(Clone, Copy)]
#[repr(u64)]
enum Stream {
    Input = 1,
    Output = 2,
    Words = 3,
    PrefixPick = 4,
    PrefixWords = 5,
    Block = 6,
    Turns = 7,
    TurnInput = 8,
    TurnWords = 9,
    TurnOutput = 10,
}

/// Builds every request of a run.
pub(crate) struct Requests {
    payloads: Payloads,
    prompts: Option<PromptBuilder>,
    input: Option<LengthDist>,
    output: Option<LengthDist>,
    prefixes: Vec<String>,
    prefix_tokens: u32,
    /// `max_tokens` of every request when none is drawn (`--max-tokens`,
    /// or `max_tokens` in `--extra-body`).
    max_tokens: Option<u32>,
    ignore_eos: bool,
    seed: u64,
    block_tokens: u32,
    turns: Option<Turns>,
    think_time: Duration,
    /// Requests outside a trace's schedule (the warm-up) get its mean
    /// lengths.
    trace_means: Option<(u32, u32)>,
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests")
            .field("prompts", &self.prompts)
            .field("input", &self.input)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

impl Requests {
    /// Set up from the options: the tokenizer read (an error here is
    /// before any request), the shared prefixes made.
    pub(crate) fn new(
        options: &WorkloadOptions,
        payloads: Payloads,
        max_tokens: Option<u32>,
    ) -> Result<Self, PromptError> {
        let prompts = if options.synthetic() || options.tokenizer.is_some() {
            Some(match &options.tokenizer {
                Some(path) => PromptBuilder::from_tokenizer_file(path)?,
                None => PromptBuilder::approximate(),
            })
        } else {
            None
        };
        let seed = options.seed;
        let (prefixes, prefix_tokens) = match (options.prefix, &prompts) {
            (Some(prefix), Some(builder)) => (
                (0..u64::from(prefix.count))
                    .map(|p| {
                        let mut text = String::new();
                        let mut rng = stream(seed, Stream::PrefixWords, p, 0);
                        builder.extend(&mut text, prefix.tokens, &mut rng);
                        text
                    })
                    .collect(),
                prefix.tokens,
            ),
            _ => (Vec::new(), 0),
        };
        Ok(Self {
            payloads,
            prompts,
            input: options.input_tokens,
            output: options.output_tokens,
            prefixes,
            prefix_tokens,
            max_tokens,
            ignore_eos: options.ignore_eos,
            seed,
            block_tokens: options
                .trace
                .as_ref()
                .map_or(super::DEFAULT_BLOCK_TOKENS, |t| t.block_tokens),
            turns: options.turns,
            think_time: options.think_time,
            trace_means: None,
        })
    }

    /// Requests outside the trace's schedule (the warm-up) get these
    /// lengths: the trace's means.
    pub(crate) fn set_trace_means(&mut self, input_tokens: u32, output_tokens: u32) {
        self.trace_means = Some((input_tokens.max(1), output_tokens.max(1)));
    }

    /// Whether requests are turns of conversations.
    pub(crate) fn converses(&self) -> bool {
        self.turns.is_some()
    }

    /// The wait between an answer and the next turn.
    pub(crate) fn think_time(&self) -> Duration {
        self.think_time
    }

    /// Whether synthetic prompts have exactly their asked length.
    pub(crate) fn exact(&self) -> bool {
        self.prompts.as_ref().is_some_and(PromptBuilder::exact)
    }

    fn max_tokens_for(&self, draw: Option<u32>) -> (Option<u32>, Option<u32>) {
        let max_tokens = draw.or(self.max_tokens);
        (max_tokens, max_tokens.filter(|_| self.ignore_eos))
    }

    fn synthetic(&self, input_tokens: u32, prefix_pick: Option<u64>, words: SplitMix64) -> String {
        let Some(builder) = &self.prompts else {
            return String::new();
        };
        let mut text = match prefix_pick {
            Some(pick) if !self.prefixes.is_empty() => {
                let k = SplitMix64::new(pick).index_below(self.prefixes.len());
                self.prefixes[k].clone()
            }
            _ => String::new(),
        };
        let mut rng = words;
        builder.extend(&mut text, input_tokens, &mut rng);
        text
    }

    /// A request on its own: request `id`'s payload, or a synthetic prompt
    /// of a drawn length.
    pub(crate) fn single(&self, id: u64) -> Spec {
        let seed = self.seed;
        let drawn_output = self
            .output
            .map(|d| d.draw(seed_of(&[seed, Stream::Output as u64, id])));
        let input = match (self.input, self.trace_means) {
            (Some(dist), _) => Some((
                dist.draw(seed_of(&[seed, Stream::Input as u64, id])),
                drawn_output,
            )),
            (None, Some((input, output))) => Some((input, Some(output))),
            (None, None) => None,
        };
        match input {
            Some((n, output)) => {
                let text = self.synthetic(
                    n,
                    Some(seed_of(&[seed, Stream::PrefixPick as u64, id])),
                    stream(seed, Stream::Words, id, 0),
                );
                let prefix = if self.prefixes.is_empty() {
                    0
                } else {
                    self.prefix_tokens
                };
                let (max_tokens, min_tokens) = self.max_tokens_for(output);
                Spec {
                    model: self.payloads.default_model().clone(),
                    input: text,
                    messages: None,
                    input_tokens: Some(n + prefix),
                    max_tokens,
                    min_tokens,
                }
            }
            None => {
                let payload = self.payloads.get(id);
                let (max_tokens, min_tokens) = self.max_tokens_for(drawn_output);
                Spec {
                    model: payload.model,
                    input: payload.input,
                    messages: payload.messages,
                    input_tokens: None,
                    max_tokens,
                    min_tokens,
                }
            }
        }
    }

    /// Request `id` of a trace: the row's lengths, its hash blocks shared.
    pub(crate) fn traced(&self, id: u64, row: &TraceRow) -> Spec {
        let mut text = String::new();
        if let Some(builder) = &self.prompts {
            let mut left = row.input_tokens;
            for &hash in &row.hash_ids {
                if left == 0 {
                    break;
                }
                let n = left.min(self.block_tokens);
                let mut rng = stream(self.seed, Stream::Block, hash, 0);
                builder.extend(&mut text, n, &mut rng);
                left -= n;
            }
            let mut rng = stream(self.seed, Stream::Words, id, 0);
            builder.extend(&mut text, left, &mut rng);
        }
        let (max_tokens, min_tokens) = self.max_tokens_for(Some(row.output_tokens));
        Spec {
            model: self.payloads.default_model().clone(),
            input: text,
            messages: None,
            input_tokens: Some(row.input_tokens),
            max_tokens,
            min_tokens,
        }
    }

    /// How many turns session `session` has (at least 1).
    pub(crate) fn turns_of(&self, session: u64) -> u32 {
        match self.turns {
            None => 1,
            Some(Turns::Drawn(dist)) => {
                dist.draw(seed_of(&[self.seed, Stream::Turns as u64, session]))
            }
            Some(Turns::FromData) => self.payloads.conversation(session).map_or(1, |turns| {
                u32::try_from(turns.len()).unwrap_or(u32::MAX).max(1)
            }),
        }
    }

    /// Turn `turn` (from 1) of session `session`, sent as request
    /// `request_id` after `history` (the earlier user messages and the
    /// server's answers, in order); and its new user message, for the
    /// history of the next turn.
    pub(crate) fn turn(
        &self,
        session: u64,
        turn: u32,
        request_id: u64,
        history: &[(String, String)],
    ) -> (Spec, String) {
        let seed = self.seed;
        let t = u64::from(turn);
        let drawn_output = self
            .output
            .map(|d| d.draw(seed_of(&[seed, Stream::TurnOutput as u64, session, t])));
        let (model, message, input_tokens) = match (self.input, self.payloads.conversation(session))
        {
            (Some(dist), _) => {
                let n = dist.draw(seed_of(&[seed, Stream::TurnInput as u64, session, t]));
                // The first turn starts with the session's shared prefix.
                let pick =
                    (turn == 1).then(|| seed_of(&[seed, Stream::PrefixPick as u64, session]));
                let prefix = if pick.is_some() && !self.prefixes.is_empty() {
                    self.prefix_tokens
                } else {
                    0
                };
                let text = self.synthetic(n, pick, stream(seed, Stream::TurnWords, session, t));
                (
                    self.payloads.default_model().clone(),
                    text,
                    Some(n + prefix),
                )
            }
            (None, Some(turns)) => {
                let index = usize::try_from(turn - 1).unwrap_or(0) % turns.len().max(1);
                (
                    self.payloads.default_model().clone(),
                    turns.get(index).cloned().unwrap_or_default(),
                    None,
                )
            }
            (None, None) => {
                let payload = self.payloads.get(request_id);
                (payload.model, payload.input, None)
            }
        };
        let mut messages = Vec::with_capacity(2 * history.len() + 1);
        let mut joined = String::new();
        for (asked, answer) in history {
            messages.push(json!({"role": "user", "content": asked}));
            messages.push(json!({"role": "assistant", "content": answer}));
            joined.push_str(asked);
            joined.push('\n');
            joined.push_str(answer);
            joined.push('\n');
        }
        messages.push(json!({"role": "user", "content": message}));
        joined.push_str(&message);
        let (max_tokens, min_tokens) = self.max_tokens_for(drawn_output);
        let spec = Spec {
            model,
            input: joined,
            messages: Some(Arc::from(Value::Array(messages).to_string())),
            input_tokens,
            max_tokens,
            min_tokens,
        };
        (spec, message)
    }

    /// The start lines that say what requests carry.
    pub(crate) fn describe(&self, trace: bool) -> Vec<String> {
        let mut lines = Vec::new();
        match &self.prompts {
            Some(builder) => {
                let mut line = format!("prompts: {}", builder.source());
                if let Some(dist) = self.input {
                    line.push_str(&format!("; input tokens {dist}"));
                }
                if trace {
                    line.push_str("; input tokens from the trace, Mooncake hash blocks shared");
                }
                if !self.prefixes.is_empty() {
                    line.push_str(&format!(
                        "; each starts with one of {} shared prefixes of {} tokens",
                        self.prefixes.len(),
                        self.prefix_tokens
                    ));
                }
                lines.push(line);
            }
            None => lines.push(format!("prompts: {}", self.payloads.describe())),
        }
        let max_tokens = match (self.output, trace, self.max_tokens) {
            (Some(dist), _, _) => format!("max_tokens {dist} (drawn per request)"),
            (None, true, _) => "max_tokens from the trace's output lengths".to_owned(),
            (None, false, Some(n)) => format!("max_tokens {n}"),
            (None, false, None) => {
                "no max_tokens sent (the server decides answer lengths)".to_owned()
            }
        };
        let eos = if self.ignore_eos {
            "ignore_eos and min_tokens = max_tokens sent, so servers that take them (vLLM, llama.cpp, stub-server) answer exactly max_tokens"
        } else {
            "ignore_eos and min_tokens not sent: answers may end early (--ignore-eos sends them)"
        };
        lines.push(format!("output: {max_tokens}; {eos}"));
        if let Some(turns) = self.turns {
            let turns = match turns {
                Turns::Drawn(dist) => format!("{dist} turns per session"),
                Turns::FromData => "the dataset's human turns per session".to_owned(),
            };
            lines.push(format!(
                "conversations: {turns}, think time {:.3} s; each turn sends the whole history with the server's answers",
                self.think_time.as_secs_f64()
            ));
        }
        lines
    }

    /// Where prompts come from, for the summary.
    pub(crate) fn source(&self) -> String {
        match &self.prompts {
            Some(builder) => builder.source().to_owned(),
            None => self.payloads.describe(),
        }
    }
}

/// The stream `kind` of thing `a` (and `b`).
fn stream(seed: u64, kind: Stream, a: u64, b: u64) -> SplitMix64 {
    SplitMix64::new(seed_of(&[seed, kind as u64, a, b]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PayloadSource;
    use crate::workload::SharedPrefix;

    fn requests(options: WorkloadOptions) -> Requests {
        let payloads = Payloads::load(&PayloadSource::Baseline, "m", false).unwrap();
        Requests::new(&options, payloads, None).unwrap()
    }

    #[test]
    fn synthetic_requests_are_seeded_per_id_and_unique() {
        let r = requests(WorkloadOptions {
            input_tokens: Some("uniform:10,50".parse().unwrap()),
            output_tokens: Some("normal:20,5".parse().unwrap()),
            ..WorkloadOptions::default()
        });
        let a = r.single(7);
        assert_eq!(a, r.single(7), "the same id, the same request");
        let n = a.input_tokens.unwrap();
        assert!((10..=50).contains(&n));
        // Approximate prompts: one common word per token.
        assert_eq!(a.input.split_whitespace().count(), n as usize);
        assert!(a.max_tokens.is_some() && a.min_tokens.is_none());
        let firsts: std::collections::HashSet<String> = (0..50)
            .map(|id| {
                r.single(id)
                    .input
                    .split_whitespace()
                    .take(4)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(firsts.len(), 50, "no two prompts share their first words");
    }

    #[test]
    fn shared_prefixes_start_every_prompt() {
        let r = requests(WorkloadOptions {
            input_tokens: Some("30".parse().unwrap()),
            prefix: Some(SharedPrefix {
                tokens: 16,
                count: 3,
            }),
            ignore_eos: true,
            output_tokens: Some("8".parse().unwrap()),
            ..WorkloadOptions::default()
        });
        let mut seen = std::collections::BTreeSet::new();
        for id in 0..60 {
            let spec = r.single(id);
            assert_eq!(spec.input_tokens, Some(46));
            assert_eq!((spec.max_tokens, spec.min_tokens), (Some(8), Some(8)));
            let words: Vec<&str> = spec.input.split_whitespace().collect();
            assert_eq!(words.len(), 46);
            seen.insert(words[..16].join(" "));
        }
        assert_eq!(seen.len(), 3, "three prefixes, each used");
    }

    #[test]
    fn trace_rows_share_their_hash_blocks() {
        let mut options = WorkloadOptions {
            trace: Some(super::super::TraceOptions {
                block_tokens: 8,
                ..super::super::TraceOptions::new("t.jsonl")
            }),
            ..WorkloadOptions::default()
        };
        options.seed = 5;
        let r = requests(options);
        let row = |input_tokens, hash_ids: Vec<u64>| TraceRow {
            line: 1,
            at_ms: 0.0,
            input_tokens,
            output_tokens: 3,
            hash_ids,
            failed: false,
        };
        let a = r.traced(0, &row(24, vec![1, 2, 3]));
        let b = r.traced(1, &row(30, vec![1, 2, 9, 10]));
        let c = r.traced(2, &row(12, vec![1, 2]));
        let words = |s: &Spec| {
            s.input
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let (a, b, c) = (words(&a), words(&b), words(&c));
        assert_eq!((a.len(), b.len(), c.len()), (24, 30, 12));
        assert_eq!(a[..16], b[..16]);
        assert_ne!(a[16..24], b[16..24]);
        // A cut-short last block is the start of the whole one.
        assert_eq!(c[..], a[..12]);
    }

    #[test]
    fn a_turn_carries_the_history_and_the_answers() {
        let r = requests(WorkloadOptions {
            input_tokens: Some("5".parse().unwrap()),
            turns: Some(Turns::Drawn("3".parse().unwrap())),
            ..WorkloadOptions::default()
        });
        assert_eq!(r.turns_of(4), 3);
        let history = vec![
            ("first question".to_owned(), "first answer".to_owned()),
            ("second question".to_owned(), "second answer".to_owned()),
        ];
        let (spec, asked) = r.turn(4, 3, 17, &history);
        assert_eq!(asked.split_whitespace().count(), 5);
        let messages: Value = serde_json::from_str(spec.messages.as_deref().unwrap()).unwrap();
        let roles: Vec<&str> = messages
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "assistant", "user", "assistant", "user"]);
        assert_eq!(messages[3]["content"], "second answer");
        assert!(spec
            .input
            .starts_with("first question\nfirst answer\nsecond question"));
        assert_eq!(spec.input_tokens, Some(5));
    }
}
