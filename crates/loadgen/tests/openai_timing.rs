//! TTFT and inter-token gaps against a server that emits tokens on a
//! known schedule (the first 200 ms after the request, then one every 20
//! ms): the client's error against the server's own writes is within 1 ms
//! at P50. The tail is printed, not asserted: on a shared 2-vCPU VM other
//! processes pause both ends for tens of milliseconds now and then, and a
//! timing bar belongs in the benchmarks. A binary of its own: cargo runs
//! test binaries one at a time, so nothing else in the tests competes for
//! the CPUs.

mod common;

use std::time::Duration;

use common::script::{schedule, ScriptServer};
use loadgen::{ApiChoice, LoadConfig, OpenAiEndpoint, OpenAiOptions};
use model::log::TokensFrom;

/// Tokens per answer: 24 answers give 936 gaps, so that a P99 is not one
/// pause of this VM's CPUs.
const TOKENS: u32 = 40;

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttft_and_every_gap_match_the_servers_schedule() {
    // First token 200 ms after the request, then one every 20 ms.
    let server = ScriptServer::start(schedule(
        Duration::from_millis(200),
        Duration::from_millis(20),
        TOKENS,
        true,
    ));
    let dir = common::temp_dir("openai-schedule");
    // The warm-up opens the four keep-alive connections: the measured
    // requests time the stream, not a TCP handshake.
    let config = LoadConfig {
        warmup: loadgen::Warmup::Requests(4),
        api: ApiChoice::OpenAi(OpenAiOptions {
            endpoint: OpenAiEndpoint::Chat,
            stream: true,
            max_tokens: None,
            extra_body: None,
        }),
        requests: Some(24),
        concurrency: 4,
        threads: Some(1),
        verify: Some(false),
        ..common::config(&server.url(), &dir)
    };
    let log = config.log_path.clone().unwrap();
    let summary = loadgen::run(config, std::future::pending()).await.unwrap();
    let rows = model::log::read_log_file(&log).unwrap().rows;
    assert_eq!((summary.succeeded, summary.failed), (24, 0), "{summary:?}");
    // What the server really did, by request: a sleeping thread wakes a
    // little late now and then, and that is the server's error, not the
    // client's. The client is judged against the server's writes (same
    // process, same monotonic clock); the nominal schedule is printed too.
    // The warm-up sent ids 0-3 first: a measured request is the last one
    // with its id.
    let sent = server.sent.lock().unwrap().clone();
    let mut ttft_error = Vec::new();
    let mut gap_error = Vec::new();
    let mut nominal_gap_error = Vec::new();
    for row in &rows {
        let llm = row.llm.as_ref().unwrap();
        let server = sent
            .iter()
            .rev()
            .find(|s| s.request_id == row.request_id)
            .unwrap();
        // Chunk 0 is the role-only delta; tokens are the next TOKENS.
        let tokens = &server.chunks[1..=TOKENS as usize];
        let first_ms = (tokens[0] - server.arrived).as_secs_f64() * 1000.0;
        ttft_error.push((llm.ttft_ms.unwrap() - first_ms).abs());
        for (k, gap) in llm.itl_ms.iter().enumerate() {
            let actual = (tokens[k + 1] - tokens[k]).as_secs_f64() * 1000.0;
            gap_error.push((gap - actual).abs());
            nominal_gap_error.push((gap - 20.0).abs());
        }
    }
    let (ttft_error, gap_error, nominal_gap_error) = (
        sorted(ttft_error),
        sorted(gap_error),
        sorted(nominal_gap_error),
    );
    assert_eq!(gap_error.len(), 24 * (TOKENS as usize - 1));
    let p = |v: &[f64], q| common::percentile(v, q);
    let nominal_ttft = sorted(
        rows.iter()
            .map(|r| (r.llm.as_ref().unwrap().ttft_ms.unwrap() - 200.0).abs())
            .collect(),
    );
    eprintln!(
        "client error against the server's writes: TTFT P50 {:.3} ms, P99 {:.3} ms; ITL P50 {:.3} ms, P99 {:.3} ms. \
         Against the nominal 200 ms / 20 ms: TTFT P50 {:.3} ms, P99 {:.3} ms; ITL P50 {:.3} ms, P99 {:.3} ms",
        p(&ttft_error, 0.5),
        p(&ttft_error, 0.99),
        p(&gap_error, 0.5),
        p(&gap_error, 0.99),
        p(&nominal_ttft, 0.5),
        p(&nominal_ttft, 0.99),
        p(&nominal_gap_error, 0.5),
        p(&nominal_gap_error, 0.99),
    );
    // A systematic error (timing a buffered read, or the headers instead
    // of the first token) moves the median; a pause of the VM only the
    // tail, which the line above prints.
    assert!(p(&ttft_error, 0.5) <= 1.0, "{ttft_error:?}");
    assert!(p(&gap_error, 0.5) <= 1.0, "{gap_error:?}");
    for row in &rows {
        let llm = row.llm.as_ref().unwrap();
        assert_eq!(
            (llm.output_tokens, llm.tokens_from),
            (Some(u64::from(TOKENS)), Some(TokensFrom::Usage))
        );
        // TPOT = (e2e - TTFT) / (tokens - 1), from the row's own numbers.
        let tpot = (row.latency_ms - llm.ttft_ms.unwrap()) / f64::from(TOKENS - 1);
        assert!((llm.tpot_ms.unwrap() - tpot).abs() < 0.01, "{row:?}");
    }
    let llm = summary.llm.unwrap();
    assert_eq!(
        (llm.output_tokens, llm.itl.count),
        (24 * u64::from(TOKENS), 24 * u64::from(TOKENS - 1))
    );
    assert_eq!(llm.tokens_from, "usage");
}
