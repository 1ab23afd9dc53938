//! Benchmark of the what-if engine's speed bar: its
//! discrete-event simulation of 100,000 requests "well under a second".
//! `cargo xtask bench` runs it and reads criterion's estimates; run alone
//! with `cargo bench -p report --bench whatif`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use model::whatif::Load;
use report::whatif::{simulate, ClientModel, ServerModel};

/// The placeholder scenario's server: 2 workers, 100 ms + 2 ms per item,
/// log-normal sigma 0.1, batches of up to 32.
const PLACEHOLDER: ServerModel = ServerModel {
    workers: 2,
    base_ms: 100.0,
    per_item_ms: 2.0,
    sigma: 0.1,
    max_batch: 32,
    dynamic_batching_window_ms: None,
};

const LOAD: Load = Load::Closed {
    concurrency: 20,
    requests: 100_000,
};

fn simulation(c: &mut Criterion) {
    // Overhead samples as the Before's rows give them (connect + transfer).
    let overhead_ms: Vec<f64> = (0..400).map(|i| 0.3 + f64::from(i % 7) * 0.05).collect();
    let mut group = c.benchmark_group("whatif_simulate_100k");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, batch_size, batch_wait_ms, server) in [
        ("unbatched", 1, 0.0, PLACEHOLDER),
        ("batches_of_10", 10, 10.0, PLACEHOLDER),
        (
            "dynamic_batching",
            1,
            0.0,
            ServerModel {
                dynamic_batching_window_ms: Some(2.0),
                ..PLACEHOLDER
            },
        ),
    ] {
        let client = ClientModel {
            batch_size,
            batch_wait_ms,
            overhead_ms: &overhead_ms,
        };
        group.bench_function(name, |b| {
            b.iter(|| black_box(simulate(&server, &client, &LOAD, 7).p95_ms))
        });
    }
    group.finish();
}

criterion_group!(benches, simulation);
criterion_main!(benches);
