//! One module per command: its flags (`Args`) and its `run`.

pub mod bench;
pub mod completions;
pub mod destroy;
pub mod plan;
pub mod probe;
pub mod report;
pub mod resume;
pub mod run;
pub mod runs;
pub mod schema;
pub mod seed;
pub mod show;
pub mod unlock;
pub mod verify;

/// Output of the listing commands (`runs`, `show`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}
