//! Turns one HTTP response into a verdict per logical request: status,
//! response shape, batch length and, when verification is on, each output
//! against `model::output::expected_output`.

use model::output::{expected_output, output_digest};
use model::wire::{BatchResponse, SingleResponse};

use crate::client::HttpResponse;

/// What came back for one logical request.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemVerdict {
    /// Empty when the item succeeded, else the error kind.
    pub error: String,
    /// Digest of the output string's UTF-8 bytes (the decoded JSON string,
    /// not its quoted form), when an output was found.
    pub output_digest: Option<String>,
}

/// What to check and keep of each response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// Compare each output with `expected_output`.
    pub verify: bool,
    /// Compute output digests. They only reach the per-request log, so a
    /// run without one skips hashing and, when nothing is verified either,
    /// parsing single responses: the work would be invisible and would only
    /// inflate the client's cost per request.
    pub digests: bool,
}

impl Checks {
    /// Whether a response to a request of `shape` needs its body: a batch's
    /// always (its length is checked), a single one's only to verify or
    /// digest its output.
    pub fn read_body(self, shape: Shape) -> bool {
        shape == Shape::Batch || self.verify || self.digests
    }

    /// Whether `Server-Timing` is read: its durations, like digests, only
    /// reach the per-request log, which is written exactly when digests
    /// are computed.
    pub fn server_timing(self) -> bool {
        self.digests
    }
}

/// The request shape that was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"model", "input"}`.
    Single,
    /// `{"model", "inputs"}`.
    Batch,
}

/// The verdict on a single-input request's response.
pub fn judge_single(
    response: &HttpResponse,
    model: &str,
    input: &str,
    checks: Checks,
) -> ItemVerdict {
    if let Some(error) = status_error(response) {
        return ItemVerdict::without_digest(error);
    }
    if !checks.read_body(Shape::Single) {
        // A 2xx single response passes whatever its body says.
        return ItemVerdict::without_digest(String::new());
    }
    match serde_json::from_slice::<SingleResponse>(&response.body) {
        Ok(single) => output_verdict(model, input, &single.output, checks),
        // A real endpoint may answer in its own schema: without
        // verification the whole body stands for the output.
        Err(_) if !checks.verify => ItemVerdict {
            error: String::new(),
            output_digest: checks.digests.then(|| output_digest(&response.body)),
        },
        Err(_) => ItemVerdict::without_digest("bad_json".into()),
    }
}

/// Verdicts for a batch request's `inputs` (all sent under `model`), in order.
pub fn judge_batch(
    response: &HttpResponse,
    model: &str,
    inputs: &[&str],
    checks: Checks,
) -> Vec<ItemVerdict> {
    let all = |error: String| {
        inputs
            .iter()
            .map(|_| ItemVerdict::without_digest(error.clone()))
            .collect::<Vec<_>>()
    };
    if let Some(error) = status_error(response) {
        return all(error);
    }
    let outputs = match serde_json::from_slice::<BatchResponse>(&response.body) {
        Ok(batch) => batch.outputs,
        Err(_) => return all("bad_json".into()),
    };
    if outputs.len() != inputs.len() {
        return all("wrong_length".into());
    }
    inputs
        .iter()
        .zip(outputs)
        .map(|(input, output)| output_verdict(model, input, &output, checks))
        .collect()
}

impl ItemVerdict {
    /// A verdict with `error` (empty: success) and no digest.
    fn without_digest(error: String) -> Self {
        Self {
            error,
            output_digest: None,
        }
    }
}

/// `http_<status>` for a non-2xx response.
fn status_error(response: &HttpResponse) -> Option<String> {
    (!response.status.is_success()).then(|| format!("http_{}", response.status.as_u16()))
}

/// The verdict on one output for `input`.
fn output_verdict(model: &str, input: &str, output: &str, checks: Checks) -> ItemVerdict {
    let matches = !checks.verify || output == expected_output(model, input);
    ItemVerdict {
        error: if matches {
            String::new()
        } else {
            "output_mismatch".into()
        },
        output_digest: checks.digests.then(|| output_digest(output.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::StatusCode;
    use std::time::Instant;

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            facts: crate::client::ServerFacts::default(),
            body: Bytes::from(body.to_owned()),
            finished_at: Instant::now(),
            connect_ms: 0.0,
        }
    }

    #[test]
    fn without_a_log_nothing_is_hashed_and_failures_still_count() {
        let bare = Checks {
            verify: false,
            digests: false,
        };
        let single = judge_single(&response(200, "not json"), "m", "a", bare);
        assert_eq!(
            single,
            ItemVerdict {
                error: String::new(),
                output_digest: None
            }
        );
        let failed = judge_single(&response(500, "{}"), "m", "a", bare);
        assert_eq!(failed.error, "http_500");
        let body = r#"{"model":"m","outputs":["x"]}"#;
        let short = judge_batch(&response(200, body), "m", &["a", "b"], bare);
        assert!(short.iter().all(|v| v.error == "wrong_length"));
        let batch = judge_batch(&response(200, body), "m", &["a"], bare);
        assert_eq!(
            (batch[0].error.as_str(), &batch[0].output_digest),
            ("", &None)
        );
    }

    #[test]
    fn every_failure_has_its_kind() {
        let good = expected_output("m", "a");
        let body = format!(r#"{{"model":"m","outputs":["{good}"]}}"#);
        let all = Checks {
            verify: true,
            digests: true,
        };
        let ok = judge_batch(&response(200, &body), "m", &["a"], all);
        assert_eq!(ok[0].error, "");
        assert_eq!(ok[0].output_digest, Some(output_digest(good.as_bytes())));
        let short = judge_batch(&response(200, &body), "m", &["a", "b"], all);
        assert!(short.iter().all(|v| v.error == "wrong_length"));
        let wrong = judge_batch(&response(200, &body), "m", &["b"], all);
        assert_eq!(wrong[0].error, "output_mismatch");
        let unavailable = judge_batch(&response(503, "{}"), "m", &["a", "b"], all);
        assert_eq!(unavailable.len(), 2);
        assert!(unavailable.iter().all(|v| v.error == "http_503"));
        assert_eq!(
            judge_single(&response(200, "nope"), "m", "a", all).error,
            "bad_json"
        );
        assert_eq!(
            judge_single(&response(503, "{}"), "m", "a", all).error,
            "http_503"
        );
        let unverified = judge_single(
            &response(200, "plain text"),
            "m",
            "a",
            Checks {
                verify: false,
                digests: true,
            },
        );
        assert_eq!(unverified.error, "");
        assert_eq!(unverified.output_digest, Some(output_digest(b"plain text")));
    }
}
