//! `report merge`'s flags, parsed into the library's
//! [`report::merge::Options`].

use std::path::PathBuf;

use report::merge::{MergeError, Options};
use stats::slo::Slo;

/// Flags of `report merge`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MergeArgs {
    /// Where the merged summary.json and log.csv go (created if missing;
    /// must not be one of the shard directories).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// An objective judged on the merged result, repeatable (the grammar of
    /// `report compare --sla`), e.g. 'p95<=800', 'error_rate<=0.01'.
    #[arg(long = "sla", value_name = "EXPR")]
    slos: Vec<Slo>,
    /// Also write the verdict as JUnit XML to FILE (for CI): one test
    /// suite, one test case per --sla objective and one for the request
    /// ids' uniqueness (when the rows were merged).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// The shards' directories (loadgen --out-dir), one per index, any order.
    #[arg(required = true, value_name = "SHARD_DIR")]
    shards: Vec<PathBuf>,
}

/// Merges, writes the files and, with --junit, the verdict as JUnit XML;
/// returns whether the merge is met.
pub(crate) fn run(args: &MergeArgs) -> Result<bool, MergeError> {
    if let Some(path) = &args.junit {
        report::junit::check_path(path)?;
    }
    let merged = report::merge::run(&args.options())?;
    if let Some(path) = &args.junit {
        let suite = report::junit::merge_suite(&merged.summary);
        report::junit::write(path, "report merge", &[suite])?;
        println!("written: {}", path.display());
    }
    Ok(merged.met())
}

impl MergeArgs {
    /// The options the flags give.
    pub(crate) fn options(&self) -> Options {
        Options {
            out: self.out.clone(),
            slos: self.slos.clone(),
            shards: self.shards.clone(),
        }
    }
}
