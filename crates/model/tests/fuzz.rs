//! Property-based fuzzing (proptest, bounded cases: a few seconds) of the
//! two parsers that take untrusted input: the server's request parser
//! (`InferRequest::parse`) and the CSV log reader (`read_log`). Neither may
//! panic on any input; what they accept must be well-formed; a log written
//! by `LogWriter` must read back as the same rows. The hand-written request
//! bodies must equal serde's for any text.

use model::log::{read_log, read_log_all, LlmTiming, LogRow, LogWriter, Phase, TokensFrom};
use model::wire::{
    batch_request_body, single_request_body, to_json_bytes, BatchRequest, InferRequest,
    RequestError, SingleRequest,
};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// JSON-ish request bodies: valid shapes, wrong types, odd strings, junk.
fn request_body() -> impl Strategy<Value = Vec<u8>> {
    let text = prop_oneof![
        "[a-z\\-]{0,12}",
        "\\PC{0,16}",
        Just("\u{0}\u{ffff}\"\\".to_owned())
    ];
    let value = prop_oneof![
        text.clone().prop_map(serde_json::Value::String),
        prop::collection::vec(text.clone(), 0..5).prop_map(|v| serde_json::json!(v)),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        Just(serde_json::Value::Null),
        Just(serde_json::json!({"nested": [1, {"x": null}]})),
    ];
    let object = prop::collection::btree_map(
        prop_oneof![
            Just("model".to_owned()),
            Just("input".to_owned()),
            Just("inputs".to_owned()),
            "[a-z]{1,6}"
        ],
        value,
        0..4,
    )
    .prop_map(|m| serde_json::to_vec(&m).unwrap_or_default());
    prop_oneof![
        4 => object,
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => "\\PC{0,40}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn request_parsing_never_panics_and_accepts_only_well_formed(body in request_body()) {
        match InferRequest::parse(&body) {
            Ok(request) => {
                prop_assert!(!request.inputs().is_empty());
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                prop_assert_eq!(json["model"].as_str(), Some(request.model()));
            }
            Err(e) => {
                // Every refusal has a stable code for the 400 body, and
                // structural refusals are only given to valid JSON objects.
                prop_assert!(!e.code().is_empty());
                if !matches!(e, RequestError::MalformedJson(_)) {
                    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    prop_assert!(json.is_object());
                }
            }
        }
    }
}

/// A field: a plausible value, an edge case, or hostile text.
fn csv_field() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,4}",
        "-?[0-9]{1,3}\\.[0-9]{0,3}",
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
        Just("-0".to_owned()),
        Just("true".to_owned()),
        Just(String::new()),
        Just("18446744073709551616".to_owned()),
        "\\PC{0,8}",
        Just("\"unterminated".to_owned()),
        Just("a,b\nc".to_owned()),
        Just("=cmd|' /C calc'!A0".to_owned()),
    ]
}

fn hostile_csv() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        Just("request_id,timestamp_ms,latency_ms,status_code,error".to_owned()),
        Just(model::log::LOADGEN_COLUMNS.join(",")),
        Just("request_id,latency_ms".to_owned()),
        Just("\u{feff}request_id,timestamp_ms,latency_ms,status_code,error".to_owned()),
        "\\PC{0,30}",
    ];
    let rows = prop::collection::vec(prop::collection::vec(csv_field(), 0..14), 0..12);
    let structured = (header, rows).prop_map(|(h, rows)| {
        let mut text = h;
        for row in rows {
            text.push('\n');
            text.push_str(&row.join(","));
        }
        text.into_bytes()
    });
    prop_oneof![
        4 => structured,
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn csv_reader_never_panics_and_keeps_accepted_values_sane(bytes in hostile_csv()) {
        if let Ok(log) = read_log(bytes.as_slice()) {
            for row in &log.rows {
                prop_assert!(row.latency_ms.is_finite() && row.latency_ms >= 0.0, "{row:?}");
                prop_assert!(row.timestamp_ms.is_finite(), "{row:?}");
                for v in [row.connect_ms, row.tls_ms, row.queue_ms, row.service_ms].into_iter().flatten() {
                    prop_assert!(v.is_finite() && v >= 0.0, "{row:?}");
                }
            }
        }
    }
}

fn log_row() -> impl Strategy<Value = LogRow> {
    let ms = (0u64..10_000_000).prop_map(|n| n as f64 / 1000.0);
    (
        (
            any::<u64>(),
            0u64..2_000_000_000_000_000,
            ms.clone(),
            0u16..1000,
        ),
        (
            "[a-z_0-9,\" ]{0,12}",
            any::<bool>(),
            any::<Option<u64>>(),
            any::<bool>(),
            any::<u32>(),
        ),
        (
            proptest::option::of(1u32..10_000),
            proptest::option::of(ms.clone()),
            proptest::option::of(ms.clone()),
            proptest::option::of(ms.clone()),
            proptest::option::of(ms.clone()),
            proptest::option::of("[0-9a-f]{16}"),
        ),
        proptest::option::of(llm_timing(ms.clone())),
        (
            any::<bool>(),
            proptest::option::of(ms),
            proptest::option::of(1u32..1_000_000),
            proptest::option::of(1u32..1_000_000),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(1u32..1000),
        ),
    )
        .prop_map(
            |(
                (request_id, ts, latency_ms, status_code),
                (error, ok, batch_id, verified, retries),
                (batch_size, connect_ms, tls_ms, queue_ms, service_ms, output_digest),
                llm,
                (warmup, send_lag_ms, input_tokens, max_tokens, prompt_tokens, session_id, turn),
            )| LogRow {
                request_id,
                timestamp_ms: ts as f64 / 1000.0,
                latency_ms,
                status_code,
                error: error.trim().to_owned(),
                ok,
                batch_id,
                batch_size,
                connect_ms,
                tls_ms,
                queue_ms,
                service_ms,
                output_digest,
                verified,
                retries,
                llm,
                phase: if warmup {
                    Phase::Warmup
                } else {
                    Phase::Measure
                },
                send_lag_ms,
                input_tokens,
                max_tokens,
                prompt_tokens,
                session_id,
                turn,
            },
        )
}

/// A streamed answer's timing with at least one value set (an all-empty
/// one reads back as none).
fn llm_timing(ms: impl Strategy<Value = f64> + Clone) -> impl Strategy<Value = LlmTiming> {
    (
        ms.clone(),
        proptest::option::of(ms.clone()),
        proptest::option::of(0u64..100_000),
        proptest::option::of(prop_oneof![
            Just(TokensFrom::Usage),
            Just(TokensFrom::Counted)
        ]),
        prop::collection::vec(ms, 0..40),
    )
        .prop_map(
            |(ttft_ms, tpot_ms, output_tokens, tokens_from, itl_ms)| LlmTiming {
                ttft_ms: Some(ttft_ms),
                tpot_ms,
                output_tokens,
                tokens_from,
                itl_ms,
            },
        )
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn written_logs_read_back_row_for_row(rows in prop::collection::vec(log_row(), 0..20), llm in any::<bool>()) {
        // Without the LLM columns a row's timing and workload are not written.
        let rows: Vec<LogRow> = rows
            .into_iter()
            .map(|row| {
                if llm {
                    row
                } else {
                    LogRow {
                        llm: None,
                        input_tokens: None,
                        max_tokens: None,
                        prompt_tokens: None,
                        session_id: None,
                        turn: None,
                        ..row
                    }
                }
            })
            .collect();
        let mut bytes = Vec::new();
        {
            let mut writer = LogWriter::new(&mut bytes, llm).unwrap();
            for row in &rows {
                writer.write_row(row).unwrap();
            }
            writer.flush().unwrap();
        }
        let log = read_log_all(bytes.as_slice()).unwrap();
        prop_assert_eq!(&log.rows, &rows);
        // The measured rows alone, without the warm-up's.
        let measured: Vec<LogRow> = rows.into_iter().filter(|r| r.phase == Phase::Measure).collect();
        prop_assert_eq!(read_log(bytes.as_slice()).unwrap().rows, measured);
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn hand_written_request_bodies_equal_serde(
        model in "\\PC{0,12}|[\"\\\\\u{0}-\u{1f}a]{0,6}",
        inputs in prop::collection::vec("\\PC{0,40}|[\"\\\\\u{0}-\u{1f}\u{7f}a]{0,12}", 1..4),
    ) {
        let single = SingleRequest { model: model.clone(), input: inputs[0].clone() };
        prop_assert_eq!(single_request_body(&model, &inputs[0]), to_json_bytes(&single));
        let batch = BatchRequest { model: model.clone(), inputs: inputs.clone() };
        prop_assert_eq!(
            batch_request_body(&model, inputs.iter().map(String::as_str)),
            to_json_bytes(&batch)
        );
    }
}
