//! Accuracy, merging and serialization of `LatencyHistogram` on synthetic latency data.

mod common;

use stats::{quantile, sorted_finite, LatencyHistogram, QuantileMethod};

const LEVELS: [f64; 9] = [0.0, 0.01, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0];

fn histogram_of(latencies_ms: &[f64]) -> LatencyHistogram {
    let mut histogram = LatencyHistogram::new();
    for &latency_ms in latencies_ms {
        histogram.record_ms(latency_ms).unwrap();
    }
    histogram
}

/// The documented bound: 0.1% relative error from 1 µs up; below that,
/// rounding to whole nanoseconds allows 0.5 ns absolute plus half a bucket.
fn assert_within_bound(approximate_ms: f64, exact_ms: f64, what: &str) {
    let error_ms = (approximate_ms - exact_ms).abs();
    let allowed_ms = if exact_ms >= 0.001 {
        1e-3 * exact_ms
    } else {
        0.5e-6 + 0.5e-3 * exact_ms
    };
    assert!(
        error_ms <= allowed_ms,
        "{what}: {approximate_ms} vs exact {exact_ms}"
    );
}

#[test]
fn quantiles_are_within_a_tenth_of_a_percent_of_exact_ones() {
    let latencies_ms = common::lognormal_ms(100_000, 20.0, 1.0, 42);
    let histogram = histogram_of(&latencies_ms);
    assert_eq!(histogram.count(), 100_000);
    let sorted = sorted_finite(&latencies_ms).unwrap();
    let levels: Vec<f64> = LEVELS
        .into_iter()
        .chain((1..1000).map(|i| f64::from(i) / 1000.0))
        .collect();
    for q in levels {
        // Histogram quantiles are nearest-rank: they never interpolate.
        let exact = quantile(&sorted, q, QuantileMethod::NearestRank).unwrap();
        assert_within_bound(histogram.quantile_ms(q).unwrap(), exact, &format!("q={q}"));
    }
    assert_within_bound(histogram.min_ms().unwrap(), sorted[0], "min");
    assert_within_bound(histogram.max_ms().unwrap(), sorted[sorted.len() - 1], "max");
    let exact_mean = latencies_ms.iter().sum::<f64>() / latencies_ms.len() as f64;
    assert_within_bound(histogram.mean_ms().unwrap(), exact_mean, "mean");
}

#[test]
fn error_stays_within_a_tenth_of_a_percent_across_magnitudes() {
    // From 1 µs to 10 minutes: every recorded value comes back within 0.1%.
    let mut latency_ms = 0.001_f64;
    while latency_ms < 600_000.0 {
        let mut histogram = LatencyHistogram::new();
        histogram.record_ms(latency_ms).unwrap();
        let reported = histogram.quantile_ms(0.5).unwrap();
        assert!(
            (reported / latency_ms - 1.0).abs() <= 1e-3,
            "{latency_ms}: {reported}"
        );
        latency_ms *= 1.0137;
    }
}

#[test]
fn microsecond_latencies_keep_their_nanoseconds() {
    // Loopback round trips: a whole-microsecond histogram would report
    // 0.021 and 0.047 here, a 2-5% error.
    let mut histogram = LatencyHistogram::new();
    histogram.record_ms(0.0012344).unwrap(); // rounds to 1234 ns, kept exactly
    histogram.record_ms(0.0214).unwrap();
    histogram.record_us(1500);
    histogram.record_ms(0.0474).unwrap();
    assert_eq!(histogram.min_ms(), Some(0.001234));
    for (q, exact_ms) in [(0.5, 0.0214), (0.75, 0.0474), (1.0, 1.5)] {
        let reported = histogram.quantile_ms(q).unwrap();
        assert!(
            (reported / exact_ms - 1.0).abs() <= 0.5e-3,
            "{q}: {reported}"
        );
    }
}

#[test]
fn merge_equals_histogram_of_the_union() {
    let fast = common::lognormal_ms(20_000, 5.0, 0.3, 1);
    let slow = common::lognormal_ms(30_000, 80.0, 1.5, 2);
    let mut merged = histogram_of(&fast);
    merged.merge(&histogram_of(&slow)).unwrap();

    let union: Vec<f64> = fast.iter().chain(&slow).copied().collect();
    let direct = histogram_of(&union);
    assert_eq!(merged, direct);
    assert_eq!(merged.count(), 50_000);
    for q in LEVELS {
        assert_eq!(
            merged.quantile_ms(q).unwrap(),
            direct.quantile_ms(q).unwrap(),
            "q={q}"
        );
    }
    assert_eq!(merged.mean_ms(), direct.mean_ms());
    // The merge changed something: the slow data dominates the top.
    assert!(merged.quantile_ms(0.99).unwrap() > histogram_of(&fast).quantile_ms(0.99).unwrap());
}

#[test]
fn base64_round_trip_is_lossless_and_mergeable() {
    let latencies_ms = common::lognormal_ms(10_000, 20.0, 1.0, 3);
    let original = histogram_of(&latencies_ms);
    let encoded = original.to_base64_v2().unwrap();
    assert!(encoded
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='));

    let decoded = LatencyHistogram::from_base64_v2(&encoded).unwrap();
    assert_eq!(decoded, original);
    for q in LEVELS {
        assert_eq!(
            decoded.quantile_ms(q).unwrap(),
            original.quantile_ms(q).unwrap()
        );
    }

    // A decoded histogram keeps growing like a fresh one.
    let mut decoded = decoded;
    decoded.record_ms(1e7).unwrap();
    decoded.merge(&original).unwrap();
    assert_eq!(decoded.count(), 2 * original.count() + 1);
    let max_ms = decoded.max_ms().unwrap();
    assert!((max_ms / 1e7 - 1.0).abs() <= 1e-3, "{max_ms}");
}

#[test]
fn empty_histogram_round_trips() {
    let empty = LatencyHistogram::new();
    let decoded = LatencyHistogram::from_base64_v2(&empty.to_base64_v2().unwrap()).unwrap();
    assert_eq!(decoded.count(), 0);
}

#[test]
fn corrupted_encoding_is_rejected() {
    let histogram = histogram_of(&[1.0, 2.0, 3.0]);
    let encoded = histogram.to_base64_v2().unwrap();
    // Cutting the text mid-payload must not produce a (wrong) histogram.
    let truncated = &encoded[..encoded.len() / 8 * 4];
    assert!(LatencyHistogram::from_base64_v2(truncated).is_err());
}

/// Encodings made before the histogram text went through the `base64`
/// crate: no padding, one `=` and two, and the empty histogram.
#[test]
fn base64_v2_text_is_pinned_byte_for_byte() {
    let evenly_spaced: Vec<f64> = (0..20).map(|i| 1.0 + f64::from(i) * 3.7).collect();
    let cases: [(&[f64], &str); 4] = [
        (
            &[0.25, 7.5, 60.0, 61.0, 62.0],
            "HISTEwAAAA4AAAAAAAAAAwAAAAAAAAABAAAAAAP///8/8AAAAAAAAMGOAQKJTgL9LwI5AjsC",
        ),
        (
            &[1.0, 2.0, 3.0, 250.5],
            "HISTEwAAAA0AAAAAAAAAAwAAAAAAAAABAAAAAA////8/8AAAAAAAAMGuAQL9DwKrCAL7ZgI=",
        ),
        (
            &evenly_spaced,
            "HISTEwAAADwAAAAAAAAAAwAAAAAAAAABAAAAAAf///8/8AAAAAAAAMGuAQKxIwKJDgKFBwKDBwK5BALBAwK/\
             AwLBAwKTAwLfAQLfAQLfAQLfAQLfAQLfAQLfAQLfAQLPAQJtAg==",
        ),
        (
            &[],
            "HISTEwAAAAEAAAAAAAAAAwAAAAAAAAABAAAAAAAAAAI/8AAAAAAAAAA=",
        ),
    ];
    for (latencies_ms, expected) in cases {
        let histogram = histogram_of(latencies_ms);
        assert_eq!(histogram.to_base64_v2().unwrap(), expected);
        assert_eq!(
            LatencyHistogram::from_base64_v2(expected).unwrap(),
            histogram
        );
    }
}

#[derive(serde::Deserialize)]
struct LinearFixtures {
    sets: Vec<LinearSet>,
}

#[derive(serde::Deserialize)]
struct LinearSet {
    name: String,
    samples_ms: Vec<f64>,
    min_ms: f64,
    max_ms: f64,
    cases: Vec<LinearCase>,
}

#[derive(serde::Deserialize)]
struct LinearCase {
    q: f64,
    expected: f64,
}

/// numpy's quantiles of `fixtures/histogram_linear.json` (see its
/// generator), approximated from the buckets within the stated bound; the
/// extremes exact, never a value outside them; exact where every
/// nanosecond has a bucket of its own.
#[test]
fn linear_quantiles_from_buckets_match_numpy_within_the_stated_bound() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/histogram_linear.json"
    );
    let fixtures: LinearFixtures =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = 0;
    for set in &fixtures.sets {
        let histogram = histogram_of(&set.samples_ms);
        for case in &set.cases {
            let what = format!("{} q={}", set.name, case.q);
            let value = histogram
                .quantile_linear_between_ms(case.q, set.min_ms, set.max_ms)
                .unwrap();
            let bound = LatencyHistogram::quantile_error_bound_ms(case.expected);
            // 1e-12 for the floating point of the interpolation itself.
            assert!(
                (value - case.expected).abs() <= bound + 1e-12 * case.expected,
                "{what}: {value} vs numpy {} (bound {bound:e})",
                case.expected
            );
            assert!(
                set.min_ms <= value && value <= set.max_ms,
                "{what}: {value}"
            );
            if set.name.starts_with("below_2048_ns") || case.q == 0.0 || case.q == 1.0 {
                assert!((value - case.expected).abs() <= 1e-15, "{what}: {value}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} cases");
}

/// The data behind a report of "P99 7.588 against 6.658 ms from the rows,
/// P99.9 above the maximum": a nearest-rank bucket value is a whole
/// sample away from numpy's; the interpolated one is not.
#[test]
fn a_sparse_tail_is_interpolated_not_rounded_to_the_next_sample() {
    let mut latencies_ms: Vec<f64> = (0..990).map(|i| 5.0 + f64::from(i) * 0.001).collect();
    latencies_ms.extend((0..10).map(|i| 6.5 + f64::from(i) * 0.121));
    let histogram = histogram_of(&latencies_ms);
    let sorted = sorted_finite(&latencies_ms).unwrap();
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    for q in [0.5, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0] {
        let exact = quantile(&sorted, q, QuantileMethod::Linear).unwrap();
        let value = histogram.quantile_linear_between_ms(q, min, max).unwrap();
        assert!(
            (value - exact).abs() <= LatencyHistogram::quantile_error_bound_ms(exact) + 1e-12,
            "q={q}: {value} vs {exact}"
        );
        assert!(value <= max, "q={q}: {value} above the max {max}");
    }
    // Without the exact extremes the buckets' own stand in for them.
    let own = histogram.quantile_linear_ms(1.0).unwrap();
    assert_eq!(own, histogram.max_ms().unwrap());
}

#[test]
fn linear_quantiles_refuse_bad_input() {
    let empty = LatencyHistogram::new();
    assert!(matches!(
        empty.quantile_linear_between_ms(0.5, 1.0, 2.0),
        Err(stats::StatsError::EmptyHistogram)
    ));
    assert!(matches!(
        empty.quantile_linear_ms(0.5),
        Err(stats::StatsError::EmptyHistogram)
    ));
    let histogram = histogram_of(&[1.0, 2.0]);
    assert!(matches!(
        histogram.quantile_linear_between_ms(1.5, 1.0, 2.0),
        Err(stats::StatsError::InvalidQuantileLevel { .. })
    ));
    let err = histogram
        .quantile_linear_between_ms(0.5, 2.0, 1.0)
        .unwrap_err();
    assert!(matches!(err, stats::StatsError::InvalidExtremes { .. }));
    assert!(err.to_string().contains("min <= max"), "{err}");
    assert!(histogram
        .quantile_linear_between_ms(0.5, f64::NAN, 2.0)
        .is_err());
}
