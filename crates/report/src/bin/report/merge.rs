//! `report merge`'s flags, parsed into the library's
//! [`report::merge::Options`].

use std::path::PathBuf;

use report::merge::Options;
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
    /// The shards' directories (loadgen --out-dir), one per index, any order.
    #[arg(required = true, value_name = "SHARD_DIR")]
    shards: Vec<PathBuf>,
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
