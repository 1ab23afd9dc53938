//! JSON bodies of `POST /v1/infer` and the error body, with strict parsing.

use serde::{Deserialize, Serialize};

/// Header that carries the size of the batch the server executed.
pub const BATCH_SIZE_HEADER: &str = "x-batch-size";

/// Header that carries the server's queue and inference durations.
pub const SERVER_TIMING_HEADER: &str = "server-timing";

/// `{"model": "...", "input": "..."}`: one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SingleRequest {
    /// Model name.
    pub model: String,
    /// The one input.
    pub input: String,
}

/// `{"model": "...", "inputs": ["...", ...]}`: several inputs in one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRequest {
    /// Model name.
    pub model: String,
    /// The inputs, answered in the same order.
    pub inputs: Vec<String>,
}

/// `{"model": "...", "output": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SingleResponse {
    /// Model name.
    pub model: String,
    /// The output for the request's input.
    pub output: String,
}

/// `{"model": "...", "outputs": ["...", ...]}`, one output per input, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// Model name.
    pub model: String,
    /// One output per input, in the request's order.
    pub outputs: Vec<String>,
}

/// `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// A machine-readable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code, for example `malformed_json` or `queue_full`.
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body from a code and a message.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }
}

/// A request body that parsed and passed the shape checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InferRequest {
    /// One input.
    Single(SingleRequest),
    /// Several inputs.
    Batch(BatchRequest),
}

/// Why a request body was refused; each maps to HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not JSON, or a field has the wrong type.
    #[error("request body is not valid JSON for /v1/infer: {0}")]
    MalformedJson(String),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// Both `input` and `inputs` were given.
    #[error("give either `input` or `inputs`, not both")]
    ConflictingFields,
    /// `inputs` is an empty list.
    #[error("`inputs` must hold at least one input")]
    EmptyInputs,
}

impl RequestError {
    /// The stable code that goes into [`ErrorDetail::code`].
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::MissingField(_) => "missing_field",
            Self::ConflictingFields => "conflicting_fields",
            Self::EmptyInputs => "empty_inputs",
        }
    }
}

/// Every field either shape may carry; unknown fields are ignored, as most
/// inference APIs do.
#[derive(Deserialize)]
struct AnyRequest {
    model: Option<String>,
    input: Option<String>,
    inputs: Option<Vec<String>>,
}

impl InferRequest {
    /// Parses a request body, telling apart every way it can be wrong.
    pub fn parse(body: &[u8]) -> Result<Self, RequestError> {
        let any: AnyRequest =
            serde_json::from_slice(body).map_err(|e| RequestError::MalformedJson(e.to_string()))?;
        let model = any.model.ok_or(RequestError::MissingField("model"))?;
        match (any.input, any.inputs) {
            (Some(_), Some(_)) => Err(RequestError::ConflictingFields),
            (Some(input), None) => Ok(Self::Single(SingleRequest { model, input })),
            (None, Some(inputs)) if inputs.is_empty() => Err(RequestError::EmptyInputs),
            (None, Some(inputs)) => Ok(Self::Batch(BatchRequest { model, inputs })),
            (None, None) => Err(RequestError::MissingField("input")),
        }
    }

    /// The model the request names.
    pub fn model(&self) -> &str {
        match self {
            Self::Single(r) => &r.model,
            Self::Batch(r) => &r.model,
        }
    }

    /// The request's inputs, in order.
    pub fn inputs(&self) -> &[String] {
        match self {
            Self::Single(r) => std::slice::from_ref(&r.input),
            Self::Batch(r) => &r.inputs,
        }
    }
}

/// Compact JSON bytes of a value (the encoding httpx and serde agree on).
pub fn to_json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs of strings cannot fail; an empty body
    // would be refused by any server rather than sent silently wrong.
    serde_json::to_vec(value).unwrap_or_default()
}

/// The body of a [`SingleRequest`], byte for byte what [`to_json_bytes`]
/// writes for it, from borrowed strings.
///
/// Why not serde: a load generator builds one body per request, and serde's
/// string escaping (a table look-up per byte) plus the owned copies a
/// `SingleRequest` needs cost more user time than the rest of a request.
pub fn single_request_body(model: &str, input: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(24 + model.len() + input.len());
    body.extend_from_slice(br#"{"model":"#);
    push_json_str(&mut body, model);
    body.extend_from_slice(br#","input":"#);
    push_json_str(&mut body, input);
    body.push(b'}');
    body
}

/// The body of a [`BatchRequest`], byte for byte what [`to_json_bytes`]
/// writes for it, from borrowed strings.
pub fn batch_request_body<'a>(model: &str, inputs: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(br#"{"model":"#);
    push_json_str(&mut body, model);
    body.extend_from_slice(br#","inputs":["#);
    for (k, input) in inputs.into_iter().enumerate() {
        if k > 0 {
            body.push(b',');
        }
        push_json_str(&mut body, input);
    }
    body.extend_from_slice(b"]}");
    body
}

/// Appends `text` as a JSON string. Text with nothing to escape (the common
/// case) is copied as it is; anything else goes through serde_json, so the
/// escapes are always serde's (which match Python's `json.dumps` with
/// `ensure_ascii=False`, as httpx sends).
pub fn push_json_str(out: &mut Vec<u8>, text: &str) {
    // A fold without an early exit, so the compiler vectorises the scan.
    let escapes = text.bytes().fold(false, |found, b| {
        found | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !escapes {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Queue and inference durations read from a `Server-Timing` header value
/// such as `queue;dur=12.5, infer;dur=102.0`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ServerTiming {
    /// Time the items waited in the server's queue, in ms.
    pub queue_ms: Option<f64>,
    /// Time the batch took to execute, in ms.
    pub infer_ms: Option<f64>,
}

impl ServerTiming {
    /// Parses the header; unknown metrics and malformed entries are skipped,
    /// since the header is advisory and other servers add their own.
    pub fn parse(header: &str) -> Self {
        let mut timing = Self::default();
        for metric in header.split(',') {
            let mut parts = metric.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let dur = parts
                .find_map(|p| p.strip_prefix("dur="))
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite());
            match name {
                "queue" => timing.queue_ms = dur,
                "infer" => timing.infer_ms = dur,
                _ => {}
            }
        }
        timing
    }

    /// Formats the header value the simulator sends.
    pub fn header_value(queue_ms: f64, infer_ms: f64) -> String {
        format!("queue;dur={queue_ms:.3}, infer;dur={infer_ms:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_batch() {
        let single = InferRequest::parse(br#"{"model":"m","input":"a"}"#).unwrap();
        assert_eq!(single.inputs(), ["a"]);
        assert_eq!(single.model(), "m");
        let batch = InferRequest::parse(br#"{"model":"m","inputs":["a","b"],"x":1}"#).unwrap();
        assert_eq!(batch.inputs(), ["a", "b"]);
    }

    #[test]
    fn tells_apart_every_bad_body() {
        let cases: [(&[u8], &str); 7] = [
            (b"{not json", "malformed_json"),
            (br#"{"model":"m","input":5}"#, "malformed_json"),
            (b"[]", "malformed_json"),
            (br#"{"input":"a"}"#, "missing_field"),
            (br#"{"model":"m"}"#, "missing_field"),
            (
                br#"{"model":"m","input":"a","inputs":["b"]}"#,
                "conflicting_fields",
            ),
            (br#"{"model":"m","inputs":[]}"#, "empty_inputs"),
        ];
        for (body, code) in cases {
            let err = InferRequest::parse(body).unwrap_err();
            assert_eq!(err.code(), code, "body {}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn server_timing_round_trips_and_tolerates_noise() {
        let value = ServerTiming::header_value(12.5, 102.25);
        let t = ServerTiming::parse(&value);
        assert_eq!(t.queue_ms, Some(12.5));
        assert_eq!(t.infer_ms, Some(102.25));
        let t = ServerTiming::parse("db;dur=3, infer;desc=\"x\";dur=7, queue;dur=nan, junk");
        assert_eq!(t.infer_ms, Some(7.0));
        assert_eq!(t.queue_ms, None);
    }

    #[test]
    fn request_bodies_match_serde_byte_for_byte() {
        let texts = [
            "",
            "plain text, 42",
            "quote \" backslash \\ slash /",
            "control \u{0} \u{1f} tab\t newline\n \u{7f}",
            "unicode \u{e9}\u{4e2d}\u{1f600} \u{2028}",
        ];
        for model in ["example-model", "m\"x"] {
            for input in texts {
                let serde = to_json_bytes(&SingleRequest {
                    model: model.to_owned(),
                    input: input.to_owned(),
                });
                assert_eq!(single_request_body(model, input), serde, "{input:?}");
            }
            let serde = to_json_bytes(&BatchRequest {
                model: model.to_owned(),
                inputs: texts.iter().map(|t| (*t).to_owned()).collect(),
            });
            assert_eq!(batch_request_body(model, texts), serde);
            let one = to_json_bytes(&BatchRequest {
                model: model.to_owned(),
                inputs: vec!["x".to_owned()],
            });
            assert_eq!(batch_request_body(model, ["x"]), one);
        }
    }

    #[test]
    fn error_body_has_the_documented_shape() {
        let json =
            String::from_utf8(to_json_bytes(&ErrorBody::new("queue_full", "later"))).unwrap();
        assert_eq!(json, r#"{"error":{"code":"queue_full","message":"later"}}"#);
    }
}
