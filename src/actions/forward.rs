//! The actions that only forward one control-plane request to the run's platform
//! (`stack.deploy`, `group.describe`, `migration.start`, ...): one generic action,
//! registered once per request type, whose outputs are the request's reply.

use async_trait::async_trait;

use super::{
    Action, ActionError, ActionSpec, Declared, Effect, Operation, Outputs, PlanCtx, StepCtx,
};
use crate::platform::{Handles, Platform, Request};

/// The registry entry of the action `name` that forwards `R`: its inputs are `R`'s
/// fields, its outputs the fields of `R::Reply`, its effect `R`'s.
pub const fn spec<R: Request>(name: &'static str, summary: &'static str) -> ActionSpec
where
    for<'p> dyn Platform + 'p: Handles<R>,
{
    ActionSpec {
        name,
        summary,
        outputs: Declared::Reply(super::schema::<R::Reply>),
        effect: R::EFFECT,
        build: build::<R>,
        schema: super::schema::<R>,
    }
}

fn build<R: Request>(inputs: serde_json::Value) -> Result<Box<dyn Action>, serde_json::Error>
where
    for<'p> dyn Platform + 'p: Handles<R>,
{
    Ok(Box::new(Forward::<R>(serde_json::from_value(inputs)?)))
}

/// A request, parsed from a step's inputs, waiting to be forwarded.
struct Forward<R>(R);

#[async_trait]
impl<R: Request> Action for Forward<R>
where
    for<'p> dyn Platform + 'p: Handles<R>,
{
    fn effect(&self) -> Effect {
        self.0.effect()
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Vec<Operation> {
        ctx.platform.plan(ctx, &self.0)
    }

    async fn run(&self, ctx: &StepCtx<'_>) -> Result<Outputs, ActionError> {
        let reply = ctx.platform.serve(ctx, &self.0).await?;
        super::outputs_of(&reply)
    }
}

#[cfg(test)]
mod tests {
    use crate::actions::lookup;

    fn names(action: &str) -> Vec<String> {
        let mut names = lookup(action).expect("registered").outputs.names();
        names.sort();
        names
    }

    #[test]
    fn outputs_are_the_fields_of_the_reply_flattened_ones_included() {
        let group = [
            "auth",
            "cluster_mode",
            "configuration_endpoint",
            "engine",
            "engine_version",
            "id",
            "nodes",
            "primary_endpoint",
            "shards",
            "status",
            "tls",
        ];
        assert_eq!(names("group.describe"), group);
        assert_eq!(names("engine.modify"), group);
        assert_eq!(names("snapshot.restore"), group);
        let mut started: Vec<&str> = group.to_vec();
        started.push("replication");
        started.sort();
        assert_eq!(names("migration.start"), started);
        assert_eq!(
            names("snapshot.create"),
            ["engine", "engine_version", "group", "snapshot", "status"]
        );
        assert_eq!(names("stack.delete"), ["deleted", "stack_name"]);
        assert_eq!(names("metrics.capture"), ["group", "metrics", "windows"]);
    }

    #[test]
    fn a_stack_accepts_any_output_name_and_other_replies_only_their_fields() {
        let deploy = lookup("stack.deploy").unwrap().outputs;
        assert!(deploy.accepts("ValkeyPrimaryEndpoint"));
        assert!(deploy.accepts("stack_status"));
        let describe = lookup("group.describe").unwrap().outputs;
        assert!(describe.accepts("primary_endpoint"));
        assert!(!describe.accepts("replication_offset"));
        let start = lookup("migration.start").unwrap().outputs;
        assert!(start.accepts("replication"));
        assert!(!start.accepts("replication_offset"));
    }
}
