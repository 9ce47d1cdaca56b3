//! A stack's template rehearsed: its replication groups and self-hosted servers become
//! server processes ([`template`](super::template) reads it), the rest is recorded as
//! simulated; deleting the stack stops them.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use async_trait::async_trait;

use super::cluster;
use super::secure;
use super::server::Engine;
use super::serverless;
use super::state::{Group, GroupKind, Serverless, Shard, Stack, StackResource};
use super::template::{self, Scope, Template};
use super::{Local, LocalError, Result, Run};
use crate::actions::{ActionError, Operation, PlanCtx, StepCtx};
use crate::platform::Handles;
use crate::platform::contract::{DeleteStack, DeployStack, StackDeleted, StackDeployed};

/// A replication group or server of the template, before it starts: its logical id, the
/// group, the nodes of each shard, the engine, and the AUTH token.
type Planned = (String, Group, Vec<u32>, Engine, Option<String>);

/// The servers of a self-hosted source: one, or a cluster of `Shards` primaries (its
/// Metadata marker) with the slots split as ElastiCache splits them, so a sharded target
/// has a source sharded alike.
fn instance_layout(context: &str, shards: Option<&Value>) -> Result<cluster::Layout> {
    let count = match shards.map(template::text) {
        None => 1,
        Some(text) => text
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| {
                LocalError::Refused(format!(
                    "{context}.Metadata.Runbook.Shards: `{text}` is not a shard count from 1 to 500"
                ))
            })?,
    };
    if count == 1 {
        return Ok(cluster::Layout {
            cluster_mode: false,
            shards: Vec::new(),
            nodes: vec![1],
        });
    }
    Ok(cluster::Layout {
        cluster_mode: true,
        shards: cluster::even_slots(count)
            .into_iter()
            .enumerate()
            .map(|(i, range)| Shard {
                id: format!("{:04}", i + 1),
                slots: vec![range],
            })
            .collect(),
        nodes: vec![1; usize::from(count)],
    })
}

/// What a stack rehearsed on this machine reports as its id.
fn stack_id(name: &str) -> String {
    format!("local/{name}")
}

#[async_trait]
impl Handles<DeployStack> for Local {
    fn explain(&self, ctx: &PlanCtx<'_>, request: &DeployStack) -> Vec<Operation> {
        vec![
            Operation::new(
                "process",
                format!(
                    "start the servers of {}",
                    ctx.base_dir.join(&request.template).display()
                ),
            )
            .param("stack_name", &request.stack_name)
            .param("parameters", &request.parameters),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &DeployStack,
    ) -> Result<StackDeployed, ActionError> {
        let mut run = self.open(ctx).await?;
        let name = &request.stack_name;
        let outputs = run
            .deploy(name, &ctx.path(&request.template), &request.parameters)
            .await?;
        Ok(StackDeployed {
            stack_name: name.clone(),
            stack_id: stack_id(name),
            stack_status: "CREATE_COMPLETE".into(),
            outputs,
        })
    }
}

#[async_trait]
impl Handles<DeleteStack> for Local {
    fn explain(&self, _: &PlanCtx<'_>, request: &DeleteStack) -> Vec<Operation> {
        vec![
            Operation::new(
                "process",
                format!("stop every server of stack {}", request.stack_name),
            )
            .destructive(),
        ]
    }

    async fn call(
        &self,
        ctx: &StepCtx<'_>,
        request: &DeleteStack,
    ) -> Result<StackDeleted, ActionError> {
        let mut run = self.open(ctx).await?;
        Ok(StackDeleted {
            stack_name: request.stack_name.clone(),
            deleted: run.delete_stack(&request.stack_name).await?,
        })
    }
}

impl Run<'_, '_> {
    async fn deploy(
        &mut self,
        name: &str,
        template: &Path,
        parameters: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        if let Some(stack) = self.state.stacks.get(name) {
            let groups: Vec<String> = self.groups_of(name);
            let outputs = stack.outputs.clone();
            for g in &groups {
                self.ensure_group(g).await?;
            }
            self.ctx
                .note(format!("stack {name} is already deployed; its servers run"));
            return Ok(outputs);
        }
        let t = Template::load(template)?;
        let mut scope = Scope::default();
        for (k, v) in &t.parameters {
            scope.refs.insert(k.clone(), v.clone());
        }
        for (k, v) in parameters {
            if !t.parameters.contains_key(k) {
                return Err(LocalError::Refused(format!(
                    "parameter `{k}` is not declared in {} (declared: {})",
                    template.display(),
                    t.parameters.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            scope.refs.insert(k.clone(), Value::String(v.clone()));
        }
        for (k, v) in [
            ("AWS::StackName", name),
            ("AWS::Region", "local"),
            ("AWS::AccountId", "000000000000"),
            ("AWS::Partition", "aws"),
            ("AWS::URLSuffix", "amazonaws.com"),
        ] {
            scope.refs.insert(k.into(), Value::String(v.into()));
        }
        scope.refs.insert("AWS::NoValue".into(), Value::Null);
        scope.settle_conditions(&t.conditions)?;

        // First what each resource is and its Ref, so properties can refer to each other.
        let mut planned: Vec<Planned> = Vec::new();
        let mut resources = Vec::new();
        for (logical, r) in &t.resources {
            let ctx = format!("Resources.{logical}");
            if !scope.holds(r.condition.as_deref(), &ctx)? {
                continue;
            }
            // A property set to `AWS::NoValue` (often by `Fn::If`) is not set.
            let prop = |key: &str| -> Result<Option<Value>> {
                Ok(r.properties
                    .get(key)
                    .map(|v| scope.eval(v, &format!("{ctx}.Properties.{key}")))
                    .transpose()?
                    .filter(|v| !v.is_null()))
            };
            let marker = r.metadata.get("Runbook");
            let (kind, engine, layout, id) = match r.kind.as_str() {
                "AWS::ElastiCache::ReplicationGroup" => {
                    let engine_text = prop("Engine")?
                        .map(|v| template::text(&v))
                        .unwrap_or_else(|| "redis".into());
                    let engine = Engine::parse(&engine_text).ok_or_else(|| {
                        LocalError::Refused(format!(
                            "{ctx}: Engine `{engine_text}` is neither redis nor valkey"
                        ))
                    })?;
                    let layout = cluster::layout(&ctx, prop)?;
                    let id = prop("ReplicationGroupId")?
                        .map(|v| template::text(&v))
                        .unwrap_or_else(|| format!("{name}-{}", logical.to_ascii_lowercase()));
                    (GroupKind::ReplicationGroup, engine, layout, id)
                }
                "AWS::ElastiCache::ServerlessCache" => {
                    let engine_text = prop("Engine")?
                        .map(|v| template::text(&v))
                        .unwrap_or_else(|| "valkey".into());
                    let engine = Engine::parse(&engine_text).ok_or_else(|| {
                        LocalError::Refused(format!(
                            "{ctx}: Engine `{engine_text}` is neither redis nor valkey"
                        ))
                    })?;
                    let id = prop("ServerlessCacheName")?
                        .map(|v| template::text(&v))
                        .unwrap_or_else(|| format!("{name}-{}", logical.to_ascii_lowercase()));
                    let one = serverless::cache_group(&id, None, None);
                    (
                        GroupKind::Serverless,
                        engine,
                        cluster::Layout {
                            cluster_mode: true,
                            shards: one.shards,
                            nodes: vec![1],
                        },
                        id,
                    )
                }
                "AWS::EC2::Instance" if marker.is_some() => {
                    let marker = marker.expect("checked");
                    let engine_text = marker
                        .get("Engine")
                        .map(template::text)
                        .unwrap_or_else(|| "redis".into());
                    let engine = Engine::parse(&engine_text).ok_or_else(|| {
                        LocalError::Refused(format!("{ctx}: Metadata.Runbook.Engine `{engine_text}` is neither redis nor valkey"))
                    })?;
                    let shards = marker
                        .get("Shards")
                        .map(|v| scope.eval(v, &format!("{ctx}.Metadata.Runbook.Shards")))
                        .transpose()?;
                    (
                        GroupKind::Instance,
                        engine,
                        instance_layout(&ctx, shards.as_ref())?,
                        format!("{name}-{}", logical.to_ascii_lowercase()),
                    )
                }
                _ => {
                    let physical = format!("{name}-{logical}-local");
                    scope
                        .refs
                        .insert(logical.clone(), Value::String(physical.clone()));
                    scope.simulated.insert(logical.clone());
                    resources.push(StackResource {
                        logical_id: logical.clone(),
                        kind: r.kind.clone(),
                        local: "simulated".into(),
                        physical_id: physical,
                    });
                    continue;
                }
            };
            let transit_encryption =
                prop("TransitEncryptionEnabled")?.is_some_and(|v| template::text(&v) == "true");
            let token = prop("AuthToken")?
                .map(|v| template::text(&v))
                .filter(|t| !t.is_empty());
            if let Some(t) = &token {
                if !transit_encryption {
                    return Err(LocalError::Refused(format!(
                        "{ctx}.Properties.AuthToken: ElastiCache takes an AUTH token only with TransitEncryptionEnabled: true"
                    )));
                }
                if let Some(why) = secure::token_problem(t) {
                    return Err(LocalError::Refused(format!(
                        "{ctx}.Properties.AuthToken: {why}"
                    )));
                }
            }
            let group = match self.state.groups.get(&id) {
                Some(existing) if existing.stack.as_deref() != Some(name) => {
                    return Err(LocalError::Refused(format!(
                        "{ctx}: a group `{id}` already exists in this rehearsal outside stack {name}"
                    )));
                }
                _ => Group {
                    id: id.clone(),
                    kind,
                    stack: Some(name.to_string()),
                    requested_version: prop(if kind == GroupKind::Serverless {
                        "MajorEngineVersion"
                    } else {
                        "EngineVersion"
                    })?
                    .map(|v| template::text(&v)),
                    node_type: prop("CacheNodeType")?.map(|v| template::text(&v)),
                    multi_az: kind == GroupKind::Serverless
                        || prop("MultiAZEnabled")?.is_some_and(|v| template::text(&v) == "true"),
                    transit_encryption,
                    auth: token.is_some(),
                    cluster_mode: layout.cluster_mode,
                    shards: layout.shards,
                    configuration_port: None,
                    nodes: Vec::new(),
                    migration: None,
                    completed_migration: None,
                },
            };
            let physical = if kind == GroupKind::Instance {
                format!("i-{}", id)
            } else {
                id.clone()
            };
            scope
                .refs
                .insert(logical.clone(), Value::String(physical.clone()));
            resources.push(StackResource {
                logical_id: logical.clone(),
                kind: r.kind.clone(),
                local: "process".into(),
                physical_id: physical,
            });
            planned.push((logical.clone(), group, layout.nodes, engine, token));
        }

        for (logical, group, nodes, engine, token) in planned {
            let id = group.id.clone();
            let group_kind = group.kind;
            if self.state.groups.contains_key(&id) {
                self.ensure_group(&id).await?;
            } else {
                if let Some(token) = &token {
                    secure::store_token(&self.dir, &id, token)?;
                }
                self.create_group(group, &nodes, engine, None).await?;
            }
            if group_kind == GroupKind::Serverless && !self.state.serverless.contains_key(&id) {
                let major_engine_version = self
                    .group(&id)?
                    .requested_version
                    .clone()
                    .unwrap_or_default();
                self.state.serverless.insert(
                    id.clone(),
                    Serverless {
                        major_engine_version,
                        ..Serverless::default()
                    },
                );
                self.save()?;
            }
            let g = self.group(&id)?;
            let primary = g.primary().port.to_string();
            let reader = g.nodes.get(1).unwrap_or(g.primary()).port.to_string();
            let t = &t.resources[&logical];
            // CloudFormation gives a sharded group a configuration endpoint and no primary
            // or reader endpoint, and a group without cluster mode the other way round.
            let endpoints = match g.configuration_port.filter(|_| g.cluster_mode) {
                // A serverless cache has one endpoint (and a reader endpoint) that owns
                // every slot.
                Some(_) if group_kind == GroupKind::Serverless => vec![
                    ("Endpoint.Address", "127.0.0.1".to_string()),
                    ("Endpoint.Port", primary.clone()),
                    ("ReaderEndpoint.Address", "127.0.0.1".to_string()),
                    ("ReaderEndpoint.Port", primary.clone()),
                    (
                        "ARN",
                        format!("arn:aws:elasticache:local:000000000000:serverlesscache:{id}"),
                    ),
                    ("Status", "available".to_string()),
                ],
                Some(port) => vec![
                    ("ConfigurationEndPoint.Address", "127.0.0.1".to_string()),
                    ("ConfigurationEndPoint.Port", port.to_string()),
                ],
                None => vec![
                    ("PrimaryEndPoint.Address", "127.0.0.1".to_string()),
                    ("PrimaryEndPoint.Port", primary.clone()),
                    ("ReaderEndPoint.Address", "127.0.0.1".to_string()),
                    ("ReaderEndPoint.Port", reader),
                ],
            };
            let attrs = endpoints.into_iter().chain([
                ("PrivateIp", "127.0.0.1".to_string()),
                ("PublicIp", "127.0.0.1".to_string()),
                ("PrivateDnsName", "localhost".to_string()),
                ("PublicDnsName", "localhost".to_string()),
                ("AvailabilityZone", "local-a".to_string()),
            ]);
            if let Some(param) = t
                .metadata
                .get("Runbook")
                .and_then(|m| m.get("PortParameter"))
            {
                // The template names the parameter that holds this server's port: locally
                // the server listens on a free port instead, and outputs must say so.
                scope
                    .refs
                    .insert(template::text(param), Value::String(primary.clone()));
            }
            for (attr, v) in attrs {
                scope
                    .attrs
                    .insert((logical.clone(), attr.to_string()), Value::String(v));
            }
        }
        let mut outputs = BTreeMap::new();
        for (key, output) in &t.outputs {
            let context = format!("Outputs.{key}");
            if scope.holds(output.condition.as_deref(), &context)? {
                outputs.insert(
                    key.clone(),
                    template::text(&scope.eval(&output.value, &context)?),
                );
            }
        }
        let simulated = resources.iter().filter(|r| r.local == "simulated").count();
        self.ctx.note(format!(
            "stack {name}: {} resource(s) run as servers, {simulated} simulated",
            resources.len() - simulated
        ));
        self.state.stacks.insert(
            name.to_string(),
            Stack {
                template: template.to_path_buf(),
                outputs: outputs.clone(),
                resources,
            },
        );
        self.save()?;
        Ok(outputs)
    }

    fn groups_of(&self, stack: &str) -> Vec<String> {
        self.state
            .groups
            .values()
            .filter(|g| g.stack.as_deref() == Some(stack))
            .map(|g| g.id.clone())
            .collect()
    }

    /// Stops every server of the stack; false when there was no such stack.
    async fn delete_stack(&mut self, name: &str) -> Result<bool> {
        let groups = self.groups_of(name);
        let existed = !groups.is_empty() || self.state.stacks.contains_key(name);
        if !existed {
            self.ctx
                .note(format!("stack {name} does not exist: nothing to delete"));
        }
        for g in &groups {
            self.delete_group(g).await?;
        }
        self.state.stacks.remove(name);
        self.save()?;
        Ok(existed)
    }
}
