//! Waiting for AWS: poll with backoff until done, failed, or past a deadline.
//!
//! AWS control-plane changes take minutes. Every wait here has a deadline, polls with a
//! growing interval, and tells the person watching (and the journal) each status change
//! and each ElastiCache event as it happens, so a long wait is never a silent one. A wait
//! that runs out of time ends with a message that says the change goes on in AWS and
//! that resuming the run picks the wait up again: every operation observes first.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_elasticache::types::SourceType;
use aws_smithy_types::DateTime;
use tokio::time::Instant;

use super::sdk_error;
use crate::actions::{ActionError, StepCtx};

/// How often and how long to poll.
#[derive(Clone, Copy, Debug)]
pub struct WaitSettings {
    /// The first pause between two polls.
    pub first: Duration,
    /// The longest pause between two polls (the pause doubles up to this).
    pub max: Duration,
    /// How long one wait may take in all.
    pub deadline: Duration,
}

impl Default for WaitSettings {
    fn default() -> WaitSettings {
        WaitSettings {
            first: Duration::from_secs(5),
            max: Duration::from_secs(30),
            deadline: Duration::from_secs(90 * 60),
        }
    }
}

/// What one poll saw.
pub enum Poll<T> {
    /// Finished; the value is the wait's result.
    Done(T),
    /// Not yet; the text is the status to show when it changes.
    Pending(String),
    /// It will not finish well; the text says why.
    Failed(String),
}

/// ElastiCache events of one replication group, shown as they appear.
pub struct Events<'a> {
    client: &'a aws_sdk_elasticache::Client,
    group: String,
    kind: SourceType,
    since: std::sync::Mutex<(DateTime, HashSet<String>)>,
    /// Shared by the whole target: once AWS (or an emulator) says it has no DescribeEvents,
    /// stop asking.
    unsupported: &'a AtomicBool,
}

impl<'a> Events<'a> {
    /// Events of `group` from now on.
    pub fn new(
        client: &'a aws_sdk_elasticache::Client,
        group: &str,
        unsupported: &'a AtomicBool,
    ) -> Events<'a> {
        Events::of(client, group, SourceType::ReplicationGroup, unsupported)
    }

    /// Events of the source `id` of kind `kind` (a serverless cache, …) from now on.
    pub fn of(
        client: &'a aws_sdk_elasticache::Client,
        id: &str,
        kind: SourceType,
        unsupported: &'a AtomicBool,
    ) -> Events<'a> {
        // A little before now: AWS stamps an event when the change is accepted.
        let since = DateTime::from_secs(chrono::Utc::now().timestamp() - 60);
        Events {
            client,
            group: id.to_string(),
            kind,
            since: std::sync::Mutex::new((since, HashSet::new())),
            unsupported,
        }
    }

    /// Notes every event not seen yet, oldest first, and returns their messages.
    pub async fn pump(&self, ctx: &StepCtx<'_>) -> Vec<String> {
        if self.unsupported.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let start = self.since.lock().unwrap_or_else(|e| e.into_inner()).0;
        let result = self
            .client
            .describe_events()
            .source_identifier(&self.group)
            .source_type(self.kind.clone())
            .start_time(start)
            .send()
            .await;
        let events = match result {
            Ok(out) => out.events.unwrap_or_default(),
            Err(e) => {
                let err = sdk_error("elasticache:DescribeEvents", e);
                if !err.transient {
                    self.unsupported.store(true, Ordering::Relaxed);
                    ctx.note(format!(
                        "ElastiCache events are not available ({err}); status changes only"
                    ));
                }
                return Vec::new();
            }
        };
        let mut sorted: Vec<_> = events.iter().collect();
        sorted.sort_by_key(|e| e.date().map(|d| (d.secs(), d.subsec_nanos())));
        let mut new = Vec::new();
        let mut state = self.since.lock().unwrap_or_else(|e| e.into_inner());
        for event in sorted {
            let message = event.message().unwrap_or_default().to_string();
            let date = event.date().copied().unwrap_or(state.0);
            let key = format!("{}/{}", date.secs(), message);
            if state.1.insert(key) {
                ctx.note(format!("event {}: {message}", format_date(date)));
                new.push(message);
            }
            if date.secs() > state.0.secs() {
                state.0 = date;
            }
        }
        new
    }
}

/// An AWS timestamp as RFC 3339.
pub fn format_date(date: DateTime) -> String {
    date.fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| date.secs().to_string())
}

/// Polls `check` until it is done or failed, or until the deadline passes. `what` names
/// the thing waited for in notes and errors (`replication group g to be available`).
pub async fn until<T, F, Fut>(
    ctx: &StepCtx<'_>,
    settings: &WaitSettings,
    what: &str,
    events: Option<&Events<'_>>,
    mut check: F,
) -> Result<T, ActionError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, ActionError>>,
{
    let started = Instant::now();
    let deadline = started + settings.deadline;
    let mut pause = settings.first;
    let mut last_status: Option<String> = None;
    loop {
        let poll = check().await?;
        if let Some(events) = events {
            events.pump(ctx).await;
        }
        match poll {
            Poll::Done(value) => return Ok(value),
            Poll::Failed(why) => {
                return Err(ActionError::fatal(format!(
                    "while waiting for {what}: {why}"
                )));
            }
            Poll::Pending(status) => {
                if last_status.as_deref() != Some(status.as_str()) {
                    ctx.note(format!("waiting for {what}: {status}"));
                    last_status = Some(status);
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ActionError::transient(format!(
                "gave up waiting for {what} after {} (last status: {}); the change goes on in AWS, and resuming the run (`runbook resume RUN_ID`) observes it again and keeps waiting",
                crate::duration::format(settings.deadline),
                last_status.as_deref().unwrap_or("unknown"),
            )));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(settings.max);
    }
}
