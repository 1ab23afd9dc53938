//! `--dry-run FILE`: every request a run would send, built as the run
//! builds it and written instead of sent, one JSON object a line:
//! `{"request_id", "at_s", "input_tokens", "max_tokens", "body"}` (`at_s`:
//! the offset on the open loop's schedule, `null` in the closed loop; the
//! body exactly as it would go out). Nothing is sent and nothing waits:
//! it shows what a workload is, and what making it costs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use crate::config::ConfigError;
use crate::distributed::Shard;
use crate::engine::{LogicalRequest, RequestShape};
use crate::error::LoadError;
use crate::prepare::{Prepared, Protocol};
use crate::schedule::Arrivals;
use crate::workload::requests::Spec;

/// Why `--api kserve-v2-grpc` has no dry run: its requests are protobuf
/// messages, not the JSON bodies a dry run writes.
pub const GRPC_REFUSED: &str = "--dry-run writes HTTP request bodies, and --api kserve-v2-grpc sends protobuf messages: drop --dry-run, or see the same tensors' bodies with --api kserve-v2";

/// What a dry run wrote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DryRun {
    /// Requests written.
    pub requests: u64,
    /// How long building and writing them took, s.
    pub seconds: f64,
}

impl Prepared {
    /// Builds every request of the measured run (no warm-up) and writes
    /// them to `path` instead of sending them.
    pub fn dry_run(self, path: &Path) -> Result<DryRun, LoadError> {
        let io = |source| LoadError::DryRun {
            path: path.to_owned(),
            source,
        };
        let api = match &self.protocol {
            Protocol::Http(api) => api,
            Protocol::Grpc(_) => return Err(ConfigError::Invalid(GRPC_REFUSED.into()).into()),
        };
        if self.requests.converses() {
            return Err(ConfigError::Invalid(
                "--dry-run cannot write conversations: their later turns carry the server's answers".into(),
            )
            .into());
        }
        let started = Instant::now();
        let mut out = BufWriter::new(File::create(path).map_err(io)?);
        let shard = self.config.shard.unwrap_or(Shard::WHOLE);
        let mut written = 0u64;
        let mut write = |id: u64, at_s: Option<f64>, spec: Spec| -> std::io::Result<()> {
            let item = LogicalRequest {
                request_id: id,
                model: spec.model,
                input: spec.input,
                messages: spec.messages,
                start: started,
                shape: RequestShape {
                    input_tokens: spec.input_tokens,
                    max_tokens: spec.max_tokens,
                    min_tokens: spec.min_tokens,
                    ..RequestShape::default()
                },
            };
            let body = api.single_body(&item);
            let json = |v: Option<String>| v.unwrap_or_else(|| "null".to_owned());
            write!(
                out,
                "{{\"request_id\":{id},\"at_s\":{},\"input_tokens\":{},\"max_tokens\":{},\"body\":",
                json(at_s.map(|t| format!("{t:.6}"))),
                json(item.shape.input_tokens.map(|n| n.to_string())),
                json(item.shape.max_tokens.map(|n| n.to_string())),
            )?;
            out.write_all(&body)?;
            out.write_all(b"}\n")?;
            written += 1;
            Ok(())
        };
        match (&self.trace, &self.config.open_loop) {
            (Some(trace), _) => {
                let arrivals = trace.arrivals(shard)?;
                let error = arrivals.error_slot();
                for (id, at_s, row) in arrivals {
                    write(id, Some(at_s), self.requests.traced(id, &row)).map_err(io)?;
                }
                if let Some(why) = error.lock().ok().and_then(|e| e.clone()) {
                    return Err(ConfigError::Invalid(why).into());
                }
            }
            (None, Some(open)) => {
                let arrivals = match &self.config.stages {
                    Some(stages) => Arrivals::staged(open, stages, shard, self.config.requests),
                    None => Arrivals::new(open, shard, self.config.requests, self.config.duration),
                };
                for (id, at_s) in arrivals {
                    write(id, Some(at_s), self.requests.single(id)).map_err(io)?;
                }
            }
            (None, None) => {
                let Some(n) = self.config.requests else {
                    return Err(ConfigError::Invalid(
                        "--dry-run needs a request count (-n) for the closed loop".into(),
                    )
                    .into());
                };
                let ids = (0..).map(|j| shard.request_id(j)).take_while(|&id| id < n);
                for id in ids {
                    write(id, None, self.requests.single(id)).map_err(io)?;
                }
            }
        }
        out.flush().map_err(io)?;
        Ok(DryRun {
            requests: written,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}
