//! The batch cost model: what one executed batch costs, drawn from a seeded RNG.
//!
//! Accelerators show a large fixed cost per batch and a small cost per item
//! (see `data/gpu_cost_curve.json`), so a batch of `b` items costs
//! `(base_ms + per_item_ms * b) * exp(N(0, jitter^2))`. The RNG is a
//! [`stats::SplitMix64`] stream with Box-Muller normals ([`stats::Normals`]): tiny and the same on
//! every platform, so a seed pins the whole sequence of draws (and
//! `xtask/triton/cost.py`, a Python port, draws the same).

use stats::Normals;

/// Cost of executing one batch, in the shape accelerators show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceTimeModel {
    /// Fixed cost of every executed batch, in ms.
    pub base_ms: f64,
    /// Added cost per item in the batch, in ms.
    pub per_item_ms: f64,
    /// Standard deviation of the log-normal multiplier `exp(N(0, jitter^2))`;
    /// 0 makes every batch cost exactly its nominal time.
    pub jitter: f64,
    /// Seed of the RNG; the same seed gives the same sequence of draws.
    pub seed: u64,
}

impl ServiceTimeModel {
    /// The cost of a batch of `batch_items` without jitter, in ms.
    pub(crate) fn nominal_ms(&self, batch_items: usize) -> f64 {
        self.base_ms + self.per_item_ms * batch_items as f64
    }

    /// A fresh stream of service times starting at this model's seed.
    pub fn sampler(&self) -> ServiceTimeSampler {
        ServiceTimeSampler {
            model: *self,
            normals: Normals::new(self.seed),
        }
    }
}

/// A seeded stream of service times; the server draws one per executed batch,
/// in the order the batches start.
#[derive(Debug, Clone)]
pub struct ServiceTimeSampler {
    model: ServiceTimeModel,
    normals: Normals,
}

impl ServiceTimeSampler {
    /// The service time of the next batch of `batch_items` items, in ms.
    pub(crate) fn next_ms(&mut self, batch_items: usize) -> f64 {
        let nominal = self.model.nominal_ms(batch_items);
        // Drawing even when jitter is 0 keeps the stream position a function
        // of the batch count alone, whatever the jitter.
        let z = self.normals.next_standard();
        let ms = nominal * (self.model.jitter * z).exp();
        if ms.is_finite() && ms >= 0.0 {
            ms
        } else {
            nominal
        }
    }

    /// The next `count` service times for batches of `batch_items`, in ms.
    pub fn sequence(&mut self, batch_items: usize, count: usize) -> Vec<f64> {
        (0..count).map(|_| self.next_ms(batch_items)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(jitter: f64, seed: u64) -> ServiceTimeModel {
        ServiceTimeModel {
            base_ms: 100.0,
            per_item_ms: 2.0,
            jitter,
            seed,
        }
    }

    #[test]
    fn same_seed_same_sequence_other_seed_differs() {
        let a = model(0.1, 42).sampler().sequence(1, 50);
        let b = model(0.1, 42).sampler().sequence(1, 50);
        let c = model(0.1, 43).sampler().sequence(1, 50);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn sequences_are_pinned_and_match_the_python_port() {
        // `python3 xtask/triton/cost.py 100 2 0.1 42 1 6` and
        // `python3 xtask/triton/cost.py 4.2 0.045 0.05 7 3 4`: the port in
        // xtask/triton must keep drawing what the simulator draws.
        assert_eq!(
            model(0.1, 42).sampler().sequence(1, 6),
            [
                106.31908287938877,
                108.87940956237395,
                93.29664910373843,
                116.47261366866792,
                121.25940842658162,
                84.48982681504566,
            ]
        );
        let bert = ServiceTimeModel {
            base_ms: 4.2,
            per_item_ms: 0.045,
            jitter: 0.05,
            seed: 7,
        };
        assert_eq!(
            bert.sampler().sequence(3, 4),
            [
                4.641191978222355,
                4.366438425903964,
                4.249899822447998,
                4.285948129468096,
            ]
        );
    }

    #[test]
    fn no_jitter_gives_the_nominal_cost() {
        let mut s = model(0.0, 1).sampler();
        assert_eq!(s.next_ms(1), 102.0);
        assert_eq!(s.next_ms(10), 120.0);
    }

    #[test]
    fn jitter_is_log_normal_around_the_nominal_cost() {
        let draws = model(0.1, 7).sampler().sequence(0, 20_000);
        let logs: Vec<f64> = draws.iter().map(|d| (d / 100.0).ln()).collect();
        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
        let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / logs.len() as f64;
        assert!(mean.abs() < 0.005, "mean of log multiplier {mean}");
        assert!(
            (var.sqrt() - 0.1).abs() < 0.005,
            "sd of log multiplier {}",
            var.sqrt()
        );
        assert!(draws.iter().all(|d| d.is_finite() && *d > 0.0));
    }
}
