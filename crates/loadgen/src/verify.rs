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

/// The request shape that was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"model", "input"}`.
    Single,
    /// `{"model", "inputs"}`.
    Batch,
}

/// Verdicts for `inputs` (all sent under `model`), in order.
pub fn judge(
    response: &HttpResponse,
    shape: Shape,
    model: &str,
    inputs: &[&str],
    checks: Checks,
) -> Vec<ItemVerdict> {
    let Checks { verify, digests } = checks;
    let all = |error: String| {
        inputs
            .iter()
            .map(|_| ItemVerdict {
                error: error.clone(),
                output_digest: None,
            })
            .collect::<Vec<_>>()
    };
    if !response.status.is_success() {
        return all(format!("http_{}", response.status.as_u16()));
    }
    if shape == Shape::Single && !verify && !digests {
        // A 2xx single response passes whatever its body says.
        return vec![ItemVerdict {
            error: String::new(),
            output_digest: None,
        }];
    }
    let outputs: Vec<String> = match shape {
        Shape::Single => match serde_json::from_slice::<SingleResponse>(&response.body) {
            Ok(single) => vec![single.output],
            // A real endpoint may answer in its own schema: without
            // verification the whole body stands for the output.
            Err(_) if !verify => {
                return vec![ItemVerdict {
                    error: String::new(),
                    output_digest: digests.then(|| output_digest(&response.body)),
                }]
            }
            Err(_) => return all("bad_json".into()),
        },
        Shape::Batch => match serde_json::from_slice::<BatchResponse>(&response.body) {
            Ok(batch) => batch.outputs,
            Err(_) => return all("bad_json".into()),
        },
    };
    if outputs.len() != inputs.len() {
        return all("wrong_length".into());
    }
    inputs
        .iter()
        .zip(outputs)
        .map(|(input, output)| {
            let matches = !verify || output == expected_output(model, input);
            ItemVerdict {
                error: if matches {
                    String::new()
                } else {
                    "output_mismatch".into()
                },
                output_digest: digests.then(|| output_digest(output.as_bytes())),
            }
        })
        .collect()
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
        let single = judge(&response(200, "not json"), Shape::Single, "m", &["a"], bare);
        assert_eq!(
            single,
            vec![ItemVerdict {
                error: String::new(),
                output_digest: None
            }]
        );
        let failed = judge(&response(500, "{}"), Shape::Single, "m", &["a"], bare);
        assert_eq!(failed[0].error, "http_500");
        let body = r#"{"model":"m","outputs":["x"]}"#;
        let short = judge(&response(200, body), Shape::Batch, "m", &["a", "b"], bare);
        assert!(short.iter().all(|v| v.error == "wrong_length"));
        let batch = judge(&response(200, body), Shape::Batch, "m", &["a"], bare);
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
        let ok = judge(&response(200, &body), Shape::Batch, "m", &["a"], all);
        assert_eq!(ok[0].error, "");
        assert_eq!(ok[0].output_digest, Some(output_digest(good.as_bytes())));
        let short = judge(&response(200, &body), Shape::Batch, "m", &["a", "b"], all);
        assert!(short.iter().all(|v| v.error == "wrong_length"));
        let wrong = judge(&response(200, &body), Shape::Batch, "m", &["b"], all);
        assert_eq!(wrong[0].error, "output_mismatch");
        assert_eq!(
            judge(&response(200, "nope"), Shape::Single, "m", &["a"], all)[0].error,
            "bad_json"
        );
        assert_eq!(
            judge(&response(503, "{}"), Shape::Single, "m", &["a"], all)[0].error,
            "http_503"
        );
        let unverified = judge(
            &response(200, "plain text"),
            Shape::Single,
            "m",
            &["a"],
            Checks {
                verify: false,
                digests: true,
            },
        );
        assert_eq!(unverified[0].error, "");
        assert_eq!(
            unverified[0].output_digest,
            Some(output_digest(b"plain text"))
        );
    }
}
