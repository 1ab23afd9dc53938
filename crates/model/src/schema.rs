//! The published schemas of every file one tool writes and another may
//! read (`docs/schemas/`), made from the types that write them, so a
//! schema cannot say one thing while the tools write another.
//!
//! The JSON contracts' schemas are JSON Schema (draft 2020-12) derived by
//! `schemars` from their serde types, serde's attributes respected, for
//! what the tools *write*: a key they always write is required (even when
//! it may be `null`), a key they leave out when empty is not, and no other
//! key is allowed (a map flattened into a type, such as a finding's
//! numbers, allows the keys it may hold). The per-request log is CSV: its
//! columns are described once, in [`crate::log::COLUMNS`], and published
//! both as a table for people and as a JSON Schema of one row as a CSV
//! reader gives it (every field a string).
//!
//! `crates/model/tests/schemas.rs` fails when the committed files differ
//! from what [`files`] gives; `MODEL_REGENERATE_SCHEMAS=1 cargo test -p
//! model --test schemas` writes them again.

use std::fmt::Write as _;

use schemars::generate::SchemaSettings;
use schemars::transform::{transform_subschemas, Transform};
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};

use crate::log::{Column, ColumnKind, ColumnSet, COLUMNS};

/// The command that regenerates the files, named in each of them.
pub const REGENERATE: &str = "MODEL_REGENERATE_SCHEMAS=1 cargo test -p model --test schemas";

/// One published file: its name in `docs/schemas/` and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFile {
    /// The file's name.
    pub name: &'static str,
    /// The files it describes, for the index.
    pub describes: &'static str,
    /// Its whole text, ending in a newline.
    pub text: String,
}

/// Every published file, the index (`README.md`) last.
pub fn files() -> Vec<SchemaFile> {
    let mut files = vec![
        contract::<crate::summary::RunSummary>(
            "run-summary.schema.json",
            "model::summary::RunSummary",
            "loadgen's run summary: `loadgen --json FILE`, `DIR/summary.json` with \
             `--out-dir`, `before.json` and `after.json` of `./run_tests`; also the \
             merged `summary.json` of `report merge`, with the merge's keys",
        ),
        contract::<crate::comparison::Comparison>(
            "comparison.schema.json",
            "model::comparison::Comparison",
            "`comparison.json` of `report compare`",
        ),
        contract::<crate::whatif::WhatifReport>(
            "whatif.schema.json",
            "model::whatif::WhatifReport",
            "`whatif.json` of `report whatif --json`",
        ),
        contract::<crate::capacity::CapacityReport>(
            "capacity.schema.json",
            "model::capacity::CapacityReport",
            "`loadgen capacity --json FILE`: `capacity.json` and \
             `capacity_open_loop.json` of `./run_tests --capacity`",
        ),
        contract::<crate::repeats::RepeatsReport>(
            "repeats.schema.json",
            "model::repeats::RepeatsReport",
            "`repeats.json` of `report repeats` (`./run_tests --repeat N`)",
        ),
        contract::<crate::conditions::Conditions>(
            "conditions.schema.json",
            "model::conditions::Conditions",
            "`conditions.json` of `./run_tests` (`cargo xtask perf`)",
        ),
        contract::<crate::server_metrics::ServerMetrics>(
            "server-metrics.schema.json",
            "model::server_metrics::ServerMetrics",
            "a server's Prometheus samples through a run: `loadgen --server-metrics-url URL \
             --server-metrics FILE`, `PHASE_server_metrics.json` of `./run_tests --scenario llm`",
        ),
        SchemaFile {
            name: "log-row.schema.json",
            describes: "one row of a per-request log (`loadgen -o FILE`, `DIR/log.csv`, \
                        `before.csv`, `after.csv`, `probe_b*.csv`, `before_input_py.csv`) \
                        as a CSV reader gives it: column name to text",
            text: pretty(&log_row_schema()),
        },
        SchemaFile {
            name: "comparison-csv-row.schema.json",
            describes: "one row of `comparison.csv` of `report compare` (`comparison.json`'s \
                        `delta` as a table) as a CSV reader gives it",
            text: pretty(&comparison_csv_row_schema()),
        },
        SchemaFile {
            name: "log-columns.md",
            describes: "the per-request log's columns, units and meanings, for people",
            text: log_columns_markdown(),
        },
    ];
    let index = index(&files);
    files.push(index);
    files
}

/// Sets `additionalProperties: false` on every object schema that lists
/// its properties and says nothing of others: the tools write no key
/// their types do not name.
#[derive(Debug, Clone)]
struct NoOtherKeys;

impl Transform for NoOtherKeys {
    fn transform(&mut self, schema: &mut Schema) {
        if let Some(object) = schema.as_object_mut() {
            if object.contains_key("properties") && !object.contains_key("additionalProperties") {
                object.insert("additionalProperties".to_owned(), Value::Bool(false));
            }
        }
        transform_subschemas(self, schema);
    }
}

/// The schema of `T` as the tools write it.
fn contract<T: JsonSchema>(
    name: &'static str,
    type_name: &str,
    describes: &'static str,
) -> SchemaFile {
    let schema = SchemaSettings::draft2020_12()
        .for_serialize()
        .with_transform(NoOtherKeys)
        .into_generator()
        .into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Value::Object(object) = &mut value {
        object.insert(
            "$comment".to_owned(),
            Value::String(format!(
                "Generated from {type_name} by `{REGENERATE}`; do not edit."
            )),
        );
    }
    SchemaFile {
        name,
        describes,
        text: pretty(&value),
    }
}

fn pretty(value: &Value) -> String {
    // A map of `Value`s always serializes.
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

/// The columns of `comparison.csv`, which `report compare` writes: one
/// row per metric of `comparison.json`'s `delta`.
pub const COMPARISON_CSV_COLUMNS: [&str; 5] = ["metric", "before", "after", "delta", "delta_pct"];

/// One row of `comparison.csv`: a metric of `delta` (the keys of
/// [`crate::comparison::Delta`], goodput's and the LLM metrics'
/// [`crate::comparison::EXTRA_ROWS`]) and its numbers, empty where a
/// value is undefined.
fn comparison_csv_row_schema() -> Value {
    let delta = schemars::SchemaGenerator::default()
        .into_root_schema_for::<crate::comparison::Delta>()
        .to_value();
    let mut metrics: Vec<String> = delta["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    metrics.extend(
        crate::comparison::EXTRA_ROWS
            .iter()
            .map(|m| (*m).to_owned()),
    );
    let number = format!("^({NUMBER})?$");
    let meanings = [
        "the metric, a key of comparison.json's `delta`",
        "the Before's value (empty when it has none)",
        "the After's value (empty when it has none)",
        "After minus Before (empty when either has no value)",
        "that difference in percent of the Before (empty when the Before is 0 or has no value)",
    ];
    let mut properties = Map::new();
    for (name, meaning) in COMPARISON_CSV_COLUMNS.iter().zip(meanings) {
        let property = if *name == "metric" {
            json!({"type": "string", "enum": metrics, "description": meaning})
        } else {
            json!({"type": "string", "pattern": number, "description": meaning})
        };
        properties.insert((*name).to_owned(), property);
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ComparisonCsvRow",
        "description": "One row of comparison.csv, as a CSV reader gives it: a metric of \
                        comparison.json's `delta` and its numbers, as text.",
        "type": "object",
        "properties": properties,
        "required": COMPARISON_CSV_COLUMNS,
        "additionalProperties": false,
        "$comment": format!(
            "Generated from model::comparison::Delta and model::schema::COMPARISON_CSV_COLUMNS \
             by `{REGENERATE}`; do not edit."
        ),
    })
}

/// One decimal number as the logs write it (`12`, `12.345`, `-0.5`,
/// `1e-05`).
const NUMBER: &str = r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?";

/// The regular expression a column's fields match.
fn pattern(column: &Column) -> Option<String> {
    let value = match column.kind {
        ColumnKind::Count => "[0-9]+".to_owned(),
        ColumnKind::Number => NUMBER.to_owned(),
        ColumnKind::Bool => "true|false".to_owned(),
        ColumnKind::Text => return None,
        ColumnKind::OneOf(words) => words.join("|"),
        ColumnKind::Numbers => format!("{NUMBER}( {NUMBER})*"),
    };
    Some(match column.empty {
        Some(_) => format!("^({value})?$"),
        None => format!("^({value})$"),
    })
}

/// Who writes a column, in words.
fn written_by(set: ColumnSet) -> &'static str {
    match set {
        ColumnSet::InputPy => "every log (`input.py`'s and loadgen's)",
        ColumnSet::Loadgen => "loadgen's logs",
        ColumnSet::Llm => "loadgen's logs of streamed LLM runs",
        ColumnSet::Run => "loadgen's logs",
        ColumnSet::Workload => "loadgen's logs of streamed LLM runs",
    }
}

fn kind_name(kind: ColumnKind) -> String {
    match kind {
        ColumnKind::Count => "whole number".to_owned(),
        ColumnKind::Number => "number".to_owned(),
        ColumnKind::Bool => "`true`/`false`".to_owned(),
        ColumnKind::Text => "text".to_owned(),
        ColumnKind::OneOf(words) => words
            .iter()
            .map(|w| format!("`{w}`"))
            .collect::<Vec<_>>()
            .join(", "),
        ColumnKind::Numbers => "numbers, space-separated".to_owned(),
    }
}

/// One row of a log as a CSV reader gives it: each column's text.
fn log_row_schema() -> Value {
    let mut properties = Map::new();
    for column in &COLUMNS {
        let mut description = column.meaning.to_owned();
        if !column.unit.is_empty() {
            let _ = write!(description, " (unit: {})", column.unit);
        }
        if let Some(when) = column.empty {
            let _ = write!(description, "; empty {when}");
        }
        let _ = write!(description, "; in {}", written_by(column.set));
        let mut property = Map::new();
        property.insert("type".to_owned(), json!("string"));
        if let Some(pattern) = pattern(column) {
            property.insert("pattern".to_owned(), Value::String(pattern));
        }
        property.insert("description".to_owned(), Value::String(description));
        properties.insert(column.name.to_owned(), Value::Object(property));
    }
    let required: Vec<&str> = COLUMNS
        .iter()
        .filter(|c| c.set == ColumnSet::InputPy)
        .map(|c| c.name)
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "LogRow",
        "description": "One row of a per-request log, as a CSV reader gives it (the header's \
                        names as keys, each field as text). input.py's five columns come first \
                        in every log; loadgen's logs add theirs, and streamed LLM runs theirs.",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
        "$comment": format!("Generated from model::log::COLUMNS by `{REGENERATE}`; do not edit."),
    })
}

/// The columns as a table, one per set.
fn log_columns_markdown() -> String {
    let mut md = format!(
        "<!-- Generated from model::log::COLUMNS by `{REGENERATE}`; do not edit. -->\n\
         # The per-request log's columns\n\n\
         One row per logical request, in CSV, streamed while the run goes (`loadgen -o FILE`, \
         or `DIR/log.csv` with `--out-dir`). The first five columns are `input.py`'s, with \
         the same meaning, so every tool reads both kinds of log; loadgen writes its own \
         after them, a streamed LLM run (`--api openai-chat`, `openai-completions`) \
         its timing columns, every loadgen log the run's (phase, send lag), and an LLM \
         run its workload's last. loadgen writes times in milliseconds to 0.001 ms. \
         [`log-row.schema.json`](log-row.schema.json) is the same as a JSON Schema of one \
         row.\n"
    );
    for (set, heading) in [
        (ColumnSet::InputPy, "Every log (`input.py`'s and loadgen's)"),
        (ColumnSet::Loadgen, "loadgen's logs, after those"),
        (ColumnSet::Llm, "Streamed LLM runs, after those"),
        (
            ColumnSet::Run,
            "Every loadgen log, after those (after loadgen's own when the run is not an LLM's)",
        ),
        (ColumnSet::Workload, "Streamed LLM runs, last"),
    ] {
        let _ = write!(
            md,
            "\n## {heading}\n\n| column | unit | holds | empty | meaning |\n| --- | --- | --- | --- | --- |\n"
        );
        for column in COLUMNS.iter().filter(|c| c.set == set) {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} | {} |",
                column.name,
                column.unit,
                kind_name(column.kind),
                column.empty.unwrap_or("never"),
                column.meaning
            );
        }
    }
    md
}

/// `README.md`: which file describes what.
fn index(files: &[SchemaFile]) -> SchemaFile {
    let mut md = format!(
        "<!-- Generated by `{REGENERATE}`; do not edit. -->\n\
         # Published schemas\n\n\
         Every file one of the tools writes and another program may read, with its schema. \
         They are generated from the types the tools write with (`crates/model`), so they \
         change only with them: `{REGENERATE}` writes them again, and the same test fails \
         when a committed file differs from what the types give. The JSON Schemas are draft \
         2020-12 and describe what the tools write: a key always written is required, even \
         when it may be `null`, and no other key appears.\n\n\
         | file | describes |\n| --- | --- |\n"
    );
    for file in files {
        let _ = writeln!(
            md,
            "| [`{}`]({}) | {} |",
            file.name, file.name, file.describes
        );
    }
    md.push_str(
        "\n`results/junit.xml` (`report compare --junit`, `report merge --junit`, \
         `report repeats --junit`) follows the JUnit XML format that Jenkins and GitLab read \
         (the Jenkins xUnit plugin's `junit-10.xsd`); see [`../outputs.md`](../outputs.md).\n",
    );
    SchemaFile {
        name: "README.md",
        describes: "this index",
        text: md,
    }
}
