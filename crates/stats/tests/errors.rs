//! Every error path returns its own `StatsError` variant with a message naming the problem.

use stats::{
    bootstrap_quantile_ci, bootstrap_quantile_diff_ci, mean_ci, quantile, sorted_finite,
    student_t_quantile, LatencyHistogram, QuantileMethod, StatsError, Summary,
};

const LINEAR: QuantileMethod = QuantileMethod::Linear;

#[test]
fn quantile_rejects_empty_input() {
    let error = quantile(&[], 0.5, LINEAR).unwrap_err();
    assert!(matches!(error, StatsError::EmptyInput));
    assert!(error.to_string().contains("no samples"), "{error}");
}

#[test]
fn quantile_rejects_bad_levels() {
    for q in [f64::NAN, -0.01, 1.01, f64::INFINITY] {
        let error = quantile(&[1.0], q, LINEAR).unwrap_err();
        assert!(
            matches!(error, StatsError::InvalidQuantileLevel { .. }),
            "q={q}"
        );
        assert!(error.to_string().contains("[0, 1]"), "{error}");
    }
    assert!(quantile(&[1.0], 0.0, LINEAR).is_ok());
    assert!(quantile(&[1.0], 1.0, LINEAR).is_ok());
}

#[test]
fn quantile_rejects_nan_samples_naming_the_index() {
    let error = quantile(&[1.0, 2.0, f64::NAN], 0.5, LINEAR).unwrap_err();
    assert!(matches!(
        error,
        StatsError::NonFiniteSample { index: 2, .. }
    ));
    assert_eq!(
        error.to_string(),
        "sample at index 2 is NaN, but samples must be finite numbers"
    );
}

#[test]
fn sorted_finite_rejects_infinities_and_sorts() {
    let error = sorted_finite(&[3.0, f64::NEG_INFINITY]).unwrap_err();
    assert!(
        matches!(error, StatsError::NonFiniteSample { index: 1, value } if value == f64::NEG_INFINITY)
    );
    assert_eq!(sorted_finite(&[3.0, -1.0, 2.0]).unwrap(), [-1.0, 2.0, 3.0]);
    assert!(sorted_finite(&[]).unwrap().is_empty());
}

#[test]
fn unknown_method_name_is_rejected() {
    let error = "median".parse::<QuantileMethod>().unwrap_err();
    assert!(matches!(error, StatsError::UnknownQuantileMethod { ref name } if name == "median"));
    assert!(error.to_string().contains("nearest-rank"), "{error}");
}

#[test]
fn summary_rejects_empty_and_non_finite_input() {
    assert!(matches!(
        Summary::from_samples(&[], LINEAR),
        Err(StatsError::EmptyInput)
    ));
    assert!(matches!(
        Summary::from_samples(&[1.0, f64::INFINITY], LINEAR),
        Err(StatsError::NonFiniteSample { index: 1, .. })
    ));
}

#[test]
fn histogram_rejects_invalid_latencies() {
    let mut histogram = LatencyHistogram::new();
    for latency_ms in [f64::NAN, -0.001, -1.0, f64::INFINITY, 1e300] {
        let error = histogram.record_ms(latency_ms).unwrap_err();
        assert!(
            matches!(error, StatsError::InvalidLatency { .. }),
            "{latency_ms}"
        );
    }
    assert_eq!(histogram.count(), 0);
    // -0.0 and values that round to zero microseconds are legitimate.
    histogram.record_ms(-0.0).unwrap();
    histogram.record_ms(0.0004).unwrap();
    assert_eq!(histogram.count(), 2);
}

#[test]
fn empty_histogram_has_no_statistics() {
    let histogram = LatencyHistogram::default();
    assert!(matches!(
        histogram.quantile_ms(0.5),
        Err(StatsError::EmptyHistogram)
    ));
    assert_eq!(histogram.min_ms(), None);
    assert_eq!(histogram.max_ms(), None);
    assert_eq!(histogram.mean_ms(), None);
}

#[test]
fn histogram_quantile_rejects_bad_levels() {
    let mut histogram = LatencyHistogram::new();
    histogram.record_us(100);
    for q in [f64::NAN, -0.5, 2.0] {
        assert!(matches!(
            histogram.quantile_ms(q),
            Err(StatsError::InvalidQuantileLevel { .. })
        ));
    }
}

#[test]
fn histogram_decoding_rejects_garbage() {
    assert!(matches!(
        LatencyHistogram::from_base64_v2("not base64!"),
        Err(StatsError::InvalidBase64 { .. })
    ));
    // Valid base64, but not a histogram.
    assert!(matches!(
        LatencyHistogram::from_base64_v2("aGVsbG8gd29ybGQ="),
        Err(StatsError::HistogramDecode(_))
    ));
}

#[test]
fn histogram_decoding_rejects_trailing_bytes() {
    let mut histogram = LatencyHistogram::new();
    histogram.record_us(1234);
    let encoded = histogram.to_base64_v2().unwrap();
    // Append three zero bytes ("AAAA") after a padding-free re-encoding.
    let padded = format!("{}AAAA", encoded);
    if encoded.ends_with('=') {
        assert!(matches!(
            LatencyHistogram::from_base64_v2(&padded),
            Err(StatsError::InvalidBase64 { .. })
        ));
    } else {
        assert!(matches!(
            LatencyHistogram::from_base64_v2(&padded),
            Err(StatsError::TrailingHistogramBytes { trailing_bytes: 3 })
        ));
    }
}

#[test]
fn bootstrap_validates_its_parameters() {
    let samples = [1.0, 2.0, 3.0];
    let ci = |samples: &[f64], q, resamples, confidence| {
        bootstrap_quantile_ci(samples, q, LINEAR, resamples, confidence, 1)
    };
    assert!(matches!(
        ci(&[], 0.5, 10, 0.95),
        Err(StatsError::EmptyInput)
    ));
    assert!(matches!(
        ci(&samples, 1.5, 10, 0.95),
        Err(StatsError::InvalidQuantileLevel { .. })
    ));
    assert!(matches!(
        ci(&samples, 0.5, 0, 0.95),
        Err(StatsError::InvalidResamples { resamples: 0 })
    ));
    for confidence in [0.0, 1.0, -0.5, 95.0, f64::NAN] {
        assert!(matches!(
            ci(&samples, 0.5, 10, confidence),
            Err(StatsError::InvalidConfidence { .. })
        ));
    }
    assert!(matches!(
        ci(&[1.0, f64::NAN], 0.5, 10, 0.95),
        Err(StatsError::NonFiniteSample { index: 1, .. })
    ));
    assert!(matches!(
        bootstrap_quantile_diff_ci(&samples, &[], 0.5, LINEAR, 10, 0.95, 1),
        Err(StatsError::EmptyInput)
    ));
    assert!(matches!(
        bootstrap_quantile_diff_ci(&[], &samples, 0.5, LINEAR, 10, 0.95, 1),
        Err(StatsError::EmptyInput)
    ));
}

#[test]
fn mean_ci_needs_two_finite_values_and_a_valid_confidence() {
    assert!(matches!(
        mean_ci(&[5.0], 0.95),
        Err(StatsError::TooFewValues { needed: 2, got: 1 })
    ));
    assert!(matches!(
        mean_ci(&[5.0, f64::NAN], 0.95),
        Err(StatsError::NonFiniteSample { index: 1, .. })
    ));
    assert!(matches!(
        mean_ci(&[5.0, 6.0], 1.0),
        Err(StatsError::InvalidConfidence { .. })
    ));
}

#[test]
fn t_quantile_validates_its_parameters() {
    for p in [0.0, 1.0, f64::NAN, -0.1] {
        assert!(matches!(
            student_t_quantile(p, 3.0),
            Err(StatsError::InvalidProbability { .. })
        ));
    }
    for df in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            student_t_quantile(0.9, df),
            Err(StatsError::InvalidDegreesOfFreedom { .. })
        ));
    }
}
