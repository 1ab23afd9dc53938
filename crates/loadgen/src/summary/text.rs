//! The summary as text, in the manner of oha: counts and error kinds,
//! percentiles, the LLM timings, the open loop's health, a text histogram
//! of latencies and the status codes.

use std::fmt;

use model::summary::{LatencyBucket, RunSummary, WorkloadSummary};

/// Widest bar of the text histogram, in characters.
const HISTOGRAM_BAR_CHARS: u64 = 40;

/// The text histogram, a line a bucket: `  12.30 ms [  812] |■■■■`, bars
/// scaled to the fullest bucket. A bucket with any latency gets at least
/// one mark, so a single slow request (the tail) stays visible.
fn write_histogram(f: &mut fmt::Formatter<'_>, buckets: &[LatencyBucket]) -> fmt::Result {
    // As many decimals as the smallest bound needs for three significant
    // digits: `0.052`, `1.25`, `132`, never `1112.528`.
    let smallest = buckets.first().map_or(0.0, |b| b.upper_ms);
    let decimals = match smallest {
        s if s < 1.0 => 3,
        s if s < 10.0 => 2,
        s if s < 100.0 => 1,
        _ => 0,
    };
    let labels: Vec<String> = buckets
        .iter()
        .map(|b| format!("{:.decimals$}", b.upper_ms))
        .collect();
    let label_width = labels.iter().map(String::len).max().unwrap_or(0);
    let fullest = buckets.iter().map(|b| b.count).max().unwrap_or(0);
    let count_width = fullest.to_string().len();
    for (label, bucket) in labels.iter().zip(buckets) {
        let marks = if bucket.count == 0 || fullest == 0 {
            0
        } else {
            (bucket.count * HISTOGRAM_BAR_CHARS / fullest).max(1)
        };
        let bar = "■".repeat(usize::try_from(marks).unwrap_or(0));
        writeln!(
            f,
            "  {label:>label_width$} ms [{:>count_width$}] |{bar}",
            bucket.count
        )?;
    }
    Ok(())
}

/// What an LLM workload sent and got, a few lines.
fn write_workload(f: &mut fmt::Formatter<'_>, w: &WorkloadSummary) -> fmt::Result {
    writeln!(f, "Prompts: {}", w.prompts)?;
    if w.input_tokens_mean.is_some() || w.prompt_tokens_mean.is_some() {
        let mean = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"));
        writeln!(
            f,
            "Input tokens: mean {} asked; the server counted mean {} (usage.prompt_tokens, its template included)",
            mean(w.input_tokens_mean),
            mean(w.prompt_tokens_mean)
        )?;
    }
    if let Some(out) = &w.output {
        writeln!(
            f,
            "Output tokens: asked mean {:.1} (max_tokens), received mean {:.1}; {} of {} answers came short",
            out.requested_mean, out.received_mean, out.short, out.rows
        )?;
    }
    if let Some(sessions) = w.sessions {
        writeln!(f, "Conversations: {sessions} started")?;
    }
    if !w.ttft_by_turn.is_empty() {
        writeln!(f, "TTFT by turn:")?;
        for t in &w.ttft_by_turn {
            writeln!(
                f,
                "  turn {}: P50 {} / P95 {} ({} turns)",
                t.turn,
                ms(t.p50_ms),
                ms(t.p95_ms),
                t.count
            )?;
        }
    }
    if let Some(trace) = &w.trace {
        writeln!(
            f,
            "Trace: {} ({}), {} of {} rows in the window, replayed over {:.2} s at speedup {}{}",
            trace.file,
            trace.format,
            trace.in_window,
            trace.rows,
            trace.span_s,
            trace.speedup,
            if trace.failed_rows_skipped > 0 {
                format!(
                    "; {} rows failed in production, skipped",
                    trace.failed_rows_skipped
                )
            } else {
                String::new()
            }
        )?;
    }
    if let Some(stages) = &w.stages {
        writeln!(f, "Stages: {stages}")?;
    }
    Ok(())
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2} ms"))
}

/// A summary as loadgen prints it: `print!("{}", SummaryText(&summary))`.
pub struct SummaryText<'a>(pub &'a RunSummary);

impl fmt::Display for SummaryText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summary = self.0;
        let profile = summary.profile.as_deref().unwrap_or("custom");
        writeln!(
            f,
            "loadgen: {} loop, profile {profile}, api {}, {}, {} connections, batch size {} (wait {} ms), {}",
            summary.mode,
            summary.api,
            summary.protocol,
            summary.connection,
            summary.batch_size,
            summary.batch_wait_ms,
            if summary.verified {
                "outputs verified"
            } else {
                "outputs not verified"
            },
        )?;
        if let Some(tls) = &summary.tls_verification {
            writeln!(f, "TLS: server certificate {tls}")?;
        }
        if let Some(shard) = &summary.shard {
            write!(f, "Shard {}/{}", shard.index, shard.count)?;
            match shard.start_skew_ms {
                Some(skew) => writeln!(f, ", started {skew:.1} ms after --start-at")?,
                None => writeln!(f)?,
            }
        }
        writeln!(f, "Total requests: {}", summary.total)?;
        writeln!(f, "Succeeded: {}", summary.succeeded)?;
        writeln!(f, "Failed: {}", summary.failed)?;
        for (kind, count) in &summary.errors {
            writeln!(f, "  {kind}: {count}")?;
        }
        if let Some(why) = &summary.tls_first_failure {
            writeln!(f, "  first TLS handshake failure: {why}")?;
        }
        writeln!(f, "P50 latency: {}", ms(summary.p50_ms))?;
        writeln!(f, "P90 latency: {}", ms(summary.p90_ms))?;
        writeln!(f, "P95 latency: {}", ms(summary.p95_ms))?;
        writeln!(f, "P99 latency: {}", ms(summary.p99_ms))?;
        writeln!(f, "P99.9 latency: {}", ms(summary.p99_9_ms))?;
        writeln!(f, "Max latency: {}", ms(summary.max_ms))?;
        if let Some(error) = &summary.quantile_error {
            writeln!(f, "Percentiles not exact: {error}")?;
        }
        writeln!(
            f,
            "Mean {} / min {} / max {}",
            ms(summary.mean_ms),
            ms(summary.min_ms),
            ms(summary.max_ms)
        )?;
        // A gRPC run's requests are calls (a stream each, when streamed).
        let carried = if summary.api.ends_with("-grpc") {
            "gRPC calls"
        } else {
            "HTTP requests"
        };
        writeln!(
            f,
            "Throughput: {:.1} req/s over {:.2} s ({} {carried})",
            summary.throughput_rps, summary.duration_s, summary.http_requests
        )?;
        writeln!(f, "Connections opened: {}", summary.connections_opened)?;
        if summary.retries > 0 {
            writeln!(
                f,
                "Retries: {} (sent again on a new connection: the server had closed the kept-alive one)",
                summary.retries
            )?;
        }
        if let Some(llm) = &summary.llm {
            for (name, p) in [("TTFT", &llm.ttft), ("ITL", &llm.itl), ("TPOT", &llm.tpot)] {
                writeln!(
                    f,
                    "{name}: P50 {} / P90 {} / P95 {} / P99 {} / max {} ({} samples)",
                    ms(p.p50_ms),
                    ms(p.p90_ms),
                    ms(p.p95_ms),
                    ms(p.p99_ms),
                    ms(p.max_ms),
                    p.count
                )?;
                if let Some(error) = &p.quantile_error {
                    writeln!(f, "  {name} percentiles not exact: {error}")?;
                }
            }
            // Only a stamped stream measures these; without stamps the
            // lines are absent, not zero.
            for (name, p) in [
                ("Client delay (stamp to read)", &llm.client_delay),
                ("Server ITL (between stamps)", &llm.server_itl),
            ] {
                if let Some(p) = p {
                    writeln!(
                        f,
                        "{name}: P50 {} / P99 {} / max {} ({} tokens; from a histogram)",
                        ms(p.p50_ms),
                        ms(p.p99_ms),
                        ms(p.max_ms),
                        p.count
                    )?;
                }
            }
            let from = match llm.tokens_from.as_str() {
                "usage" => "from the server's usage",
                "counted" => "counted from the streamed deltas (no usage sent)",
                "mixed" => "from usage where sent, else counted",
                _ => "unknown",
            };
            let rate = llm
                .output_tokens_per_s
                .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.1}"));
            writeln!(
                f,
                "Output tokens: {} ({rate} tokens/s; {from})",
                llm.output_tokens
            )?;
        }
        if let (Some(target), Some(achieved)) = (summary.target_rate_rps, summary.achieved_rate_rps)
        {
            writeln!(
                f,
                "Rate: target {target:.1} req/s, achieved {achieved:.1} req/s, {} late sends, {} dropped, max lag {:.2} ms",
                summary.late_sends.unwrap_or(0),
                summary.dropped.unwrap_or(0),
                summary.max_send_lag_ms.unwrap_or(0.0)
            )?;
        }
        if let Some(lag) = &summary.send_lag {
            writeln!(
                f,
                "Schedule adherence: send lateness (actual minus intended send) P50 {} / P99 {} / max {} over {} sends",
                ms(lag.p50_ms),
                ms(lag.p99_ms),
                ms(lag.max_ms),
                lag.count
            )?;
        }
        if summary.warmup_rows > 0 {
            writeln!(
                f,
                "Warm-up: {} rows logged with phase=warmup, left out of every number here",
                summary.warmup_rows
            )?;
        }
        if let Some(workload) = &summary.workload {
            write_workload(f, workload)?;
        }
        if !summary.latency_buckets.is_empty() {
            writeln!(
                f,
                "Latency histogram (successful requests; log-spaced, each line up to its bound):"
            )?;
            write_histogram(f, &summary.latency_buckets)?;
        }
        if !summary.status_codes.is_empty() {
            writeln!(f, "Status code distribution:")?;
            for (code, count) in &summary.status_codes {
                let noun = if *count == 1 { "response" } else { "responses" };
                writeln!(f, "  [{code}] {count} {noun}")?;
            }
        }
        if let Some(warning) = &summary.rate_warning {
            writeln!(f, "WARNING: {warning}")?;
        }
        if let Some(warning) = &summary.server_stats_warning {
            writeln!(f, "WARNING: {warning}")?;
        }
        if summary.interrupted {
            writeln!(f, "Interrupted: the run was cut short; counts are partial.")?;
        }
        Ok(())
    }
}
