//! Tests of the summary: the plan, the text, the JSON keys, and the
//! percentiles of the row statistics against `report` and numpy.

use std::collections::BTreeMap;

use model::log::LogRow;
use model::summary::{LatencyBucket, RunSummary, SCHEMA_VERSION};
use stats::{LatencyHistogram, QuantileMethod};

use super::build::{plan_of, HISTOGRAM_BUCKETS};
use super::rows::RowStats;
use super::series::EXACT_SAMPLES_PER_SERIES;
use super::text::SummaryText;
use crate::config::{Arrival, LoadConfig, OpenLoop, Profile};

#[test]
fn the_plan_is_the_whole_load_as_asked() {
    let mut config = LoadConfig::from_profile(Profile::Baseline);
    config.url = "http://10.0.0.1:8000/v1/infer".into();
    config.open_loop = Some(OpenLoop {
        rate_rps: 100.0,
        arrival: Arrival::Poisson,
        seed: 42,
        max_in_flight: 1000,
    });
    config.shard = Some(crate::Shard { index: 2, count: 4 });
    config.duration = Some(std::time::Duration::from_secs(5));
    let json = serde_json::to_value(plan_of(&config)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "url": "http://10.0.0.1:8000/v1/infer", "api": "simulator", "mode": "open",
            "rate_rps": 100.0, "arrival": "poisson", "seed": 42, "concurrency": null,
            "requests": 400, "duration_s": 5.0, "batch_size": 1, "batch_wait_ms": 0,
            "connection": "per-request", "http2": false, "profile": "baseline"
        })
    );
    // Another shard of the same job: the same plan.
    config.shard = Some(crate::Shard { index: 0, count: 4 });
    assert_eq!(serde_json::to_value(plan_of(&config)).unwrap(), json);
    let closed = plan_of(&LoadConfig {
        concurrency: 8,
        shard: Some(crate::Shard { index: 1, count: 4 }),
        ..LoadConfig::default()
    });
    assert_eq!(
        (
            closed.mode.as_str(),
            closed.concurrency,
            closed.rate_rps,
            closed.arrival,
            closed.seed
        ),
        ("closed", Some(8), None, None, None)
    );
    assert_eq!((closed.requests, closed.profile), (Some(400), None));
    let constant = plan_of(&LoadConfig {
        open_loop: Some(OpenLoop {
            rate_rps: 5.0,
            arrival: Arrival::Constant,
            seed: 42,
            max_in_flight: 1000,
        }),
        ..LoadConfig::default()
    });
    assert_eq!(
        (constant.arrival.as_deref(), constant.seed),
        (Some("constant"), None)
    );
}

/// A summary as a run of 1000 requests might leave it.
fn hand_made() -> RunSummary {
    let config = LoadConfig::from_profile(Profile::Baseline);
    RunSummary {
        schema_version: SCHEMA_VERSION,
        total: 1000,
        succeeded: 997,
        failed: 3,
        p50_ms: Some(1.5),
        p90_ms: Some(3.25),
        p95_ms: Some(4.0),
        p99_ms: Some(9.5),
        p99_9_ms: Some(20.125),
        quantiles_exact: true,
        quantile_error: None,
        mean_ms: Some(2.0),
        min_ms: Some(0.5),
        max_ms: Some(25.0),
        latency_buckets: [(1.0, 400), (2.5, 500), (6.0, 0), (10.0, 96), (25.0, 1)]
            .into_iter()
            .map(|(upper_ms, count)| LatencyBucket { upper_ms, count })
            .collect(),
        throughput_rps: 498.5,
        duration_s: 2.0,
        errors: BTreeMap::from([("http_503".to_owned(), 2), ("timeout".to_owned(), 1)]),
        status_codes: BTreeMap::from([(200, 997), (503, 2), (429, 1)]),
        connections_opened: 20,
        retries: 0,
        mode: "closed".into(),
        profile: Some("baseline".into()),
        connection: "per-request".into(),
        http2: false,
        batch_size: 1,
        batch_wait_ms: 0,
        concurrency: 20,
        client_threads: 2,
        busy_poll_us: 0,
        http_requests: 1000,
        server_batch_size_mean: None,
        verified: true,
        verified_rows: 9,
        target_rate_rps: None,
        achieved_rate_rps: None,
        late_sends: None,
        dropped: None,
        max_send_lag_ms: None,
        rate_warning: None,
        interrupted: false,
        url: "http://127.0.0.1:8000/v1/infer".into(),
        resolved: vec!["127.0.0.1:8000".into()],
        api: "simulator".into(),
        protocol: "HTTP/1.1".into(),
        tls_verification: None,
        tls_first_failure: None,
        server_stats_warning: None,
        model: "m".into(),
        llm: None,
        shard: None,
        plan: plan_of(&config),
        latency_histogram: None,
        ..RunSummary::default()
    }
}

#[test]
fn the_text_summary_has_percentiles_a_histogram_and_status_codes() {
    let text = SummaryText(&hand_made()).to_string();
    let expected = "\
loadgen: closed loop, profile baseline, api simulator, HTTP/1.1, per-request connections, batch size 1 (wait 0 ms), outputs verified
Total requests: 1000
Succeeded: 997
Failed: 3
  http_503: 2
  timeout: 1
P50 latency: 1.50 ms
P90 latency: 3.25 ms
P95 latency: 4.00 ms
P99 latency: 9.50 ms
P99.9 latency: 20.12 ms
Max latency: 25.00 ms
Mean 2.00 ms / min 0.50 ms / max 25.00 ms
Throughput: 498.5 req/s over 2.00 s (1000 HTTP requests)
Connections opened: 20
Latency histogram (successful requests; log-spaced, each line up to its bound):
   1.00 ms [400] |■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
   2.50 ms [500] |■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
   6.00 ms [  0] |
  10.00 ms [ 96] |■■■■■■■
  25.00 ms [  1] |■
Status code distribution:
  [200] 997 responses
  [429] 1 response
  [503] 2 responses
";
    assert_eq!(text, expected);
    // No success: no histogram; no response: no status codes.
    let empty = SummaryText(&RunSummary {
        latency_buckets: Vec::new(),
        status_codes: BTreeMap::new(),
        ..hand_made()
    })
    .to_string();
    assert!(!empty.contains("histogram") && !empty.contains("Status code"));
}

#[test]
fn the_json_has_the_new_keys() {
    let json: serde_json::Value = serde_json::from_str(&hand_made().to_json().unwrap()).unwrap();
    assert_eq!(json["p99_9_ms"], 20.125);
    assert_eq!(
        json["status_codes"],
        serde_json::json!({"200": 997, "429": 1, "503": 2})
    );
    assert_eq!(json["connections_opened"], 20);
    assert_eq!(
        json["latency_buckets"][0],
        serde_json::json!({"upper_ms": 1.0, "count": 400})
    );
}

#[test]
fn the_text_histogram_holds_every_success_from_min_to_max() {
    // The buckets themselves are `stats::LatencyHistogram::log_buckets_ms`'s
    // (tested there); here: they reach the summary as its JSON's buckets.
    let stats = stats_of(&e2e_rows(), EXACT_SAMPLES_PER_SERIES);
    let buckets = stats.latency_buckets(HISTOGRAM_BUCKETS);
    assert_eq!(buckets.len(), HISTOGRAM_BUCKETS);
    assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), 18);
    assert_eq!(buckets.last().map(|b| b.upper_ms), Some(121.453));
    assert!(RowStats::new()
        .latency_buckets(HISTOGRAM_BUCKETS)
        .is_empty());
}

/// 18 successful latencies with a slow tail (and a failure, left out),
/// as a short run leaves them.
const LATENCIES_MS: [f64; 18] = [
    101.203, 98.447, 103.918, 99.731, 100.052, 97.866, 102.415, 104.377, 98.990, 100.601, 99.118,
    103.062, 101.774, 97.532, 112.004, 100.337, 121.453, 99.865,
];

/// LLM timings of six streamed requests: TTFT, the gaps, TPOT.
fn llm_rows() -> Vec<LogRow> {
    let ttft_ms = [20.511, 22.014, 19.873, 35.902, 21.337, 20.004];
    let gaps_ms: [&[f64]; 6] = [
        &[5.1, 5.3, 9.8],
        &[5.0, 5.2],
        &[5.4, 30.1, 5.2, 5.1],
        &[5.3],
        &[5.2, 5.2, 5.6],
        &[6.0, 5.9],
    ];
    let tpot_ms = [5.5, 5.1, 11.4, 5.3, 5.33, 5.95];
    (0..6)
        .map(|i| LogRow {
            request_id: i as u64,
            timestamp_ms: i as f64,
            latency_ms: ttft_ms[i] + gaps_ms[i].iter().sum::<f64>(),
            status_code: 200,
            ok: true,
            llm: Some(model::log::LlmTiming {
                ttft_ms: Some(ttft_ms[i]),
                tpot_ms: Some(tpot_ms[i]),
                output_tokens: Some(gaps_ms[i].len() as u64 + 1),
                tokens_from: Some(model::log::TokensFrom::Usage),
                itl_ms: gaps_ms[i].to_vec(),
            }),
            ..LogRow::default()
        })
        .collect()
}

fn e2e_rows() -> Vec<LogRow> {
    let mut rows: Vec<LogRow> = LATENCIES_MS
        .iter()
        .enumerate()
        .map(|(i, &latency_ms)| LogRow {
            request_id: i as u64,
            timestamp_ms: i as f64 * 10.0,
            latency_ms,
            status_code: 200,
            ok: true,
            ..LogRow::default()
        })
        .collect();
    rows.push(LogRow {
        request_id: 18,
        latency_ms: 5000.0,
        error: "timeout".into(),
        ..LogRow::default()
    });
    rows
}

fn stats_of(rows: &[LogRow], limit: usize) -> RowStats {
    let mut stats = RowStats::with_limit(limit);
    for row in rows {
        stats.record(row);
    }
    stats
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-9 * b)
}

/// The percentiles equal `report summary`'s on the same rows, bit for
/// bit, and numpy's (values from `numpy.quantile(x, q)`, numpy 2.4).
#[test]
fn percentiles_equal_report_and_numpy_on_the_same_rows() {
    let rows = e2e_rows();
    let mut stats = stats_of(&rows, EXACT_SAMPLES_PER_SERIES);
    let report = report::summary_of_rows("t", "loadgen", &rows).unwrap();
    let latency = stats.latency_mut();
    assert!(latency.exact() && latency.quantile_error().is_none());
    assert_eq!(latency.quantile_ms(0.50), report.p50_ms);
    assert_eq!(latency.quantile_ms(0.95), report.p95_ms);
    assert_eq!(latency.quantile_ms(0.99), report.p99_ms);
    assert_eq!(latency.max_ms(), report.max_ms);
    assert_eq!(latency.min_ms(), report.min_ms);
    for (q, numpy) in [
        (0.5, 100.469),
        (0.9, 106.66510000000001),
        (0.95, 113.42134999999999),
        (0.99, 119.84666999999999),
    ] {
        assert!(close(latency.quantile_ms(q), numpy), "q={q}");
    }
    assert_eq!(latency.max_ms(), Some(121.453));

    // The LLM series: report's LLM summary of the same rows, and numpy.
    let rows = llm_rows();
    let mut stats = stats_of(&rows, EXACT_SAMPLES_PER_SERIES);
    let ours = stats.llm_summary(1.0).unwrap();
    let theirs = report::summary_of_rows("t", "loadgen", &rows)
        .unwrap()
        .llm
        .unwrap();
    for (name, ours, theirs) in [
        ("ttft", &ours.ttft, &theirs.ttft),
        ("itl", &ours.itl, &theirs.itl),
        ("tpot", &ours.tpot, &theirs.tpot),
    ] {
        let pairs = [
            (ours.min_ms, theirs.min_ms),
            (ours.p50_ms, theirs.p50_ms),
            (ours.p90_ms, theirs.p90_ms),
            (ours.p95_ms, theirs.p95_ms),
            (ours.p99_ms, theirs.p99_ms),
            (ours.max_ms, theirs.max_ms),
        ];
        for (k, (a, b)) in pairs.into_iter().enumerate() {
            assert_eq!(a, b, "{name} #{k}");
        }
        assert_eq!(ours.count, theirs.count, "{name}");
        assert!(ours.quantiles_exact && ours.quantile_error.is_none());
    }
    let numpy = [
        (
            &ours.ttft,
            [20.924, 28.958, 32.43, 35.207600000000006],
            35.902,
        ),
        (
            &ours.itl,
            [5.3, 8.28, 15.88999999999998, 27.25799999999999],
            30.1,
        ),
        (
            &ours.tpot,
            [5.415, 8.675, 10.0375, 11.127500000000001],
            11.4,
        ),
    ];
    for (p, [p50, p90, p95, p99], max) in numpy {
        assert!(close(p.p50_ms, p50) && close(p.p90_ms, p90), "{p:?}");
        assert!(close(p.p95_ms, p95) && close(p.p99_ms, p99), "{p:?}");
        assert_eq!(p.max_ms, Some(max));
    }
}

/// Past the bound: percentiles from the histogram by the same method,
/// within the stated error, never past the exact extremes, and the
/// summary says so in JSON and text.
#[test]
fn past_the_bound_percentiles_come_from_the_histogram_and_say_so() {
    let rows = e2e_rows();
    let mut stats = stats_of(&rows, 10);
    let sorted = stats::sorted_finite(&LATENCIES_MS).unwrap();
    let latency = stats.latency_mut();
    assert!(!latency.exact());
    let error = latency.quantile_error().unwrap();
    assert!(error.starts_with("more than 10 values"), "{error}");
    assert!(error.contains("1/2048"), "{error}");
    for q in [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
        let exact = stats::quantile(&sorted, q, QuantileMethod::Linear).unwrap();
        let value = latency.quantile_ms(q).unwrap();
        let bound = LatencyHistogram::quantile_error_bound_ms(exact);
        assert!(
            (value - exact).abs() <= bound + 1e-12,
            "q={q}: {value} vs {exact}"
        );
        assert!((97.532..=121.453).contains(&value), "q={q}: {value}");
    }
    // Min, max and mean stay exact.
    assert_eq!(latency.max_ms(), Some(121.453));
    assert_eq!(latency.min_ms(), Some(97.532));
    let mean = LATENCIES_MS.iter().sum::<f64>() / 18.0;
    assert!((latency.mean_ms().unwrap() - mean).abs() < 1e-9);

    let summary = stats_of(&llm_rows(), 10).llm_summary(1.0).unwrap();
    // 15 gaps are past a bound of 10; 6 TTFTs are not.
    assert!(summary.ttft.quantiles_exact);
    assert!(!summary.itl.quantiles_exact);
    assert_eq!(summary.itl.max_ms, Some(30.1));

    let text = RunSummary {
        quantiles_exact: false,
        quantile_error: Some(error.clone()),
        llm: Some(summary),
        ..hand_made()
    };
    let json: serde_json::Value = serde_json::from_str(&text.to_json().unwrap()).unwrap();
    assert_eq!(json["quantiles_exact"], false);
    assert_eq!(json["quantile_error"], error.as_str());
    assert_eq!(json["llm"]["itl"]["quantiles_exact"], false);
    assert_eq!(
        json["llm"]["ttft"]["quantile_error"],
        serde_json::Value::Null
    );
    let text = SummaryText(&text).to_string();
    assert!(
        text.contains(&format!("Percentiles not exact: {error}")),
        "{text}"
    );
    assert!(
        text.contains("  ITL percentiles not exact: more than 10 values"),
        "{text}"
    );
    assert!(!text.contains("TTFT percentiles not exact"), "{text}");
}

#[test]
fn the_latency_histogram_round_trips() {
    let mut stats = RowStats::new();
    for (i, latency_ms) in [1.5, 2.5, 40.0].into_iter().enumerate() {
        stats.record(&LogRow {
            request_id: i as u64,
            latency_ms,
            ok: i != 1,
            error: if i == 1 {
                "timeout".into()
            } else {
                String::new()
            },
            ..LogRow::default()
        });
    }
    let encoded = stats.latency_histogram_base64().unwrap();
    let decoded = LatencyHistogram::from_base64_v2(&encoded).unwrap();
    assert_eq!(decoded.count(), 2);
    assert!((decoded.max_ms().unwrap() - 40.0).abs() < 0.05);
}
