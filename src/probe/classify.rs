//! Why a probe request failed, in the handful of classes an operator acts on.
//!
//! A refused connection, a reset, a timeout, a read-only replica, a loading node, a
//! cluster redirect and an authentication failure each point to a different cause
//! (a stopped node, a failover, a node restarting, a wrong password), so the report
//! counts them apart.

use std::fmt;

use redis::{ErrorKind, RedisError, ServerErrorKind};
use serde::{Deserialize, Serialize};

/// The class of a failed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Nothing listens on the address (the node is down or restarting).
    Refused,
    /// The connection was reset or closed under the client.
    Reset,
    /// No answer within the per-request timeout.
    Timeout,
    /// The node is a replica and refuses writes (READONLY).
    Readonly,
    /// The node is loading its data set (LOADING).
    Loading,
    /// A cluster redirect (MOVED / ASK).
    Moved,
    /// Authentication or authorization failed (WRONGPASS, NOAUTH, NOPERM).
    Auth,
    /// Anything else.
    Other,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Refused => "refused",
            ErrorClass::Reset => "reset",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Readonly => "readonly",
            ErrorClass::Loading => "loading",
            ErrorClass::Moved => "moved",
            ErrorClass::Auth => "auth",
            ErrorClass::Other => "other",
        }
    }

    /// Whether the connection is unusable after this error (the server answered
    /// otherwise, and the connection can be kept).
    pub fn drops_connection(self) -> bool {
        matches!(
            self,
            ErrorClass::Refused | ErrorClass::Reset | ErrorClass::Timeout | ErrorClass::Other
        )
    }

    /// Classifies an error of the `redis` crate.
    pub fn of(err: &RedisError) -> ErrorClass {
        if err.is_connection_refusal() {
            return ErrorClass::Refused;
        }
        if err.is_timeout() {
            return ErrorClass::Timeout;
        }
        match err.kind() {
            ErrorKind::Server(ServerErrorKind::ReadOnly) => ErrorClass::Readonly,
            ErrorKind::Server(ServerErrorKind::BusyLoading) => ErrorClass::Loading,
            ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) => ErrorClass::Moved,
            ErrorKind::Server(ServerErrorKind::NoPerm) | ErrorKind::AuthenticationFailed => {
                ErrorClass::Auth
            }
            ErrorKind::Io => ErrorClass::Reset,
            _ if err.is_connection_dropped() => ErrorClass::Reset,
            _ => match err.code() {
                Some("WRONGPASS" | "NOAUTH") => ErrorClass::Auth,
                _ => {
                    let text = err.to_string();
                    if text.contains("WRONGPASS") || text.contains("NOAUTH") {
                        ErrorClass::Auth
                    } else {
                        ErrorClass::Other
                    }
                }
            },
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_io_and_server_errors() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(ErrorClass::of(&refused), ErrorClass::Refused);
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(ErrorClass::of(&reset), ErrorClass::Reset);
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(ErrorClass::of(&timeout), ErrorClass::Timeout);
        assert!(!ErrorClass::Readonly.drops_connection());
        assert!(ErrorClass::Reset.drops_connection());
    }
}
