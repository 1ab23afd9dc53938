//! KServe v2 over gRPC, as NVIDIA Triton serves it (service
//! `inference.GRPCInferenceService`, port 8001 by default): the protobuf
//! messages, a client and a server stub, and the encodings the protocol
//! leaves to the peers (feature `grpc`).
//!
//! The messages and stubs are generated from `proto/grpc_service.proto` and
//! `proto/model_config.proto`, whose field names and numbers are those of
//! the KServe v2 / Triton specification, so a real Triton interoperates.
//! The generated code is committed (`src/kserve_grpc/inference.rs`): a
//! build runs no proto compiler; `tests/grpc_codegen.rs` checks it is what
//! the .proto files generate and says how to regenerate it.
//!
//! - [`GrpcInferenceServiceClient`] is generic over its transport: give it
//!   a `tonic::transport::Channel` (tonic's `channel` feature) or any other
//!   gRPC service.
//! - [`GrpcInferenceServiceServer`] wraps a [`GrpcInferenceService`]
//!   implementation into a tower service that any HTTP/2 server can run.
//! - Tensor elements travel either in [`InferTensorContents`]' typed fields
//!   or as raw little-endian bytes (`raw_input_contents`,
//!   `raw_output_contents`), which Triton's clients send by default and its
//!   server always answers with: [`encode_bytes_elements`] and
//!   [`decode_bytes_elements`] (a 4-byte little-endian length before each
//!   element), [`decode_fp32`], [`decode_int64`] and their encoders.
//! - A decoupled model (an LLM streaming tokens) answers one request with
//!   any number of responses on `ModelStreamInfer`; each carries the
//!   parameter [`FINAL_RESPONSE_PARAMETER`], true on the last, which is an
//!   empty response when the request asked for it with
//!   [`ENABLE_EMPTY_FINAL_RESPONSE_PARAMETER`].
//!
//! ```
//! use model::kserve_grpc::{decode_bytes_elements, encode_bytes_elements};
//!
//! let raw = encode_bytes_elements(["ab", ""]);
//! assert_eq!(raw, [2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0]);
//! assert_eq!(decode_bytes_elements(&raw).unwrap(), [&b"ab"[..], &b""[..]]);
//! ```

use crate::kserve;

/// The code generated from `proto/*.proto` (package `inference`).
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
mod generated {
    include!("kserve_grpc/inference.rs");
}

pub use generated::*;
pub use grpc_inference_service_client::GrpcInferenceServiceClient;
pub use grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};

/// The port Triton serves gRPC on unless told otherwise.
pub const DEFAULT_GRPC_PORT: u16 = 8001;

/// The response parameter of `ModelStreamInfer` that says whether a
/// response is the last one for its request (a `bool_param`).
pub const FINAL_RESPONSE_PARAMETER: &str = "triton_final_response";

/// The request parameter (a `bool_param`) that asks a decoupled model for
/// an empty last response carrying [`FINAL_RESPONSE_PARAMETER`] = true, so
/// the client learns a request's end even when the model ends it without
/// an output.
pub const ENABLE_EMPTY_FINAL_RESPONSE_PARAMETER: &str = "triton_enable_empty_final_response";

/// Why raw tensor contents could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawContentsError {
    /// A BYTES element's length prefix or bytes run past the end.
    #[error("raw BYTES contents end inside element {element} (each element is a 4-byte little-endian length, then that many bytes)")]
    Truncated {
        /// Index of the element cut short.
        element: usize,
    },
    /// Fixed-width contents whose length is not a multiple of the width.
    #[error(
        "raw {datatype} contents of {bytes} bytes are not a whole number of {width}-byte elements"
    )]
    Ragged {
        /// The datatype's protocol name.
        datatype: &'static str,
        /// Bytes received.
        bytes: usize,
        /// Bytes per element.
        width: usize,
    },
}

/// BYTES elements as raw contents: each one a 4-byte little-endian length
/// and then its bytes.
pub fn encode_bytes_elements<I, E>(elements: I) -> Vec<u8>
where
    I: IntoIterator<Item = E>,
    E: AsRef<[u8]>,
{
    let mut raw = Vec::new();
    for element in elements {
        let element = element.as_ref();
        // An element over 4 GiB cannot be framed; gRPC's message limits
        // refuse far smaller ones anyway.
        let len = u32::try_from(element.len()).unwrap_or(u32::MAX);
        raw.extend_from_slice(&len.to_le_bytes());
        raw.extend_from_slice(&element[..len as usize]);
    }
    raw
}

/// The BYTES elements of raw contents.
pub fn decode_bytes_elements(raw: &[u8]) -> Result<Vec<&[u8]>, RawContentsError> {
    let mut elements = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let truncated = RawContentsError::Truncated {
            element: elements.len(),
        };
        let (len, tail) = rest.split_first_chunk::<4>().ok_or(truncated.clone())?;
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            return Err(truncated);
        }
        let (element, tail) = tail.split_at(len);
        elements.push(element);
        rest = tail;
    }
    Ok(elements)
}

/// FP32 elements as raw contents (little-endian).
pub fn encode_fp32(elements: &[f32]) -> Vec<u8> {
    elements.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The FP32 elements of raw contents.
pub fn decode_fp32(raw: &[u8]) -> Result<Vec<f32>, RawContentsError> {
    let (chunks, rest) = raw.as_chunks::<4>();
    if !rest.is_empty() {
        return Err(RawContentsError::Ragged {
            datatype: "FP32",
            bytes: raw.len(),
            width: 4,
        });
    }
    Ok(chunks.iter().map(|c| f32::from_le_bytes(*c)).collect())
}

/// INT64 elements as raw contents (little-endian).
pub fn encode_int64(elements: &[i64]) -> Vec<u8> {
    elements.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The INT64 elements of raw contents.
pub fn decode_int64(raw: &[u8]) -> Result<Vec<i64>, RawContentsError> {
    let (chunks, rest) = raw.as_chunks::<8>();
    if !rest.is_empty() {
        return Err(RawContentsError::Ragged {
            datatype: "INT64",
            bytes: raw.len(),
            width: 8,
        });
    }
    Ok(chunks.iter().map(|c| i64::from_le_bytes(*c)).collect())
}

impl InferParameter {
    /// A boolean parameter.
    pub fn from_bool(value: bool) -> Self {
        Self {
            parameter_choice: Some(infer_parameter::ParameterChoice::BoolParam(value)),
        }
    }

    /// An integer parameter.
    pub fn from_int64(value: i64) -> Self {
        Self {
            parameter_choice: Some(infer_parameter::ParameterChoice::Int64Param(value)),
        }
    }

    /// The value, if it is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self.parameter_choice {
            Some(infer_parameter::ParameterChoice::BoolParam(value)) => Some(value),
            _ => None,
        }
    }
}

impl ModelInferResponse {
    /// Whether this is the last response for its request, as its
    /// [`FINAL_RESPONSE_PARAMETER`] says; `None` when it does not say (a
    /// unary `ModelInfer` response).
    pub fn is_final_response(&self) -> Option<bool> {
        self.parameters
            .get(FINAL_RESPONSE_PARAMETER)
            .and_then(InferParameter::as_bool)
    }
}

impl From<kserve::Datatype> for DataType {
    fn from(datatype: kserve::Datatype) -> Self {
        match datatype {
            kserve::Datatype::Bytes => DataType::TypeString,
            kserve::Datatype::Fp32 => DataType::TypeFp32,
            kserve::Datatype::Int64 => DataType::TypeInt64,
        }
    }
}

impl From<kserve::Duration> for StatisticDuration {
    fn from(d: kserve::Duration) -> Self {
        Self {
            count: d.count,
            ns: d.ns,
        }
    }
}

impl From<StatisticDuration> for kserve::Duration {
    fn from(d: StatisticDuration) -> Self {
        Self {
            count: d.count,
            ns: d.ns,
        }
    }
}

/// An absent duration reads as zero, as in the JSON statistics.
fn duration(d: Option<StatisticDuration>) -> kserve::Duration {
    d.map(Into::into).unwrap_or_default()
}

impl From<&kserve::ModelStats> for ModelStatistics {
    fn from(stats: &kserve::ModelStats) -> Self {
        let s = &stats.inference_stats;
        Self {
            name: stats.name.clone(),
            version: stats.version.clone(),
            last_inference: 0,
            inference_count: stats.inference_count,
            execution_count: stats.execution_count,
            inference_stats: Some(InferStatistics {
                success: Some(s.success.into()),
                fail: Some(s.fail.into()),
                queue: Some(s.queue.into()),
                compute_input: Some(s.compute_input.into()),
                compute_infer: Some(s.compute_infer.into()),
                compute_output: Some(s.compute_output.into()),
            }),
            batch_stats: stats
                .batch_stats
                .iter()
                .map(|b| InferBatchStatistics {
                    batch_size: b.batch_size,
                    compute_input: Some(b.compute_input.into()),
                    compute_infer: Some(b.compute_infer.into()),
                    compute_output: Some(b.compute_output.into()),
                })
                .collect(),
        }
    }
}

impl From<&ModelStatistics> for kserve::ModelStats {
    fn from(stats: &ModelStatistics) -> Self {
        let s = stats.inference_stats.unwrap_or_default();
        Self {
            name: stats.name.clone(),
            version: stats.version.clone(),
            inference_count: stats.inference_count,
            execution_count: stats.execution_count,
            inference_stats: kserve::InferenceStats {
                success: duration(s.success),
                fail: duration(s.fail),
                queue: duration(s.queue),
                compute_input: duration(s.compute_input),
                compute_infer: duration(s.compute_infer),
                compute_output: duration(s.compute_output),
            },
            batch_stats: stats
                .batch_stats
                .iter()
                .map(|b| kserve::BatchStats {
                    batch_size: b.batch_size,
                    compute_input: duration(b.compute_input),
                    compute_infer: duration(b.compute_infer),
                    compute_output: duration(b.compute_output),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn raw_bytes_elements_round_trip_and_refuse_cut_contents() {
        let elements = ["Request 7: hello", "", "ünïcode"];
        let raw = encode_bytes_elements(elements);
        assert_eq!(
            raw.len(),
            4 * 3 + elements.iter().map(|e| e.len()).sum::<usize>()
        );
        assert_eq!(&raw[..4], &16u32.to_le_bytes());
        let decoded = decode_bytes_elements(&raw).unwrap();
        assert_eq!(decoded, elements.map(str::as_bytes));
        assert_eq!(decode_bytes_elements(&[]).unwrap(), Vec::<&[u8]>::new());
        // A length prefix cut short, and a length past the end.
        assert_eq!(
            decode_bytes_elements(&raw[..raw.len() - 1]),
            Err(RawContentsError::Truncated { element: 2 })
        );
        assert_eq!(
            decode_bytes_elements(&[1, 0, 0]),
            Err(RawContentsError::Truncated { element: 0 })
        );
    }

    #[test]
    fn raw_numbers_are_little_endian() {
        let raw = encode_fp32(&[1.0, -0.5]);
        assert_eq!(raw, [0, 0, 0x80, 0x3f, 0, 0, 0, 0xbf]);
        assert_eq!(decode_fp32(&raw).unwrap(), [1.0, -0.5]);
        assert!(matches!(
            decode_fp32(&raw[..7]),
            Err(RawContentsError::Ragged { width: 4, .. })
        ));
        let raw = encode_int64(&[1, -2]);
        assert_eq!(&raw[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&raw[8..], &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode_int64(&raw).unwrap(), [1, -2]);
        assert!(decode_int64(&raw[..9]).is_err());
    }

    /// Field numbers checked against hand-encoded protobuf: a change of
    /// number in the .proto files breaks the wire, and this catches it.
    #[test]
    fn field_numbers_are_the_specifications() {
        // ModelInferRequest: model_name = 1, id = 3, inputs = 5,
        // raw_input_contents = 7; InferInputTensor: name = 1,
        // datatype = 2, shape = 3 (packed).
        let request = ModelInferRequest {
            model_name: "m".into(),
            id: "i".into(),
            inputs: vec![model_infer_request::InferInputTensor {
                name: "x".into(),
                datatype: "BYTES".into(),
                shape: vec![1, 1],
                ..Default::default()
            }],
            raw_input_contents: vec![bytes::Bytes::from_static(b"r")],
            ..Default::default()
        };
        let tensor = [
            0x0a, 1, b'x', 0x12, 5, b'B', b'Y', b'T', b'E', b'S', 0x1a, 2, 1, 1,
        ];
        let mut expected = vec![0x0a, 1, b'm', 0x1a, 1, b'i', 0x2a, tensor.len() as u8];
        expected.extend_from_slice(&tensor);
        expected.extend_from_slice(&[0x3a, 1, b'r']);
        assert_eq!(request.encode_to_vec(), expected);
        // ModelStreamInferResponse: error_message = 1, infer_response = 2;
        // ModelInferResponse.parameters = 4 (a map entry: key = 1,
        // value = 2), InferParameter.bool_param = 1.
        let mut response = ModelInferResponse::default();
        response.parameters.insert(
            FINAL_RESPONSE_PARAMETER.into(),
            InferParameter::from_bool(true),
        );
        let stream = ModelStreamInferResponse {
            error_message: "e".into(),
            infer_response: Some(response),
        };
        let key = FINAL_RESPONSE_PARAMETER.as_bytes();
        let mut entry = vec![0x0a, key.len() as u8];
        entry.extend_from_slice(key);
        entry.extend_from_slice(&[0x12, 2, 0x08, 1]);
        let mut inner = vec![0x22, entry.len() as u8];
        inner.extend_from_slice(&entry);
        let mut expected = vec![0x0a, 1, b'e', 0x12, inner.len() as u8];
        expected.extend_from_slice(&inner);
        assert_eq!(stream.encode_to_vec(), expected);
        // ModelConfig: max_batch_size = 4, dynamic_batching = 11,
        // model_transaction_policy = 19 (two-byte tag), and DataType
        // TYPE_STRING = 13 in ModelInput.data_type = 2.
        let config = ModelConfig {
            max_batch_size: 8,
            input: vec![ModelInput {
                data_type: DataType::TypeString as i32,
                ..Default::default()
            }],
            dynamic_batching: Some(ModelDynamicBatching {
                preferred_batch_size: vec![4],
                max_queue_delay_microseconds: 100,
            }),
            model_transaction_policy: Some(ModelTransactionPolicy { decoupled: true }),
            ..Default::default()
        };
        assert_eq!(
            config.encode_to_vec(),
            [
                0x20, 8, // max_batch_size
                0x2a, 2, 0x10, 13, // input { data_type }
                0x5a, 5, 0x0a, 1, 4, 0x10, 100, // dynamic_batching
                0x9a, 0x01, 2, 0x08, 1, // model_transaction_policy { decoupled }
            ]
        );
        // ModelStatistics: inference_count = 4, execution_count = 5,
        // inference_stats = 6 { success = 1 { count = 1, ns = 2 } },
        // batch_stats = 7 { batch_size = 1 }.
        let stats = ModelStatistics {
            inference_count: 3,
            execution_count: 2,
            inference_stats: Some(InferStatistics {
                success: Some(StatisticDuration { count: 1, ns: 9 }),
                ..Default::default()
            }),
            batch_stats: vec![InferBatchStatistics {
                batch_size: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            stats.encode_to_vec(),
            [0x20, 3, 0x28, 2, 0x32, 6, 0x0a, 4, 0x08, 1, 0x10, 9, 0x3a, 2, 0x08, 2]
        );
    }

    #[test]
    fn statistics_convert_both_ways() {
        let json = kserve::ModelStats {
            name: "m".into(),
            version: "1".into(),
            inference_count: 5,
            execution_count: 2,
            inference_stats: kserve::InferenceStats {
                success: kserve::Duration { count: 3, ns: 30 },
                queue: kserve::Duration { count: 3, ns: 9 },
                ..Default::default()
            },
            batch_stats: vec![kserve::BatchStats {
                batch_size: 4,
                compute_infer: kserve::Duration { count: 1, ns: 7 },
                ..Default::default()
            }],
        };
        let proto = ModelStatistics::from(&json);
        assert_eq!(proto.inference_stats.unwrap().queue.unwrap().ns, 9);
        assert_eq!(kserve::ModelStats::from(&proto), json);
        // Absent durations (as a server may send) read as zero.
        let sparse = ModelStatistics {
            name: "m".into(),
            ..Default::default()
        };
        assert_eq!(
            kserve::ModelStats::from(&sparse).inference_stats,
            kserve::InferenceStats::default()
        );
    }

    #[test]
    fn the_final_flag_is_read_from_the_parameters() {
        let mut response = ModelInferResponse::default();
        assert_eq!(response.is_final_response(), None);
        response.parameters.insert(
            FINAL_RESPONSE_PARAMETER.into(),
            InferParameter::from_bool(false),
        );
        assert_eq!(response.is_final_response(), Some(false));
        response.parameters.insert(
            FINAL_RESPONSE_PARAMETER.into(),
            InferParameter::from_int64(1),
        );
        assert_eq!(response.is_final_response(), None);
        assert_eq!(
            DataType::from(kserve::Datatype::Bytes).as_str_name(),
            "TYPE_STRING"
        );
    }
}
