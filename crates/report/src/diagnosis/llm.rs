//! Findings of a streamed LLM run: where the time to first token goes,
//! whether the sequence slots were saturated, what the inter-token tail
//! coincides with, the KV cache's pressure, the prefix cache's hit rate,
//! and whether long end-to-end times are long answers.
//!
//! The rows give the server's steps back (tokens read together were made
//! by one step, see `whatif::llm::trace`); the server's metrics, when
//! scraped through the run, give what only the server knows (its queue and
//! prefill histograms, KV usage, preemptions, prefix-cache counters).

use model::comparison::Finding;
use model::server_metrics::Role;

use super::{finding, pct, DiagnosisInput};
use crate::whatif::llm::trace::{trace, Trace};

/// The run's steps, when it streamed tokens.
fn trace_of(input: &DiagnosisInput<'_>) -> Option<Trace> {
    input.summary.llm.as_ref()?;
    let t = trace(input.log, &[], None);
    (!t.streams.is_empty()).then_some(t)
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    stats::quantile(&sorted, q, stats::QuantileMethod::Linear).unwrap_or(f64::NAN)
}

/// When stream `s` left the queue: the start of the step that made its
/// first token (the previous step's end, when the server was busy), else
/// its own arrival (its start plus its connection set-up).
fn admitted_ms(t: &Trace, s: usize) -> f64 {
    let stream = &t.streams[s];
    let arrival = stream.start_ms + stream.setup_ms;
    let g = t.group_of[s][0];
    if g >= 1 && t.groups[g - 1].at_ms > arrival {
        t.groups[g - 1].at_ms
    } else {
        arrival
    }
}

/// Time to first token split into waiting for a slot, prefill and the
/// client's own time: from the server's histograms when its metrics were
/// scraped, else from the rows (the client's part is its connection
/// set-up, the prefill the step that made the first token).
pub(super) fn ttft_split(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let t = trace_of(input)?;
    let ttft: Vec<f64> = t.streams.iter().map(|s| s.ttft_ms()).collect();
    let mean_ttft = mean(&ttft);
    let from_metrics = input.metrics.and_then(|m| {
        let queue = m.histogram_delta(Role::QueueTime)?.mean()? * 1000.0;
        let prefill = m.histogram_delta(Role::PrefillTime)?.mean()? * 1000.0;
        Some((queue, prefill))
    });
    if let Some((wait, prefill)) = from_metrics {
        let client = (mean_ttft - wait - prefill).max(0.0);
        let sentence = format!(
            "of the mean time to first token {mean_ttft:.1} ms, the server's histograms put {wait:.1} ms ({:.0}%) waiting for a slot and {prefill:.1} ms ({:.0}%) in prefill; the other {client:.1} ms ({:.0}%) is the client's own time (connecting, sending, reading).",
            pct(wait, mean_ttft),
            pct(prefill, mean_ttft),
            pct(client, mean_ttft)
        );
        return Some(finding(
            input,
            "llm_ttft_split",
            sentence,
            &[
                ("mean_ttft_ms", mean_ttft),
                ("mean_wait_ms", wait),
                ("mean_prefill_ms", prefill),
                ("mean_client_ms", client),
                ("wait_pct", pct(wait, mean_ttft)),
                ("prefill_pct", pct(prefill, mean_ttft)),
                ("client_pct", pct(client, mean_ttft)),
            ],
        ));
    }
    let parts: Vec<[f64; 3]> = (0..t.streams.len())
        .map(|s| {
            let stream = &t.streams[s];
            let client = stream.setup_ms;
            let prefill = (stream.reads_ms[0] - admitted_ms(&t, s)).max(0.0);
            let wait = (stream.ttft_ms() - client - prefill).max(0.0);
            [wait, prefill, client]
        })
        .collect();
    let avg = |rows: &[&[f64; 3]], i: usize| mean(&rows.iter().map(|p| p[i]).collect::<Vec<_>>());
    let all: Vec<&[f64; 3]> = parts.iter().collect();
    let p95 = quantile(&ttft, 0.95);
    let tail: Vec<&[f64; 3]> = parts
        .iter()
        .zip(&ttft)
        .filter(|(_, t)| **t >= p95)
        .map(|(p, _)| p)
        .collect();
    let tail_ttft = mean(
        &ttft
            .iter()
            .copied()
            .filter(|t| *t >= p95)
            .collect::<Vec<_>>(),
    );
    let (wait, prefill, client) = (avg(&all, 0), avg(&all, 1), avg(&all, 2));
    let (t_wait, t_prefill, t_client) = (avg(&tail, 0), avg(&tail, 1), avg(&tail, 2));
    let sentence = format!(
        "of the mean time to first token {mean_ttft:.1} ms, {wait:.1} ms ({:.0}%) was waiting for a slot, {prefill:.1} ms ({:.0}%) the step that prefilled the prompt and {client:.1} ms ({:.0}%) the client's connection set-up; among the slowest 5% (TTFT >= P95 {p95:.1} ms, mean {tail_ttft:.1} ms) it is {t_wait:.1} ms ({:.0}%) waiting, {t_prefill:.1} ms ({:.0}%) prefill, {t_client:.1} ms client (from the rows: a stream's first token ends the step that prefilled it, and that step began as the one before ended).",
        pct(wait, mean_ttft),
        pct(prefill, mean_ttft),
        pct(client, mean_ttft),
        pct(t_wait, tail_ttft),
        pct(t_prefill, tail_ttft),
    );
    Some(finding(
        input,
        "llm_ttft_split",
        sentence,
        &[
            ("mean_ttft_ms", mean_ttft),
            ("mean_wait_ms", wait),
            ("mean_prefill_ms", prefill),
            ("mean_client_ms", client),
            ("wait_pct", pct(wait, mean_ttft)),
            ("prefill_pct", pct(prefill, mean_ttft)),
            ("client_pct", pct(client, mean_ttft)),
            ("ttft_p95_ms", p95),
            ("tail_wait_pct", pct(t_wait, tail_ttft)),
            ("tail_prefill_pct", pct(t_prefill, tail_ttft)),
        ],
    ))
}

/// Steps that ran the most sequences while requests waited, and Little's
/// law on sequences: requests in the system = throughput x mean e2e,
/// split into those decoding and those waiting or prefilling.
pub(super) fn slot_saturation(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let t = trace_of(input)?;
    let duration_s = input.summary.duration_s.filter(|d| *d > 0.0)?;
    let steps = t.back_to_back_steps();
    if steps.is_empty() {
        return None;
    }
    let metrics_slots = input.metrics.and_then(|m| m.max(Role::Running));
    let slots = metrics_slots.map_or(t.most_running() as f64, f64::round);
    let mut starts: Vec<f64> = t.streams.iter().map(|s| s.start_ms).collect();
    let mut admitted: Vec<f64> = (0..t.streams.len()).map(|s| admitted_ms(&t, s)).collect();
    starts.sort_by(f64::total_cmp);
    admitted.sort_by(f64::total_cmp);
    let count_at = |v: &[f64], x: f64| v.partition_point(|y| *y <= x);
    let saturated = steps
        .iter()
        .filter(|step| {
            let began = t.groups[step.group - 1].at_ms;
            let waiting = count_at(&starts, began).saturating_sub(count_at(&admitted, began));
            step.running as f64 >= slots && waiting > 0
        })
        .count();
    let share = pct(saturated as f64, steps.len() as f64);
    let rate = t.streams.len() as f64 / duration_s;
    let e2e_s = mean(&t.streams.iter().map(|s| s.e2e_ms()).collect::<Vec<_>>()) / 1000.0;
    let in_system = rate * e2e_s;
    let decoding = t
        .streams
        .iter()
        .map(|s| s.reads_ms[s.reads_ms.len() - 1] - s.reads_ms[0])
        .sum::<f64>()
        / 1000.0
        / duration_s;
    let before_first = t.streams.iter().map(|s| s.ttft_ms()).sum::<f64>() / 1000.0 / duration_s;
    let source = if metrics_slots.is_some() {
        "the server's metrics"
    } else {
        "the most seen decoding at once"
    };
    let reading = if share >= 50.0 {
        "the slots were saturated: requests queued for a sequence slot"
    } else {
        "the slots were mostly not the limit"
    };
    let sentence = format!(
        "{saturated} of the {} steps seen ({share:.0}%) ran {slots:.0} sequence{} (the slots, from {source}) while requests waited: {reading}. Little's law on sequences: {rate:.2} requests/s x {e2e_s:.3} s mean e2e = {in_system:.1} sequences in the system on average, {decoding:.1} decoding and {before_first:.1} waiting or prefilling.",
        steps.len(),
        if slots == 1.0 { "" } else { "s" }
    );
    Some(finding(
        input,
        "llm_slot_saturation",
        sentence,
        &[
            ("steps", steps.len() as f64),
            ("saturated_steps", saturated as f64),
            ("saturated_pct", share),
            ("slots", slots),
            ("requests_per_s", rate),
            ("mean_e2e_s", e2e_s),
            ("mean_in_system", in_system),
            ("mean_decoding", decoding),
            ("mean_waiting_or_prefilling", before_first),
        ],
    ))
}

/// The gaps at or above the ITL P99, and what their steps had in them:
/// sequences joining (their prefill), the batch growing, or steps the
/// stream sat out (preempted, or its reader stalled).
pub(super) fn itl_tail(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let t = trace_of(input)?;
    struct Gap {
        ms: f64,
        joined: bool,
        grew: bool,
        sat_out: bool,
    }
    let mut gaps = Vec::new();
    for (s, stream) in t.streams.iter().enumerate() {
        for k in 1..stream.reads_ms.len() {
            let (g0, g) = (t.group_of[s][k - 1], t.group_of[s][k]);
            let members = &t.groups[g].members;
            gaps.push(Gap {
                ms: stream.reads_ms[k] - stream.reads_ms[k - 1],
                joined: members.iter().any(|&(_, k)| k == 0),
                grew: g >= 1 && members.len() > t.groups[g - 1].members.len(),
                sat_out: g > g0 + 1,
            });
        }
    }
    if gaps.len() < 2 {
        return None;
    }
    let all: Vec<f64> = gaps.iter().map(|g| g.ms).collect();
    let (p50, p99) = (quantile(&all, 0.5), quantile(&all, 0.99));
    let tail: Vec<&Gap> = gaps.iter().filter(|g| g.ms >= p99).collect();
    let n = tail.len() as f64;
    let share = |f: fn(&Gap) -> bool| pct(tail.iter().filter(|g| f(g)).count() as f64, n);
    let joined = share(|g| g.joined);
    let grew = share(|g| g.grew && !g.joined);
    let sat_out = share(|g| g.sat_out);
    let none = share(|g| !(g.joined || g.grew || g.sat_out));
    let with_join = mean(
        &gaps
            .iter()
            .filter(|g| g.joined && !g.sat_out)
            .map(|g| g.ms)
            .collect::<Vec<_>>(),
    );
    let without = mean(
        &gaps
            .iter()
            .filter(|g| !g.joined && !g.sat_out)
            .map(|g| g.ms)
            .collect::<Vec<_>>(),
    );
    let preemptions = input.metrics.and_then(|m| m.delta(Role::Preemptions));
    let preempted = preemptions.map_or(String::new(), |p| {
        format!(" (the server counted {p:.0} preemptions)")
    });
    let sentence = format!(
        "ITL P99 {p99:.1} ms against P50 {p50:.1} ms: of the {} gaps at or above P99, {joined:.0}% ended a step that prefilled joining sequences (such steps average {with_join:.1} ms against {without:.1} ms without), {grew:.0}% a step where the batch grew, {sat_out:.0}% spanned steps the stream sat out{preempted}; {none:.0}% coincide with none of these (the server's own spread or the client's reading).",
        tail.len()
    );
    let mut values = vec![
        ("itl_p50_ms", p50),
        ("itl_p99_ms", p99),
        ("tail_gaps", n),
        ("tail_joined_pct", joined),
        ("tail_grew_pct", grew),
        ("tail_sat_out_pct", sat_out),
        ("tail_none_pct", none),
        ("mean_gap_with_join_ms", with_join),
        ("mean_gap_without_join_ms", without),
    ];
    if let Some(p) = preemptions {
        values.push(("preemptions", p));
    }
    Some(finding(input, "llm_itl_tail", sentence, &values))
}

/// KV-cache usage through the run and the preemptions it forced, from the
/// server's metrics.
pub(super) fn kv_pressure(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let m = input.metrics?;
    let usage: Vec<f64> = m
        .series(Role::KvUsage)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let preemptions = m.delta(Role::Preemptions);
    if usage.is_empty() && preemptions.is_none() {
        return None;
    }
    let mut values = Vec::new();
    let mut parts = Vec::new();
    if !usage.is_empty() {
        let peak = usage.iter().copied().fold(0.0_f64, f64::max) * 100.0;
        let avg = mean(&usage) * 100.0;
        let full = pct(
            usage.iter().filter(|u| **u >= 0.9).count() as f64,
            usage.len() as f64,
        );
        parts.push(format!(
            "KV-cache usage peaked at {peak:.0}% (mean {avg:.0}%) and was at or above 90% in {full:.0}% of the {} scrapes",
            usage.len()
        ));
        values.extend([
            ("kv_usage_peak_pct", peak),
            ("kv_usage_mean_pct", avg),
            ("kv_usage_full_pct", full),
        ]);
    }
    if let Some(p) = preemptions {
        parts.push(format!(
            "the server preempted {p:.0} sequences{}",
            if p > 0.0 {
                " (each recomputes its prompt and its tokens so far: a long gap for its stream)"
            } else {
                ""
            }
        ));
        values.push(("preemptions", p));
    }
    let pressure = values
        .iter()
        .any(|(k, v)| (*k == "kv_usage_full_pct" || *k == "preemptions") && *v > 0.0);
    let sentence = format!(
        "{}: {}.",
        parts.join("; "),
        if pressure {
            "the KV cache was a limit"
        } else {
            "the KV cache was not a limit"
        }
    );
    Some(finding(input, "llm_kv_pressure", sentence, &values))
}

/// The prefix cache's hit rate over the run, from the server's counters.
pub(super) fn prefix_cache(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let m = input.metrics?;
    let queries = m.delta(Role::PrefixQueries)?;
    let hits = m.delta(Role::PrefixHits)?;
    let rate = pct(hits, queries);
    let sentence = if queries > 0.0 {
        format!(
            "the prefix cache found {hits:.0} of the {queries:.0} prompt tokens looked up ({rate:.1}%): that share of the prefill cost nothing."
        )
    } else {
        "the prefix cache was looked up for no prompt token (off, or nothing ran).".to_owned()
    };
    Some(finding(
        input,
        "llm_prefix_cache",
        sentence,
        &[
            ("prefix_queries_tokens", queries),
            ("prefix_hits_tokens", hits),
            ("prefix_hit_pct", rate),
        ],
    ))
}

/// Answer lengths, and whether the slowest end-to-end requests were slow
/// for their length, their wait or their tokens' pace.
pub(super) fn output_spread(input: &DiagnosisInput<'_>) -> Option<Finding> {
    let t = trace_of(input)?;
    let tokens: Vec<f64> = t
        .streams
        .iter()
        .map(|s| {
            input.log.rows[s.row]
                .llm
                .as_ref()
                .and_then(|l| l.output_tokens)
                .map_or(s.reads_ms.len() as f64, |n| n as f64)
        })
        .collect();
    let e2e: Vec<f64> = t.streams.iter().map(|s| s.e2e_ms()).collect();
    let ttft: Vec<f64> = t.streams.iter().map(|s| s.ttft_ms()).collect();
    let decode: Vec<f64> = e2e.iter().zip(&ttft).map(|(e, f)| e - f).collect();
    let p95 = quantile(&e2e, 0.95);
    let tail: Vec<usize> = (0..e2e.len()).filter(|&i| e2e[i] >= p95).collect();
    let pick = |v: &[f64]| mean(&tail.iter().map(|&i| v[i]).collect::<Vec<_>>());
    let (n_all, n_tail) = (mean(&tokens), pick(&tokens));
    let (ttft_all, ttft_tail) = (mean(&ttft), pick(&ttft));
    let (decode_all, decode_tail) = (mean(&decode), pick(&decode));
    let pace_all = decode_all / (n_all - 1.0).max(1.0);
    // The tail's extra e2e: its extra wait, its extra tokens at the usual
    // pace, and the rest (a slower pace).
    let extra_wait = ttft_tail - ttft_all;
    let extra_length = (n_tail - n_all) * pace_all;
    let extra_pace = decode_tail - decode_all - extra_length;
    let [wait_part, length_part, pace_part] = [extra_wait, extra_length, extra_pace];
    let why = if length_part >= wait_part && length_part >= pace_part {
        "their answers are longer"
    } else if wait_part >= pace_part {
        "they waited longer for the first token"
    } else {
        "their tokens came slower"
    };
    let sentence = format!(
        "answers ran {:.0} tokens at the median (P95 {:.0}, max {:.0}); the slowest 5% by e2e (>= P95 {p95:.0} ms) answered {n_tail:.1} tokens on average against {n_all:.1} overall: of their {:.0} ms more e2e, {wait_part:.0} ms is a longer wait for the first token, {length_part:.0} ms longer answers and {pace_part:.0} ms a slower pace, so e2e is long because {why}.",
        quantile(&tokens, 0.5),
        quantile(&tokens, 0.95),
        tokens.iter().copied().fold(0.0_f64, f64::max),
        pick(&e2e) - mean(&e2e),
    );
    Some(finding(
        input,
        "llm_output_spread",
        sentence,
        &[
            ("output_tokens_p50", quantile(&tokens, 0.5)),
            ("output_tokens_p95", quantile(&tokens, 0.95)),
            ("e2e_p95_ms", p95),
            ("tail_output_tokens_mean", n_tail),
            ("output_tokens_mean", n_all),
            ("tail_extra_wait_ms", wait_part),
            ("tail_extra_length_ms", length_part),
            ("tail_extra_pace_ms", pace_part),
        ],
    ))
}
