//! Seeded synthetic latency data shared by the histogram and bootstrap tests.

/// Deterministic lognormal "latencies" in milliseconds with the given median
/// and log-space standard deviation (SplitMix64 + Box–Muller).
pub fn lognormal_ms(count: usize, median_ms: f64, sigma: f64, seed: u64) -> Vec<f64> {
    let mut state = seed;
    let mut uniform = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // 53 random bits in (0, 1]: never 0, so the logarithm below is finite.
        ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    };
    (0..count)
        .map(|_| {
            let radius = (-2.0 * uniform().ln()).sqrt();
            let normal = radius * (std::f64::consts::TAU * uniform()).cos();
            median_ms * (sigma * normal).exp()
        })
        .collect()
}
