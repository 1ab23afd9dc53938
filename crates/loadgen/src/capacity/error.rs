//! Why the search could not run. Unsustainable steps are not errors: they
//! are the curve.

use model::log::LogError;

use crate::error::LoadError;

/// Why the search could not run. Unsustainable steps are not errors: they
/// are the curve.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// An option is out of range or contradicts another.
    #[error("{0}")]
    Invalid(String),
    /// A step could not be set up or run.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A step's log could not be read back.
    #[error("step log: {0}")]
    Log(#[from] LogError),
}
