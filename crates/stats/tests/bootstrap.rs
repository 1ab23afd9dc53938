//! Reproducibility and coverage of the bootstrap confidence intervals.

mod common;

use stats::{bootstrap_quantile_ci, bootstrap_quantile_diff_ci, mean_ci, QuantileMethod};

const LINEAR: QuantileMethod = QuantileMethod::Linear;

#[test]
fn same_seed_gives_the_same_interval() {
    let samples = common::lognormal_ms(500, 20.0, 1.0, 11);
    let first = bootstrap_quantile_ci(&samples, 0.95, LINEAR, 300, 0.95, 1234).unwrap();
    let second = bootstrap_quantile_ci(&samples, 0.95, LINEAR, 300, 0.95, 1234).unwrap();
    assert_eq!(first, second);
    assert_eq!(first.confidence, 0.95);
    assert!(first.lower <= first.estimate && first.estimate <= first.upper);
    assert!(first.lower < first.upper);
}

#[test]
fn a_different_seed_gives_a_different_interval() {
    let samples = common::lognormal_ms(500, 20.0, 1.0, 11);
    let first = bootstrap_quantile_ci(&samples, 0.95, LINEAR, 300, 0.95, 1234).unwrap();
    let other = bootstrap_quantile_ci(&samples, 0.95, LINEAR, 300, 0.95, 1235).unwrap();
    assert_eq!(first.estimate, other.estimate);
    assert_ne!((first.lower, first.upper), (other.lower, other.upper));
}

#[test]
fn input_order_does_not_matter() {
    let samples = common::lognormal_ms(200, 20.0, 1.0, 5);
    let mut reversed = samples.clone();
    reversed.reverse();
    let forward = bootstrap_quantile_ci(&samples, 0.5, LINEAR, 200, 0.9, 9).unwrap();
    let backward = bootstrap_quantile_ci(&reversed, 0.5, LINEAR, 200, 0.9, 9).unwrap();
    assert_eq!(forward, backward);
}

#[test]
fn interval_of_a_large_sample_contains_the_true_quantile() {
    // Lognormal with median 20 ms and sigma 1: the true p90 is 20·e^(1.2815516).
    let true_p90_ms = 20.0 * 1.281_551_565_544_600_5_f64.exp();
    let true_median_ms = 20.0;
    let samples = common::lognormal_ms(20_000, 20.0, 1.0, 99);
    for (q, truth) in [(0.5, true_median_ms), (0.9, true_p90_ms)] {
        let ci = bootstrap_quantile_ci(&samples, q, LINEAR, 400, 0.99, 7).unwrap();
        assert!(
            ci.lower <= truth && truth <= ci.upper,
            "q={q}: {ci:?} vs {truth}"
        );
        // Normal theory predicts widths of about 4.6% (median) and 6.2% (p90)
        // of the quantile here; far narrower or wider means a broken resampler.
        let relative_width = (ci.upper - ci.lower) / truth;
        assert!((0.03..0.08).contains(&relative_width), "q={q}: {ci:?}");
    }
}

#[test]
fn diff_interval_detects_a_regression_and_brackets_no_change() {
    let before = common::lognormal_ms(5_000, 20.0, 0.5, 1);
    let same = common::lognormal_ms(5_000, 20.0, 0.5, 2);
    let slower: Vec<f64> = same.iter().map(|latency_ms| latency_ms * 1.2).collect();

    let regression =
        bootstrap_quantile_diff_ci(&before, &slower, 0.5, LINEAR, 400, 0.95, 3).unwrap();
    assert!(regression.lower > 0.0, "{regression:?}");
    // True shift of the median: 0.2 · 20 ms.
    assert!(
        regression.lower < 4.0 && 4.0 < regression.upper,
        "{regression:?}"
    );

    let unchanged = bootstrap_quantile_diff_ci(&before, &same, 0.5, LINEAR, 400, 0.95, 3).unwrap();
    assert!(
        unchanged.lower < 0.0 && 0.0 < unchanged.upper,
        "{unchanged:?}"
    );

    let again = bootstrap_quantile_diff_ci(&before, &same, 0.5, LINEAR, 400, 0.95, 3).unwrap();
    assert_eq!(unchanged, again);
}

#[test]
fn single_sample_bootstrap_is_degenerate() {
    let ci = bootstrap_quantile_ci(&[7.5], 0.99, QuantileMethod::Exclusive, 10, 0.95, 0).unwrap();
    assert_eq!((ci.estimate, ci.lower, ci.upper), (7.5, 7.5, 7.5));
}

#[test]
fn mean_interval_widens_with_confidence() {
    let runs_ms = [101.2, 98.7, 103.4, 99.9, 100.8];
    let narrow = mean_ci(&runs_ms, 0.95).unwrap();
    let wide = mean_ci(&runs_ms, 0.99).unwrap();
    assert_eq!(narrow.estimate, wide.estimate);
    assert!(wide.lower < narrow.lower && narrow.upper < wide.upper);
}

#[test]
fn confidence_interval_serializes() {
    let ci = mean_ci(&[1.0, 3.0], 0.95).unwrap();
    let json = serde_json::to_value(&ci).unwrap();
    assert_eq!(json["estimate"], 2.0);
    assert_eq!(json["confidence"], 0.95);
    assert!(json["lower"].as_f64().unwrap() < 2.0);
}
