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
    verify: bool,
) -> Vec<ItemVerdict> {
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
    let outputs: Vec<String> = match shape {
        Shape::Single => match serde_json::from_slice::<SingleResponse>(&response.body) {
            Ok(single) => vec![single.output],
            // A real endpoint may answer in its own schema: without
            // verification the whole body stands for the output.
            Err(_) if !verify => {
                return vec![ItemVerdict {
                    error: String::new(),
                    output_digest: Some(output_digest(&response.body)),
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
                output_digest: Some(output_digest(output.as_bytes())),
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
    fn every_failure_has_its_kind() {
        let good = expected_output("m", "a");
        let body = format!(r#"{{"model":"m","outputs":["{good}"]}}"#);
        let ok = judge(&response(200, &body), Shape::Batch, "m", &["a"], true);
        assert_eq!(ok[0].error, "");
        assert_eq!(ok[0].output_digest, Some(output_digest(good.as_bytes())));
        let short = judge(&response(200, &body), Shape::Batch, "m", &["a", "b"], true);
        assert!(short.iter().all(|v| v.error == "wrong_length"));
        let wrong = judge(&response(200, &body), Shape::Batch, "m", &["b"], true);
        assert_eq!(wrong[0].error, "output_mismatch");
        assert_eq!(
            judge(&response(200, "nope"), Shape::Single, "m", &["a"], true)[0].error,
            "bad_json"
        );
        assert_eq!(
            judge(&response(503, "{}"), Shape::Single, "m", &["a"], true)[0].error,
            "http_503"
        );
        let unverified = judge(
            &response(200, "plain text"),
            Shape::Single,
            "m",
            &["a"],
            false,
        );
        assert_eq!(unverified[0].error, "");
    }
}
