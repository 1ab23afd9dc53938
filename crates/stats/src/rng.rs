//! Tiny seeded random number generator, so bootstrap results (and anything
//! else seeded with it: arrival schedules, synthetic latencies) never change
//! across dependency versions.

/// SplitMix64 (Steele, Lea & Flood 2014): small, fast, and good enough for
/// resampling. Its output sequence is fixed by the algorithm, which is the
/// point: the same seed must give the same confidence interval forever.
/// A clone continues the same stream from where the original stands.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index in `0..bound`.
    ///
    /// Multiply-shift without rejection: the bias is below `bound / 2^64`,
    /// negligible here, and every call consumes exactly one output, which keeps
    /// the stream easy to reason about.
    pub fn index_below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }

    /// Uniform in (0, 1] from the top 53 bits: never 0, so its logarithm
    /// is finite (exponential gaps, Box-Muller normals).
    pub fn unit_open_closed(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// A standard normal variate by Box-Muller, drawn from this stream
    /// interleaved with its other uses. Normals come in pairs (the cosine
    /// first, then the sine of the same two uniforms): the second waits in
    /// `spare`, which the caller keeps beside the generator. [`Normals`]
    /// keeps both for a stream of normals alone.
    pub fn standard_normal(&mut self, spare: &mut Option<f64>) -> f64 {
        if let Some(z) = spare.take() {
            return z;
        }
        // Uniform in (0, 1]: never 0, so the logarithm is finite.
        let u1 = self.unit_open_closed();
        let u2 = self.unit_open_closed();
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        *spare = Some(radius * angle.sin());
        radius * angle.cos()
    }
}

/// Standard normal variates by Box-Muller from a [`SplitMix64`] stream:
/// the one generator of normals every tool draws from (the simulator's
/// cost model, the what-if engine's simulation, synthetic lengths), so a
/// seed means the same draws everywhere. Normals come in pairs: the cosine
/// first, then the sine of the same two uniforms.
#[derive(Debug, Clone)]
pub struct Normals {
    rng: SplitMix64,
    spare: Option<f64>,
}

impl Normals {
    /// Normals drawn from the stream fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self::from_rng(SplitMix64::new(seed))
    }

    /// Normals drawn from `rng`'s stream, from where it stands.
    fn from_rng(rng: SplitMix64) -> Self {
        Normals { rng, spare: None }
    }

    /// The next standard normal variate (mean 0, standard deviation 1).
    pub fn next_standard(&mut self) -> f64 {
        self.rng.standard_normal(&mut self.spare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_have_the_standard_moments() {
        let mut normals = Normals::new(11);
        let n = 200_000;
        let draws: Vec<f64> = (0..n).map(|_| normals.next_standard()).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.01, "{var}");
        // Same seed, same stream.
        let mut again = Normals::new(11);
        assert_eq!(again.next_standard(), draws[0]);
        assert_eq!(again.next_standard(), draws[1]);
    }

    #[test]
    fn matches_reference_splitmix64_output() {
        // First outputs for seed 1234567 from the reference C implementation.
        let mut rng = SplitMix64::new(1_234_567);
        let expected = [
            6_457_827_717_110_365_317,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
            4_593_380_528_125_082_431,
            16_408_922_859_458_223_821,
        ];
        for value in expected {
            assert_eq!(rng.next_u64(), value);
        }
    }

    #[test]
    fn indices_stay_in_range_and_cover_it() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[rng.index_below(10)] = true;
        }
        assert!(seen.iter().all(|&hit| hit));
    }
}
