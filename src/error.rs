//! Outcomes and exit statuses.
//!
//! Libraries return their own error types; commands turn them into `anyhow` errors at the
//! edge. Input problems are wrapped in [`InvalidInput`] so `main` can tell them apart and
//! exit with 2, as the command surface promises.

/// How a command ended when it did not hit an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// Exit status 0.
    Success = 0,
    /// Exit status 1: the run, the check or the comparison failed.
    Failed = 1,
}

/// The runbook, a flag or a variable is wrong: exit status 2. The message is complete
/// (locations, snippets, suggestions) and printed as is.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// Exit status 2 for invalid input anywhere in the chain, else 1.
pub fn exit_status(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| e.is::<InvalidInput>()) {
        2
    } else {
        1
    }
}

/// Shorthand for an [`InvalidInput`] error.
pub fn invalid(message: impl Into<String>) -> anyhow::Error {
    InvalidInput(message.into()).into()
}
