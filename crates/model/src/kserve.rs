//! The KServe v2 (Open Inference Protocol) JSON messages that NVIDIA Triton
//! and other servers speak, and Triton's statistics extension: what
//! `loadgen --api kserve-v2` sends and reads, and what `stub-server`
//! answers on its `/v2/...` routes.
//!
//! - `POST /v2/models/{m}/infer`: [`InferRequest`] -> [`InferResponse`];
//!   tensors carry `name`, `shape`, `datatype` and flat row-major `data`.
//!   A model that batches has `-1` as the first dimension of its metadata
//!   shapes, and a request stacks its items along that dimension.
//! - `GET /v2/models/{m}`: [`ModelMetadata`].
//! - `GET /v2/models/{m}/stats`: [`ModelStatsResponse`] (Triton's
//!   statistics extension: cumulative counts and nanoseconds).
//! - Errors: [`ErrorResponse`], `{"error": "..."}`.
//!
//! Unknown fields are ignored on reading (servers add their own), and
//! optional ones default, so real servers' answers parse.

use serde::{Deserialize, Serialize};

/// A tensor datatype the toolkit sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    /// Strings (Triton's `TYPE_STRING`).
    Bytes,
    /// 32-bit floats.
    Fp32,
    /// 64-bit integers.
    Int64,
}

impl Datatype {
    /// The protocol's name: `BYTES`, `FP32`, `INT64`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bytes => "BYTES",
            Self::Fp32 => "FP32",
            Self::Int64 => "INT64",
        }
    }

    /// The datatype a protocol name stands for, if the toolkit sends it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "BYTES" => Some(Self::Bytes),
            "FP32" => Some(Self::Fp32),
            "INT64" => Some(Self::Int64),
            _ => None,
        }
    }
}

/// One tensor of a request or a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    /// The tensor's name in the model's metadata.
    pub name: String,
    /// Dimensions; the product is the number of elements in `data`.
    pub shape: Vec<i64>,
    /// `BYTES`, `FP32`, `INT64`, ...
    pub datatype: String,
    /// Elements, flat and row-major: strings for `BYTES`, numbers otherwise.
    #[serde(default)]
    pub data: Vec<serde_json::Value>,
}

/// An output the client asks for by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestedOutput {
    /// The output's name.
    pub name: String,
}

/// The body of `POST /v2/models/{m}/infer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferRequest {
    /// An id the server echoes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The input tensors.
    pub inputs: Vec<Tensor>,
    /// The outputs wanted (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<RequestedOutput>>,
}

/// The answer to an inference request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferResponse {
    /// The model that answered.
    pub model_name: String,
    /// Its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// The request's id, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The output tensors.
    pub outputs: Vec<Tensor>,
}

/// A tensor as metadata describes it (no data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorMetadata {
    /// The tensor's name.
    pub name: String,
    /// Its datatype.
    pub datatype: String,
    /// Its shape; `-1` is a variable dimension (the first one, for a
    /// model that batches).
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{m}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// The model's name.
    pub name: String,
    /// Its versions.
    #[serde(default)]
    pub versions: Vec<String>,
    /// Its backend (`python`, `onnxruntime`, ...).
    #[serde(default)]
    pub platform: String,
    /// Its inputs.
    pub inputs: Vec<TensorMetadata>,
    /// Its outputs.
    pub outputs: Vec<TensorMetadata>,
}

/// The part of `GET /v2/models/{m}/config` the toolkit reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The model's name.
    #[serde(default)]
    pub name: String,
    /// Largest batch the model accepts; 0: it does not batch.
    #[serde(default)]
    pub max_batch_size: u64,
    /// Present when the dynamic batcher is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_batching: Option<DynamicBatching>,
}

/// Triton's dynamic batcher settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DynamicBatching {
    /// Batch sizes the batcher tries to form first.
    #[serde(default)]
    pub preferred_batch_size: Vec<u64>,
    /// How long a request may wait for a batch to fill, us.
    #[serde(default)]
    pub max_queue_delay_microseconds: u64,
}

/// A count and the nanoseconds spent, Triton's statistic unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Duration {
    /// How many.
    #[serde(default)]
    pub count: u64,
    /// Nanoseconds over all of them.
    #[serde(default)]
    pub ns: u64,
}

/// Per-request statistics (each counted once per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InferenceStats {
    /// Requests that succeeded, and their time in the server.
    #[serde(default)]
    pub success: Duration,
    /// Requests that failed.
    #[serde(default)]
    pub fail: Duration,
    /// Time waiting in the scheduler's queue.
    #[serde(default)]
    pub queue: Duration,
    /// Time copying inputs to the model.
    #[serde(default)]
    pub compute_input: Duration,
    /// Time executing the model.
    #[serde(default)]
    pub compute_infer: Duration,
    /// Time copying outputs back.
    #[serde(default)]
    pub compute_output: Duration,
}

/// Executions of one batch size (each counted once per execution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BatchStats {
    /// The executed batch size.
    pub batch_size: u64,
    /// Input copies of batches of this size.
    #[serde(default)]
    pub compute_input: Duration,
    /// Executions of batches of this size.
    #[serde(default)]
    pub compute_infer: Duration,
    /// Output copies of batches of this size.
    #[serde(default)]
    pub compute_output: Duration,
}

/// One model version's statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ModelStats {
    /// The model's name.
    pub name: String,
    /// Its version.
    #[serde(default)]
    pub version: String,
    /// Requests that succeeded (a request of B items counts once).
    #[serde(default)]
    pub inference_count: u64,
    /// Model executions (a batch counts once).
    #[serde(default)]
    pub execution_count: u64,
    /// Per-request statistics.
    #[serde(default)]
    pub inference_stats: InferenceStats,
    /// Per-execution statistics by batch size.
    #[serde(default)]
    pub batch_stats: Vec<BatchStats>,
}

/// `GET /v2/models/{m}/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ModelStatsResponse {
    /// One entry per model version.
    pub model_stats: Vec<ModelStats>,
}

/// A model's statistics around one run: snapshots before and after and
/// their difference (what `loadgen --server-stats FILE` writes and `report
/// compare --before-server-stats FILE` reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatsDelta {
    /// The statistics endpoint.
    pub path: String,
    /// Before the load.
    pub before: ModelStats,
    /// After it.
    pub after: ModelStats,
    /// `after - before`: what this run cost the server.
    pub delta: ModelStats,
}

/// An error answer: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: String,
}

/// The path of a model's resource under a base path (`""` or `/prefix`):
/// `""` for the metadata, `"infer"`, `"config"`, `"stats"`.
pub fn model_path(base: &str, model: &str, resource: &str) -> String {
    let base = base.trim_end_matches('/');
    if resource.is_empty() {
        format!("{base}/v2/models/{model}")
    } else {
        format!("{base}/v2/models/{model}/{resource}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tritons_answers_parse() {
        // Shapes as Triton 2.51 writes them (extra fields ignored).
        let metadata: ModelMetadata = serde_json::from_str(
            r#"{"name":"m","versions":["1"],"platform":"python","inputs":[{"name":"input","datatype":"BYTES","shape":[-1,1]}],"outputs":[{"name":"output","datatype":"BYTES","shape":[-1,1]}]}"#,
        )
        .unwrap();
        assert_eq!(metadata.inputs[0].shape, vec![-1, 1]);
        let response: InferResponse = serde_json::from_str(
            r#"{"model_name":"m","model_version":"1","outputs":[{"name":"output","datatype":"BYTES","shape":[2,1],"data":["a","b"]}]}"#,
        )
        .unwrap();
        assert_eq!(response.outputs[0].data.len(), 2);
        let stats: ModelStatsResponse = serde_json::from_str(
            r#"{"model_stats":[{"name":"m","version":"1","last_inference":1,"inference_count":3,"execution_count":2,"inference_stats":{"success":{"count":3,"ns":30},"queue":{"count":3,"ns":9}},"batch_stats":[{"batch_size":1,"compute_infer":{"count":1,"ns":5}}]}]}"#,
        )
        .unwrap();
        assert_eq!(stats.model_stats[0].inference_stats.queue.ns, 9);
        assert_eq!(stats.model_stats[0].batch_stats[0].compute_infer.count, 1);
        assert_eq!(
            model_path("/triton/", "m", "infer"),
            "/triton/v2/models/m/infer"
        );
        assert_eq!(model_path("", "m", ""), "/v2/models/m");
    }
}
