//! Benchmarks of the `stats` bars: record 10 M latencies and read
//! quantiles, against the `hdrhistogram` crate used directly; exact quantiles
//! of 1 M samples. `cargo xtask bench` runs them and reads criterion's
//! estimates; run alone with `cargo bench -p stats --bench histogram`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use hdrhistogram::Histogram;
use stats::{quantile, sorted_finite, LatencyHistogram, QuantileMethod, Summary};

// Seeded log-normal latencies, the same generator the tests use, so the
// values spread over many histogram buckets as real latencies do.
#[path = "../tests/common/mod.rs"]
mod common;
use common::lognormal_ms;

const RECORDED: usize = 10_000_000;
const EXACT: usize = 1_000_000;
const LEVELS: [f64; 5] = [0.5, 0.9, 0.95, 0.99, 0.999];

fn recording(c: &mut Criterion) {
    // 50 us median: loopback-sized values, where nanosecond resolution matters.
    let ms = lognormal_ms(RECORDED, 0.05, 1.0, 42);
    let ns: Vec<u64> = ms.iter().map(|v| (v * 1e6).round() as u64).collect();
    let mut group = c.benchmark_group("record_10m");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("hdrhistogram_record", |b| {
        b.iter(|| {
            let mut h = Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!());
            h.auto(true);
            for &v in &ns {
                let _ = h.record(v);
            }
            LEVELS.map(|q| black_box(h.value_at_quantile(q)))
        })
    });
    group.bench_function("stats_record_ns", |b| {
        b.iter(|| {
            let mut h = LatencyHistogram::new();
            for &v in &ns {
                h.record_ns(v);
            }
            LEVELS.map(|q| black_box(h.quantile_ms(q).ok()))
        })
    });
    group.bench_function("stats_record_ms", |b| {
        b.iter(|| {
            let mut h = LatencyHistogram::new();
            for &v in &ms {
                let _ = h.record_ms(v);
            }
            LEVELS.map(|q| black_box(h.quantile_ms(q).ok()))
        })
    });
    group.finish();
}

fn exact(c: &mut Criterion) {
    let ms = lognormal_ms(EXACT, 20.0, 1.0, 7);
    let mut group = c.benchmark_group("exact_1m");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("sort_and_quantiles", |b| {
        b.iter(|| {
            let sorted = sorted_finite(black_box(&ms)).unwrap_or_default();
            LEVELS.map(|q| quantile(&sorted, q, QuantileMethod::Linear).ok())
        })
    });
    group.bench_function("summary", |b| {
        b.iter(|| Summary::from_samples(black_box(&ms), QuantileMethod::Linear).ok())
    });
    group.finish();
}

criterion_group!(benches, recording, exact);
criterion_main!(benches);
