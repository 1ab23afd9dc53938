//! Capacity under the SLA, simulated: the highest evenly spaced open-loop
//! rate a client and server keep within the SLA, and the batched client
//! that holds the most.

use model::whatif::{CapacityChoice, Load};

use super::candidates::{par_map, Candidate};
use super::fit::ServiceFit;
use super::sim::{simulate, ClientModel, ServerModel};

/// Client batch waits tried for open-loop capacity, ms. Longer than the
/// closed loop's: there, a response frees a burst of slots at once and a
/// batch fills at once; in an open loop requests arrive spread out, so a
/// batch holds about `1 + rate x wait` inputs and fills only with time.
pub(super) const CAPACITY_WAITS_MS: [u64; 6] = [5, 10, 20, 50, 100, 200];
/// Predicted capacities within this fraction of the best are ties (the
/// search's own resolution is 2%); ties go to the shorter wait, then the
/// smaller batch, which cost less latency below capacity.
pub(super) const CAPACITY_TIE_FRACTION: f64 = 0.02;
/// Requests per simulated run of the capacity search.
pub(super) const CAPACITY_REQUESTS: u32 = 2_000;

/// The client-side candidates tried for open-loop capacity: pooled and
/// unbatched, then batches of 2, 4, 8, ... and the server's largest, each
/// with every wait of [`CAPACITY_WAITS_MS`].
pub(super) fn capacity_candidates(max_batch: u32) -> Vec<Candidate> {
    let mut sizes: Vec<u32> = std::iter::successors(Some(2u32), |b| b.checked_mul(2))
        .take_while(|&b| b < max_batch)
        .collect();
    if max_batch >= 2 {
        sizes.push(max_batch);
    }
    let mut out = vec![Candidate::client(1, 0)];
    for b in sizes {
        out.extend(CAPACITY_WAITS_MS.iter().map(|&w| Candidate::client(b, w)));
    }
    out
}

/// The client that the simulation gives the highest open-loop capacity
/// under `sla_p95_ms` (of [`capacity_candidates`]; ties within
/// [`CAPACITY_TIE_FRACTION`] to the shorter wait, then the smaller batch);
/// `None` when none sustains any rate.
pub(super) fn best_for_capacity(
    fit: &ServiceFit,
    sla_p95_ms: f64,
    seed: u64,
) -> Option<CapacityChoice> {
    let all = capacity_candidates(fit.max_batch);
    let rates = par_map(&all, |c| {
        capacity_rps(
            &c.server_model(fit, fit.line()),
            &c.client_model(fit),
            sla_p95_ms,
            seed,
        )
    });
    let best_rps = rates.iter().flatten().copied().fold(0.0_f64, f64::max);
    if best_rps <= 0.0 {
        return None;
    }
    all.iter()
        .zip(&rates)
        .filter_map(|(c, r)| r.map(|rps| (c, rps)))
        .filter(|(_, rps)| *rps >= best_rps * (1.0 - CAPACITY_TIE_FRACTION))
        .min_by_key(|(c, _)| (c.batch_wait_ms, c.batch_size))
        .map(|(c, rps)| CapacityChoice {
            label: c.label(),
            batch_size: c.batch_size,
            batch_wait_ms: c.batch_wait_ms,
            loadgen_args: c.loadgen_args(),
            max_rate_rps: rps,
        })
}

/// The highest evenly spaced open-loop rate whose simulated P95 over
/// [`CAPACITY_REQUESTS`] requests stays within `sla_p95_ms` while completions
/// keep up with at least 97% of the offered rate: doubling (or halving)
/// from the server's nominal throughput, then bisection to 2%. `None` when
/// even a trickle breaks the SLA.
pub(super) fn capacity_rps(
    server: &ServerModel,
    client: &ClientModel,
    sla_p95_ms: f64,
    seed: u64,
) -> Option<f64> {
    const MAX_RPS: f64 = 1e7;
    let meets = |rate_rps: f64| {
        let load = Load::Open {
            rate_rps,
            requests: CAPACITY_REQUESTS,
            poisson: false,
        };
        let o = simulate(server, client, &load, seed);
        o.p95_ms <= sla_p95_ms && o.completion_rate_rps >= 0.97 * rate_rps
    };
    let b = client.batch_size.clamp(1, server.max_batch.max(1));
    let nominal_ms = server.base_ms + server.per_item_ms * f64::from(b);
    let start = if nominal_ms > 0.0 {
        server.workers.max(1) as f64 * f64::from(b) * 1000.0 / nominal_ms
    } else {
        1000.0
    };
    let (mut good, mut bad) = (None::<f64>, None::<f64>);
    let mut rate = start.clamp(1e-3, MAX_RPS);
    for _ in 0..60 {
        if meets(rate) {
            good = Some(rate);
            if bad.is_some() || rate >= MAX_RPS {
                break;
            }
            rate = (rate * 2.0).min(MAX_RPS);
        } else {
            bad = Some(rate);
            if good.is_some() || rate < 1e-3 {
                break;
            }
            rate /= 2.0;
        }
    }
    let (mut lo, mut hi) = match (good, bad) {
        (Some(g), Some(b)) => (g, b),
        (Some(g), None) => return Some(g),
        _ => return None,
    };
    while (hi - lo) / lo > 0.02 {
        let mid = 0.5 * (lo + hi);
        if meets(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_of_a_deterministic_server_is_its_service_rate() {
        let server = ServerModel {
            workers: 1,
            base_ms: 100.0,
            per_item_ms: 0.0,
            sigma: 0.0,
            max_batch: 1,
            dynamic_batching_window_ms: None,
        };
        let client = ClientModel {
            batch_size: 1,
            batch_wait_ms: 0.0,
            overhead_ms: &[],
        };
        let rps = capacity_rps(&server, &client, 800.0, 1).unwrap();
        assert!((9.7..=10.0 + 1e-9).contains(&rps), "{rps}");
    }

    #[test]
    fn capacity_candidates_double_up_to_the_largest_batch() {
        let sizes = |max: u32| -> Vec<(u32, u64)> {
            capacity_candidates(max)
                .iter()
                .map(|c| (c.batch_size, c.batch_wait_ms))
                .collect()
        };
        assert_eq!(sizes(1), [(1, 0)]);
        let twelve = sizes(12);
        assert_eq!(twelve.len(), 1 + 4 * CAPACITY_WAITS_MS.len());
        let batch_sizes: std::collections::BTreeSet<u32> = twelve.iter().map(|&(b, _)| b).collect();
        assert_eq!(
            batch_sizes.into_iter().collect::<Vec<_>>(),
            [1, 2, 4, 8, 12]
        );
    }

    #[test]
    fn the_open_loop_client_waits_long_enough_to_fill_its_batches() {
        // One worker, 100 ms a batch whatever its size, batches up to 4: full
        // batches give 40 req/s, which at 40 req/s (a request every 25 ms)
        // needs a wait of at least 75 ms. A wait of 50 ms holds 2 inputs
        // (at 0 and 25..50 ms) and so 20 req/s; 200 ms fills the batch as
        // soon as 100 ms does, a tie that goes to the shorter wait.
        let f = ServiceFit::noiseless(1, 100.0, 0.0, 4);
        let best = best_for_capacity(&f, 800.0, 7).expect("a client sustains some rate");
        assert_eq!((best.batch_size, best.batch_wait_ms), (4, 100), "{best:?}");
        assert!(
            (36.0..=40.0 + 1e-9).contains(&best.max_rate_rps),
            "{best:?}"
        );
        assert_eq!(
            best.loadgen_args,
            [
                "--connection",
                "pooled",
                "--batch-size",
                "4",
                "--batch-wait-ms",
                "100"
            ]
        );
    }
}
