//! One Redis-protocol client for the data plane: verify, bench, probe and seed.
//!
//! They need the same things (the `--resolve` rule, TLS, AUTH, SELECT) and they need
//! speed: a check reads every value of a cache, a benchmark must never be slower than the
//! server it measures, a probe times each request. So a [`Conn`] is one socket and one read
//! buffer: a [`Pipeline`]'s commands go out in one write and the replies are read in place,
//! framed and read where they lie in the buffer ([`Frame`]) or only framed ([`Reply`]),
//! never copied into owned values. A cluster node, another database or a replica is an [`Endpoint`]
//! with other coordinates, reached the same way; [`cluster`] says which node owns a key.
//!
//! [`Endpoint`]: crate::endpoint::Endpoint

pub mod cluster;
mod conn;
mod frame;
mod pipeline;
mod pool;
mod tls;

pub use conn::{Conn, Reply, RespError};
#[cfg(test)]
pub use frame::decoded;
pub use frame::{Frame, NotResp, Span, span};
pub use pipeline::{Args, Pipeline, num};
pub use pool::{Lease, Pool};
