//! The published schemas in `docs/schemas/` are what the contract types
//! give today (`model::schema::files`): this test fails when a type
//! changed and its schema was not regenerated, when a schema was edited by
//! hand, and when `docs/schemas/` holds a file no type gives.
//!
//! To regenerate: `MODEL_REGENERATE_SCHEMAS=1 cargo test -p model --test
//! schemas`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use model::schema::{files, REGENERATE};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas")
}

#[test]
fn the_committed_schemas_are_what_the_types_give() {
    let dir = schemas_dir();
    let generated = files();
    if std::env::var_os("MODEL_REGENERATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(&dir).expect("create docs/schemas");
        for entry in std::fs::read_dir(&dir).expect("read docs/schemas") {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !generated.iter().any(|f| f.name == name) {
                std::fs::remove_file(&path).expect("remove a stale schema");
                eprintln!("removed {}", path.display());
            }
        }
        for file in &generated {
            std::fs::write(dir.join(file.name), &file.text).expect("write a schema");
        }
        eprintln!("regenerated {}", dir.display());
        return;
    }
    let mut stale = Vec::new();
    for file in &generated {
        let path = dir.join(file.name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != file.text {
            stale.push(file.name);
        }
    }
    let committed: BTreeSet<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let extra: Vec<&String> = committed
        .iter()
        .filter(|name| !generated.iter().any(|f| f.name == name.as_str()))
        .collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "docs/schemas/ is not what the types give: differs or missing {stale:?}, \
         not generated {extra:?}; regenerate with `{REGENERATE}` and commit it"
    );
}

#[test]
fn every_schema_is_json_and_names_its_source() {
    for file in files() {
        if !file.name.ends_with(".json") {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&file.text).unwrap();
        assert_eq!(
            value["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{}",
            file.name
        );
        assert!(
            value["$comment"].as_str().unwrap().contains(REGENERATE),
            "{}",
            file.name
        );
    }
}

/// The schema follows serde: a key that may be `null` but is always
/// written is required; one left out when empty is not; renamed enum
/// variants are the names written; no key a type lacks is allowed.
#[test]
fn the_summary_schema_follows_serde() {
    let summary = files()
        .into_iter()
        .find(|f| f.name == "run-summary.schema.json")
        .unwrap();
    let schema: serde_json::Value = serde_json::from_str(&summary.text).unwrap();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"p95_ms") && required.contains(&"llm"));
    assert!(!required.contains(&"percentiles_from") && !required.contains(&"slos"));
    assert_eq!(schema["additionalProperties"], false);
    let p95 = &schema["properties"]["p95_ms"]["type"];
    assert_eq!(p95, &serde_json::json!(["number", "null"]));

    let capacity = files()
        .into_iter()
        .find(|f| f.name == "capacity.schema.json")
        .unwrap();
    assert!(capacity.text.contains("\"nothing_sustainable\""));
}

/// The log's table is the one the writer's header comes from.
#[test]
fn the_log_columns_are_the_writers_header() {
    let mut buf = Vec::new();
    let mut writer = model::log::LogWriter::new(&mut buf, true).unwrap();
    writer.flush().unwrap();
    drop(writer);
    let header = String::from_utf8(buf).unwrap();
    let names: Vec<&str> = model::log::COLUMNS.iter().map(|c| c.name).collect();
    assert_eq!(header.trim_end(), names.join(","));
    let doc = files()
        .into_iter()
        .find(|f| f.name == "log-columns.md")
        .unwrap();
    for column in &model::log::COLUMNS {
        assert!(
            doc.text.contains(&format!("| `{}` |", column.name)),
            "{}",
            column.name
        );
    }
}
