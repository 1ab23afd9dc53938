//! The measurements over plain HTTP: throughput against the zero-cost
//! simulator and against nginx, the client-bound runs, the self-overhead at
//! one connection and the simulator's service-time accuracy.

use std::time::Duration;

use super::accuracy::{self, Accuracy};
use super::bars::{bar, client_bound_bars, throughput_bars, Bar};
use super::clients::{self, Client, Load};
use super::compare::{compare_capped, compare_clients, ClientBound, Comparison};
use super::nginx::Nginx;
use super::peers::Peers;
use super::pinning::Pinning;
use super::{Bins, TaskError, BODY};
use crate::process::ServerProcess;

/// Everything but the TLS comparison, the stats benchmarks and `./run_tests`.
pub(super) struct Plain {
    pub stub: Comparison,
    pub low_load: Comparison,
    /// `None` where nginx is missing.
    pub nginx: Option<Comparison>,
    pub client_bound: Option<ClientBound>,
    pub accuracy: Accuracy,
}

impl Plain {
    pub(super) fn measure(
        bins: &Bins,
        peers: &Peers,
        pin: &Pinning,
        template: &Load,
        rounds: usize,
        server_workers: usize,
    ) -> Result<Self, TaskError> {
        let dir = template.dir;
        // 1. Throughput against the zero-cost simulator.
        println!(
            "throughput: zero-cost stub-server, {} connections, {} s",
            template.connections,
            template.duration.as_secs()
        );
        let zero_cost_args: Vec<String> = ["--profile", "zero-cost"].map(str::to_owned).to_vec();
        pin.as_server();
        let server = ServerProcess::start(
            &bins.server,
            &zero_cost_args,
            &dir.join("stub-zero-cost.log"),
        );
        pin.release();
        let server = server?;
        let url = server.infer_url();
        let load = Load {
            url: &url,
            server_pid: Some(server.pid()),
            ..*template
        };
        let mut throughput_clients = vec![Client::Loadgen];
        if clients::loadgen_has_flag(&bins.loadgen, "--busy-poll-us") {
            throughput_clients.push(Client::LoadgenBusyPoll);
        }
        throughput_clients.extend([Client::Wrk, Client::Oha]);
        let stub = compare_clients(bins, peers, pin, &load, rounds, "stub", &throughput_clients)?;

        // 2. Self-overhead: one connection, one request at a time.
        println!("self-overhead: zero-cost stub-server, 1 connection");
        let low = Load {
            connections: 1,
            threads: 1,
            duration: load.duration.min(Duration::from_secs(3)),
            ..load
        };
        // Busy polling is for a client kept busy; at one request in flight
        // it would only spin through each round trip.
        let low_load = compare_clients(
            bins,
            peers,
            pin,
            &low,
            rounds,
            "lowload",
            &[Client::Loadgen, Client::Wrk, Client::Oha],
        )?;
        drop(server);

        // 3. Throughput against nginx (a server much cheaper than the simulator).
        let (nginx, client_bound) = match &peers.nginx.path {
            Some(bin) => {
                println!("throughput: nginx static JSON, {server_workers} worker(s)");
                // nginx's workers drop root for `nobody`, who may not traverse
                // the output directory (e.g. under /root): serve from the
                // world-readable temp directory instead.
                let nginx_dir = std::env::temp_dir()
                    .join(format!("latency-bench-nginx-{}", std::process::id()));
                pin.as_server();
                let nginx = Nginx::start(bin, &nginx_dir, server_workers, BODY, None);
                pin.release();
                let nginx = nginx?;
                let load = Load {
                    url: &nginx.url,
                    server_pid: Some(nginx.pid()),
                    ..load
                };
                let server_bound = compare_clients(
                    bins,
                    peers,
                    pin,
                    &load,
                    rounds,
                    "nginx",
                    &throughput_clients,
                )?;
                let client_bound = compare_capped(bins, peers, pin, &load, rounds)?;
                (Some(server_bound), Some(client_bound))
            }
            None => (None, None),
        };

        // 4. Service-time accuracy under load (fresh simulator).
        println!("stub-server service-time accuracy (placeholder shape, jitter 0, c=20, n=200)");
        let accuracy = accuracy::measure(&bins.server, &bins.loadgen, dir)?;
        Ok(Self {
            stub,
            low_load,
            nginx,
            client_bound,
            accuracy,
        })
    }

    /// The simulator's zero-cost req/s with the fastest client.
    pub(super) fn stub_capacity(&self) -> f64 {
        ["loadgen", "loadgen-busy-poll", "wrk", "oha"]
            .iter()
            .filter_map(|c| self.stub.rps_of(c))
            .fold(f64::NAN, f64::max)
    }

    /// What loadgen sends at best against nginx (its own ceiling).
    pub(super) fn loadgen_max(&self) -> Option<f64> {
        self.nginx.as_ref().and_then(|v| {
            ["loadgen", "loadgen-busy-poll"]
                .iter()
                .filter_map(|c| v.rps_of(c))
                .reduce(f64::max)
        })
    }

    pub(super) fn bars(&self) -> Vec<Bar> {
        let mut bars = Vec::new();
        for (name, v) in [
            ("zero-cost stub-server", Some(&self.stub)),
            ("nginx", self.nginx.as_ref()),
        ] {
            match v {
                Some(v) => bars.extend(throughput_bars(name, v)),
                None => bars.push(bar(
                    &format!("loadgen rps within a few % of wrk ({name})"),
                    None,
                    "nginx missing".into(),
                )),
            }
        }
        bars.extend(client_bound_bars(self.client_bound.as_ref()));
        let diff = self.low_load.loadgen_minus_wrk_p50_us;
        bars.push(bar(
            "loadgen P50 at low load <= wrk's + 50 us",
            diff.map(|d| d <= 50.0),
            diff.map_or_else(
                || "wrk missing".into(),
                |d| format!("loadgen - wrk = {d:+.1} us"),
            ),
        ));
        let stub_capacity = self.stub_capacity();
        let loadgen_max = self.loadgen_max();
        bars.push(bar(
            "stub-server zero-cost rps > what loadgen can send",
            loadgen_max.map(|l| stub_capacity > l),
            loadgen_max.map_or_else(
                || "nginx missing: loadgen's own ceiling unknown".into(),
                |l| format!("stub-server {stub_capacity:.0} req/s (fastest client) vs loadgen {l:.0} req/s against nginx"),
            ),
        ));
        let accuracy = &self.accuracy;
        let p99 = accuracy.server_timing_overshoot.p99_ms;
        bars.push(bar(
            "service time honoured within 2 ms at P99",
            Some(p99.abs() <= 2.0),
            format!(
                "Server-Timing overshoot p50 {:+.3} ms, p99 {p99:+.3} ms; client-side p99 {:+.3} ms",
                accuracy.server_timing_overshoot.p50_ms, accuracy.client_overshoot.p99_ms
            ),
        ));
        bars
    }
}
