//! Any JSON body, from a template with placeholders (`--api template
//! --body-template FILE`), for endpoints that speak their own schema.
//!
//! Placeholders stand for whole JSON values, never for parts of a string:
//!
//! | placeholder  | replaced by |
//! | ---          | --- |
//! | `{{input}}`  | the input, as a JSON string (quotes included, escaped) |
//! | `{{inputs}}` | the inputs of the HTTP request, as a JSON array of strings (client micro-batching) |
//! | `{{model}}`  | the model name, as a JSON string |
//! | `{{id}}`     | the request id (of a batch: its first request's), as a JSON string |
//!
//! So a template reads `{"model": {{model}}, "inputs": {{inputs}}}`. The
//! template is checked when it is loaded: an unknown placeholder, or a
//! body that is not valid JSON once substituted, is an error before any
//! request is sent.
//!
//! A response is judged by its status (2xx) and, with `--expect-json-path
//! PATH`, by that path existing in its JSON and, for a request sent with
//! `{{inputs}}`, holding an array with one item per input. Each item's
//! output digest is the digest of the value found there (a string's own
//! UTF-8 bytes, so it equals the simulator API's digest of the same
//! output; any other value's compact JSON), or of the whole body without
//! a path.

use std::path::Path;

use model::output::output_digest;
use model::wire::push_json_str;
use serde_json::Value;

use super::{all_failed, status_error, Api, ApiError, Shape};
use crate::client::HttpResponse;
use crate::engine::LogicalRequest;
use crate::verify::{Checks, ItemVerdict};

/// The placeholders a template may use.
pub(crate) const PLACEHOLDERS: [&str; 4] = ["input", "inputs", "model", "id"];

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Input,
    Inputs,
    Model,
    Id,
}

/// A parsed body template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyTemplate {
    parts: Vec<Part>,
}

impl BodyTemplate {
    /// Splits `text` into literal text and placeholders (`{{ name }}`,
    /// spaces inside the braces allowed). The error names the line and the
    /// placeholder at fault.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let line_at = |offset: usize| text[..offset].matches('\n').count() + 1;
        let mut parts = Vec::new();
        let mut at = 0;
        while let Some(found) = text[at..].find("{{") {
            let open = at + found;
            let inner_start = open + 2;
            let close = text[inner_start..].find("}}").ok_or_else(|| {
                format!(
                    "the placeholder opened at line {} is never closed with }}}}",
                    line_at(open)
                )
            })? + inner_start;
            let name = text[inner_start..close].trim();
            let part = match name {
                "input" => Part::Input,
                "inputs" => Part::Inputs,
                "model" => Part::Model,
                "id" => Part::Id,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{{{other}}}}} at line {}; the placeholders are {}",
                        line_at(open),
                        PLACEHOLDERS.map(|p| format!("{{{{{p}}}}}")).join(", ")
                    ))
                }
            };
            if open > at {
                parts.push(Part::Text(text[at..open].to_owned()));
            }
            parts.push(part);
            at = close + 2;
        }
        if at < text.len() {
            parts.push(Part::Text(text[at..].to_owned()));
        }
        Ok(Self { parts })
    }

    fn uses(&self, part: &Part) -> bool {
        self.parts.contains(part)
    }

    /// The body for `items` (at least one): `{{input}}`, `{{model}}` and
    /// `{{id}}` from the first item, `{{inputs}}` from all of them.
    pub(crate) fn render(&self, items: &[LogicalRequest]) -> Vec<u8> {
        let Some(first) = items.first() else {
            return Vec::new();
        };
        let mut body = Vec::with_capacity(256);
        for part in &self.parts {
            match part {
                Part::Text(text) => body.extend_from_slice(text.as_bytes()),
                Part::Input => push_json_str(&mut body, &first.input),
                Part::Model => push_json_str(&mut body, &first.model),
                Part::Id => {
                    body.push(b'"');
                    body.extend_from_slice(itoa::Buffer::new().format(first.request_id).as_bytes());
                    body.push(b'"');
                }
                Part::Inputs => {
                    body.push(b'[');
                    for (k, item) in items.iter().enumerate() {
                        if k > 0 {
                            body.push(b',');
                        }
                        push_json_str(&mut body, &item.input);
                    }
                    body.push(b']');
                }
            }
        }
        body
    }
}

/// A path into a JSON document: keys and array indices separated by dots
/// (`outputs`, `data.0.embedding`; `$.` in front and `[0]` accepted too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPath {
    steps: Vec<String>,
}

impl JsonPath {
    /// Parses a path; empty steps are refused.
    pub(crate) fn parse(text: &str) -> Result<Self, ApiError> {
        let bad = |reason: &str| ApiError::JsonPath {
            path: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        let trimmed = trimmed
            .strip_prefix("$.")
            .or_else(|| trimmed.strip_prefix('$'))
            .unwrap_or(trimmed);
        let normalised = trimmed.replace('[', ".").replace(']', "");
        let steps: Vec<String> = normalised.split('.').map(str::to_owned).collect();
        if trimmed.is_empty() || steps.iter().any(String::is_empty) {
            return Err(bad(
                "expected keys and indices separated by dots, e.g. outputs or data.0.embedding",
            ));
        }
        Ok(Self { steps })
    }

    /// The value at this path, if there is one.
    pub(crate) fn find<'a>(&self, mut value: &'a Value) -> Option<&'a Value> {
        for step in &self.steps {
            value = match value {
                Value::Object(map) => map.get(step)?,
                Value::Array(items) => items.get(step.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

/// The template API.
#[derive(Debug, Clone)]
pub(crate) struct TemplateApi {
    template: BodyTemplate,
    expect: Option<JsonPath>,
}

impl TemplateApi {
    /// Reads and checks the template at `path` for a run whose client batch
    /// size is `batch_size`.
    pub(crate) fn load(
        path: &Path,
        expect_json_path: Option<&str>,
        batch_size: usize,
    ) -> Result<Self, ApiError> {
        let text = std::fs::read_to_string(path).map_err(|source| ApiError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::new(&text, expect_json_path, batch_size).map_err(|reason| match reason {
            NewError::Template(reason) => ApiError::Template {
                path: path.to_owned(),
                reason,
            },
            NewError::Path(e) => e,
        })
    }

    /// Checks a template given as text; see [`TemplateApi::load`].
    fn new(text: &str, expect: Option<&str>, batch_size: usize) -> Result<Self, NewError> {
        let template = BodyTemplate::parse(text).map_err(NewError::Template)?;
        if batch_size > 1 && !template.uses(&Part::Inputs) {
            return Err(NewError::Template(format!(
                "client micro-batching (batch size {batch_size}) needs an {{{{inputs}}}} placeholder, where the batch's inputs go as a JSON array"
            )));
        }
        if !template.uses(&Part::Input) && !template.uses(&Part::Inputs) {
            return Err(NewError::Template(
                "the template has neither {{input}} nor {{inputs}}: every request would send the same body".into(),
            ));
        }
        // Sample inputs that need escaping: a template that only works for
        // plain text would fail on real prompts.
        let samples: Vec<LogicalRequest> = [(0, "a \"quoted\"\nline"), (1, "b\\c")]
            .into_iter()
            .map(|(id, input)| LogicalRequest {
                messages: None,
                shape: Default::default(),
                request_id: id,
                model: "example-model".into(),
                input: input.to_owned(),
                start: std::time::Instant::now(),
            })
            .collect();
        for items in [&samples[..1], &samples[..]] {
            let body = template.render(items);
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                return Err(NewError::Template(format!(
                    "not valid JSON once the placeholders are replaced ({e}); a placeholder stands for a whole JSON value: write \"input\": {{{{input}}}}, not \"input\": \"{{{{input}}}}\". Rendered: {}",
                    String::from_utf8_lossy(&body)
                )));
            }
        }
        let expect = expect
            .map(JsonPath::parse)
            .transpose()
            .map_err(NewError::Path)?;
        Ok(Self { template, expect })
    }

    /// Whether a single-item request is sent as an array (the template has
    /// `{{inputs}}` but no `{{input}}`), so its answer is one too.
    fn single_is_array(&self) -> bool {
        !self.template.uses(&Part::Input)
    }

    /// The outputs of `n` items at the expected path: one value, or an
    /// array of `n` when the request carried an array of inputs.
    fn outputs<'a>(
        &self,
        path: &JsonPath,
        json: &'a Value,
        n: usize,
        array: bool,
    ) -> Result<Vec<&'a Value>, &'static str> {
        let found = path.find(json).ok_or("missing_json_path")?;
        if !array {
            return Ok(vec![found]);
        }
        match found {
            Value::Array(items) if items.len() == n => Ok(items.iter().collect()),
            _ => Err("wrong_length"),
        }
    }

    fn judge(
        &self,
        response: &HttpResponse,
        n: usize,
        array: bool,
        checks: Checks,
    ) -> Vec<ItemVerdict> {
        if let Some(error) = status_error(response) {
            return all_failed(n, &error);
        }
        let Some(path) = &self.expect else {
            let digest = checks.digests.then(|| output_digest(&response.body));
            return (0..n)
                .map(|_| ItemVerdict {
                    error: String::new(),
                    output_digest: digest.clone(),
                    stream: None,
                    verified: false,
                })
                .collect();
        };
        let Ok(json) = serde_json::from_slice::<Value>(&response.body) else {
            return all_failed(n, "bad_json");
        };
        match self.outputs(path, &json, n, array) {
            Ok(values) => values
                .into_iter()
                .map(|value| ItemVerdict {
                    error: String::new(),
                    output_digest: checks.digests.then(|| value_digest(value)),
                    stream: None,
                    verified: false,
                })
                .collect(),
            Err(kind) => all_failed(n, kind),
        }
    }
}

/// Why [`TemplateApi::new`] refused.
enum NewError {
    Template(String),
    Path(ApiError),
}

/// A string's own bytes (as the simulator API digests its outputs), any
/// other value's compact JSON.
fn value_digest(value: &Value) -> String {
    match value {
        Value::String(text) => output_digest(text.as_bytes()),
        other => output_digest(other.to_string().as_bytes()),
    }
}

impl Api for TemplateApi {
    fn name(&self) -> &'static str {
        "template"
    }

    fn can_verify(&self) -> bool {
        false
    }

    fn single_body(&self, item: &LogicalRequest) -> Vec<u8> {
        self.template.render(std::slice::from_ref(item))
    }

    fn batch_body(&self, items: &[LogicalRequest]) -> Vec<u8> {
        self.template.render(items)
    }

    fn needs_body(&self, _shape: Shape, checks: Checks) -> bool {
        checks.digests || self.expect.is_some()
    }

    fn judge_single(
        &self,
        response: &mut HttpResponse,
        _item: &LogicalRequest,
        checks: Checks,
    ) -> ItemVerdict {
        self.judge(response, 1, self.single_is_array(), checks)
            .pop()
            .unwrap_or_else(super::no_verdict)
    }

    fn judge_batch(
        &self,
        response: &mut HttpResponse,
        items: &[LogicalRequest],
        checks: Checks,
    ) -> Vec<ItemVerdict> {
        self.judge(response, items.len(), true, checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{item, response};

    const DIGESTS: Checks = Checks {
        verify: false,
        digests: true,
    };

    fn api(text: &str, path: Option<&str>, batch: usize) -> Result<TemplateApi, String> {
        TemplateApi::new(text, path, batch).map_err(|e| match e {
            NewError::Template(reason) => reason,
            NewError::Path(e) => e.to_string(),
        })
    }

    fn items(inputs: &[&str]) -> Vec<LogicalRequest> {
        inputs
            .iter()
            .enumerate()
            .map(|(k, i)| LogicalRequest {
                messages: None,
                shape: Default::default(),
                request_id: 7 + k as u64,
                ..item("m\"x", i)
            })
            .collect()
    }

    #[test]
    fn placeholders_become_json_values() {
        let t = api(
            r#"{"model": {{model}}, "id": {{ id }}, "inputs": {{inputs}}, "first": {{input}}}"#,
            None,
            4,
        )
        .unwrap();
        let body = t.batch_body(&items(&["a\"b", "c\nd"]));
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"model": "m\"x", "id": "7", "inputs": ["a\"b", "c\nd"], "first": "a\"b"})
        );
        // A single request through an {{inputs}}-only template is an array of one.
        let t = api(r#"{"inputs": {{inputs}}}"#, None, 1).unwrap();
        assert_eq!(t.single_body(&items(&["a"])[0]), br#"{"inputs": ["a"]}"#);
    }

    #[test]
    fn a_template_equivalent_to_the_simulator_sends_its_bytes() {
        let sim = super::super::simulator::Simulator;
        let single = api(r#"{"model":{{model}},"input":{{input}}}"#, None, 1).unwrap();
        let batch = api(r#"{"model":{{model}},"inputs":{{inputs}}}"#, None, 3).unwrap();
        let xs = items(&["plain", "needs \"escaping\"\t", "ünï"]);
        assert_eq!(single.single_body(&xs[1]), sim.single_body(&xs[1]));
        assert_eq!(batch.batch_body(&xs), sim.batch_body(&xs));
    }

    #[test]
    fn bad_templates_are_refused_before_any_request() {
        let err = api(r#"{"x": {{prompt}}, "input": {{input}}}"#, None, 1).unwrap_err();
        assert!(
            err.starts_with("unknown placeholder {{prompt}} at line 1"),
            "{err}"
        );
        assert!(
            err.contains("{{input}}, {{inputs}}, {{model}}, {{id}}"),
            "{err}"
        );
        let err = api("{\n\"a\": {{input}", None, 1).unwrap_err();
        assert!(err.contains("line 2 is never closed"), "{err}");
        let err = api(r#"{"input": "{{input}}"}"#, None, 1).unwrap_err();
        assert!(
            err.contains("not valid JSON") && err.contains("whole JSON value"),
            "{err}"
        );
        let err = api(r#"{"input": {{input}}}"#, None, 2).unwrap_err();
        assert!(err.contains("needs an {{inputs}} placeholder"), "{err}");
        let err = api(r#"{"model": {{model}}}"#, None, 1).unwrap_err();
        assert!(err.contains("neither"), "{err}");
        let err = api(r#"{"input": {{input}}}"#, Some("a..b"), 1).unwrap_err();
        assert!(err.contains("separated by dots"), "{err}");
    }

    #[test]
    fn json_paths_find_keys_and_indices() {
        let doc = serde_json::json!({"data": [{"embedding": [1, 2]}], "outputs": ["x"]});
        let find = |p: &str| JsonPath::parse(p).unwrap().find(&doc).cloned();
        assert_eq!(find("outputs"), Some(serde_json::json!(["x"])));
        assert_eq!(find("data.0.embedding"), Some(serde_json::json!([1, 2])));
        assert_eq!(find("$.data[0].embedding.1"), Some(serde_json::json!(2)));
        assert_eq!(find("data.1"), None);
        assert_eq!(find("outputs.x"), None);
    }

    #[test]
    fn responses_are_judged_by_status_and_path() {
        let t = api(r#"{"inputs": {{inputs}}}"#, Some("outputs"), 2).unwrap();
        let xs = items(&["a", "b"]);
        let ok = t.judge_batch(
            &mut response(200, r#"{"outputs":["A",{"k":1}]}"#),
            &xs,
            DIGESTS,
        );
        assert_eq!(ok[0].error, "");
        assert_eq!(ok[0].output_digest, Some(output_digest(b"A")));
        assert_eq!(ok[1].output_digest, Some(output_digest(br#"{"k":1}"#)));
        let kinds = |status, body| {
            t.judge_batch(&mut response(status, body), &xs, DIGESTS)
                .into_iter()
                .map(|v| v.error)
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(200, r#"{"outputs":["A"]}"#), ["wrong_length"; 2]);
        assert_eq!(kinds(200, r#"{"results":[]}"#), ["missing_json_path"; 2]);
        assert_eq!(kinds(200, "not json"), ["bad_json"; 2]);
        assert_eq!(kinds(429, r#"{"outputs":["A","B"]}"#), ["http_429"; 2]);
        // Without a path any 2xx passes and the body is the digest.
        let t = api(r#"{"input": {{input}}}"#, None, 1).unwrap();
        let v = t.judge_single(&mut response(200, "anything"), &xs[0], DIGESTS);
        assert_eq!(
            v,
            ItemVerdict {
                error: String::new(),
                output_digest: Some(output_digest(b"anything")),
                stream: None,
                verified: false,
            }
        );
        // A single {{input}} request: the value at the path is its output.
        let t = api(r#"{"input": {{input}}}"#, Some("output"), 1).unwrap();
        let v = t.judge_single(&mut response(200, r#"{"output":"A"}"#), &xs[0], DIGESTS);
        assert_eq!(v.output_digest, Some(output_digest(b"A")));
    }
}
