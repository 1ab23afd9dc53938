//! The server's steps read back from the client's rows.
//!
//! A streamed row holds its start, its time to first token and every gap
//! after it, so the time the client read each token is known. Tokens of
//! different streams read within a fraction of a step of each other were
//! made by the same step (a step ends with one token for every sequence
//! that decodes): grouping every token of a run by time gives the steps'
//! ends, and for each step how many sequences it ran (one token each), who
//! joined it (a first token) and whether it followed the one before without
//! a pause (a stream has tokens in both: the loop went straight on). The
//! spread of one step's tokens around their middle is the client's own
//! delay in reading them.
//!
//! Columns the log reader does not know yet (`prompt_tokens`,
//! `input_tokens`, `session_id`, `turn`, written by newer loadgens) are
//! read here by name from the CSV itself, when present.

use std::collections::HashMap;
use std::path::Path;

use model::log::Log;

use super::super::WhatifError;

/// What a row says beyond [`model::log::LogRow`]: its prompt's length and
/// its conversation, when the log has those columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RowExtras {
    /// Prompt tokens: the server's count (`prompt_tokens`), else the one
    /// asked (`input_tokens`).
    pub prompt_tokens: Option<u32>,
    /// The conversation the request belongs to (`session_id`).
    pub session: Option<String>,
    /// Its turn in the conversation, from 0 or 1 (`turn`).
    pub turn: Option<u32>,
}

/// The extra columns of the log at `path`, one entry per row of `log`
/// (its rows in file order); all empty when it has none of them.
pub(crate) fn read_extras(path: &Path, log: &Log) -> Result<Vec<RowExtras>, WhatifError> {
    let empty = || vec![RowExtras::default(); log.rows.len()];
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| WhatifError::InvalidOption(format!("{}: {e}", path.display())))?;
    let headers = reader
        .headers()
        .map_err(|e| WhatifError::InvalidOption(format!("{}: {e}", path.display())))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (prompt, input, session, turn) = (
        column("prompt_tokens"),
        column("input_tokens"),
        column("session_id"),
        column("turn"),
    );
    if prompt.is_none() && input.is_none() && session.is_none() && turn.is_none() {
        return Ok(empty());
    }
    let mut out = Vec::with_capacity(log.rows.len());
    for (line, record) in reader.records().enumerate() {
        let record =
            record.map_err(|e| WhatifError::InvalidOption(format!("{}: {e}", path.display())))?;
        let field = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .map(str::trim)
                .filter(|t| !t.is_empty())
        };
        let whole = |i: Option<usize>, name: &str| -> Result<Option<u32>, WhatifError> {
            field(i)
                .map(|t| {
                    t.parse::<u32>().map_err(|_| {
                        WhatifError::InvalidOption(format!(
                            "{}: line {}, column `{name}`: {t:?} is not a whole number of tokens",
                            path.display(),
                            line + 2
                        ))
                    })
                })
                .transpose()
        };
        out.push(RowExtras {
            prompt_tokens: match whole(prompt, "prompt_tokens")? {
                Some(n) => Some(n),
                None => whole(input, "input_tokens")?,
            },
            session: field(session).map(str::to_owned),
            turn: whole(turn, "turn")?,
        });
    }
    // A file that changed under us is read as if it had no extra columns.
    Ok(if out.len() == log.rows.len() {
        out
    } else {
        empty()
    })
}

/// One streamed request: when it started and when each token was read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stream {
    /// Its row in the log.
    pub row: usize,
    /// The (intended) start, ms since the epoch.
    pub start_ms: f64,
    /// When each token was read, ms since the epoch.
    pub reads_ms: Vec<f64>,
    /// Prompt tokens, when known.
    pub prompt_tokens: Option<u32>,
    /// Connection and TLS set-up the request paid, ms.
    pub setup_ms: f64,
    /// Its conversation and turn, when known.
    pub session: Option<String>,
    /// See `session`.
    pub turn: Option<u32>,
}

impl Stream {
    /// Time to first token, ms.
    pub(crate) fn ttft_ms(&self) -> f64 {
        self.reads_ms[0] - self.start_ms
    }

    /// Start to last token, ms.
    pub(crate) fn e2e_ms(&self) -> f64 {
        self.reads_ms[self.reads_ms.len() - 1] - self.start_ms
    }
}

/// The end of one step: the tokens read then.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Group {
    /// The middle of the reads (their median), ms since the epoch.
    pub at_ms: f64,
    /// `(stream, token index)` of every token read then.
    pub members: Vec<(usize, usize)>,
}

/// A step between two ends, read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepSeen {
    /// The group that ended it.
    pub group: usize,
    /// From the previous step's end, ms.
    pub duration_ms: f64,
    /// Sequences that read a token at its end.
    pub running: usize,
    /// Streams whose first token it made.
    pub joined: Vec<usize>,
    /// The step before ran fewer sequences.
    pub grew: bool,
}

/// A run's streams and the steps they show.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Trace {
    /// Successful streamed rows with at least one token.
    pub streams: Vec<Stream>,
    /// Step ends, in time order.
    pub groups: Vec<Group>,
    /// Per stream, the group of each of its tokens.
    pub group_of: Vec<Vec<usize>>,
    /// Deviations of reads from their step's middle, ms (steps of two or
    /// more streams), centred on 0.
    pub deviations_ms: Vec<f64>,
}

/// Most deviations kept (a sample is enough to draw from).
const MAX_DEVIATIONS: usize = 20_000;

/// Reads whose time differs by at most this share of the median gap
/// between tokens belong to one step. Generous, since a busy client reads
/// one step's tokens over milliseconds; two steps are kept apart anyway by
/// a stream that reads in both (one stream reads one token a step).
const SAME_STEP_SHARE: f64 = 0.5;

/// The streams of `log` and its steps; `extras` one per row (or empty),
/// `prompt_fallback` the prompt length of rows that carry none.
pub(crate) fn trace(log: &Log, extras: &[RowExtras], prompt_fallback: Option<u32>) -> Trace {
    let mut streams = Vec::new();
    for (row, r) in log.rows.iter().enumerate() {
        let Some(llm) = r.llm.as_ref().filter(|_| r.ok) else {
            continue;
        };
        let Some(ttft) = llm.ttft_ms.filter(|t| t.is_finite()) else {
            continue;
        };
        if !r.timestamp_ms.is_finite() || llm.itl_ms.iter().any(|g| !g.is_finite()) {
            continue;
        }
        let mut reads_ms = Vec::with_capacity(llm.itl_ms.len() + 1);
        let mut t = r.timestamp_ms + ttft;
        reads_ms.push(t);
        for gap in &llm.itl_ms {
            t += gap;
            reads_ms.push(t);
        }
        let extra = extras.get(row).cloned().unwrap_or_default();
        streams.push(Stream {
            row,
            start_ms: r.timestamp_ms,
            reads_ms,
            prompt_tokens: extra.prompt_tokens.or(prompt_fallback),
            setup_ms: r.connect_ms.filter(|c| c.is_finite()).unwrap_or(0.0)
                + r.tls_ms.filter(|t| t.is_finite()).unwrap_or(0.0),
            session: extra.session,
            turn: extra.turn,
        });
    }
    let mut gaps: Vec<f64> = streams
        .iter()
        .flat_map(|s| s.reads_ms.windows(2).map(|w| w[1] - w[0]))
        .collect();
    gaps.sort_by(f64::total_cmp);
    let median_gap = gaps.get(gaps.len() / 2).copied().unwrap_or(0.0);
    let tolerance = (SAME_STEP_SHARE * median_gap).max(0.01);
    let mut reads: Vec<(f64, usize, usize)> = streams
        .iter()
        .enumerate()
        .flat_map(|(s, st)| st.reads_ms.iter().enumerate().map(move |(k, t)| (*t, s, k)))
        .collect();
    reads.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of: Vec<Vec<usize>> = streams.iter().map(|s| vec![0; s.reads_ms.len()]).collect();
    let mut first_ms = f64::NEG_INFINITY;
    let mut times: Vec<f64> = Vec::new();
    let close_group = |groups: &mut Vec<Group>, times: &mut Vec<f64>| {
        if let Some(g) = groups.last_mut() {
            times.sort_by(f64::total_cmp);
            g.at_ms = times[times.len() / 2];
        }
        times.clear();
    };
    for (t, s, k) in reads {
        // One stream never reads two tokens of one step.
        let repeats = groups
            .last()
            .is_some_and(|g| g.members.iter().any(|&(other, _)| other == s));
        if groups.is_empty() || t - first_ms > tolerance || repeats {
            close_group(&mut groups, &mut times);
            groups.push(Group {
                at_ms: t,
                members: Vec::new(),
            });
            first_ms = t;
        }
        let g = groups.len() - 1;
        groups[g].members.push((s, k));
        group_of[s][k] = g;
        times.push(t);
    }
    close_group(&mut groups, &mut times);
    let mut deviations_ms: Vec<f64> = Vec::new();
    for g in groups.iter().filter(|g| g.members.len() >= 2) {
        for &(s, k) in &g.members {
            if deviations_ms.len() < MAX_DEVIATIONS {
                deviations_ms.push(streams[s].reads_ms[k] - g.at_ms);
            }
        }
    }
    if !deviations_ms.is_empty() {
        let mean = deviations_ms.iter().sum::<f64>() / deviations_ms.len() as f64;
        for d in &mut deviations_ms {
            *d -= mean;
        }
    }
    Trace {
        streams,
        groups,
        group_of,
        deviations_ms,
    }
}

impl Trace {
    /// Steps that followed the one before without a pause: some stream
    /// read a token at both ends.
    pub(crate) fn back_to_back_steps(&self) -> Vec<StepSeen> {
        let mut out = Vec::new();
        for g in 1..self.groups.len() {
            let members = &self.groups[g].members;
            let continued = members
                .iter()
                .any(|&(s, k)| k >= 1 && self.group_of[s][k - 1] == g - 1);
            if !continued {
                continue;
            }
            out.push(StepSeen {
                group: g,
                duration_ms: self.groups[g].at_ms - self.groups[g - 1].at_ms,
                running: members.len(),
                joined: members
                    .iter()
                    .filter(|&&(_, k)| k == 0)
                    .map(|&(s, _)| s)
                    .collect(),
                grew: members.len() > self.groups[g - 1].members.len(),
            });
        }
        out
    }

    /// What each step ran, by group: the sequences in it and the prompt
    /// tokens it prefilled; `None` where a prompt that ended there is of
    /// unknown length (`unit`: every prompt counts one). With a token
    /// `budget`, a prompt longer than what a step left beside its decodes
    /// is spread back over the steps before its first token, oldest stream
    /// first, as the scheduler chunks it: those steps ran it too, and
    /// prefilled its chunks.
    pub(crate) fn loads(&self, budget: Option<f64>, unit: bool) -> Vec<Option<(usize, f64)>> {
        let n = self.groups.len();
        let mut room: Vec<f64> = self
            .groups
            .iter()
            .map(|g| {
                let decodes = g.members.iter().filter(|&&(_, k)| k > 0).count() as f64;
                budget.map_or(f64::INFINITY, |b| (b - decodes).max(0.0))
            })
            .collect();
        let mut prefill = vec![0.0; n];
        let mut extra = vec![0usize; n];
        let mut known = vec![true; n];
        let mut order: Vec<usize> = (0..self.streams.len()).collect();
        order.sort_by(|&a, &b| {
            self.group_of[a][0].cmp(&self.group_of[b][0]).then(
                self.streams[a]
                    .start_ms
                    .total_cmp(&self.streams[b].start_ms),
            )
        });
        for s in order {
            let first = self.group_of[s][0];
            let prompt = if unit {
                Some(1.0)
            } else {
                self.streams[s].prompt_tokens.map(f64::from)
            };
            let Some(mut need) = prompt else {
                known[first] = false;
                continue;
            };
            let mut g = first;
            loop {
                let take = need.min(room[g]);
                room[g] -= take;
                prefill[g] += take;
                need -= take;
                if g != first && take > 0.0 {
                    extra[g] += 1;
                }
                // A step that began before the request was sent cannot
                // have held any of it.
                let earlier_began = if g >= 2 {
                    self.groups[g - 2].at_ms
                } else {
                    f64::NEG_INFINITY
                };
                if need <= 0.0 {
                    break;
                }
                if g == 0 || earlier_began < self.streams[s].start_ms {
                    known[first] = false;
                    break;
                }
                g -= 1;
            }
        }
        (0..n)
            .map(|g| known[g].then(|| (self.groups[g].members.len() + extra[g], prefill[g])))
            .collect()
    }

    /// The tokens of context the sequences that read a token at each
    /// step's end held in it, by group: a first token's, its prompt; a
    /// later token `k`'s, its prompt and the `k` tokens before. `None`
    /// where a prompt's length is unknown.
    pub(crate) fn contexts(&self) -> Vec<Option<f64>> {
        self.groups
            .iter()
            .map(|g| {
                g.members
                    .iter()
                    .map(|&(s, k)| {
                        self.streams[s]
                            .prompt_tokens
                            .map(|p| f64::from(p) + k as f64)
                    })
                    .sum()
            })
            .collect()
    }

    /// Streams sent to an idle server whose first token ended a step of
    /// their own: `(stream, group)`. Their time to first token is the
    /// client's time plus that one step.
    pub(crate) fn idle_starts(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (g, group) in self.groups.iter().enumerate() {
            let [(s, 0)] = group.members[..] else {
                continue;
            };
            let idle_before = g == 0 || self.groups[g - 1].at_ms < self.streams[s].start_ms;
            if idle_before {
                out.push((s, g));
            }
        }
        out
    }

    /// The most streams that read a token at one step's end.
    pub(crate) fn most_running(&self) -> usize {
        self.groups
            .iter()
            .map(|g| g.members.len())
            .max()
            .unwrap_or(0)
    }

    /// Session ids to small numbers, in order of first appearance.
    pub(crate) fn session_numbers(&self) -> HashMap<String, u64> {
        let mut out = HashMap::new();
        for s in &self.streams {
            if let Some(id) = &s.session {
                let next = out.len() as u64;
                out.entry(id.clone()).or_insert(next);
            }
        }
        out
    }
}
