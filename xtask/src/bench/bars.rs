//! The bars: each a claim about the tools, judged on what the bench
//! measured (met, MISSED, or not measured), printed and recorded.

use serde::Serialize;

use super::compare::{ClientBound, Comparison};

/// One bar as bench.json records it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Bar {
    pub bar: String,
    pub met: Option<bool>,
    pub detail: String,
}

/// A bar, printed as it is judged.
pub(super) fn bar(name: &str, met: Option<bool>, detail: String) -> Bar {
    let verdict = match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    println!("  [{verdict:12}] {name}: {detail}");
    Bar {
        bar: name.to_owned(),
        met,
        detail,
    }
}

/// The throughput bars against one server, judged on loadgen as configured
/// for a pinned throughput run (busy polling on, where the build has it);
/// loadgen with its defaults is in the detail and in bench.json. CPU per
/// request is recorded, not judged, here: with the server the bottleneck a
/// client's CPU includes sleeping and being woken, which a faster client
/// does more of (see the client-bound bars for what a client makes of its
/// CPU).
pub(super) fn throughput_bars(server: &str, v: &Comparison) -> Vec<Bar> {
    let ours = v.judged_loadgen();
    let rps_bar = |peer: &str, title: String, met: fn(f64) -> bool| {
        let pair = format!("{ours}/{peer}");
        let judged = v.paired_ratio(&pair);
        let default = v
            .paired_ratio(&format!("loadgen/{peer}"))
            .map_or_else(|| "n/a".to_owned(), |(_, text)| text);
        bar(
            &title,
            judged.as_ref().map(|(r, _)| met(*r)),
            judged.map_or_else(
                || format!("{peer} missing or no successful loadgen run"),
                |(_, text)| {
                    format!("{pair} = {text}, median of per-round ratios; loadgen with its defaults: {default}")
                },
            ),
        )
    };
    vec![
        rps_bar(
            "wrk",
            format!("loadgen rps within a few % of wrk ({server})"),
            |r| r >= 0.95,
        ),
        rps_bar("oha", format!("loadgen rps above oha ({server})"), |r| {
            r > 1.0
        }),
    ]
}

/// The client-bound bars: loadgen's req/s against wrk's and oha's with
/// every client held to the same share of a CPU.
pub(super) fn client_bound_bars(v: Option<&ClientBound>) -> Vec<Bar> {
    let title = |peer: &str| format!("loadgen rps, client-bound (same CPU cap), vs {peer}");
    let v = match v {
        Some(ClientBound::Measured(v)) => v,
        Some(ClientBound::Skipped { skipped }) => {
            return vec![bar(&title("wrk"), None, (*skipped).to_owned())]
        }
        None => return vec![bar(&title("wrk"), None, "nginx missing".to_owned())],
    };
    let judged = |peer: &str, met: fn(f64) -> bool, rule: &str| {
        let pair = format!("loadgen/{peer}");
        let ratio = v.paired_ratio(&pair);
        bar(
            &title(peer),
            ratio.as_ref().map(|(r, _)| met(*r)),
            ratio.map_or_else(
                || format!("{peer} missing"),
                |(_, text)| format!("{pair} = {text}, median of per-round ratios; {rule}"),
            ),
        )
    };
    vec![
        judged("wrk", |r| r >= 0.95, ">= 0.95 counted as met"),
        judged("oha", |r| r > 1.0, "> 1 counted as met"),
    ]
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::compare::Ratios;
    use super::*;

    /// A comparison with these per-pair paired medians (IQR = the median).
    pub(crate) fn comparison(pairs: &[(&str, f64)]) -> Comparison {
        let mut c = Comparison::default();
        for (pair, r) in pairs {
            c.ratios.insert(
                (*pair).to_owned(),
                Ratios {
                    rps_paired_median: Some(*r),
                    rps_paired_interquartile: Some([*r, *r]),
                    ..Ratios::default()
                },
            );
        }
        c
    }

    #[test]
    fn throughput_bars_judge_busy_polling_where_it_ran() {
        let c = comparison(&[
            ("loadgen/wrk", 0.9),
            ("loadgen-busy-poll/wrk", 0.97),
            ("loadgen/oha", 1.2),
            ("loadgen-busy-poll/oha", 1.3),
        ]);
        let bars = throughput_bars("nginx", &c);
        assert_eq!(bars[0].bar, "loadgen rps within a few % of wrk (nginx)");
        assert_eq!(bars[0].met, Some(true));
        assert_eq!(
            bars[0].detail,
            "loadgen-busy-poll/wrk = 0.970 (IQR 0.970-0.970), median of per-round ratios; loadgen with its defaults: 0.900 (IQR 0.900-0.900)"
        );
        assert_eq!(bars[1].met, Some(true));
        let missing = throughput_bars("nginx", &comparison(&[("loadgen/wrk", 0.5)]));
        assert_eq!(missing[0].met, Some(false));
        assert_eq!(missing[1].met, None);
        assert_eq!(
            missing[1].detail,
            "oha missing or no successful loadgen run"
        );
    }

    #[test]
    fn client_bound_bars_say_why_they_were_not_measured() {
        let skipped = client_bound_bars(Some(&ClientBound::Skipped {
            skipped: "no cgroup",
        }));
        assert_eq!((skipped.len(), skipped[0].met), (1, None));
        assert_eq!(skipped[0].detail, "no cgroup");
        assert_eq!(client_bound_bars(None)[0].detail, "nginx missing");
        let measured = client_bound_bars(Some(&ClientBound::Measured(comparison(&[(
            "loadgen/wrk",
            0.96,
        )]))));
        assert_eq!(measured[0].met, Some(true));
        assert_eq!(
            (measured[1].met, measured[1].detail.as_str()),
            (None, "oha missing")
        );
    }

    #[test]
    fn a_bar_records_its_three_keys() {
        let v = serde_json::to_value(bar("b", Some(false), "d".into())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({ "bar": "b", "met": false, "detail": "d" })
        );
    }
}
