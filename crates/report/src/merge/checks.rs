//! The checks of the shards together: they form one run (one `count`,
//! each index once, the same plan), and the output directory is none of
//! them.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::shard::Shard;
use super::MergeError;

/// The plan's keys in the order differences are reported; any other key a
/// newer loadgen adds is compared too, after these.
const PLAN_KEYS: [&str; 14] = [
    "url",
    "api",
    "mode",
    "rate_rps",
    "arrival",
    "seed",
    "concurrency",
    "requests",
    "duration_s",
    "batch_size",
    "batch_wait_ms",
    "connection",
    "http2",
    "profile",
];

/// Refuses an output directory that is a file or one of the shards (its
/// summary.json would be overwritten by the merged one).
pub(super) fn check_out_dir(out: &Path, shards: &[PathBuf]) -> Result<(), MergeError> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(MergeError::InvalidOption(format!(
            "--out {} exists and is not a directory; pass a directory path",
            out.display()
        )));
    }
    let out_real = fs::canonicalize(out).map_err(|source| MergeError::Io {
        path: out.to_owned(),
        source,
    })?;
    for dir in shards {
        if fs::canonicalize(dir).is_ok_and(|d| d == out_real) {
            return Err(MergeError::InvalidOption(format!(
                "--out {} is the shard directory {}; pass a directory of its own, e.g. {}",
                out.display(),
                dir.display(),
                out.join("merged").display()
            )));
        }
    }
    Ok(())
}

/// One `count` for all, equal to the directories given, each index once.
pub(super) fn check_indices(shards: &[Shard]) -> Result<(), MergeError> {
    let first = &shards[0];
    let count = first.info.count;
    if let Some(other) = shards.iter().find(|s| s.info.count != count) {
        return Err(MergeError::Incomplete(format!(
            "{} says `shard.count` {} but {} says {}; merge the shards of one run",
            other.summary_path.display(),
            other.info.count,
            first.summary_path.display(),
            count
        )));
    }
    if let Some(bad) = shards.iter().find(|s| s.info.index >= count) {
        return Err(MergeError::Incomplete(format!(
            "{}: `shard.index` {} is not below `shard.count` {count}",
            bad.summary_path.display(),
            bad.info.index
        )));
    }
    let mut by_index: HashMap<u32, &Path> = HashMap::new();
    for shard in shards {
        if let Some(earlier) = by_index.insert(shard.info.index, &shard.dir) {
            return Err(MergeError::Incomplete(format!(
                "shard index {} appears twice: in {} and in {}; give each shard's directory once",
                shard.info.index,
                earlier.display(),
                shard.dir.display()
            )));
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !by_index.contains_key(i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() || shards.len() != count as usize {
        return Err(MergeError::Incomplete(format!(
            "the shards say `shard.count` {count} but {} directories were given; missing shard index {}",
            shards.len(),
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The first shard (in the order given) whose plan differs from the first
/// one's, and the first key that differs.
pub(super) fn check_plans(shards: &[Shard]) -> Result<(), MergeError> {
    let first = &shards[0];
    for shard in &shards[1..] {
        let mut others: Vec<&String> = first
            .plan
            .keys()
            .chain(shard.plan.keys())
            .filter(|k| !PLAN_KEYS.contains(&k.as_str()))
            .collect();
        others.sort();
        others.dedup();
        let keys = PLAN_KEYS
            .iter()
            .copied()
            .chain(others.iter().map(|k| k.as_str()));
        for key in keys {
            let (a, b) = (first.plan.get(key), shard.plan.get(key));
            if a != b {
                let show =
                    |v: Option<&Value>| v.map_or_else(|| "absent".to_owned(), Value::to_string);
                return Err(MergeError::PlanMismatch {
                    dir: shard.dir.clone(),
                    field: key.to_owned(),
                    value: show(b),
                    first_dir: first.dir.clone(),
                    first_value: show(a),
                });
            }
        }
    }
    Ok(())
}
