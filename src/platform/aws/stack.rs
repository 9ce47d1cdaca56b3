//! CloudFormation stacks: create, update through a change set, delete.
//!
//! A deploy observes the stack first: absent means CreateStack, present means a change
//! set (so nothing changes that the template does not ask for, and an unchanged template
//! is a no-op), in progress means wait. Stack events stream to the progress display while
//! it waits, and a failure names the resources that failed and why.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use aws_sdk_cloudformation::types::{Capability, ChangeSetStatus, ChangeSetType, Parameter, Stack};

use super::wait::{self, Poll};
use super::{Aws, sdk_error};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{DeleteStack, DeployStack, StackDeleted, StackDeployed};

#[async_trait::async_trait]
impl Handles<DeployStack> for Aws {
    fn explain(&self, ctx: &PlanCtx<'_>, request: &DeployStack) -> Vec<Operation> {
        let stack_name = &request.stack_name;
        let template = ctx.base_dir.join(&request.template);
        let parameters = &request.parameters;
        vec![
            Operation::new("aws", "cloudformation:DescribeStacks").param("StackName", stack_name),
            Operation::new("aws", "cloudformation:CreateStack")
                .param("StackName", stack_name)
                .param("TemplateBody", template.display().to_string())
                .param("Parameters", parameters)
                .param("Capabilities", ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
                .param("when", "the stack does not exist"),
            Operation::new("aws", "cloudformation:CreateChangeSet")
                .param("StackName", stack_name)
                .param("ChangeSetType", "UPDATE")
                .param("TemplateBody", template.display().to_string())
                .param("Parameters", parameters)
                .param("when", "the stack exists"),
            Operation::new("aws", "cloudformation:DescribeChangeSet")
                .param("when", "the stack exists"),
            Operation::new("aws", "cloudformation:ExecuteChangeSet").param(
                "when",
                "the change set has changes (may replace resources it lists)",
            ),
            Operation::wait(format!(
                "until {stack_name} is CREATE_COMPLETE or UPDATE_COMPLETE"
            )),
            Operation::new("aws", "cloudformation:DescribeStackEvents")
                .param("StackName", stack_name),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &DeployStack,
    ) -> Result<StackDeployed, ActionError> {
        deploy(
            self,
            ctx,
            &request.stack_name,
            &ctx.path(&request.template),
            &request.parameters,
        )
        .await
    }
}

#[async_trait::async_trait]
impl Handles<DeleteStack> for Aws {
    fn explain(&self, _: &PlanCtx<'_>, request: &DeleteStack) -> Vec<Operation> {
        let stack_name = &request.stack_name;
        vec![
            Operation::new("aws", "cloudformation:DescribeStacks").param("StackName", stack_name),
            Operation::new("aws", "cloudformation:DeleteStack")
                .param("StackName", stack_name)
                .param("when", "the stack exists")
                .destructive(),
            Operation::wait(format!("until {stack_name} is DELETE_COMPLETE")),
            Operation::new("aws", "cloudformation:DescribeStackEvents")
                .param("StackName", stack_name),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &DeleteStack,
    ) -> Result<StackDeleted, ActionError> {
        let name = &request.stack_name;
        Ok(StackDeleted {
            stack_name: name.clone(),
            deleted: delete(self, ctx, name).await?,
        })
    }
}

/// The stack, or `None` when there is none of that name.
async fn find(aws: &Aws, name: &str) -> Result<Option<Stack>, ActionError> {
    match aws
        .clients
        .cloudformation
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(out.stacks.unwrap_or_default().into_iter().next()),
        Err(e)
            if e.as_service_error()
                .and_then(|s| aws_sdk_cloudformation::error::ProvideErrorMetadata::message(s))
                .is_some_and(|m| m.contains("does not exist")) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error("cloudformation:DescribeStacks", e)),
    }
}

fn stack_status(stack: &Stack) -> &str {
    stack
        .stack_status()
        .map(|s| s.as_str())
        .unwrap_or("UNKNOWN")
}

/// Stack events of one operation, streamed as notes; failures kept for the error.
struct StackEvents {
    seen: std::sync::Mutex<HashSet<String>>,
    since: i64,
}

impl StackEvents {
    fn new() -> StackEvents {
        StackEvents {
            seen: Default::default(),
            since: chrono::Utc::now().timestamp() - 5,
        }
    }

    /// Notes the events not seen yet (oldest first); returns every failure seen so far.
    async fn pump(
        &self,
        aws: &Aws,
        ctx: &StepCtx<'_>,
        name: &str,
    ) -> Result<Vec<String>, ActionError> {
        let out = aws
            .clients
            .cloudformation
            .describe_stack_events()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| sdk_error("cloudformation:DescribeStackEvents", e))?;
        let mut events: Vec<_> = out
            .stack_events()
            .iter()
            .filter(|e| e.timestamp().is_some_and(|t| t.secs() >= self.since))
            .collect();
        events.reverse();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut failures = Vec::new();
        for event in events {
            let status = event
                .resource_status()
                .map(|s| s.as_str())
                .unwrap_or_default();
            let line = format!(
                "{} {} {}{}",
                event.logical_resource_id().unwrap_or_default(),
                event.resource_type().unwrap_or_default(),
                status,
                event
                    .resource_status_reason()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            if status.ends_with("_FAILED") {
                failures.push(line.clone());
            }
            if seen.insert(event.event_id().unwrap_or(&line).to_string()) {
                ctx.note(line);
            }
        }
        Ok(failures)
    }
}

/// Waits until the stack leaves every `*_IN_PROGRESS` status; returns it (or `None` once gone).
async fn settle(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    name: &str,
    events: &StackEvents,
) -> Result<Option<Stack>, ActionError> {
    wait::until(ctx, &aws.wait, &format!("stack {name}"), None, || async {
        let stack = find(aws, name).await?;
        if stack.is_some() {
            events.pump(aws, ctx, name).await?;
        }
        Ok(match stack {
            Some(s) if stack_status(&s).ends_with("_IN_PROGRESS") => {
                Poll::Pending(stack_status(&s).to_string())
            }
            other => Poll::Done(other),
        })
    })
    .await
}

/// The failure message of a stack operation, with the resources that failed.
async fn failed(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    name: &str,
    status: &str,
    events: &StackEvents,
) -> ActionError {
    let failures = events.pump(aws, ctx, name).await.unwrap_or_default();
    let detail = if failures.is_empty() {
        String::from("no failed resource events were found")
    } else {
        failures.join("; ")
    };
    ActionError::fatal(format!("stack {name} ended in {status}: {detail}"))
}

/// Creates the stack or updates it through a change set, and waits.
async fn deploy(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    name: &str,
    template: &Path,
    parameters: &BTreeMap<String, String>,
) -> Result<StackDeployed, ActionError> {
    let body = std::fs::read_to_string(template).map_err(|e| {
        ActionError::fatal(format!(
            "cannot read the template {}: {e}",
            template.display()
        ))
    })?;
    let params: Vec<Parameter> = parameters
        .iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect();
    let capabilities = vec![Capability::CapabilityIam, Capability::CapabilityNamedIam];
    let events = StackEvents::new();
    let mut existing = find(aws, name).await?;
    if existing
        .as_ref()
        .is_some_and(|s| stack_status(s).ends_with("_IN_PROGRESS"))
    {
        ctx.note(format!("stack {name} is busy: waiting for it first"));
        existing = settle(aws, ctx, name, &events).await?;
    }
    match existing.as_ref().map(stack_status) {
        None | Some("DELETE_COMPLETE") => {
            aws.clients
                .cloudformation
                .create_stack()
                .stack_name(name)
                .template_body(&body)
                .set_parameters(Some(params))
                .set_capabilities(Some(capabilities))
                .send()
                .await
                .map_err(|e| sdk_error("cloudformation:CreateStack", e))?;
            ctx.note(format!("CreateStack accepted for {name}"));
        }
        Some("ROLLBACK_COMPLETE") => {
            return Err(failed(aws, ctx, name, "ROLLBACK_COMPLETE after a failed creation; delete it (a `stack.delete` step) and run again", &events).await);
        }
        Some(_) => {
            if !update(aws, ctx, name, &body, params, capabilities).await? {
                ctx.note(format!("stack {name} is up to date: no changes"));
            }
        }
    }
    let stack = settle(aws, ctx, name, &events).await?.ok_or_else(|| {
        ActionError::fatal(format!("stack {name} disappeared while it was deployed"))
    })?;
    let status = stack_status(&stack).to_string();
    if !matches!(
        status.as_str(),
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE"
    ) {
        return Err(failed(aws, ctx, name, &status, &events).await);
    }
    Ok(StackDeployed {
        stack_name: name.to_string(),
        stack_id: stack.stack_id().unwrap_or_default().to_string(),
        stack_status: status,
        outputs: stack
            .outputs()
            .iter()
            .filter_map(|o| {
                let key = o.output_key()?;
                Some((
                    key.to_string(),
                    o.output_value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
    })
}

/// Updates through a change set; false when the template changes nothing.
async fn update(
    aws: &Aws,
    ctx: &StepCtx<'_>,
    name: &str,
    body: &str,
    params: Vec<Parameter>,
    capabilities: Vec<Capability>,
) -> Result<bool, ActionError> {
    let cf = &aws.clients.cloudformation;
    let change_set = format!("runbook-{}", chrono::Utc::now().format("%Y%m%d%H%M%S%3f"));
    cf.create_change_set()
        .stack_name(name)
        .change_set_name(&change_set)
        .change_set_type(ChangeSetType::Update)
        .template_body(body)
        .set_parameters(Some(params))
        .set_capabilities(Some(capabilities))
        .send()
        .await
        .map_err(|e| sdk_error("cloudformation:CreateChangeSet", e))?;
    let ready = wait::until(
        ctx,
        &aws.wait,
        &format!("change set {change_set}"),
        None,
        || async {
            let cs = cf
                .describe_change_set()
                .stack_name(name)
                .change_set_name(&change_set)
                .send()
                .await
                .map_err(|e| sdk_error("cloudformation:DescribeChangeSet", e))?;
            let reason = cs.status_reason().unwrap_or_default().to_string();
            Ok(match cs.status() {
                Some(ChangeSetStatus::CreateComplete) => Poll::Done(Some(cs.changes().len())),
                Some(ChangeSetStatus::Failed)
                    if reason.contains("didn't contain changes")
                        || reason.contains("No updates") =>
                {
                    Poll::Done(None)
                }
                Some(ChangeSetStatus::Failed) => {
                    Poll::Failed(format!("the change set failed: {reason}"))
                }
                other => Poll::Pending(other.map(|s| s.as_str().to_string()).unwrap_or_default()),
            })
        },
    )
    .await?;
    let Some(changes) = ready else {
        // Best effort: an empty change set left behind is harmless.
        let _ = cf
            .delete_change_set()
            .stack_name(name)
            .change_set_name(&change_set)
            .send()
            .await;
        return Ok(false);
    };
    cf.execute_change_set()
        .stack_name(name)
        .change_set_name(&change_set)
        .send()
        .await
        .map_err(|e| sdk_error("cloudformation:ExecuteChangeSet", e))?;
    ctx.note(format!(
        "ExecuteChangeSet {change_set} accepted for {name} ({changes} changes)"
    ));
    Ok(true)
}

/// Deletes the stack (unless it is gone) and waits until it is; false when there was
/// nothing to delete.
async fn delete(aws: &Aws, ctx: &StepCtx<'_>, name: &str) -> Result<bool, ActionError> {
    let events = StackEvents::new();
    let existed = match find(aws, name).await? {
        None => {
            ctx.note(format!("stack {name} does not exist: nothing to delete"));
            false
        }
        Some(s) if stack_status(&s) == "DELETE_COMPLETE" => {
            ctx.note(format!("stack {name} is already deleted"));
            false
        }
        Some(_) => {
            aws.clients
                .cloudformation
                .delete_stack()
                .stack_name(name)
                .send()
                .await
                .map_err(|e| sdk_error("cloudformation:DeleteStack", e))?;
            ctx.note(format!("DeleteStack accepted for {name}"));
            true
        }
    };
    let remaining = wait::until(
        ctx,
        &aws.wait,
        &format!("stack {name} to be deleted"),
        None,
        || async {
            let stack = find(aws, name).await?;
            Ok(match stack {
                None => Poll::Done(None),
                Some(s) => match stack_status(&s) {
                    "DELETE_COMPLETE" => Poll::Done(None),
                    "DELETE_FAILED" => Poll::Done(Some(s)),
                    other => Poll::Pending(other.to_string()),
                },
            })
        },
    )
    .await?;
    if remaining.is_some() {
        return Err(failed(aws, ctx, name, "DELETE_FAILED", &events).await);
    }
    Ok(existed)
}
