//! What a run sends when it is not `input.py`'s prompts: LLM workloads
//! shaped like the ones LLM teams benchmark with. [`lengths`] draws token
//! lengths from a distribution; [`prompt`] makes prompts of a token length
//! (exact under a local `tokenizer.json`); [`trace`] reads production
//! traces to replay (Mooncake, Azure, BurstGPT).

pub(crate) mod lengths;
pub(crate) mod prompt;
pub(crate) mod trace;
