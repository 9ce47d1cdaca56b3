//! The integration tests, compiled into one binary (one link instead of one per file).
//! They run the real `runbook` binary against real servers on free loopback ports.

mod bench;
mod support;
