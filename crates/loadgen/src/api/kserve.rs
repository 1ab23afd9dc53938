//! KServe v2, the protocol of NVIDIA Triton (`--api kserve-v2`): each
//! request is `POST {base}/v2/models/{model}/infer` with one JSON input
//! tensor; client micro-batching stacks the items along dimension 0 and
//! splits the output back per item.
//!
//! Before any load, [`KServeApi::connect`] asks the server whether it is
//! ready (`/v2/health/ready`) and what the model takes (`/v2/models/{m}`,
//! and `/config` for `max_batch_size`), so a missing model, a wrong input
//! name or datatype, or a batch the model cannot take is one clear error,
//! not a log of failed rows.
//!
//! A text input goes as a `BYTES` tensor (one string per element); `FP32`
//! and `INT64` inputs are drawn from a generator seeded by the request id,
//! so Before and After send the same tensors. A `BYTES` output is verified
//! against `model::output::expected_output` when verification is on (what
//! the simulator and the project's Triton model answer); every item's
//! digest is its output string's bytes (equal to the simulator API's
//! digest of the same output) or the compact JSON of its numbers.

use model::kserve::{
    model_path, Datatype, ErrorResponse, InferResponse, ModelConfig, ModelMetadata, TensorMetadata,
};
use model::output::{expected_output, output_digest};
use model::wire::push_json_str;
use serde_json::Value;
use stats::SplitMix64;

use super::{all_failed, status_error, Api, ApiError, Shape};
use crate::client::{HttpResponse, Transport};
use crate::engine::LogicalRequest;
use crate::verify::{Checks, ItemVerdict};

/// What the command line says about the model's input (each `None` is
/// taken from the model's metadata).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KServeOptions {
    /// The input tensor's name.
    pub input_name: Option<String>,
    /// Its datatype.
    pub input_datatype: Option<Datatype>,
    /// The shape of one item, without the batch dimension.
    pub input_shape: Option<Vec<u64>>,
    /// The output to read (the model's only or first output otherwise).
    pub output_name: Option<String>,
}

/// The tensors a run sends and reads, settled from the model's metadata
/// and the command line; the same over HTTP and gRPC.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tensors {
    pub input_name: String,
    pub datatype: Datatype,
    pub item_shape: Vec<u64>,
    /// Elements of one item (the product of `item_shape`).
    pub item_elements: usize,
    /// Whether dimension 0 is the batch dimension.
    pub batches: bool,
    pub output_name: String,
}

impl Tensors {
    /// The input's shape for `items` items: the batch dimension first when
    /// the model has one.
    pub(crate) fn shape(&self, items: usize) -> Vec<u64> {
        let mut dims = Vec::with_capacity(self.item_shape.len() + 1);
        if self.batches {
            dims.push(items as u64);
        }
        dims.extend(&self.item_shape);
        dims
    }
}

/// The generator an item's numbers come from, seeded by its request id so
/// Before and After send the same tensors.
pub(crate) fn item_numbers(request_id: u64) -> SplitMix64 {
    SplitMix64::new(request_id ^ 0x6b73_6572_7665_7632)
}

/// The next FP32 element, in millionths: six decimals of a uniform
/// [0, 1), exact in JSON and the same tensor on every run.
pub(crate) fn next_fp32_micros(numbers: &mut SplitMix64) -> u64 {
    numbers.next_u64() % 1_000_000
}

/// The next INT64 element, 0 to 999.
pub(crate) fn next_int64(numbers: &mut SplitMix64) -> u64 {
    numbers.next_u64() % 1000
}

/// The KServe v2 API, once the model's metadata is known.
#[derive(Debug, Clone)]
pub(crate) struct KServeApi {
    model: String,
    infer_path: String,
    stats_path: String,
    tensors: Tensors,
}

fn api_error(reason: String) -> ApiError {
    ApiError::KServe(reason)
}

impl KServeApi {
    /// Checks the server and the model through `probe` (the run's own
    /// target and TLS settings) and settles the input tensor.
    pub(crate) async fn connect(
        options: &KServeOptions,
        model: &str,
        base_path: &str,
        batch_size: usize,
        probe: &Transport,
    ) -> Result<Self, ApiError> {
        let base = base_path.trim_end_matches('/');
        let ready = format!("{base}/v2/health/ready");
        let (status, body) = fetch(probe, &ready).await?;
        if !status.is_success() {
            return Err(api_error(format!(
                "the server is not ready: GET {ready} answered {status}{}",
                server_words(&body)
            )));
        }
        let meta_path = model_path(base, model, "");
        let (status, body) = fetch(probe, &meta_path).await?;
        if !status.is_success() {
            return Err(api_error(format!(
                "model {model:?}: GET {meta_path} answered {status}{}",
                server_words(&body)
            )));
        }
        let metadata: ModelMetadata = serde_json::from_slice(&body).map_err(|e| {
            api_error(format!(
                "GET {meta_path}: not KServe v2 model metadata ({e})"
            ))
        })?;
        // `max_batch_size` is Triton's extension; a server without it is
        // taken at its metadata's word.
        let config_path = model_path(base, model, "config");
        let max_batch = match fetch(probe, &config_path).await {
            Ok((status, body)) if status.is_success() => {
                serde_json::from_slice::<ModelConfig>(&body)
                    .ok()
                    .map(|c| c.max_batch_size)
            }
            _ => None,
        };
        Self::from_metadata(options, model, base, batch_size, &metadata, max_batch)
    }

    /// Settles the input and output tensors from the metadata.
    fn from_metadata(
        options: &KServeOptions,
        model: &str,
        base: &str,
        batch_size: usize,
        metadata: &ModelMetadata,
        max_batch: Option<u64>,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            model: model.to_owned(),
            infer_path: model_path(base, model, "infer"),
            stats_path: model_path(base, model, "stats"),
            tensors: settle(options, model, batch_size, metadata, max_batch)?,
        })
    }
}

/// The input and output tensors of a run, from the model's metadata (and
/// `max_batch_size` from its config, where the server gives it) and what
/// the command line says: an input or output the model lacks, a datatype
/// or shape it does not take, or a batch it cannot hold is one clear
/// error.
pub(crate) fn settle(
    options: &KServeOptions,
    model: &str,
    batch_size: usize,
    metadata: &ModelMetadata,
    max_batch: Option<u64>,
) -> Result<Tensors, ApiError> {
    let names = |tensors: &[TensorMetadata]| {
        tensors
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let input = match &options.input_name {
        Some(name) => metadata
            .inputs
            .iter()
            .find(|t| &t.name == name)
            .ok_or_else(|| {
                api_error(format!(
                    "model {model:?} has no input {name:?}; its inputs are {}",
                    names(&metadata.inputs)
                ))
            })?,
        None => match metadata.inputs.as_slice() {
            [only] => only,
            [] => return Err(api_error(format!("model {model:?} declares no input"))),
            _ => {
                return Err(api_error(format!(
                    "model {model:?} has several inputs ({}); choose one with --input-name",
                    names(&metadata.inputs)
                )))
            }
        },
    };
    let declared = Datatype::from_name(&input.datatype);
    let datatype = match (options.input_datatype, declared) {
        (Some(asked), Some(declared)) if asked != declared => {
            return Err(api_error(format!(
                "input {:?} of model {model:?} is {}, not {}",
                input.name,
                declared.name(),
                asked.name()
            )))
        }
        (Some(asked), _) => asked,
        (None, Some(declared)) => declared,
        (None, None) => {
            return Err(api_error(format!(
                "input {:?} of model {model:?} is {}; this client sends BYTES, FP32 or INT64",
                input.name, input.datatype
            )))
        }
    };
    let output = match &options.output_name {
        Some(name) => metadata
            .outputs
            .iter()
            .find(|t| &t.name == name)
            .ok_or_else(|| {
                api_error(format!(
                    "model {model:?} has no output {name:?}; its outputs are {}",
                    names(&metadata.outputs)
                ))
            })?,
        None => metadata
            .outputs
            .first()
            .ok_or_else(|| api_error(format!("model {model:?} declares no output")))?,
    };
    // Triton writes the batch dimension of a batching model as -1; a
    // server that does not say is taken to batch when its config does.
    let batches = max_batch.map_or(input.shape.first() == Some(&-1), |m| m > 0);
    let declared_item: &[i64] = if batches && !input.shape.is_empty() {
        &input.shape[1..]
    } else {
        &input.shape
    };
    let item_shape: Vec<u64> = match &options.input_shape {
        Some(shape) => {
            let fits = shape.len() == declared_item.len()
                && shape
                    .iter()
                    .zip(declared_item)
                    .all(|(&given, &d)| d < 0 || given == d as u64);
            if !fits {
                return Err(api_error(format!(
                        "--input-shape {shape:?} does not fit input {:?} of model {model:?}, whose item shape is {declared_item:?} (-1: any)",
                        input.name
                    )));
            }
            shape.clone()
        }
        // A variable dimension gets 1 unless --input-shape says more.
        None => declared_item
            .iter()
            .map(|&d| if d < 0 { 1 } else { d as u64 })
            .collect(),
    };
    let item_elements = usize::try_from(item_shape.iter().product::<u64>())
        .map_err(|_| api_error("the input shape is too large".into()))?;
    if item_elements == 0 {
        return Err(api_error(format!(
            "input {:?}: an item of shape {item_shape:?} holds no element",
            input.name
        )));
    }
    if batch_size > 1 && !batches {
        return Err(api_error(format!(
                "model {model:?} does not batch (max_batch_size 0, no batch dimension in its input shape {:?}); use --batch-size 1",
                input.shape
            )));
    }
    if let Some(max) = max_batch.filter(|&m| m > 0) {
        if batch_size as u64 > max {
            return Err(api_error(format!(
                "--batch-size {batch_size} is over model {model:?}'s max_batch_size {max}"
            )));
        }
    }
    Ok(Tensors {
        input_name: input.name.clone(),
        datatype,
        item_shape,
        item_elements,
        batches,
        output_name: output.name.clone(),
    })
}

impl KServeApi {
    /// The body for `items`, stacked along dimension 0.
    fn body(&self, items: &[LogicalRequest]) -> Vec<u8> {
        let tensors = &self.tensors;
        let mut body = Vec::with_capacity(128 + items.len() * 256);
        body.extend_from_slice(br#"{"inputs":[{"name":"#);
        push_json_str(&mut body, &tensors.input_name);
        body.extend_from_slice(br#","shape":["#);
        for (k, d) in tensors.shape(items.len()).iter().enumerate() {
            if k > 0 {
                body.push(b',');
            }
            body.extend_from_slice(itoa::Buffer::new().format(*d).as_bytes());
        }
        body.extend_from_slice(br#"],"datatype":""#);
        body.extend_from_slice(tensors.datatype.name().as_bytes());
        body.extend_from_slice(br#"","data":["#);
        let mut first = true;
        for item in items {
            let mut numbers = item_numbers(item.request_id);
            for _ in 0..tensors.item_elements {
                if !first {
                    body.push(b',');
                }
                first = false;
                match tensors.datatype {
                    Datatype::Bytes => push_json_str(&mut body, &item.input),
                    Datatype::Fp32 => {
                        let micro = next_fp32_micros(&mut numbers);
                        body.extend_from_slice(format!("0.{micro:06}").as_bytes());
                    }
                    Datatype::Int64 => {
                        let value = next_int64(&mut numbers);
                        body.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
                    }
                }
            }
        }
        body.extend_from_slice(br#"]}],"outputs":[{"name":"#);
        push_json_str(&mut body, &tensors.output_name);
        body.extend_from_slice(b"}]}");
        body
    }

    /// One verdict per item from the response's output tensor.
    fn judge(
        &self,
        response: &HttpResponse,
        items: &[LogicalRequest],
        checks: Checks,
    ) -> Vec<ItemVerdict> {
        let n = items.len();
        if let Some(error) = status_error(response) {
            return all_failed(n, &error);
        }
        let Ok(answer) = serde_json::from_slice::<InferResponse>(&response.body) else {
            return all_failed(n, "bad_json");
        };
        let Some(output) = answer
            .outputs
            .iter()
            .find(|t| t.name == self.tensors.output_name)
        else {
            return all_failed(n, "missing_output");
        };
        if output.data.is_empty() || output.data.len() % n != 0 {
            return all_failed(n, "wrong_length");
        }
        if self.tensors.batches && output.shape.first().is_some_and(|&d| d != n as i64) {
            return all_failed(n, "wrong_length");
        }
        let per_item = output.data.len() / n;
        let verify = checks.verify && self.can_verify() && output.datatype == "BYTES";
        items
            .iter()
            .zip(output.data.chunks(per_item))
            .map(|(item, values)| {
                let text = match values {
                    [Value::String(text)] => Some(text.as_str()),
                    _ => None,
                };
                let error =
                    if verify && text != Some(expected_output(&self.model, &item.input).as_str()) {
                        "output_mismatch".to_owned()
                    } else {
                        String::new()
                    };
                let output_digest = checks.digests.then(|| match text {
                    Some(text) => output_digest(text.as_bytes()),
                    None => output_digest(Value::Array(values.to_vec()).to_string().as_bytes()),
                });
                ItemVerdict {
                    verified: verify && error.is_empty(),
                    error,
                    output_digest,
                    stream: None,
                }
            })
            .collect()
    }
}

/// `GET path`, its failure named.
async fn fetch(
    probe: &Transport,
    path: &str,
) -> Result<(http::StatusCode, bytes::Bytes), ApiError> {
    probe
        .get(path)
        .await
        .map_err(|e| api_error(format!("GET {path} failed before any load: {}", e.kind())))
}

/// `: <the server's message>` from a KServe error body, if it has one.
fn server_words(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorResponse>(body)
        .map(|e| format!(": {}", e.error))
        .unwrap_or_default()
}

impl Api for KServeApi {
    fn name(&self) -> &'static str {
        "kserve-v2"
    }

    /// Text inputs have known outputs (`expected_output`), numbers do not.
    fn can_verify(&self) -> bool {
        self.tensors.datatype == Datatype::Bytes
    }

    fn why_unverifiable(&self) -> String {
        format!(
            "model {}'s input is {}, and only BYTES text has the simulator's expected outputs",
            self.model,
            self.tensors.datatype.name()
        )
    }

    fn single_body(&self, item: &LogicalRequest) -> Vec<u8> {
        self.body(std::slice::from_ref(item))
    }

    fn batch_body(&self, items: &[LogicalRequest]) -> Vec<u8> {
        self.body(items)
    }

    fn needs_body(&self, shape: Shape, checks: Checks) -> bool {
        shape == Shape::Batch || checks.verify || checks.digests
    }

    fn judge_single(
        &self,
        response: &mut HttpResponse,
        item: &LogicalRequest,
        checks: Checks,
    ) -> ItemVerdict {
        if !self.needs_body(Shape::Single, checks) {
            return ItemVerdict::without_digest(status_error(response).unwrap_or_default());
        }
        self.judge(response, std::slice::from_ref(item), checks)
            .pop()
            .unwrap_or_else(super::no_verdict)
    }

    fn judge_batch(
        &self,
        response: &mut HttpResponse,
        items: &[LogicalRequest],
        checks: Checks,
    ) -> Vec<ItemVerdict> {
        self.judge(response, items, checks)
    }

    fn request_path(&self) -> Option<&str> {
        Some(&self.infer_path)
    }

    fn stats_path(&self) -> Option<String> {
        Some(self.stats_path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{item, response};

    fn metadata(datatype: &str, shape: &[i64]) -> ModelMetadata {
        ModelMetadata {
            name: "m".into(),
            versions: vec!["1".into()],
            platform: "python".into(),
            inputs: vec![TensorMetadata {
                name: "input".into(),
                datatype: datatype.into(),
                shape: shape.to_vec(),
            }],
            outputs: vec![TensorMetadata {
                name: "output".into(),
                datatype: "BYTES".into(),
                shape: shape.to_vec(),
            }],
        }
    }

    fn api(
        options: KServeOptions,
        batch: usize,
        meta: &ModelMetadata,
        max: Option<u64>,
    ) -> Result<KServeApi, String> {
        KServeApi::from_metadata(&options, "m", "", batch, meta, max).map_err(|e| e.to_string())
    }

    fn items(inputs: &[&str]) -> Vec<LogicalRequest> {
        inputs
            .iter()
            .enumerate()
            .map(|(k, i)| LogicalRequest {
                messages: None,
                shape: Default::default(),
                request_id: k as u64,
                ..item("m", i)
            })
            .collect()
    }

    #[test]
    fn bodies_stack_items_along_dimension_zero() {
        let a = api(
            KServeOptions::default(),
            4,
            &metadata("BYTES", &[-1, 1]),
            Some(32),
        )
        .unwrap();
        assert_eq!(a.request_path(), Some("/v2/models/m/infer"));
        let body: Value = serde_json::from_slice(&a.batch_body(&items(&["x\"y", "z"]))).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"inputs": [{"name": "input", "shape": [2, 1], "datatype": "BYTES", "data": ["x\"y", "z"]}], "outputs": [{"name": "output"}]})
        );
        let fp = api(
            KServeOptions {
                input_shape: Some(vec![3]),
                ..KServeOptions::default()
            },
            1,
            &metadata("FP32", &[-1, -1]),
            None,
        )
        .unwrap();
        let one: Value = serde_json::from_slice(&fp.single_body(&items(&["a"])[0])).unwrap();
        assert_eq!(one["inputs"][0]["shape"], serde_json::json!([1, 3]));
        assert_eq!(one["inputs"][0]["data"].as_array().unwrap().len(), 3);
        // The same request id draws the same tensor.
        assert_eq!(
            fp.single_body(&items(&["a"])[0]),
            fp.single_body(&items(&["b"])[0])
        );
        assert!(!fp.can_verify());
    }

    #[test]
    fn a_wrong_input_is_one_clear_error() {
        let meta = metadata("BYTES", &[-1, 1]);
        let named = |name: &str| KServeOptions {
            input_name: Some(name.into()),
            ..KServeOptions::default()
        };
        assert!(api(named("text"), 1, &meta, None)
            .unwrap_err()
            .contains("has no input \"text\"; its inputs are input"));
        let fp32 = KServeOptions {
            input_datatype: Some(Datatype::Fp32),
            ..KServeOptions::default()
        };
        assert!(api(fp32, 1, &meta, None)
            .unwrap_err()
            .contains("is BYTES, not FP32"));
        let shape = KServeOptions {
            input_shape: Some(vec![2]),
            ..KServeOptions::default()
        };
        assert!(api(shape, 1, &meta, None)
            .unwrap_err()
            .contains("does not fit"));
        assert!(api(KServeOptions::default(), 64, &meta, Some(32))
            .unwrap_err()
            .contains("over model \"m\"'s max_batch_size 32"));
        assert!(api(
            KServeOptions::default(),
            2,
            &metadata("BYTES", &[1]),
            Some(0)
        )
        .unwrap_err()
        .contains("does not batch"));
        assert!(api(
            KServeOptions::default(),
            1,
            &metadata("FP16", &[-1, 1]),
            None
        )
        .unwrap_err()
        .contains("this client sends BYTES, FP32 or INT64"));
    }

    #[test]
    fn outputs_are_split_per_item_and_verified() {
        let a = api(
            KServeOptions::default(),
            2,
            &metadata("BYTES", &[-1, 1]),
            Some(8),
        )
        .unwrap();
        let xs = items(&["a", "b"]);
        let all = Checks {
            verify: true,
            digests: true,
        };
        let good = |outputs: &[String]| {
            serde_json::json!({"model_name": "m", "outputs": [{"name": "output", "datatype": "BYTES", "shape": [outputs.len(), 1], "data": outputs}]}).to_string()
        };
        let expected: Vec<String> = ["a", "b"].iter().map(|i| expected_output("m", i)).collect();
        let ok = a.judge_batch(&mut response(200, &good(&expected)), &xs, all);
        assert_eq!(ok[1].error, "");
        assert_eq!(
            ok[1].output_digest,
            Some(output_digest(expected[1].as_bytes()))
        );
        let swapped = vec![expected[1].clone(), expected[0].clone()];
        let bad = a.judge_batch(&mut response(200, &good(&swapped)), &xs, all);
        assert!(bad.iter().all(|v| v.error == "output_mismatch"));
        let short = a.judge_batch(&mut response(200, &good(&expected[..1])), &xs, all);
        assert!(short.iter().all(|v| v.error == "wrong_length"));
        let err = a.judge_batch(&mut response(400, r#"{"error":"bad shape"}"#), &xs, all);
        assert!(err.iter().all(|v| v.error == "http_400"));
        let other = r#"{"model_name":"m","outputs":[{"name":"logits","datatype":"FP32","shape":[2,1],"data":[1,2]}]}"#;
        assert!(a
            .judge_batch(&mut response(200, other), &xs, all)
            .iter()
            .all(|v| v.error == "missing_output"));
        assert_eq!(
            a.judge_single(&mut response(200, "nope"), &xs[0], all)
                .error,
            "bad_json"
        );
    }
}
