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

/// An error and its causes on one line, `outer: cause: root`, for the places that keep
/// an error as text (a step's failure in the journal, a warning). Error types keep their
/// cause in `source`, never in their message, so each cause shows once.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        line.push_str(": ");
        line.push_str(&e.to_string());
        cause = e.source();
    }
    line
}

/// Shorthand for an [`InvalidInput`] error.
pub fn invalid(message: impl Into<String>) -> anyhow::Error {
    InvalidInput(message.into()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot connect")]
    struct Connect {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_is_shown_once() {
        let refused = std::io::Error::other("WRONGPASS invalid password");
        let connect = Connect { source: refused };
        assert_eq!(
            chain(&connect),
            "cannot connect: WRONGPASS invalid password"
        );
        let err = anyhow::Error::from(connect).context("the check failed");
        assert_eq!(
            format!("{err:#}"),
            "the check failed: cannot connect: WRONGPASS invalid password"
        );
        let plain = anyhow::anyhow!("disk full").context("cannot save");
        assert_eq!(format!("{plain:#}"), "cannot save: disk full");
    }
}
