//! A comparison: every client against one server in interleaved rounds,
//! summarised per client (medians) and per pair of ours and a peer (ratios
//! within each round). What bench.json records under `clients`, `ratios`
//! and `loadgen_minus_wrk_p50_us`, kept typed for the bars that read it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::cgroup::CpuCap;
use super::clients::{self, Client, ClientRun, Load};
use super::peers::Peers;
use super::pinning::Pinning;
use super::{Bins, TaskError};

/// Median of the rounds of one client against one server.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct ClientResult {
    pub rps_median: f64,
    pub rps_rounds: Vec<f64>,
    pub p50_us_median: Option<f64>,
    /// The client's own CPU (user + system) per completed request.
    pub cpu_us_per_request_median: Option<f64>,
    pub cpu_us_per_request_rounds: Vec<f64>,
    pub context_switches_per_request_median: Option<f64>,
    /// The server's CPU per request this client completed.
    pub server_cpu_us_per_request_median: Option<f64>,
    pub errors: u64,
    pub command: String,
}

/// One of our clients against one peer, over the same interleaved rounds.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Ratios {
    /// Median over rounds of (ours / peer) req/s within the same round: the
    /// figure the bars use, as it cancels drift between rounds (this VM's
    /// absolute rates move 10-20% from minute to minute).
    pub rps_paired_median: Option<f64>,
    /// First and third quartiles of the per-round ratios: how far one
    /// round can be trusted.
    pub rps_paired_interquartile: Option<[f64; 2]>,
    /// Each round's ours / peer req/s.
    pub rps_paired_rounds: Vec<f64>,
    /// Median req/s of ours over median req/s of the peer.
    pub rps_of_medians: Option<f64>,
    /// Median CPU per request of ours over the peer's.
    pub cpu_per_request: Option<f64>,
}

impl Ratios {
    fn of(ours: &[ClientRun], peer: &[ClientRun]) -> Self {
        let rps = |runs: &[ClientRun]| median_of(&runs.iter().map(|r| r.rps).collect::<Vec<_>>());
        let cpu = |runs: &[ClientRun]| {
            median_of(
                &runs
                    .iter()
                    .filter_map(ClientRun::cpu_us_per_request)
                    .collect::<Vec<_>>(),
            )
        };
        let paired: Vec<f64> = ours
            .iter()
            .zip(peer)
            .filter(|(_, p)| p.rps > 0.0)
            .map(|(o, p)| o.rps / p.rps)
            .collect();
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b.filter(|b| *b > 0.0)?);
        Self {
            rps_paired_median: median_of(&paired),
            rps_paired_interquartile: quantile_of(&paired, 0.25)
                .zip(quantile_of(&paired, 0.75))
                .map(|(q1, q3)| [q1, q3]),
            rps_paired_rounds: paired,
            rps_of_medians: ratio(rps(ours), rps(peer)),
            cpu_per_request: ratio(cpu(ours), cpu(peer)),
        }
    }
}

/// Every client against one server.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Comparison {
    /// By client name.
    pub clients: BTreeMap<&'static str, ClientResult>,
    /// By `ours/peer` (`loadgen/wrk`).
    pub ratios: BTreeMap<String, Ratios>,
    pub loadgen_minus_wrk_p50_us: Option<f64>,
    /// The client-bound runs' CPU cap, as a share of one CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<f64>,
    /// Why loadgen did not run (an older build without TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loadgen_skipped: Option<&'static str>,
}

impl Comparison {
    /// A client's median req/s, where it ran and completed any.
    pub(super) fn rps_of(&self, client: &str) -> Option<f64> {
        self.clients
            .get(client)
            .map(|c| c.rps_median)
            .filter(|rps| rps.is_finite())
    }

    /// The loadgen variant the bars judge: busy polling where it ran.
    pub(super) fn judged_loadgen(&self) -> &'static str {
        if self.ratios.contains_key("loadgen-busy-poll/wrk") {
            "loadgen-busy-poll"
        } else {
            "loadgen"
        }
    }

    /// The median of `pair`'s per-round req/s ratios (pair as in
    /// `"loadgen/wrk"`), and how it reads: `1.074 (IQR 0.972-1.105)`.
    pub(super) fn paired_ratio(&self, pair: &str) -> Option<(f64, String)> {
        let ratios = self.ratios.get(pair)?;
        let median = ratios.rps_paired_median?;
        let spread = match ratios.rps_paired_interquartile {
            Some([q1, q3]) => format!("IQR {q1:.3}-{q3:.3}"),
            None => "no IQR".to_owned(),
        };
        Some((median, format!("{median:.3} ({spread})")))
    }
}

/// The client-bound comparison, or why it did not run.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(super) enum ClientBound {
    Measured(Comparison),
    Skipped { skipped: &'static str },
}

/// The `q` quantile (numpy's default method) of the finite `values`;
/// `None` when there are none.
pub(super) fn quantile_of(values: &[f64], q: f64) -> Option<f64> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let sorted = stats::sorted_finite(&finite).ok()?;
    stats::quantile(&sorted, q, stats::QuantileMethod::Linear).ok()
}

pub(super) fn median_of(values: &[f64]) -> Option<f64> {
    quantile_of(values, 0.5)
}

fn median(values: &[f64]) -> f64 {
    median_of(values).unwrap_or(f64::NAN)
}

fn collect(runs: &[ClientRun], command: String) -> ClientResult {
    let rps: Vec<f64> = runs.iter().map(|r| r.rps).collect();
    let p50: Vec<f64> = runs.iter().filter_map(|r| r.p50_us).collect();
    let cpu: Vec<f64> = runs
        .iter()
        .filter_map(ClientRun::cpu_us_per_request)
        .collect();
    let switches: Vec<f64> = runs
        .iter()
        .filter_map(ClientRun::switches_per_request)
        .collect();
    let server_cpu: Vec<f64> = runs
        .iter()
        .filter_map(ClientRun::server_cpu_us_per_request)
        .collect();
    ClientResult {
        server_cpu_us_per_request_median: median_of(&server_cpu),
        rps_median: median(&rps),
        rps_rounds: rps,
        p50_us_median: median_of(&p50),
        cpu_us_per_request_median: median_of(&cpu),
        cpu_us_per_request_rounds: cpu,
        context_switches_per_request_median: median_of(&switches),
        errors: runs.iter().map(|r| r.errors).sum(),
        command,
    }
}

/// Runs every client `rounds` times against `load`, rotating the order each
/// round so no client always goes first (warm caches) or last.
pub(super) fn compare_clients(
    bins: &Bins,
    peers: &Peers,
    pin: &Pinning,
    load: &Load,
    rounds: usize,
    tag: &str,
    clients: &[Client],
) -> Result<Comparison, TaskError> {
    let script = clients::write_wrk_script(load.dir, load.body)?;
    let mut results: Vec<(Client, Vec<ClientRun>)> = clients
        .iter()
        .filter(|c| c.available(peers))
        .map(|c| (*c, Vec::new()))
        .collect();
    pin.as_client();
    for round in 0..rounds {
        let n = results.len();
        for k in 0..n {
            let i = (k + round) % n;
            let client = results[i].0;
            let Some(run) = client.run(bins, peers, load, &script, &format!("{tag}-{round}"))?
            else {
                continue;
            };
            print_run(tag, round, client.name(), &run);
            results[i].1.push(run);
        }
    }
    pin.release();
    let prefix = pin.prefix(true);
    let mut comparison = summarize(&results, |client| {
        format!("{prefix}{}", client.command(bins, peers, load, &script))
    });
    comparison.cpu_share = load.cap.map(|cap| cap.share);
    Ok(comparison)
}

/// The medians and ratios of the rounds; `command` names each client's
/// command line.
fn summarize(
    results: &[(Client, Vec<ClientRun>)],
    command: impl Fn(Client) -> String,
) -> Comparison {
    let clients = results
        .iter()
        .map(|(client, runs)| (client.name(), collect(runs, command(*client))))
        .collect();
    let runs_of = |c: Client| {
        results
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, r)| r.as_slice())
    };
    let mut ratios = BTreeMap::new();
    for ours in [Client::Loadgen, Client::LoadgenBusyPoll] {
        for peer in [Client::Wrk, Client::Oha] {
            if let (Some(a), Some(b)) = (runs_of(ours), runs_of(peer)) {
                ratios.insert(format!("{}/{}", ours.name(), peer.name()), Ratios::of(a, b));
            }
        }
    }
    let p50 = |c: Client| {
        runs_of(c).and_then(|r| median_of(&r.iter().filter_map(|x| x.p50_us).collect::<Vec<_>>()))
    };
    let loadgen_minus_wrk_p50_us = match (p50(Client::Loadgen), p50(Client::Wrk)) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    Comparison {
        clients,
        ratios,
        loadgen_minus_wrk_p50_us,
        ..Comparison::default()
    }
}

fn print_run(tag: &str, round: usize, name: &str, run: &ClientRun) {
    println!(
        "  {tag} round {}: {name:17} {:>10.0} req/s  p50 {}  cpu {}/req  {} switches/req  server cpu {}/req{}",
        round + 1,
        run.rps,
        run.p50_us
            .map_or_else(|| "n/a".to_owned(), |us| format!("{us:.1} us")),
        run.cpu_us_per_request()
            .map_or_else(|| "n/a".to_owned(), |us| format!("{us:.2} us")),
        run.switches_per_request()
            .map_or_else(|| "n/a".to_owned(), |n| format!("{n:.3}")),
        run.server_cpu_us_per_request()
            .map_or_else(|| "n/a".to_owned(), |us| format!("{us:.2} us")),
        if run.errors > 0 {
            format!("  ({} FAILED requests: this run is not valid)", run.errors)
        } else {
            String::new()
        }
    );
}

/// The share of one CPU each client gets in the client-bound runs: well
/// below what any of them needs to saturate nginx on the other CPU.
const CLIENT_CAP_SHARE: f64 = 0.4;

/// Client-bound runs against `load` (nginx): each client capped at
/// [`CLIENT_CAP_SHARE`] of a CPU, so its req/s is what it makes of the
/// same CPU. Busy polling is left out: a capped client is never idle.
pub(super) fn compare_capped(
    bins: &Bins,
    peers: &Peers,
    pin: &Pinning,
    load: &Load,
    rounds: usize,
) -> Result<ClientBound, TaskError> {
    let Some(cap) = CpuCap::create(CLIENT_CAP_SHARE) else {
        println!("client-bound: SKIPPED (no writable cgroup cpu controller; run as root)");
        return Ok(ClientBound::Skipped {
            skipped: "no writable cgroup cpu controller",
        });
    };
    println!(
        "client-bound: nginx, each client capped at {:.0}% of one CPU (cgroup CFS quota)",
        cap.share * 100.0
    );
    let load = Load {
        cap: Some(&cap),
        ..*load
    };
    let comparison = compare_clients(
        bins,
        peers,
        pin,
        &load,
        rounds,
        "capped",
        &[Client::Loadgen, Client::Wrk, Client::Oha],
    )?;
    Ok(ClientBound::Measured(comparison))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_ignores_order() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    fn run(rps: f64, p50_us: f64) -> ClientRun {
        ClientRun {
            rps,
            p50_us: Some(p50_us),
            requests: 1000,
            ..ClientRun::default()
        }
    }

    #[test]
    fn a_comparison_records_medians_ratios_and_the_p50_difference() {
        let results = vec![
            (Client::Loadgen, vec![run(110.0, 50.0), run(90.0, 60.0)]),
            (Client::Wrk, vec![run(100.0, 40.0), run(100.0, 40.0)]),
            (Client::Oha, Vec::new()),
        ];
        let c = summarize(&results, |client| format!("{} ...", client.name()));
        assert_eq!(c.rps_of("loadgen"), Some(100.0));
        assert_eq!(c.rps_of("oha"), None, "no rounds: no rate");
        assert_eq!(c.rps_of("loadgen-busy-poll"), None);
        assert_eq!(c.clients["wrk"].command, "wrk ...");
        assert_eq!(c.loadgen_minus_wrk_p50_us, Some(15.0));
        assert_eq!(c.judged_loadgen(), "loadgen");
        let (median, text) = c.paired_ratio("loadgen/wrk").unwrap();
        assert!((median - 1.0).abs() < 1e-12);
        assert_eq!(text, "1.000 (IQR 0.950-1.050)");
        assert!(c.paired_ratio("loadgen/oha").is_none());
        // The keys bench.json has always had.
        let v = serde_json::to_value(&c).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["clients", "loadgen_minus_wrk_p50_us", "ratios"]);
        let ratio_keys: Vec<&String> = v["ratios"]["loadgen/wrk"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            ratio_keys,
            [
                "cpu_per_request",
                "rps_of_medians",
                "rps_paired_interquartile",
                "rps_paired_median",
                "rps_paired_rounds"
            ]
        );
        assert!(v["clients"]["oha"]["rps_median"].is_null());
    }

    #[test]
    fn a_skipped_client_bound_run_records_only_why() {
        let v = serde_json::to_value(ClientBound::Skipped {
            skipped: "no writable cgroup cpu controller",
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({ "skipped": "no writable cgroup cpu controller" })
        );
        let measured = serde_json::to_value(ClientBound::Measured(Comparison {
            cpu_share: Some(0.4),
            ..Comparison::default()
        }))
        .unwrap();
        assert_eq!(measured["cpu_share"], 0.4);
        assert!(measured.get("loadgen_skipped").is_none());
    }
}
