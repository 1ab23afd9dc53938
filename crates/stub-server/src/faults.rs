//! Seeded fault injection: the simulator misbehaves on purpose, at chosen
//! rates, so that clients and reports can be proven to account for every
//! failure.
//!
//! Each valid `POST /v1/infer` request draws one fault (or none) from a
//! seeded sequence: the `k`-th request to arrive gets the `k`-th draw, so a
//! run with the same seed and the same arrival order misbehaves the same
//! way. The faults, each with its own rate (their sum at most 1):
//!
//! - `error`: 500 `injected_error` or 503 `injected_unavailable` (with
//!   `Retry-After`), a JSON error body, no work done;
//! - `corrupt`: 200 with one output changed (one item of a batch), so only
//!   verification can tell;
//! - `truncate`: 200 whose `Content-Length` promises the whole body but the
//!   connection (or HTTP/2 stream) is cut after half of it;
//! - `reset`: the connection (or stream) is dropped before any response;
//! - `stall`: the answer is held `stall_ms` before the request is queued
//!   (past a client's timeout, if the client has one shorter).
//!
//! Everything is off by default and in every named profile; requests that
//! are invalid (4xx) never draw, and neither do `/healthz` and `/metrics`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::config::ConfigError;

/// Most a stall may last, in ms (10 minutes).
const MAX_STALL_MS: u64 = 600_000;

/// Rates and seed of the injected faults; the default injects nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultConfig {
    /// Share of requests answered 500/503 with a JSON error.
    pub error_rate: f64,
    /// Share of requests answered 200 with a wrong output.
    pub corrupt_rate: f64,
    /// Share of requests whose body is cut short.
    pub truncate_rate: f64,
    /// Share of requests whose connection is dropped without an answer.
    pub reset_rate: f64,
    /// Share of requests held `stall_ms` before being served.
    pub stall_rate: f64,
    /// How long a stalled request is held, in ms.
    pub stall_ms: u64,
    /// Seed of the fault sequence.
    pub seed: u64,
}

impl FaultConfig {
    /// What the first `requests` valid requests to arrive will get, counted
    /// by fault: the sequence depends only on the seed and the rates, so a
    /// test can predict a run's failures exactly.
    pub fn plan(&self, requests: u64) -> FaultPlan {
        let injector = FaultInjector::new(self);
        let mut plan = FaultPlan::default();
        for _ in 0..requests {
            match injector.draw() {
                Fault::None => plan.clean += 1,
                Fault::Error { unavailable: false } => plan.error_500 += 1,
                Fault::Error { unavailable: true } => plan.error_503 += 1,
                Fault::Corrupt { .. } => plan.corrupt += 1,
                Fault::Truncate => plan.truncate += 1,
                Fault::Reset => plan.reset += 1,
                Fault::Stall(_) => plan.stall += 1,
            }
        }
        plan
    }

    /// Whether any fault can be drawn.
    pub fn is_off(&self) -> bool {
        self.rates().iter().all(|(_, rate)| *rate == 0.0)
    }

    fn rates(&self) -> [(&'static str, f64); 5] {
        [
            ("fault-error-rate", self.error_rate),
            ("fault-corrupt-rate", self.corrupt_rate),
            ("fault-truncate-rate", self.truncate_rate),
            ("fault-reset-rate", self.reset_rate),
            ("fault-stall-rate", self.stall_rate),
        ]
    }

    /// Each rate in [0, 1], their sum at most 1, a stall time when stalls
    /// are asked for.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (flag, rate) in self.rates() {
            if !(rate.is_finite() && (0.0..=1.0).contains(&rate)) {
                return Err(ConfigError::Invalid {
                    flag,
                    value: rate.to_string(),
                    allowed: "must be a probability from 0 to 1",
                });
            }
        }
        let sum: f64 = self.rates().iter().map(|(_, r)| r).sum();
        if sum > 1.0 + 1e-9 {
            return Err(ConfigError::Invalid {
                flag: "fault-*-rate",
                value: format!("sum {sum}"),
                allowed: "the fault rates must add up to at most 1",
            });
        }
        if self.stall_ms > MAX_STALL_MS {
            return Err(ConfigError::Invalid {
                flag: "fault-stall-ms",
                value: self.stall_ms.to_string(),
                allowed: "must be an integer from 0 to 600000 ms",
            });
        }
        if self.stall_rate > 0.0 && self.stall_ms == 0 {
            return Err(ConfigError::Invalid {
                flag: "fault-stall-ms",
                value: "0".to_owned(),
                allowed: "must be at least 1 ms when --fault-stall-rate is above 0",
            });
        }
        Ok(())
    }
}

/// How many requests get each fault ([`FaultConfig::plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultPlan {
    /// Served correctly.
    pub clean: u64,
    /// Answered 500 `injected_error`.
    pub error_500: u64,
    /// Answered 503 `injected_unavailable`.
    pub error_503: u64,
    /// Answered 200 with one wrong output.
    pub corrupt: u64,
    /// Body cut short.
    pub truncate: u64,
    /// Connection dropped unanswered.
    pub reset: u64,
    /// Held `stall_ms`, then served.
    pub stall: u64,
}

/// What one request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A correct answer.
    None,
    /// 500 (`server_error`) or 503.
    Error { unavailable: bool },
    /// A wrong output; for a batch, the item at `pick % items`.
    Corrupt { pick: u64 },
    /// The body cut in half.
    Truncate,
    /// The connection dropped.
    Reset,
    /// Held this long, then served.
    Stall(Duration),
}

/// Draws faults in arrival order from a seeded sequence.
#[derive(Debug)]
pub(crate) struct FaultInjector {
    config: FaultConfig,
    off: bool,
    next: AtomicU64,
}

impl FaultInjector {
    pub(crate) fn new(config: &FaultConfig) -> FaultInjector {
        FaultInjector {
            config: config.clone(),
            off: config.is_off(),
            next: AtomicU64::new(0),
        }
    }

    /// The fault of the next request.
    pub(crate) fn draw(&self) -> Fault {
        if self.off {
            return Fault::None;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let bits = mix(self.config.seed ^ mix(k.wrapping_add(0x9e37_79b9_7f4a_7c15)));
        // 53 high bits give a uniform draw in [0, 1); the low bits pick
        // the variant of the fault.
        let u = (bits >> 11) as f64 / (1u64 << 53) as f64;
        let c = &self.config;
        let mut edge = c.error_rate;
        if u < edge {
            return Fault::Error {
                unavailable: bits & 1 == 1,
            };
        }
        edge += c.corrupt_rate;
        if u < edge {
            return Fault::Corrupt { pick: bits & 0x7ff };
        }
        edge += c.truncate_rate;
        if u < edge {
            return Fault::Truncate;
        }
        edge += c.reset_rate;
        if u < edge {
            return Fault::Reset;
        }
        edge += c.stall_rate;
        if u < edge {
            return Fault::Stall(Duration::from_millis(c.stall_ms));
        }
        Fault::None
    }
}

/// A well-mixed 64-bit hash of `z`: the first output of a SplitMix64
/// seeded with it (its increment, then its finaliser), so the `k`-th draw
/// needs no shared generator state.
fn mix(z: u64) -> u64 {
    stats::SplitMix64::new(z).next_u64()
}

/// Changes an output so that it no longer matches `expected_output`, at
/// the same length: its last character becomes another ASCII letter.
pub(crate) fn corrupt(output: &mut String) {
    let replacement = match output.pop() {
        Some('x') => 'y',
        Some(_) | None => 'x',
    };
    output.push(replacement);
}

/// The error a cut-short body ends with; hyper then drops the connection
/// (HTTP/1.1) or resets the stream (HTTP/2).
#[derive(Debug, thiserror::Error)]
#[error("injected fault: connection dropped on purpose")]
pub(crate) struct InjectedAbort;

/// The body of every response: whole, or cut short on purpose.
#[derive(Debug)]
pub(crate) enum FaultBody {
    /// The whole body in one frame (`None` once sent).
    Whole(Option<Bytes>),
    /// Sends `head`, yields once so it is flushed, then fails, with a size
    /// hint of the whole body so `Content-Length` promises more.
    Truncated {
        head: Option<Bytes>,
        whole_len: u64,
        yielded: bool,
    },
    /// Fails before any byte of the body (and, over HTTP/1.1, before the
    /// head leaves the write buffer): the connection closes unanswered.
    Reset,
    /// Frames as they are sent, of no length known in advance (a streamed
    /// answer: chunked over HTTP/1.1); ends when the sender goes away.
    /// Each frame is one server-sent event; with `stamps`, each is preceded
    /// by a comment line `: t=<unix ns>` taken as the connection polls it
    /// out to write it.
    Stream {
        frames: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
        stamps: bool,
    },
}

impl FaultBody {
    /// A whole body, like `Full::new`.
    pub(crate) fn new(data: Bytes) -> FaultBody {
        FaultBody::Whole((!data.is_empty()).then_some(data))
    }

    /// This body cut after half of its bytes.
    pub(crate) fn truncate(self) -> FaultBody {
        match self {
            FaultBody::Whole(Some(data)) if data.len() >= 2 => FaultBody::Truncated {
                whole_len: data.len() as u64,
                head: Some(data.slice(..data.len() / 2)),
                yielded: false,
            },
            // Nothing to cut: drop the connection instead.
            _ => FaultBody::Reset,
        }
    }
}

impl Body for FaultBody {
    type Data = Bytes;
    type Error = InjectedAbort;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, InjectedAbort>>> {
        match self.get_mut() {
            FaultBody::Whole(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            FaultBody::Truncated { head, yielded, .. } => {
                if let Some(head) = head.take() {
                    return Poll::Ready(Some(Ok(Frame::data(head))));
                }
                if !*yielded {
                    // Let the connection flush what it has before failing.
                    *yielded = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(InjectedAbort)))
            }
            FaultBody::Reset => Poll::Ready(Some(Err(InjectedAbort))),
            FaultBody::Stream { frames, stamps } => frames.poll_recv(cx).map(|f| {
                f.map(|data| Ok(Frame::data(if *stamps { stamped(&data) } else { data })))
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, FaultBody::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            FaultBody::Whole(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            FaultBody::Truncated { whole_len, .. } => SizeHint::with_exact(*whole_len),
            FaultBody::Reset => SizeHint::with_exact(1),
            FaultBody::Stream { .. } => SizeHint::new(),
        }
    }
}

/// `event` preceded by an SSE comment line holding the wall-clock time
/// now, in Unix nanoseconds: taken here, as the connection takes the event
/// to encode and write it, so it is as close to the socket write as the
/// body can see.
fn stamped(event: &[u8]) -> Bytes {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut out = format!(": t={ns}\n").into_bytes();
    out.extend_from_slice(event);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injector(config: FaultConfig) -> FaultInjector {
        FaultInjector::new(&config)
    }

    #[test]
    fn off_by_default_and_never_draws() {
        let config = FaultConfig::default();
        assert!(config.is_off());
        config.validate().unwrap();
        let faults = injector(config);
        assert!((0..1000).all(|_| faults.draw() == Fault::None));
    }

    #[test]
    fn rates_are_honoured_and_seeded() {
        let config = FaultConfig {
            error_rate: 0.1,
            corrupt_rate: 0.2,
            truncate_rate: 0.05,
            reset_rate: 0.05,
            stall_rate: 0.1,
            stall_ms: 5,
            seed: 7,
        };
        config.validate().unwrap();
        let a: Vec<Fault> = {
            let f = injector(config.clone());
            (0..20_000).map(|_| f.draw()).collect()
        };
        let b: Vec<Fault> = {
            let f = injector(config.clone());
            (0..20_000).map(|_| f.draw()).collect()
        };
        assert_eq!(a, b, "same seed, same sequence");
        let share =
            |pred: fn(&Fault) -> bool| a.iter().filter(|f| pred(f)).count() as f64 / 20_000.0;
        assert!((share(|f| matches!(f, Fault::Error { .. })) - 0.1).abs() < 0.015);
        assert!((share(|f| matches!(f, Fault::Corrupt { .. })) - 0.2).abs() < 0.015);
        assert!((share(|f| matches!(f, Fault::Truncate)) - 0.05).abs() < 0.01);
        assert!((share(|f| matches!(f, Fault::Reset)) - 0.05).abs() < 0.01);
        assert!((share(|f| matches!(f, Fault::Stall(_))) - 0.1).abs() < 0.015);
        let other = injector(FaultConfig { seed: 8, ..config });
        let c: Vec<Fault> = (0..20_000).map(|_| other.draw()).collect();
        assert_ne!(a, c, "another seed, another sequence");
    }

    #[test]
    fn the_fault_sequence_is_pinned() {
        // The k-th request's draw depends on the seed and k alone; these
        // are the draws this algorithm has always made (tests in loadgen
        // predict runs from them).
        let config = FaultConfig {
            error_rate: 0.2,
            corrupt_rate: 0.2,
            truncate_rate: 0.1,
            reset_rate: 0.1,
            stall_rate: 0.1,
            stall_ms: 5,
            seed: 7,
        };
        let f = injector(config.clone());
        let draws: Vec<Fault> = (0..16).map(|_| f.draw()).collect();
        let error = |unavailable| Fault::Error { unavailable };
        let corrupt = |pick| Fault::Corrupt { pick };
        assert_eq!(
            draws,
            [
                corrupt(1818),
                Fault::None,
                corrupt(386),
                corrupt(1310),
                corrupt(932),
                Fault::Reset,
                error(false),
                error(true),
                corrupt(1418),
                error(false),
                Fault::None,
                Fault::None,
                Fault::None,
                error(true),
                Fault::Stall(Duration::from_millis(5)),
                Fault::Reset,
            ]
        );
        assert_eq!(
            config.plan(10_000),
            FaultPlan {
                clean: 3037,
                error_500: 1002,
                error_503: 985,
                corrupt: 2043,
                truncate: 965,
                reset: 998,
                stall: 970,
            }
        );
    }

    #[test]
    fn bad_rates_are_named() {
        let cases = [
            FaultConfig {
                error_rate: -0.1,
                ..FaultConfig::default()
            },
            FaultConfig {
                corrupt_rate: f64::NAN,
                ..FaultConfig::default()
            },
            FaultConfig {
                reset_rate: 0.6,
                truncate_rate: 0.6,
                ..FaultConfig::default()
            },
            FaultConfig {
                stall_rate: 0.5,
                ..FaultConfig::default()
            },
            FaultConfig {
                stall_ms: 600_001,
                ..FaultConfig::default()
            },
        ];
        for config in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("--fault-") && err.contains("must"), "{err}");
        }
    }

    #[test]
    fn corruption_keeps_the_length_and_changes_the_text() {
        for original in ["Summary: a b [x]", "abcx", ""] {
            let mut s = original.to_owned();
            corrupt(&mut s);
            assert_ne!(s, original);
            assert_eq!(s.len(), original.len().max(1));
        }
    }
}
