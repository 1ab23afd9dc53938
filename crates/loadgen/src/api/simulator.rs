//! The simulator's wire format: `{"model", "input"}` and
//! `{"model", "inputs"}` bodies, `output`/`outputs` answers, each output
//! checked against `model::output::expected_output` when verifying.

use model::output::{expected_output, output_digest};
use model::wire::{batch_request_body, single_request_body, BatchResponse, SingleResponse};

use super::{all_failed, status_error, Api, Shape};
use crate::client::HttpResponse;
use crate::engine::LogicalRequest;
use crate::verify::{Checks, ItemVerdict};

/// The simulator's format.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Simulator;

impl Api for Simulator {
    fn name(&self) -> &'static str {
        "simulator"
    }

    fn can_verify(&self) -> bool {
        true
    }

    /// The simulator's answers are known: checked unless --no-verify.
    fn verifies_by_default(&self) -> bool {
        true
    }

    fn single_body(&self, item: &LogicalRequest) -> Vec<u8> {
        single_request_body(&item.model, &item.input)
    }

    fn batch_body(&self, items: &[LogicalRequest]) -> Vec<u8> {
        let model = items.first().map_or("", |i| &*i.model);
        batch_request_body(model, items.iter().map(|i| i.input.as_str()))
    }

    /// A batch's body is always read (its length is checked), a single
    /// one's only to verify or digest its output.
    fn needs_body(&self, shape: Shape, checks: Checks) -> bool {
        shape == Shape::Batch || checks.verify || checks.digests
    }

    fn judge_single(
        &self,
        response: &mut HttpResponse,
        item: &LogicalRequest,
        checks: Checks,
    ) -> ItemVerdict {
        if let Some(error) = status_error(response) {
            return ItemVerdict::without_digest(error);
        }
        if !self.needs_body(Shape::Single, checks) {
            // A 2xx single response passes whatever its body says.
            return ItemVerdict::without_digest(String::new());
        }
        match serde_json::from_slice::<SingleResponse>(&response.body) {
            Ok(single) => output_verdict(&item.model, &item.input, &single.output, checks),
            // A real endpoint may answer in its own schema: without
            // verification the whole body stands for the output.
            Err(_) if !checks.verify => ItemVerdict {
                error: String::new(),
                output_digest: checks.digests.then(|| output_digest(&response.body)),
                stream: None,
                verified: false,
            },
            Err(_) => ItemVerdict::without_digest("bad_json".into()),
        }
    }

    fn judge_batch(
        &self,
        response: &mut HttpResponse,
        items: &[LogicalRequest],
        checks: Checks,
    ) -> Vec<ItemVerdict> {
        if let Some(error) = status_error(response) {
            return all_failed(items.len(), &error);
        }
        let outputs = match serde_json::from_slice::<BatchResponse>(&response.body) {
            Ok(batch) => batch.outputs,
            Err(_) => return all_failed(items.len(), "bad_json"),
        };
        if outputs.len() != items.len() {
            return all_failed(items.len(), "wrong_length");
        }
        items
            .iter()
            .zip(outputs)
            .map(|(item, output)| output_verdict(&item.model, &item.input, &output, checks))
            .collect()
    }
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
        stream: None,
        verified: checks.verify && matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{item, response};

    fn items(inputs: &[&str]) -> Vec<LogicalRequest> {
        inputs.iter().map(|i| item("m", i)).collect()
    }

    #[test]
    fn without_a_log_nothing_is_hashed_and_failures_still_count() {
        let bare = Checks {
            verify: false,
            digests: false,
        };
        let api = Simulator;
        let single = api.judge_single(&mut response(200, "not json"), &item("m", "a"), bare);
        assert_eq!(single, ItemVerdict::without_digest(String::new()));
        let failed = api.judge_single(&mut response(500, "{}"), &item("m", "a"), bare);
        assert_eq!(failed.error, "http_500");
        let body = r#"{"model":"m","outputs":["x"]}"#;
        let short = api.judge_batch(&mut response(200, body), &items(&["a", "b"]), bare);
        assert!(short.iter().all(|v| v.error == "wrong_length"));
        let batch = api.judge_batch(&mut response(200, body), &items(&["a"]), bare);
        assert_eq!(
            (batch[0].error.as_str(), &batch[0].output_digest),
            ("", &None)
        );
    }

    #[test]
    fn every_failure_has_its_kind() {
        let api = Simulator;
        let good = expected_output("m", "a");
        let body = format!(r#"{{"model":"m","outputs":["{good}"]}}"#);
        let all = Checks {
            verify: true,
            digests: true,
        };
        let ok = api.judge_batch(&mut response(200, &body), &items(&["a"]), all);
        assert_eq!(ok[0].error, "");
        assert_eq!(ok[0].output_digest, Some(output_digest(good.as_bytes())));
        let short = api.judge_batch(&mut response(200, &body), &items(&["a", "b"]), all);
        assert!(short.iter().all(|v| v.error == "wrong_length"));
        let wrong = api.judge_batch(&mut response(200, &body), &items(&["b"]), all);
        assert_eq!(wrong[0].error, "output_mismatch");
        let unavailable = api.judge_batch(&mut response(503, "{}"), &items(&["a", "b"]), all);
        assert_eq!(unavailable.len(), 2);
        assert!(unavailable.iter().all(|v| v.error == "http_503"));
        let a = item("m", "a");
        assert_eq!(
            api.judge_single(&mut response(200, "nope"), &a, all).error,
            "bad_json"
        );
        assert_eq!(
            api.judge_single(&mut response(503, "{}"), &a, all).error,
            "http_503"
        );
        let unverified = api.judge_single(
            &mut response(200, "plain text"),
            &a,
            Checks {
                verify: false,
                digests: true,
            },
        );
        assert_eq!(unverified.error, "");
        assert_eq!(unverified.output_digest, Some(output_digest(b"plain text")));
    }

    #[test]
    fn bodies_are_the_wire_formats() {
        let api = Simulator;
        assert_eq!(
            api.single_body(&item("m", "a\"b")),
            br#"{"model":"m","input":"a\"b"}"#
        );
        assert_eq!(
            api.batch_body(&items(&["a", "b"])),
            br#"{"model":"m","inputs":["a","b"]}"#
        );
    }
}
