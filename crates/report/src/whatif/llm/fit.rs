//! The step model read off the runs: what a step costs, by least squares
//! over the steps the client saw, with bootstrap intervals.
//!
//! Two kinds of observation, both linear in the unknowns:
//!
//! - a step that followed the one before without a pause (see
//!   [`super::trace`]) lasted `base + per_seq x running + prefill x
//!   prompt tokens it prefilled` (a stream's first token ends the step that
//!   finished its prompt; a prompt longer than the token budget left is
//!   spread back over the steps before, see [`Trace::loads`]);
//! - a request sent to an idle server whose first token ended a step of
//!   its own (the probe's, one request at a time) took `client + k x
//!   (base + per_seq x running) + prefill x its prompt tokens`, `k` the
//!   steps its prompt needs at the token budget, less its own connection
//!   set-up, which the client's part leaves out (the Before pays its own).
//!
//! Both kinds also carry `attention x (tokens the step computes / 1000) x
//! (tokens of context of its sequences / 1000)`, the tokens computed being
//! its prompt tokens and one per decode: a step's attention grows with
//! both, so a step that prefills several prompts at once costs more than
//! the sum of their costs alone, and a prompt that joins beside decodes of
//! long context more than it costs alone (llama.cpp's on a 2-core CPU: five
//! prompts of 180 tokens in one step took 16-34 ms, one alone 2.4 ms; one
//! 156-token prompt beside three decodes 3.4 ms at the median, where the
//! terms without this one gave 2.75). A prompt alone in chunks of `c`
//! tokens computes chunk `i` over `i x c` tokens of context. It is fitted
//! only where prompt lengths are known, the observations show at least
//! three different amounts of it and the probes' first tokens came at
//! three prompt lengths or more (two lengths fit a line and a square
//! alike); elsewhere, and where it comes out below 0, it is 0 (a linear
//! server such as stub-server fits it near 0).
//!
//! And both carry `kv x (tokens of context of the step's sequences /
//! 1000)`: a decode attends over its sequence's whole context, so a step
//! of long sequences costs more than one of short ones (llama.cpp's on two
//! cores: a token 0.22 ms after a 74-token prompt, 0.39 ms after a
//! 389-token one). Fitted where prompt lengths are known; 0 elsewhere.
//!
//! And `join x prompts whose prefill the step ended`: what a server does
//! once per prompt beside its tokens (llama.cpp's sets up the slot's
//! sampler and returns the prompt's last logits; on two cores a step that
//! ended a 156-token prompt beside three decodes took 3.0 ms at the
//! median, about a millisecond more than its tokens explain). Fitted where
//! steps with and without a joining prompt were seen.
//!
//! The Before's steps run many sequences and the probe's one, so both
//! costs separate; the probe's prompt lengths separate the prefill cost
//! from the step's. Prompts of unknown length count as one unit each: the
//! prefill cost is then per request. The spread of the steps around the
//! fitted line, less what the client's read delay puts into each, is the
//! log-normal `sigma` of a step's cost; the simulation draws each step's
//! spread instead from the measured steps of its kind (observed over
//! fitted, prefilling or not) where there are enough of them.
//!
//! Where the server computes a step in passes of a known size (llama.cpp's
//! `--ubatch-size`), a step of more than one is left out of the line and
//! prices, beyond it, a cost per token beyond the pass.

use std::collections::{BTreeMap, HashMap};

use model::whatif::Estimate;
use stats::{QuantileMethod, SplitMix64};

use super::trace::Trace;

/// How to give the fit what it lacks.
const PROBE_HINT: &str = "run the probe, one request at a time at a few prompt lengths (for P in 16, 256 and 1024: `loadgen --api openai-chat -c 1 -n 8 --payloads pP.jsonl --max-tokens 16 --extra-body '{\"ignore_eos\": true}' --out probe_pP.csv`, pP.jsonl holding prompts of P tokens), and pass each with --probe and its length with --probe-prompt-tokens";

/// The running counts of the step observations and how many of each.
fn running_counts(obs: &[Obs]) -> String {
    let mut by_running: BTreeMap<u64, usize> = BTreeMap::new();
    for o in obs.iter().filter(|o| o.x[3] == 0.0) {
        *by_running.entry(o.x[1] as u64).or_default() += 1;
    }
    by_running
        .iter()
        .map(|(n, count)| format!("{count} steps of {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bootstrap resamples behind the fit's intervals.
pub(crate) const BOOTSTRAP_RESAMPLES: usize = 200;

/// The fitted step cost and the client's own time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StepModel {
    /// Fixed cost of a step, ms.
    pub base_ms: f64,
    /// Cost per sequence in the step, ms.
    pub per_seq_ms: f64,
    /// Cost per prompt token (per prompt when lengths are unknown), ms.
    pub prefill_per_token_ms: f64,
    /// Cost of the tokens a step computes times the context of its
    /// sequences, ms per (1,000 tokens x 1,000 tokens).
    pub attention_ms: f64,
    /// Cost per 1,000 tokens of context of the step's sequences, ms.
    pub kv_ms: f64,
    /// Cost per prompt whose prefill the step ended, ms.
    pub join_ms: f64,
    /// Log-normal spread of a step's cost.
    pub sigma: f64,
    /// The client's own time in a TTFT, less connection set-up, ms.
    pub client_ms: f64,
}

impl StepModel {
    /// What the model gives observation `o`, ms.
    fn line_ms(&self, o: &Obs) -> f64 {
        let theta = [
            self.base_ms,
            self.per_seq_ms,
            self.prefill_per_token_ms,
            self.client_ms,
            self.attention_ms,
            self.kv_ms,
            self.join_ms,
        ];
        (0..COLUMNS).map(|c| theta[c] * o.x[c]).sum()
    }
}

/// Why the runs cannot be fitted; each message says what to add.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepFitError {
    /// No streamed row with a token.
    #[error(
        "the Before has no successful streamed row with a token (it needs loadgen's LLM columns: --api openai-chat or openai-completions, streamed)"
    )]
    NoStreams,
    /// Too few steps to fit anything.
    #[error(
        "{steps} steps were seen back to back, running {running}: too few to fit a step's cost. Give a longer Before (more requests, or answers of more than one token), and the probe: \
         for P in 16, 256 and 1024, `loadgen --api openai-chat -c 1 -n 8 --payloads pP.jsonl --max-tokens 16 --extra-body '{{\"ignore_eos\": true}}' --out probe_pP.csv` (pP.jsonl: prompts of P tokens), each passed with --probe and its length with --probe-prompt-tokens"
    )]
    TooFewSteps {
        /// Steps observed.
        steps: usize,
        /// The running counts they showed.
        running: String,
    },
}

/// One observation: the unknowns' factors and the time.
#[derive(Debug, Clone, Copy)]
struct Obs {
    /// Factors of base, per_seq, prefill, client, attention, kv, join.
    x: [f64; COLUMNS],
    /// Observed ms.
    y: f64,
    /// The read delay's share of `y`'s variance, ms^2.
    noise_var: f64,
    /// Thousands of tokens the observation computed beyond the server's
    /// pass (each chunk's, for a prompt alone in several); 0: within it.
    over_pass: f64,
    /// Resampled within this group (run and kind).
    stratum: usize,
}

/// The unknowns: base, per_seq, prefill, client, attention, kv, join.
const COLUMNS: usize = 7;
/// The client's column: 1 in a first-token observation, 0 in a step.
const CLIENT: usize = 3;
/// The attention term's column.
const ATTENTION: usize = 4;
/// The context's column.
const KV: usize = 5;
/// The joining prompts' column.
const JOIN: usize = 6;

/// The attention term's factor: tokens computed times tokens of context,
/// in (1,000 tokens)^2.
fn attention(computed_tokens: f64, context_tokens: f64) -> f64 {
    computed_tokens / 1000.0 * context_tokens / 1000.0
}

/// The fit: the point model, refits, and what it rests on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepFit {
    /// From all observations.
    pub point: StepModel,
    /// One per bootstrap resample, in resample order.
    pub refits: Vec<StepModel>,
    /// 95% intervals of base, per_seq, prefill, sigma, client, attention,
    /// kv, join.
    pub estimates: [Estimate; 8],
    /// Step observations.
    pub steps: usize,
    /// First-token observations.
    pub first_token_steps: usize,
    /// Read-delay deviations of the Before, ms.
    pub read_jitter_ms: Vec<f64>,
    /// Share of the steps that stalled: lasted longer than the line by
    /// more than the trimming allows.
    pub stall_share: f64,
    /// What each stall added beyond the line, ms.
    pub stalls_ms: Vec<f64>,
    /// Observations beyond the server's pass, left out of the line.
    pub over_pass_steps: usize,
    /// What they cost beyond the line, ms per 1,000 tokens beyond the
    /// pass (0 with fewer than [`MIN_OVER_PASS`]).
    pub over_pass_ms: f64,
    /// Observed over fitted cost of the kept steps that prefilled
    /// nothing: the spread the simulation draws for a decode step.
    pub decode_ratios: Vec<f64>,
    /// The same of the kept steps that prefilled. A joining prompt's step
    /// spreads less for its cost than a decode's: on llama-server, 8
    /// slots, the P99 of observed over fitted was 1.4 for steps where a
    /// prompt joined and 2.4 for the others, which one log-normal cannot
    /// hold (docs/measurements.md).
    pub prefill_ratios: Vec<f64>,
    /// What the runs could not tell, and what the fit assumed instead.
    pub caveats: Vec<String>,
}

/// Fits the runs (the Before first, then the probes), resampling
/// `resamples` times from `seed`; `prompts_known` says whether prompt
/// lengths are tokens (else each prompt is one unit), `budget` is the
/// step's token budget when known, `pass` the tokens the server computes
/// in one pass of a step.
///
/// A step of more than one pass is left out of the line: llama.cpp
/// splits it into passes of `--ubatch-size` tokens, and on two cores such
/// a step cost up to four times its tokens' worth at the line's rate.
/// Fitted with the rest, a probe's few clumps of joining prompts raise the
/// price of every prompt that joins alone. Those steps price, beyond the
/// line, a cost per token beyond the pass instead.
pub(crate) fn fit(
    runs: &[&Trace],
    prompts_known: bool,
    budget: Option<u32>,
    pass: Option<u32>,
    resamples: usize,
    seed: u64,
) -> Result<StepFit, StepFitError> {
    let budget = budget.map(f64::from);
    // Thousands of tokens beyond the pass of a step computing `tokens`.
    let beyond = |tokens: f64| match pass {
        Some(pass) if prompts_known => (tokens - f64::from(pass)).max(0.0) / 1000.0,
        _ => 0.0,
    };
    if runs.first().is_none_or(|t| t.streams.is_empty()) {
        return Err(StepFitError::NoStreams);
    }
    let jitter_var = |t: &Trace| {
        let n = t.deviations_ms.len();
        if n < 2 {
            0.0
        } else {
            t.deviations_ms.iter().map(|d| d * d).sum::<f64>() / (n - 1) as f64
        }
    };
    let prompt = |t: &Trace, s: usize| -> Option<f64> {
        // The idle starts' prompts; the steps' come from `Trace::loads`.
        if prompts_known {
            t.streams[s].prompt_tokens.map(f64::from)
        } else {
            Some(1.0)
        }
    };
    let mut obs = Vec::new();
    for (r, trace) in runs.iter().enumerate() {
        let var = jitter_var(trace);
        let loads = trace.loads(budget.filter(|_| prompts_known), !prompts_known);
        let contexts = trace.contexts();
        for step in trace.back_to_back_steps() {
            let Some((running, p)) = loads[step.group] else {
                continue;
            };
            let n = running as f64;
            // Each end is a median of its reads: its variance about var / n.
            let here = step.running.max(1) as f64;
            let prev = trace.groups[step.group - 1].members.len().max(1) as f64;
            let decodes = trace.groups[step.group]
                .members
                .iter()
                .filter(|&&(_, k)| k > 0)
                .count() as f64;
            let (sq, kv) = match contexts[step.group] {
                Some(context) if prompts_known => {
                    (attention(decodes + p, context), context / 1000.0)
                }
                _ => (0.0, 0.0),
            };
            let joins = step.joined.len() as f64;
            obs.push(Obs {
                x: [1.0, n, p, 0.0, sq, kv, joins],
                y: step.duration_ms,
                noise_var: var / here + var / prev,
                over_pass: beyond(decodes + p),
                stratum: 2 * r,
            });
        }
        for (s, g) in trace.idle_starts() {
            let Some(p) = prompt(trace, s) else { continue };
            let stream = &trace.streams[s];
            // Alone, a prompt over the budget takes a step per chunk.
            let steps = match budget {
                Some(b) if prompts_known && b >= 1.0 => (p / b).ceil().max(1.0),
                _ => 1.0,
            };
            let n = trace.groups[g].members.len() as f64;
            let (sq, kv) = if prompts_known {
                // Chunk i of c tokens attends over i x c: in all
                // c^2 x steps (steps + 1) / 2 = p^2 (steps + 1) / (2 steps).
                (attention(p, p) * (steps + 1.0) / (2.0 * steps), p / 1000.0)
            } else {
                (0.0, 0.0)
            };
            obs.push(Obs {
                x: [steps, steps * n, p, 1.0, sq, kv, 1.0],
                y: stream.ttft_ms() - stream.setup_ms,
                noise_var: var,
                over_pass: steps * beyond(p / steps),
                stratum: 2 * r + 1,
            });
        }
    }
    let failed = |obs: &[Obs]| {
        let mut running: Vec<usize> = runs
            .iter()
            .flat_map(|t| t.back_to_back_steps())
            .map(|s| s.running)
            .collect();
        running.sort_unstable();
        running.dedup();
        StepFitError::TooFewSteps {
            steps: obs.iter().filter(|o| o.x[3] == 0.0).count(),
            running: if running.is_empty() {
                "none".to_owned()
            } else {
                format!("{running:?} sequences")
            },
        }
    };
    let (over, obs): (Vec<Obs>, Vec<Obs>) = obs.into_iter().partition(|o| o.over_pass > 0.0);
    let first = solve(&obs).ok_or_else(|| failed(&obs))?;
    // A step the client read over more time than the grouping allows is
    // cut in two, and the halves look like steps of a millisecond: such
    // outliers (over 6 robust standard deviations from the fit) are the
    // client's, not the server's, and are left out.
    let all_steps = obs.iter().filter(|o| o.x[3] == 0.0).count();
    let (obs, stalls_ms) = trim(obs, &first);
    let point = solve(&obs).ok_or_else(|| failed(&obs))?;
    let over_pass_ms = over_pass_ms(&over, &point);
    // The spread is drawn from the steps where their run ran its usual
    // number of sequences. In a concurrent probe, the steps of fewer are
    // the moments when streams are between requests, and the client and
    // the server's HTTP threads busy with them share the two cores: there,
    // a joining prompt's step spread to 1.6 to 2.5 times the line at P99,
    // in the probe's steady state and in the After of 4 slots 1.3 to 1.7
    // (docs/measurements.md).
    let usual = usual_running(&obs);
    let mut decode_ratios = Vec::new();
    let mut prefill_ratios = Vec::new();
    for o in obs
        .iter()
        .filter(|o| o.x[CLIENT] == 0.0 && usual.get(&o.stratum) == Some(&(o.x[1] as u64)))
    {
        let fitted = point.line_ms(o);
        if fitted > 0.0 && o.y > 0.0 {
            if o.x[2] > 0.0 {
                prefill_ratios.push(o.y / fitted);
            } else {
                decode_ratios.push(o.y / fitted);
            }
        }
    }
    let stall_share = stalls_ms.len() as f64 / all_steps.max(1) as f64;
    let design = Design::of(&obs);
    let mut caveats = Vec::new();
    if !design.per_seq {
        caveats.push(format!(
            "the steps seen ran too few different numbers of sequences ({}) to tell the cost per sequence from the fixed cost: it is held at 0, so changes of the slots are predicted too fast; {PROBE_HINT}",
            running_counts(&obs)
        ));
    }
    if !design.prefill {
        caveats.push(format!(
            "no step prefilled a joining prompt and the first tokens came at one prompt length only, so the prefill cost cannot be told from the client's time: it is held at 0, so longer prompts are predicted too fast; {PROBE_HINT}"
        ));
    }
    if prompts_known && design.prefill && design.first_token_lengths < MIN_PREFILL_AMOUNTS {
        caveats.push(format!(
            "the probes' first tokens came alone at {} prompt length(s), too few to tell a prompt's cost as its length from one that grows faster: what prompts cost together beyond their cost alone is held at 0; {PROBE_HINT}",
            design.first_token_lengths
        ));
    }
    if let Some(pass) = pass.filter(|_| !over.is_empty() && over.len() < MIN_OVER_PASS) {
        caveats.push(format!(
            "{} step(s) computed more than the server's pass of {pass} tokens, too few to price what a step beyond it costs: such steps are priced at the line's rate, so a candidate whose prompts join many at once is predicted on the fast side",
            over.len()
        ));
    }
    if !design.client {
        caveats.push(format!(
            "no request found the server idle, so the client's own time is taken as its connection set-up alone; {PROBE_HINT}"
        ));
    }
    let steps = obs.iter().filter(|o| o.x[3] == 0.0).count();
    let first_token_steps = obs.len() - steps;
    let mut strata: Vec<Vec<Obs>> = Vec::new();
    for o in &obs {
        if strata.len() <= o.stratum {
            strata.resize(o.stratum + 1, Vec::new());
        }
        strata[o.stratum].push(*o);
    }
    let mut rng = SplitMix64::new(seed);
    let mut refits = Vec::with_capacity(resamples);
    let mut resample = Vec::with_capacity(obs.len());
    for _ in 0..resamples {
        // A degenerate resample (every step of one size) is redrawn; after
        // a few tries the point model stands in.
        let refit = (0..5).find_map(|_| {
            resample.clear();
            for group in &strata {
                for _ in 0..group.len() {
                    resample.push(group[rng.index_below(group.len())]);
                }
            }
            solve(&resample)
        });
        refits.push(refit.unwrap_or(point));
    }
    let interval = |value: f64, pick: fn(&StepModel) -> f64| {
        let mut draws: Vec<f64> = refits.iter().map(pick).collect();
        draws.sort_by(f64::total_cmp);
        let q = |p: f64| stats::quantile(&draws, p, QuantileMethod::Linear).unwrap_or(value);
        Estimate {
            value,
            lo: q(0.025).min(value),
            hi: q(0.975).max(value),
        }
    };
    let estimates = [
        interval(point.base_ms, |m| m.base_ms),
        interval(point.per_seq_ms, |m| m.per_seq_ms),
        interval(point.prefill_per_token_ms, |m| m.prefill_per_token_ms),
        interval(point.sigma, |m| m.sigma),
        interval(point.client_ms, |m| m.client_ms),
        interval(point.attention_ms, |m| m.attention_ms),
        interval(point.kv_ms, |m| m.kv_ms),
        interval(point.join_ms, |m| m.join_ms),
    ];
    Ok(StepFit {
        point,
        refits,
        estimates,
        steps,
        first_token_steps,
        read_jitter_ms: runs[0].deviations_ms.clone(),
        stall_share,
        stalls_ms,
        over_pass_steps: over.len(),
        over_pass_ms,
        decode_ratios,
        prefill_ratios,
        caveats,
    })
}

/// Fewest observations beyond the pass to price it.
const MIN_OVER_PASS: usize = 3;

/// What `over` (observations beyond the pass) cost above `line`, ms per
/// 1,000 tokens beyond the pass: least squares through the origin of
/// their residuals, never below 0; 0 with fewer than [`MIN_OVER_PASS`].
fn over_pass_ms(over: &[Obs], line: &StepModel) -> f64 {
    if over.len() < MIN_OVER_PASS {
        return 0.0;
    }
    let (mut xy, mut xx) = (0.0, 0.0);
    for o in over {
        xy += o.over_pass * (o.y - line.line_ms(o));
        xx += o.over_pass * o.over_pass;
    }
    if xx > 0.0 {
        (xy / xx).max(0.0)
    } else {
        0.0
    }
}

/// Each stratum's most frequent running count among its steps (ties to
/// the larger).
fn usual_running(obs: &[Obs]) -> HashMap<usize, u64> {
    let mut counts: HashMap<(usize, u64), usize> = HashMap::new();
    for o in obs.iter().filter(|o| o.x[CLIENT] == 0.0) {
        *counts.entry((o.stratum, o.x[1] as u64)).or_default() += 1;
    }
    let mut usual: HashMap<usize, (u64, usize)> = HashMap::new();
    for ((stratum, running), count) in counts {
        let best = usual.entry(stratum).or_insert((running, count));
        if (count, running) > (best.1, best.0) {
            *best = (running, count);
        }
    }
    usual.into_iter().map(|(s, (r, _))| (s, r)).collect()
}

/// Fewest steps of one running count for it to count apart from others.
const MIN_STEPS_PER_RUNNING: usize = 10;
/// Fewest first-token observations to fit the client's own time.
const MIN_FIRST_TOKENS: usize = 3;

/// What the observations can tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Design {
    /// The cost per sequence from the fixed cost: steps of two running
    /// counts or more, [`MIN_STEPS_PER_RUNNING`] each.
    per_seq: bool,
    /// The client's own time: [`MIN_FIRST_TOKENS`] first tokens or more.
    client: bool,
    /// The prefill cost: a step that prefilled, or first tokens of two
    /// prompt lengths or more (of one length alone, its prefill cannot be
    /// told from the client's time).
    prefill: bool,
    /// The attention term: observations of at least
    /// [`MIN_PREFILL_AMOUNTS`] different amounts of it, and the probes'
    /// first tokens at as many prompt lengths. A square is told from a line
    /// by three lengths: with the probe at two (and prompts joining beside
    /// decodes at one more, too short to tell), the runs fit a prompt's
    /// cost as its length or as its square equally well.
    attention: bool,
    /// The context's cost: steps whose sequences held at least
    /// [`MIN_PREFILL_AMOUNTS`] different amounts of context.
    kv: bool,
    /// The cost per joining prompt: [`MIN_STEPS_PER_RUNNING`] steps or
    /// more that ended a prompt and as many that did not.
    join: bool,
    /// Prompt lengths the probes' first tokens alone came at, lengths
    /// within a tenth of each other counted as one.
    first_token_lengths: usize,
}

/// The stratum of the Before's first-token observations (run 0's).
const BEFORE_FIRST_TOKENS: usize = 1;

/// Fewest different amounts for the attention and context terms.
const MIN_PREFILL_AMOUNTS: usize = 3;

impl Design {
    fn of(obs: &[Obs]) -> Self {
        let mut by_running: BTreeMap<u64, usize> = BTreeMap::new();
        for o in obs.iter().filter(|o| o.x[3] == 0.0) {
            *by_running.entry(o.x[1] as u64).or_default() += 1;
        }
        let client = obs.iter().filter(|o| o.x[3] > 0.0).count() >= MIN_FIRST_TOKENS;
        let mut first_prompts: Vec<u64> = obs
            .iter()
            .filter(|o| o.x[3] > 0.0)
            .map(|o| o.x[2].to_bits())
            .collect();
        first_prompts.sort_unstable();
        first_prompts.dedup();
        let mut amounts: Vec<u64> = obs
            .iter()
            .filter(|o| o.x[ATTENTION] > 0.0)
            .map(|o| o.x[ATTENTION].to_bits())
            .collect();
        amounts.sort_unstable();
        amounts.dedup();
        let prefill = obs.iter().any(|o| o.x[3] == 0.0 && o.x[2] > 0.0)
            || (client && first_prompts.len() >= 2);
        let mut contexts: Vec<u64> = obs
            .iter()
            .filter(|o| o.x[3] == 0.0 && o.x[KV] > 0.0)
            .map(|o| o.x[KV].to_bits())
            .collect();
        contexts.sort_unstable();
        contexts.dedup();
        let steps_with = |joined: bool| {
            obs.iter()
                .filter(|o| o.x[3] == 0.0 && (o.x[JOIN] > 0.0) == joined)
                .count()
        };
        // The probes' lengths (the Before's first observations are the
        // odd request that found the server idle); lengths within a tenth
        // of each other are one (a real server's tokenizer makes a probe's
        // prompts of one length in words a few tokens apart).
        let mut lengths: Vec<f64> = obs
            .iter()
            .filter(|o| o.x[3] > 0.0 && o.stratum != BEFORE_FIRST_TOKENS)
            .map(|o| o.x[2])
            .collect();
        lengths.sort_by(f64::total_cmp);
        let first_token_lengths = lengths
            .iter()
            .enumerate()
            .filter(|&(i, &l)| lengths.get(i + 1).is_none_or(|&next| next > 1.1 * l))
            .count();
        Design {
            join: steps_with(true) >= MIN_STEPS_PER_RUNNING
                && steps_with(false) >= MIN_STEPS_PER_RUNNING,
            kv: contexts.len() >= MIN_PREFILL_AMOUNTS,
            first_token_lengths,
            attention: prefill
                && amounts.len() >= MIN_PREFILL_AMOUNTS
                && first_token_lengths >= MIN_PREFILL_AMOUNTS,
            per_seq: by_running
                .values()
                .filter(|&&n| n >= MIN_STEPS_PER_RUNNING)
                .count()
                >= 2,
            client,
            prefill,
        }
    }
}

/// `obs` without those whose residual from `model` is over six robust
/// standard deviations (1.4826 x the median absolute residual), each kind
/// of observation judged apart: steps that prefilled nothing, steps that
/// prefilled, first tokens. A step that prefills costs several decodes
/// and spreads as much more, so judged by the decodes' spread (a few
/// tenths of a millisecond) the largest joining steps would be cut first,
/// and the fit would never see them.
///
/// Also what the decode steps left out for lasting too long added beyond
/// the line: the server's stalls, which the simulation draws in the same
/// share of steps. A prefilling step that left the line is not one: with
/// so few of them, it says more about the line than about the server, and
/// drawn in every step (the 0.2 ms decodes of a one-slot Before included)
/// it would slow every step. Steps left out for being too short are the
/// grouping's, not the server's.
fn trim(obs: Vec<Obs>, model: &StepModel) -> (Vec<Obs>, Vec<f64>) {
    let residual = |o: &Obs| o.y - model.line_ms(o);
    const DECODE: usize = 0;
    const PREFILL: usize = 1;
    const FIRST_TOKEN: usize = 2;
    let kind = |o: &Obs| {
        if o.x[CLIENT] > 0.0 {
            FIRST_TOKEN
        } else if o.x[2] > 0.0 {
            PREFILL
        } else {
            DECODE
        }
    };
    let limit = |k: usize| {
        let mut abs: Vec<f64> = obs
            .iter()
            .filter(|o| kind(o) == k)
            .map(|o| residual(o).abs())
            .collect();
        abs.sort_by(f64::total_cmp);
        let mad = abs.get(abs.len() / 2).copied().unwrap_or(0.0);
        // Never below a hundredth of a millisecond: an exact fit keeps all.
        (6.0 * 1.4826 * mad).max(0.01)
    };
    let limits = [limit(DECODE), limit(PREFILL), limit(FIRST_TOKEN)];
    let mut stalls = Vec::new();
    let kept = obs
        .into_iter()
        .filter(|o| {
            let k = kind(o);
            let r = residual(o);
            if k == DECODE && r > limits[k] {
                stalls.push(r);
            }
            r.abs() <= limits[k]
        })
        .collect();
    (kept, stalls)
}

/// Least squares over `obs`; `None` when the costs cannot be separated
/// (fewer than three steps, or one running count only). Without
/// first-token observations the client's time is 0; without joins the
/// prefill cost is 0.
fn solve(obs: &[Obs]) -> Option<StepModel> {
    let steps: Vec<&Obs> = obs.iter().filter(|o| o.x[3] == 0.0).collect();
    if steps.len() < 3 {
        return None;
    }
    let design = Design::of(obs);
    // Columns the observations can tell apart: per sequence only with
    // steps of two running counts or more, prefill only when some step
    // prefilled or first tokens came at two prompt lengths, the client only with first-token observations (without
    // them, they are left out: the client's time is its set-up alone). A
    // cost fitted below 0 (noise on a cost near 0) is held at 0 and the
    // others fitted again: no step costs less with more in it.
    let used: Vec<Obs> = obs
        .iter()
        .filter(|o| design.client || o.x[3] == 0.0)
        .copied()
        .collect();
    let mut columns: Vec<usize> = [0]
        .into_iter()
        .chain(design.per_seq.then_some(1))
        .chain(design.prefill.then_some(2))
        .chain(design.client.then_some(CLIENT))
        .chain(design.attention.then_some(ATTENTION))
        .chain(design.kv.then_some(KV))
        .chain(design.join.then_some(JOIN))
        .collect();
    let theta = loop {
        let Some(theta) = least_squares(&used, &columns) else {
            // Singular: the runs cannot tell one of the optional terms
            // from the others after all (its column in proportion to
            // another's, as happens with few joins at few prompt lengths).
            // Leave the optional terms out, the last first, and solve
            // again; without them a singular system has no fit.
            let optional = columns
                .iter()
                .rposition(|c| [ATTENTION, KV, JOIN].contains(c))?;
            columns.remove(optional);
            continue;
        };
        match columns
            .iter()
            .copied()
            .find(|&c| c != CLIENT && theta[c] < 0.0)
        {
            Some(negative) => columns.retain(|&c| c != negative),
            None => break theta,
        }
    };
    // Spread of the steps in logs, less the read delay's share.
    let mut sum = 0.0;
    let mut n = 0.0;
    for o in &steps {
        let fitted: f64 = (0..COLUMNS).map(|c| theta[c] * o.x[c]).sum();
        if fitted > 0.0 && o.y > 0.0 {
            let r = (o.y / fitted).ln();
            sum += r * r - o.noise_var / (fitted * fitted);
            n += 1.0;
        }
    }
    let sigma = if n > 1.0 {
        (sum / (n - 1.0)).max(0.0).sqrt()
    } else {
        0.0
    };
    Some(StepModel {
        base_ms: theta[0],
        per_seq_ms: theta[1],
        prefill_per_token_ms: theta[2],
        attention_ms: theta[ATTENTION],
        kv_ms: theta[KV],
        join_ms: theta[JOIN],
        sigma,
        client_ms: theta[CLIENT],
    })
}

/// Least squares of `y` on the `columns` of `x` (the others held at 0);
/// `None` when singular.
fn least_squares(obs: &[Obs], columns: &[usize]) -> Option<[f64; COLUMNS]> {
    let k = columns.len();
    if k == 0 {
        return Some([0.0; COLUMNS]);
    }
    let mut a = vec![vec![0.0; k + 1]; k];
    for o in obs {
        for (i, &ci) in columns.iter().enumerate() {
            for (j, &cj) in columns.iter().enumerate() {
                a[i][j] += o.x[ci] * o.x[cj];
            }
            a[i][k] += o.x[ci] * o.y;
        }
    }
    let beta = gauss(a)?;
    let mut theta = [0.0; COLUMNS];
    for (i, &c) in columns.iter().enumerate() {
        theta[c] = beta[i];
    }
    theta.iter().all(|t| t.is_finite()).then_some(theta)
}

/// Solves the augmented system `a` (k rows of k + 1) by elimination with
/// partial pivoting; `None` when it is singular.
fn gauss(mut a: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let k = a.len();
    let scale = a
        .iter()
        .flat_map(|row| row[..k].iter())
        .fold(0.0_f64, |m, v| m.max(v.abs()));
    for col in 0..k {
        let pivot = (col..k).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() <= 1e-12 * scale.max(1.0) {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col].clone();
        for row in a.iter_mut().skip(col + 1) {
            let f = row[col] / pivot_row[col];
            for (x, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                *x -= f * p;
            }
        }
    }
    let mut x = vec![0.0; k];
    for row in (0..k).rev() {
        let rest: f64 = (row + 1..k).map(|c| a[row][c] * x[c]).sum();
        x[row] = (a[row][k] - rest) / a[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use model::log::{LlmTiming, Log, LogFormat, LogRow};

    use super::super::sim::{self, Client, LlmServer, Scheduler, SimRequest, StepCost};
    use super::super::trace::{trace, RowExtras};
    use super::*;

    #[test]
    fn a_term_the_runs_cannot_tell_apart_is_left_out_not_the_whole_fit() {
        // Steps of one and two sequences, and steps where one 16-token
        // prompt joins: the join column is the prefill column over 16, so
        // the system with both is singular. The fit leaves the join term
        // out and recovers 5 ms + 1 ms a sequence + 0.1 ms a token.
        let step = |running: f64, prefill: f64, join: f64| Obs {
            x: [1.0, running, prefill, 0.0, 0.0, 0.0, join],
            y: 5.0 + running + 0.1 * prefill,
            noise_var: 0.0,
            over_pass: 0.0,
            stratum: 0,
        };
        let obs: Vec<Obs> = (0..MIN_STEPS_PER_RUNNING)
            .flat_map(|_| {
                [
                    step(1.0, 0.0, 0.0),
                    step(2.0, 0.0, 0.0),
                    step(2.0, 16.0, 1.0),
                ]
            })
            .collect();
        let design = Design::of(&obs);
        assert!(design.join && design.prefill && design.per_seq);
        let model = solve(&obs).expect("a fit without the join term");
        assert!((model.base_ms - 5.0).abs() < 1e-9, "{model:?}");
        assert!((model.per_seq_ms - 1.0).abs() < 1e-9, "{model:?}");
        assert!((model.prefill_per_token_ms - 0.1).abs() < 1e-9, "{model:?}");
        assert_eq!(model.join_ms, 0.0);
    }

    #[test]
    fn prefilling_steps_are_judged_by_their_own_spread_and_never_stall() {
        // Decodes of 1 ms +- 0.01; prefilling steps of 10 ms +- 1 (a
        // 100-token prompt at 0.09 ms a token). Judged by the decodes'
        // spread, every prefilling step a millisecond off the line would
        // go; by their own, only the one 40 ms over does, and it is not a
        // stall. The decode 5 ms over is.
        let model = StepModel {
            base_ms: 1.0,
            per_seq_ms: 0.0,
            prefill_per_token_ms: 0.09,
            attention_ms: 0.0,
            kv_ms: 0.0,
            join_ms: 0.0,
            sigma: 0.0,
            client_ms: 0.0,
        };
        let step = |prefill: f64, y: f64| Obs {
            x: [1.0, 1.0, prefill, 0.0, 0.0, 0.0, 0.0],
            y,
            noise_var: 0.0,
            over_pass: 0.0,
            stratum: 0,
        };
        let mut obs = Vec::new();
        for i in 0..50 {
            let off = if i % 2 == 0 { 1.0 } else { -1.0 };
            obs.push(step(0.0, 1.0 + 0.01 * off));
            obs.push(step(100.0, 10.0 + off));
        }
        obs.push(step(0.0, 6.0));
        obs.push(step(100.0, 50.0));
        let (kept, stalls) = trim(obs, &model);
        assert_eq!(kept.len(), 100, "every step but the two far ones");
        assert_eq!(stalls.len(), 1, "{stalls:?}");
        assert!((stalls[0] - 5.0).abs() < 1e-9, "{stalls:?}");
    }

    const T0_MS: f64 = 1_700_000_000_000.0;

    /// A log of `load` over `workload` on `server` as loadgen would write
    /// it: the simulation's reads, each row's prompt in an extra column.
    fn simulated_log(
        server: &LlmServer<'_>,
        client: &Client,
        workload: &[SimRequest],
        load: &model::whatif::Load,
        seed: u64,
    ) -> (Log, Vec<RowExtras>) {
        let o = sim::simulate(server, client, workload, load, seed);
        let rows: Vec<LogRow> = o
            .requests
            .iter()
            .enumerate()
            .map(|(i, r)| LogRow {
                request_id: i as u64,
                timestamp_ms: T0_MS + r.start_ms,
                latency_ms: r.e2e_ms,
                status_code: 200,
                ok: true,
                llm: Some(LlmTiming {
                    ttft_ms: Some(r.ttft_ms),
                    itl_ms: r.itl_ms.clone(),
                    output_tokens: Some(r.itl_ms.len() as u64 + 1),
                    ..LlmTiming::default()
                }),
                ..LogRow::default()
            })
            .collect();
        let extras = (0..rows.len())
            .map(|i| RowExtras {
                prompt_tokens: Some(workload[i % workload.len()].prompt_tokens),
                ..RowExtras::default()
            })
            .collect();
        (
            Log {
                format: LogFormat::Loadgen,
                rows,
            },
            extras,
        )
    }

    struct Truth {
        base_ms: f64,
        per_seq_ms: f64,
        prefill_ms: f64,
        attention_ms: f64,
        kv_ms: f64,
        join_ms: f64,
        sigma: f64,
        budget: usize,
    }

    /// A linear server without noise: 6 ms a step, 0.4 ms a sequence,
    /// 0.05 ms a prompt token, a budget of 2,048 tokens.
    const LINEAR: Truth = Truth {
        base_ms: 6.0,
        per_seq_ms: 0.4,
        prefill_ms: 0.05,
        attention_ms: 0.0,
        kv_ms: 0.0,
        join_ms: 0.0,
        sigma: 0.0,
        budget: 2048,
    };

    fn truth_server(t: &Truth) -> LlmServer<'static> {
        LlmServer {
            cost: StepCost {
                base_ms: t.base_ms,
                per_seq_ms: t.per_seq_ms,
                prefill_per_token_ms: t.prefill_ms,
                attention_ms: t.attention_ms,
                kv_ms: t.kv_ms,
                join_ms: t.join_ms,
                sigma: t.sigma,
                stall_share: 0.0,
                stalls_ms: &[],
                pass_tokens: usize::MAX,
                over_pass_ms: 0.0,
                decode_ratios: &[],
                prefill_ratios: &[],
            },
            scheduler: Scheduler {
                max_num_seqs: 8,
                max_batched_tokens: t.budget,
                chunked_prefill: true,
                kv_block_tokens: 16,
                kv_capacity_blocks: None,
                prefix_cache_blocks: 0,
                intake_ms: 0.0,
            },
            replicas: 1,
        }
    }

    /// The Before (20 streams, 8 slots, 34-token prompts, 50 tokens) and
    /// the probe (one at a time, prompts of 16, 256 and 1024), with
    /// `client_ms` before each request and read delays of `jitter`.
    fn runs(t: &Truth, seed: u64, jitter: &[f64]) -> Vec<Trace> {
        runs_of(t, seed, jitter, &[(34, 50)])
    }

    /// [`runs`] with the Before's requests of `(prompt, answer)` tokens
    /// in turn.
    fn runs_of(t: &Truth, seed: u64, jitter: &[f64], requests: &[(u32, u32)]) -> Vec<Trace> {
        let server = truth_server(t);
        let client = Client {
            overhead_ms: &[1.5],
            read_jitter_ms: jitter,
            max_in_flight: None,
            schedule_ms: &[],
            first_starts_ms: &[],
            first_jitter_ms: 0.0,
        };
        let workload: Vec<SimRequest> = requests
            .iter()
            .map(|&(prompt_tokens, output_tokens)| SimRequest {
                prompt_tokens,
                output_tokens,
                prefix_group: None,
                shared_prefix_tokens: 0,
            })
            .collect();
        let before = simulated_log(
            &server,
            &client,
            &workload,
            &model::whatif::Load::Closed {
                concurrency: 20,
                requests: 400,
            },
            seed,
        );
        let mut out = vec![trace(&before.0, &before.1, None)];
        for (i, p) in [16u32, 256, 1024].into_iter().enumerate() {
            let probe = simulated_log(
                &server,
                &client,
                &[SimRequest {
                    prompt_tokens: p,
                    output_tokens: 16,
                    prefix_group: None,
                    shared_prefix_tokens: 0,
                }],
                &model::whatif::Load::Closed {
                    concurrency: 1,
                    requests: 8,
                },
                seed + 1 + i as u64,
            );
            out.push(trace(&probe.0, &probe.1, None));
        }
        out
    }

    #[test]
    fn recovers_exact_step_costs_from_a_noiseless_run() {
        let t = LINEAR;
        let traces = runs(&t, 1, &[]);
        let refs: Vec<&Trace> = traces.iter().collect();
        let f = fit(&refs, true, Some(2048), None, 50, 1).unwrap();
        let m = f.point;
        // Exact but for the epoch timestamps' rounding (about 0.2 us).
        assert!((m.base_ms - 6.0).abs() < 1e-3, "{m:?}");
        assert!((m.per_seq_ms - 0.4).abs() < 1e-4, "{m:?}");
        assert!((m.prefill_per_token_ms - 0.05).abs() < 1e-5, "{m:?}");
        assert!((m.client_ms - 1.5).abs() < 1e-3, "{m:?}");
        // A linear server shows no attention cost, no cost of context, no
        // cost per joining prompt.
        assert!(m.attention_ms.abs() < 1e-3, "{m:?}");
        assert!(m.kv_ms.abs() < 1e-3, "{m:?}");
        assert!(m.join_ms.abs() < 1e-3, "{m:?}");
        assert!(m.sigma < 1e-4, "{m:?}");
        assert_eq!(f.first_token_steps, 24);
        assert!(f.steps > 1000, "{}", f.steps);
        // Every step observed over fitted 1 (all decodes here: the
        // noiseless closed loop runs its eight slots in step, so prompts
        // join only beside other joining ones).
        assert_eq!(f.decode_ratios.len() + f.prefill_ratios.len(), f.steps);
        let one = |r: &f64| (r - 1.0).abs() < 1e-3;
        assert!(f.decode_ratios.iter().chain(&f.prefill_ratios).all(one));
    }

    #[test]
    fn recovers_the_cost_of_context() {
        // 0.5 ms per 1,000 tokens of context: a step of eight sequences
        // 84 tokens into their answers costs 0.47 ms more than at their
        // first.
        let t = Truth {
            base_ms: 6.0,
            per_seq_ms: 0.4,
            prefill_ms: 0.05,
            attention_ms: 0.0,
            kv_ms: 0.5,
            join_ms: 0.0,
            sigma: 0.0,
            budget: 2048,
        };
        let traces = runs(&t, 1, &[]);
        let refs: Vec<&Trace> = traces.iter().collect();
        let m = fit(&refs, true, Some(2048), None, 20, 1).unwrap().point;
        assert!((m.kv_ms - 0.5).abs() < 1e-3, "{m:?}");
        assert!((m.per_seq_ms - 0.4).abs() < 1e-3, "{m:?}");
        assert!((m.base_ms - 6.0).abs() < 1e-3, "{m:?}");
        assert!(m.attention_ms.abs() < 1e-2, "{m:?}");
    }

    #[test]
    fn recovers_a_cost_per_joining_prompt() {
        let t = Truth {
            base_ms: 6.0,
            per_seq_ms: 0.4,
            prefill_ms: 0.05,
            attention_ms: 0.0,
            kv_ms: 0.0,
            join_ms: 1.0,
            sigma: 0.0,
            budget: 2048,
        };
        // Prompts and answers of three lengths: prompts join beside
        // decodes (answers of one length keep cohorts in step, and a
        // cohort's step decodes nothing: no step seen back to back), and a
        // step's prompts and its tokens do not rise together (with one
        // length a prompt costs as much as 34 tokens, nothing tells the
        // two apart).
        let traces = runs_of(&t, 1, &[], &[(34, 50), (200, 37), (90, 61)]);
        let refs: Vec<&Trace> = traces.iter().collect();
        let f = fit(&refs, true, Some(2048), None, 20, 1).unwrap();
        let m = f.point;
        assert!((m.join_ms - 1.0).abs() < 1e-3, "{m:?}");
        // The steps where prompts joined beside decodes are the spread of
        // a prefilling step, the others a decode's: both 1 here.
        assert!(f.prefill_ratios.len() >= MIN_STEPS_PER_RUNNING);
        assert!(f.decode_ratios.len() > f.prefill_ratios.len());
        let one = |r: &f64| (r - 1.0).abs() < 1e-3;
        assert!(f.decode_ratios.iter().chain(&f.prefill_ratios).all(one));
        assert!((m.prefill_per_token_ms - 0.05).abs() < 1e-5, "{m:?}");
        assert!((m.client_ms - 1.5).abs() < 1e-3, "{m:?}");
    }

    #[test]
    fn steps_beyond_the_pass_are_left_out_of_the_fit() {
        // The 1,024-token probe prompts alone came 20 ms later than the
        // line (a server that computes them in passes of 512 tokens):
        // fitted with the rest they bend the price of a prompt; left out,
        // the line is the truth's, and the fit says how many it left out.
        let t = LINEAR;
        let mut traces = runs(&t, 1, &[]);
        for s in &mut traces[3].streams {
            s.start_ms -= 20.0;
        }
        let refs: Vec<&Trace> = traces.iter().collect();
        let all = fit(&refs, true, Some(2048), None, 20, 1).unwrap();
        assert!(
            (all.point.prefill_per_token_ms - 0.05).abs() > 1e-3 || all.point.attention_ms > 0.1,
            "{:?}",
            all.point
        );
        assert_eq!(all.over_pass_steps, 0);
        let f = fit(&refs, true, Some(2048), Some(512), 20, 1).unwrap();
        let m = f.point;
        assert!((m.prefill_per_token_ms - 0.05).abs() < 1e-4, "{m:?}");
        assert!((m.base_ms - 6.0).abs() < 1e-3, "{m:?}");
        assert!((m.per_seq_ms - 0.4).abs() < 1e-4, "{m:?}");
        // The 1,024-token first token that found the server idle: one, too
        // few to price what a step beyond the pass costs.
        assert_eq!(f.over_pass_steps, 1);
        assert_eq!(f.over_pass_ms, 0.0);
        assert!(
            f.caveats
                .iter()
                .any(|c| c.contains("pass of 512 tokens, too few to price")),
            "{:?}",
            f.caveats
        );
    }

    #[test]
    fn steps_beyond_the_pass_price_their_tokens_beyond_it() {
        // A line of 1 ms a step and 0.01 ms a prompt token; steps 0.2, 0.5
        // and 1 thousand tokens beyond the pass, each 20 ms per thousand
        // over the line: the price is 20. Two are too few.
        let line = StepModel {
            base_ms: 1.0,
            per_seq_ms: 0.0,
            prefill_per_token_ms: 0.01,
            attention_ms: 0.0,
            kv_ms: 0.0,
            join_ms: 0.0,
            sigma: 0.0,
            client_ms: 0.0,
        };
        let beyond = |over_pass: f64| {
            let tokens = 512.0 + 1000.0 * over_pass;
            Obs {
                x: [1.0, 1.0, tokens, 0.0, 0.0, 0.0, 1.0],
                y: 1.0 + 0.01 * tokens + 20.0 * over_pass,
                noise_var: 0.0,
                over_pass,
                stratum: 0,
            }
        };
        let over = [beyond(0.2), beyond(0.5), beyond(1.0)];
        assert!((over_pass_ms(&over, &line) - 20.0).abs() < 1e-9);
        assert_eq!(over_pass_ms(&over[..2], &line), 0.0);
        // Cheaper than the line: never below 0.
        let cheap = over.map(|o| Obs { y: 1.0, ..o });
        assert_eq!(over_pass_ms(&cheap, &line), 0.0);
    }

    #[test]
    fn a_runs_usual_running_count_is_its_most_frequent() {
        let step = |stratum: usize, running: f64| Obs {
            x: [1.0, running, 0.0, 0.0, 0.0, 0.0, 0.0],
            y: 1.0,
            noise_var: 0.0,
            over_pass: 0.0,
            stratum,
        };
        let first_token = Obs {
            x: [1.0, 3.0, 0.0, 1.0, 0.0, 0.0, 0.0],
            ..step(1, 3.0)
        };
        let obs = [
            step(0, 1.0),
            step(0, 8.0),
            step(0, 8.0),
            step(2, 4.0),
            step(2, 2.0),
            first_token,
            first_token,
        ];
        let usual = usual_running(&obs);
        assert_eq!(usual.get(&0), Some(&8));
        // A tie goes to the larger count.
        assert_eq!(usual.get(&2), Some(&4));
        // First tokens are no steps.
        assert_eq!(usual.get(&1), None);
    }

    #[test]
    fn recovers_the_cost_of_attention() {
        // 6.5 ms per (1,000 tokens)^2, as llama.cpp on two cores: a
        // 1024-token probe prompt pays 6.8 ms more than the linear part.
        let t = Truth {
            base_ms: 6.0,
            per_seq_ms: 0.4,
            prefill_ms: 0.0125,
            attention_ms: 6.5,
            kv_ms: 0.0,
            join_ms: 0.0,
            sigma: 0.0,
            budget: 2048,
        };
        let traces = runs(&t, 1, &[]);
        let refs: Vec<&Trace> = traces.iter().collect();
        let m = fit(&refs, true, Some(2048), None, 20, 1).unwrap().point;
        assert!((m.attention_ms - 6.5).abs() < 1e-2, "{m:?}");
        assert!((m.prefill_per_token_ms - 0.0125).abs() < 1e-4, "{m:?}");
        assert!((m.base_ms - 6.0).abs() < 1e-3, "{m:?}");
        assert!((m.client_ms - 1.5).abs() < 1e-3, "{m:?}");
        // With first tokens at two lengths only, a square and a line fit
        // them alike: the term is held at 0, and the fit says why.
        let two = fit(
            &[&traces[0], &traces[1], &traces[3]],
            true,
            Some(2048),
            None,
            20,
            1,
        )
        .unwrap();
        assert_eq!(two.point.attention_ms, 0.0, "{:?}", two.point);
        assert!(
            two.caveats.iter().any(|c| c.contains("2 prompt length(s)")),
            "{:?}",
            two.caveats
        );
        let three = fit(&refs, true, Some(2048), None, 20, 1).unwrap();
        assert!(
            !three.caveats.iter().any(|c| c.contains("prompt length(s)")),
            "{:?}",
            three.caveats
        );
    }

    #[test]
    fn a_probe_prompt_over_the_budget_counts_a_step_per_chunk() {
        // Budget 512: the 1024-token probe prompt takes two steps alone.
        let t = Truth {
            base_ms: 6.0,
            per_seq_ms: 0.4,
            prefill_ms: 0.05,
            attention_ms: 0.0,
            kv_ms: 0.0,
            join_ms: 0.0,
            sigma: 0.0,
            budget: 512,
        };
        let traces = runs(&t, 1, &[]);
        let refs: Vec<&Trace> = traces.iter().collect();
        let m = fit(&refs, true, Some(512), None, 20, 1).unwrap().point;
        assert!((m.base_ms - 6.0).abs() < 1e-3, "{m:?}");
        assert!((m.prefill_per_token_ms - 0.05).abs() < 1e-5, "{m:?}");
        assert!((m.client_ms - 1.5).abs() < 1e-3, "{m:?}");
        assert!(m.attention_ms.abs() < 1e-3, "{m:?}");
        // Not knowing the budget, one step too few is read into the rest:
        // the client's time, or an attention cost the server does not have.
        let m = fit(&refs, true, None, None, 20, 1).unwrap().point;
        assert!(
            (m.client_ms - 1.5).abs() > 0.1 || m.attention_ms > 1.0,
            "{m:?}"
        );
    }

    #[test]
    fn prompts_chunked_by_a_small_budget_are_spread_back_over_their_steps() {
        // Budget 64: cohorts of seven 34-token prompts joining at once are
        // prefilled over four steps beside the one decoding sequence.
        let t = Truth {
            base_ms: 6.0,
            per_seq_ms: 0.4,
            prefill_ms: 0.05,
            attention_ms: 0.0,
            kv_ms: 0.0,
            join_ms: 0.0,
            sigma: 0.0,
            budget: 64,
        };
        let traces = runs(&t, 1, &[]);
        let refs: Vec<&Trace> = traces.iter().collect();
        let f = fit(&refs, true, Some(64), None, 20, 1).unwrap();
        let m = f.point;
        assert!((m.base_ms - 6.0).abs() < 1e-3, "{m:?}");
        assert!((m.per_seq_ms - 0.4).abs() < 1e-3, "{m:?}");
        assert!((m.prefill_per_token_ms - 0.05).abs() < 1e-4, "{m:?}");
        // A few steps it cannot read exactly (a sequence admitted with no
        // room left holds a slot but shows nothing) are left out.
        assert!(f.stall_share < 0.01, "{} {:?}", f.stall_share, f.stalls_ms);
    }

    #[test]
    fn noisy_runs_are_covered_by_the_intervals() {
        let t = Truth {
            base_ms: 20.0,
            per_seq_ms: 0.5,
            prefill_ms: 0.05,
            attention_ms: 0.0,
            kv_ms: 0.0,
            join_ms: 0.0,
            sigma: 0.05,
            budget: 2048,
        };
        let jitter = [-0.3, -0.1, 0.0, 0.1, 0.3];
        let mut covered = [0usize; 4];
        for seed in 1..=10u64 {
            let traces = runs(&t, seed * 10, &jitter);
            let refs: Vec<&Trace> = traces.iter().collect();
            let f = fit(&refs, true, Some(2048), None, 200, seed).unwrap();
            for (k, want) in [20.0, 0.5, 0.05, 0.05].into_iter().enumerate() {
                let e = f.estimates[k];
                assert!(e.lo <= e.value && e.value <= e.hi, "{e:?}");
                covered[k] += usize::from(e.contains(want));
            }
            assert!((f.point.base_ms - 20.0).abs() < 1.0, "{:?}", f.point);
            assert!((f.point.per_seq_ms - 0.5).abs() < 0.15, "{:?}", f.point);
            assert!((f.point.sigma - 0.05).abs() < 0.015, "{:?}", f.point);
        }
        // 95% intervals: at least 7 of 10 runs cover each true value.
        assert!(covered.iter().all(|&c| c >= 7), "{covered:?}");
    }

    #[test]
    fn one_running_count_holds_the_cost_per_sequence_and_says_so() {
        let t = LINEAR;
        // One length of the probe alone: every step runs one sequence
        // (its step is the fixed cost), and its prefill is one with the
        // client's time (6.4 + 16 x 0.05 + 1.5 after the set-up).
        let traces = runs(&t, 1, &[]);
        let f = fit(&[&traces[1]], true, Some(2048), None, 10, 1).unwrap();
        assert_eq!(f.point.per_seq_ms, 0.0);
        assert_eq!(f.point.prefill_per_token_ms, 0.0);
        assert!((f.point.base_ms - 6.4).abs() < 1e-3, "{:?}", f.point);
        assert!((f.point.client_ms - 2.3).abs() < 1e-3, "{:?}", f.point);
        assert_eq!(f.caveats.len(), 2, "{:?}", f.caveats);
        assert!(f.caveats[0].contains("(120 steps of 1)"), "{:?}", f.caveats);
        assert!(
            f.caveats[0].contains("--payloads pP.jsonl"),
            "{:?}",
            f.caveats
        );
        assert!(
            f.caveats[1].contains("prefill cost cannot be told"),
            "{:?}",
            f.caveats
        );
        // Two lengths of the probe tell the prefill cost apart (not yet
        // one that grows faster, and the fit says so: the first run stands
        // as the Before, so one length is a probe's).
        let f = fit(&[&traces[1], &traces[2]], true, Some(2048), None, 10, 1).unwrap();
        assert!(
            (f.point.prefill_per_token_ms - 0.05).abs() < 1e-4,
            "{:?}",
            f.point
        );
        assert_eq!(f.caveats.len(), 2, "{:?}", f.caveats);
        assert!(
            f.caveats[1].contains("at 1 prompt length(s)"),
            "{:?}",
            f.caveats
        );
        // The Before alone: every step runs eight, cohorts of eight join
        // together (no step both decodes and prefills), and no request
        // found the server idle: the fixed cost is the whole step.
        let f = fit(&[&traces[0]], true, Some(2048), None, 10, 1).unwrap();
        assert_eq!(f.point.per_seq_ms, 0.0);
        assert!((f.point.base_ms - 9.2).abs() < 1e-3, "{:?}", f.point);
        assert_eq!(f.caveats.len(), 3, "{:?}", f.caveats);
        assert!(
            f.caveats[2].contains("connection set-up alone"),
            "{:?}",
            f.caveats
        );
        // One request of one token: no step at all.
        let (log, extras) = simulated_log(
            &truth_server(&t),
            &Client {
                overhead_ms: &[1.5],
                read_jitter_ms: &[],
                max_in_flight: None,
                schedule_ms: &[],
                first_starts_ms: &[],
                first_jitter_ms: 0.0,
            },
            &[SimRequest {
                prompt_tokens: 16,
                output_tokens: 1,
                prefix_group: None,
                shared_prefix_tokens: 0,
            }],
            &model::whatif::Load::Closed {
                concurrency: 1,
                requests: 1,
            },
            1,
        );
        let one = trace(&log, &extras, None);
        assert_eq!(one.streams.len(), 1);
        let err = fit(&[&one], true, None, None, 10, 1).unwrap_err();
        assert!(matches!(err, StepFitError::TooFewSteps { .. }), "{err}");
        let empty = Trace {
            streams: Vec::new(),
            groups: Vec::new(),
            group_of: Vec::new(),
            deviations_ms: Vec::new(),
        };
        assert_eq!(
            fit(&[&empty], true, None, None, 10, 1).unwrap_err(),
            StepFitError::NoStreams
        );
    }
}
