//! Seeded synthetic latency data shared by the histogram and bootstrap tests.

/// Deterministic lognormal "latencies" in milliseconds with the given median
/// and log-space standard deviation (SplitMix64 + Box–Muller).
pub(crate) fn lognormal_ms(count: usize, median_ms: f64, sigma: f64, seed: u64) -> Vec<f64> {
    let mut rng = stats::SplitMix64::new(seed);
    (0..count)
        .map(|_| {
            let radius = (-2.0 * rng.unit_open_closed().ln()).sqrt();
            let normal = radius * (std::f64::consts::TAU * rng.unit_open_closed()).cos();
            median_ms * (sigma * normal).exp()
        })
        .collect()
}
