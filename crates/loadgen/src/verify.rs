//! What every API's judging produces: a verdict per logical request, and
//! the checks a run asks for. The judging itself lives with each request
//! format in [`crate::api`].

/// What came back for one logical request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ItemVerdict {
    /// Empty when the item succeeded, else the error kind.
    pub error: String,
    /// Digest of the item's output, when an output was found (for the
    /// simulator: the decoded output string's UTF-8 bytes, not its quoted
    /// form).
    pub output_digest: Option<String>,
    /// What a streamed (or token-counting) API measured of the answer.
    pub stream: Option<StreamedItem>,
    /// The output was compared with its expected output and matched (a
    /// row says so in its `verified` column; a mismatch is an error).
    pub verified: bool,
}

impl ItemVerdict {
    /// A verdict with `error` (empty: success) and no digest.
    pub(crate) fn without_digest(error: String) -> Self {
        Self {
            error,
            output_digest: None,
            stream: None,
            verified: false,
        }
    }
}

/// The timing of one logical request's streamed answer, as it arrived;
/// the engine turns it into the row's TTFT, TPOT and gaps.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct StreamedItem {
    /// When the read that completed the first content delta returned.
    pub first_token_at: Option<std::time::Instant>,
    /// Gaps between consecutive content deltas, ms.
    pub itl_ms: Vec<f64>,
    /// Output tokens, when known.
    pub output_tokens: Option<u64>,
    /// Where `output_tokens` came from.
    pub tokens_from: Option<model::log::TokensFrom>,
    /// The server's `usage.prompt_tokens`, when it sent it.
    pub prompt_tokens: Option<u64>,
    /// The answer's text, when the request asked for it back (a
    /// conversation's next turn carries it).
    pub answer: Option<String>,
}

/// What to check and keep of each response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checks {
    /// Compare each output with its expected output (only APIs that know
    /// them, see [`crate::api::Api::can_verify`]).
    pub verify: bool,
    /// Compute output digests. They only reach the per-request log, so a
    /// run without one skips hashing and, when nothing is verified either,
    /// parsing single responses: the work would be invisible and would only
    /// inflate the client's cost per request.
    pub digests: bool,
}

impl Checks {
    /// Whether `Server-Timing` is read: its durations, like digests, only
    /// reach the per-request log, which is written exactly when digests
    /// are computed.
    pub(crate) fn server_timing(self) -> bool {
        self.digests
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use bytes::Bytes;
    use http::StatusCode;

    use crate::client::HttpResponse;
    use crate::engine::LogicalRequest;

    /// A complete response with `status` and `body`.
    pub(crate) fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            facts: crate::client::ServerFacts::default(),
            body: Bytes::from(body.to_owned()),
            finished_at: Instant::now(),
            connect_ms: 0.0,
            tls_ms: None,
            reader: None,
            retries: 0,
        }
    }

    /// Logical request 0 for `model` with `input`.
    pub(crate) fn item(model: &str, input: &str) -> LogicalRequest {
        LogicalRequest {
            messages: None,
            request_id: 0,
            model: Arc::from(model),
            input: input.to_owned(),
            start: Instant::now(),
            shape: crate::engine::RequestShape::default(),
        }
    }
}
