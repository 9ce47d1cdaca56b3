//! `runbook unlock RUN_ID --holder HOLDER`: break the lease of a run on S3 whose holder
//! is gone, so that `resume` can take it. A lease that still runs is never broken.

use crate::cli::Global;
use crate::error::{Outcome, invalid};
use crate::state::s3::lease::{self, UnlockError, Unlocked};
use crate::state::{self, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run whose lock to break (`runbook runs` lists them).
    pub run_id: String,
    /// The holder the refusal named (`user@host:pid`): the lock is broken only if it is
    /// still that holder's.
    #[arg(long, value_name = "HOLDER")]
    pub holder: String,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<Outcome> {
    state::check_run_id(&args.run_id).map_err(invalid)?;
    let store = Store::open(global)?;
    let Some(s3) = &store.s3 else {
        return Err(invalid(format!(
            "the state dir {} is a local folder, whose run locks are OS locks that end with their process: there is nothing to unlock",
            global.state_dir.display()
        )));
    };
    store.pull(&args.run_id, false)?;
    store
        .dir
        .run_dir(&args.run_id)
        .map_err(|e| invalid(e.to_string()))?;
    match lease::unlock(&s3.remote, &args.run_id, &args.holder) {
        Ok(Unlocked::Broken(holder)) => {
            println!(
                "run {} unlocked: the lease of {} (since {}) is broken\ncontinue with: runbook resume {} --state-dir {}",
                args.run_id,
                holder.holder,
                holder
                    .since
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                args.run_id,
                s3.remote.url
            );
            Ok(Outcome::Success)
        }
        Ok(Unlocked::Free) => {
            println!("run {} is not locked: nothing to unlock", args.run_id);
            Ok(Outcome::Success)
        }
        Err(e @ UnlockError::OtherHolder { .. }) => Err(invalid(e.to_string())),
        Err(e) => Err(e.into()),
    }
}
