//! The SLA check, the output-quality checks and the resulting [`Verdict`].
//!
//! The verdict is met only when every check passes: After P95 within the
//! SLA (`<=`: a P95 exactly at the threshold meets it), After failures within
//! the budget, no output mismatch on either side, identical inputs on both
//! sides, and no request whose output digest differs between the sides.

use std::collections::{BTreeMap, BTreeSet};

use model::comparison::{Check, Quality, SideSummary, Sla, Verdict};
use model::log::Log;
use model::summary::ObjectiveResult;

/// The `error` a client writes when a response fails verification.
pub(crate) const OUTPUT_MISMATCH_ERROR: &str = "output_mismatch";

/// Checks that the two runs sent the same requests and got the same answers.
/// Outputs are compared by digest with the Before, or with `reproduction`
/// when the Before has no digests (`input.py` logs none).
pub(crate) fn assess_quality(before: &Log, after: &Log, reproduction: Option<&Log>) -> Quality {
    let ids = |log: &Log| -> BTreeSet<u64> { log.rows.iter().map(|r| r.request_id).collect() };
    let (before_ids, after_ids) = (ids(before), ids(after));
    let missing_in_after = before_ids.difference(&after_ids).count() as u64;
    let extra_in_after = after_ids.difference(&before_ids).count() as u64;
    let mismatched = |log: &Log| -> u64 {
        log.rows
            .iter()
            .filter(|r| r.error == OUTPUT_MISMATCH_ERROR)
            .count() as u64
    };
    let (before_mismatches, after_mismatches) = (mismatched(before), mismatched(after));
    // Digests per request id of successful rows; a request id seen twice
    // keeps its last digest, which is fine for comparing equal outputs.
    let digests = |log: &Log| -> BTreeMap<u64, String> {
        log.rows
            .iter()
            .filter(|r| r.ok)
            .filter_map(|r| r.output_digest.clone().map(|d| (r.request_id, d)))
            .collect()
    };
    let (digest_reference, before_digests) = match (digests(before), reproduction) {
        (own, Some(rep)) if own.is_empty() => ("before_reproduction", digests(rep)),
        (own, _) => ("before", own),
    };
    let mut digests_compared = 0;
    let mut digest_differences = 0;
    for (id, digest) in digests(after) {
        if let Some(theirs) = before_digests.get(&id) {
            digests_compared += 1;
            if *theirs != digest {
                digest_differences += 1;
            }
        }
    }
    let mismatches = before_mismatches + after_mismatches;
    // Read from the rows: a client that only digested outputs (an API or a
    // server whose answers are not known, --no-verify) wrote `false`.
    let after_ok = after.rows.iter().filter(|r| r.ok).count() as u64;
    let after_verified = after.rows.iter().filter(|r| r.ok && r.verified).count() as u64;
    Quality {
        identical_inputs: missing_in_after == 0
            && extra_in_after == 0
            && before.rows.len() == after.rows.len(),
        verified: after_ok > 0 && after_verified == after_ok && mismatches == 0,
        after_verified,
        mismatches,
        before_mismatches,
        after_mismatches,
        missing_in_after,
        extra_in_after,
        digests_compared,
        digest_differences,
        digest_reference: digest_reference.to_owned(),
    }
}

/// Whether the After's P95 is within `threshold_ms`.
pub(crate) fn sla_for(after: &SideSummary, threshold_ms: f64) -> Sla {
    Sla {
        metric: "p95_ms".to_owned(),
        threshold_ms,
        met: after.p95_ms.is_some_and(|p95| p95 <= threshold_ms),
    }
}

/// Combines the SLA, the failure budget and the quality checks.
pub(crate) fn decide(
    sla: &Sla,
    before: &SideSummary,
    after: &SideSummary,
    quality: &Quality,
    max_failed: u64,
    slos: &[ObjectiveResult],
) -> Verdict {
    let t = sla.threshold_ms;
    let sla_detail = match after.p95_ms {
        Some(p95) if sla.met => format!("After P95 {p95:.1} ms <= SLA {t} ms"),
        Some(p95) => format!("After P95 {p95:.1} ms > SLA {t} ms"),
        None => {
            format!("After has no successful request, so its P95 cannot meet the SLA of {t} ms")
        }
    };
    let failed_ok = after.failed <= max_failed;
    let failed_detail = format!(
        "After failed requests: {} of {} ({} allowed)",
        after.failed, after.total, max_failed
    );
    let mismatch_detail = format!(
        "Output mismatches: {} (Before {}, After {})",
        quality.mismatches, quality.before_mismatches, quality.after_mismatches
    );
    let inputs_detail = if quality.identical_inputs {
        format!(
            "Identical inputs: both runs sent the same {} request ids",
            after.total
        )
    } else {
        format!(
            "Inputs differ: Before {} rows, After {} rows; {} request ids missing from the After, {} extra",
            before.total, after.total, quality.missing_in_after, quality.extra_in_after
        )
    };
    let digest_detail = format!(
        "Output digests: {} of {} compared requests differ between {} and After",
        quality.digest_differences,
        quality.digests_compared,
        if quality.digest_reference == "before" {
            "Before"
        } else {
            "the Before's Rust reproduction"
        }
    );
    let mut checks = vec![
        check("sla_p95", sla.met, sla_detail),
        check("failed_budget", failed_ok, failed_detail),
        check(
            "output_mismatches",
            quality.mismatches == 0,
            mismatch_detail,
        ),
        check("identical_inputs", quality.identical_inputs, inputs_detail),
    ];
    // Only a check when there was something to compare: input.py logs carry no digest.
    if quality.digests_compared > 0 {
        checks.push(check(
            "output_digests",
            quality.digest_differences == 0,
            digest_detail,
        ));
    }
    for slo in slos {
        checks.push(check("slo", slo.met, slo.to_string()));
    }
    let met = checks.iter().all(|c| c.passed);
    let reasons = checks
        .iter()
        .filter(|c| met || !c.passed)
        .map(|c| c.detail.clone())
        .collect();
    Verdict {
        met,
        reasons,
        max_failed,
        checks,
    }
}

fn check(id: &str, passed: bool, detail: String) -> Check {
    Check {
        id: id.to_owned(),
        passed,
        detail,
    }
}
