//! `runbook plan FILE`: validate, render and print every step. Changes nothing.

use std::path::PathBuf;

use crate::cli::Global;
use crate::error::{Outcome, invalid};
use crate::platform::PlatformKind;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Text,
    Md,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The runbook file.
    pub file: PathBuf,
    /// The control plane: real local servers (a rehearsal) or AWS.
    #[arg(long, value_enum, default_value_t = PlatformKind::Local)]
    pub platform: PlatformKind,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    let rb = super::run::load_runbook(&args.file)?;
    let params = crate::vars::resolve(&rb, &global.vars, global.vars_file.as_deref(), None, &[])?;
    crate::endpoint::Resolver::parse(&global.resolve).map_err(|e| invalid(e.to_string()))?;
    let platform = crate::platform::for_plan(args.platform);
    let plan = crate::plan::checked(&rb, &params, platform.as_ref())?;
    let text = match args.format {
        Format::Text => plan.to_text(),
        Format::Md => plan.to_markdown(),
        Format::Json => serde_json::to_string_pretty(&plan)?,
    };
    println!("{}", params.redactor.redact(text.trim_end()));
    Ok(Outcome::Success)
}
