//! Why a probe request failed, in the handful of classes an operator acts on.
//!
//! A refused connection, a reset, a timeout, a read-only replica, a loading node, a
//! cluster redirect and an authentication failure each point to a different cause
//! (a stopped node, a failover, a node restarting, a wrong password), so the report
//! counts them apart.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::resp::RespError;

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

    /// Classifies a failed request or connection attempt.
    pub fn of(err: &RespError) -> ErrorClass {
        match err {
            RespError::Io(e) => match e.kind() {
                std::io::ErrorKind::ConnectionRefused => ErrorClass::Refused,
                std::io::ErrorKind::TimedOut => ErrorClass::Timeout,
                _ => ErrorClass::Reset,
            },
            RespError::Timeout(_) => ErrorClass::Timeout,
            RespError::Closed => ErrorClass::Reset,
            RespError::Login(_) => ErrorClass::Auth,
            RespError::Server(text) => ErrorClass::of_reply(text.as_bytes()),
            RespError::Protocol(_)
            | RespError::Tls(_)
            | RespError::TlsName { .. }
            | RespError::Select(_) => ErrorClass::Other,
        }
    }

    /// Classifies an error reply by its code (`READONLY You can't write…`).
    pub fn of_reply(text: &[u8]) -> ErrorClass {
        let code = text.split(|&b| b == b' ').next().unwrap_or_default();
        match code {
            b"READONLY" => ErrorClass::Readonly,
            b"LOADING" => ErrorClass::Loading,
            b"MOVED" | b"ASK" => ErrorClass::Moved,
            b"NOPERM" | b"WRONGPASS" | b"NOAUTH" => ErrorClass::Auth,
            _ => ErrorClass::Other,
        }
    }
}

/// What kind of trouble a run of failed requests was: each points to another cause and
/// asks for another reading of its duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageKind {
    /// The server answered with an error that is neither a refusal nor a connection failure
    /// (MOVED, OOM, NOPERM, ERR…).
    Error,
    /// The server refused the request as it is meant to in its state: READONLY on a replica
    /// (a migration target that replicates), LOADING while it loads its data set.
    Refusal,
    /// No answer within the timeout while the connection stayed open (a frozen server, a
    /// paused client, a fork).
    Stall,
    /// The connection failed: refused, reset, closed, or it could not be opened in time.
    Disconnect,
}

impl OutageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutageKind::Error => "error",
            OutageKind::Refusal => "refusal",
            OutageKind::Stall => "stall",
            OutageKind::Disconnect => "disconnect",
        }
    }

    /// The kind of an error reply of the server (the connection is fine).
    pub fn of_reply(class: ErrorClass) -> OutageKind {
        match class {
            ErrorClass::Readonly | ErrorClass::Loading => OutageKind::Refusal,
            _ => OutageKind::Error,
        }
    }
}

impl fmt::Display for OutageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
        let io = |kind: std::io::ErrorKind| ErrorClass::of(&RespError::Io(kind.into()));
        assert_eq!(
            io(std::io::ErrorKind::ConnectionRefused),
            ErrorClass::Refused
        );
        assert_eq!(io(std::io::ErrorKind::ConnectionReset), ErrorClass::Reset);
        assert_eq!(io(std::io::ErrorKind::TimedOut), ErrorClass::Timeout);
        assert_eq!(ErrorClass::of(&RespError::Closed), ErrorClass::Reset);
        let login = RespError::Login("WRONGPASS invalid username-password pair".into());
        assert_eq!(ErrorClass::of(&login), ErrorClass::Auth);
        let replies = [
            (
                "READONLY You can't write against a read only replica.",
                ErrorClass::Readonly,
            ),
            (
                "LOADING Redis is loading the dataset in memory",
                ErrorClass::Loading,
            ),
            ("MOVED 3999 127.0.0.1:6381", ErrorClass::Moved),
            ("NOPERM this user has no permissions", ErrorClass::Auth),
            ("ERR unknown command", ErrorClass::Other),
        ];
        for (text, class) in replies {
            assert_eq!(
                ErrorClass::of(&RespError::Server(text.into())),
                class,
                "{text}"
            );
        }
        let kinds = [ErrorClass::Readonly, ErrorClass::Loading, ErrorClass::Moved]
            .map(OutageKind::of_reply);
        assert_eq!(
            kinds,
            [OutageKind::Refusal, OutageKind::Refusal, OutageKind::Error]
        );
        assert!(OutageKind::Disconnect > OutageKind::Stall);
    }
}
