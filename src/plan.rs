//! `plan`: what a run would do, step by step, without doing any of it.
//!
//! Inputs are rendered with the real params; values that come from steps that have not
//! run are shown as `⟨steps.<id>.outputs.<name>⟩`. Each action explains itself through the
//! target, so the operations listed are the ones `run` would issue. Nothing is started,
//! nothing is called, nothing is written.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::actions::{Effect, Operation, PlanCtx};
use crate::diagnostic::Diagnostic;
use crate::executor::base_dir;
use crate::journal::Phase;
use crate::platform::{Platform, PlatformKind};
use crate::runbook::{OnFailure, Runbook, Step};
use crate::template::{self, Scope};

/// The version of the JSON plan's shape.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Plan {
    pub format_version: u32,
    pub runbook: String,
    pub file: String,
    pub platform: PlatformKind,
    pub summary: Summary,
    pub params: Vec<PlanParam>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<PlanProbe>,
    pub steps: Vec<PlanStep>,
    pub rollback: Vec<PlanStep>,
    #[serde(rename = "finally")]
    pub finally_steps: Vec<PlanStep>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub steps: usize,
    pub changes: usize,
    pub destructive: usize,
    pub approvals: usize,
    pub rollback_steps: usize,
    pub finally_steps: usize,
}

#[derive(Debug, Serialize)]
pub struct PlanParam {
    pub name: String,
    pub value: Value,
    pub secret: bool,
}

#[derive(Debug, Serialize)]
pub struct PlanProbe {
    pub endpoints: Vec<String>,
    /// Where the clients are, step by step (`source`, `target from complete`); empty: on
    /// every endpoint throughout.
    pub clients: Vec<String>,
    pub interval: String,
    pub timeout: String,
}

#[derive(Debug, Serialize)]
pub struct PlanStep {
    pub id: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub effect: Effect,
    pub destructive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    pub inputs: Value,
    /// Steps whose outputs this step's inputs use.
    pub depends_on: Vec<String>,
    pub operations: Vec<Operation>,
    /// Why operations could not be listed in full yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    pub attempts: u32,
    pub on_failure: OnFailure,
}

/// Puts a placeholder for the output at `parts[..=depth]` and deeper: a reference to
/// `steps.x.outputs.a.b` makes `a` an object holding `b`, so templates can read into it.
fn put_placeholder(outputs: &mut Map<String, Value>, parts: &[&str], depth: usize) {
    let key = parts[depth].to_string();
    if depth + 1 == parts.len() {
        outputs
            .entry(key)
            .or_insert_with(|| Value::String(template::placeholder(&parts[..=depth].join("."))));
        return;
    }
    let slot = outputs
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Value::Object(inner) = slot {
        put_placeholder(inner, parts, depth + 1);
    }
}

/// [`build`] for a command: the runbook's template errors rendered with their places, as
/// invalid input (exit 2). `plan` prints the result; `run` and `resume` only need it to pass.
pub fn checked(
    rb: &Runbook,
    params: &crate::vars::Params,
    platform: &dyn Platform,
) -> anyhow::Result<Plan> {
    build(
        rb,
        &params.values,
        &params.redacted(rb),
        platform,
        &params.redactor,
    )
    .map_err(|diags| {
        crate::error::invalid(crate::diagnostic::render(
            &rb.source.path,
            &rb.source.text,
            &diags,
        ))
    })
}

/// Builds the plan of `rb` with resolved `params`; template errors come back as diagnostics.
pub fn build(
    rb: &Runbook,
    params: &Map<String, Value>,
    redacted: &Map<String, Value>,
    platform: &dyn Platform,
    redactor: &crate::redact::Redactor,
) -> Result<Plan, Vec<Diagnostic>> {
    let mut scope = Scope {
        params: params.clone(),
        ..Scope::for_runbook(rb, redactor)
    };
    for (k, v) in [
        ("id", template::placeholder("run.id")),
        ("platform", platform.kind().to_string()),
        ("started_at", template::placeholder("run.started_at")),
        ("dir", template::placeholder("run.dir")),
    ] {
        scope.run.insert(k.into(), Value::String(v));
    }
    // Every output any template reads stands as a placeholder until its step runs. One pass
    // over every template: going over them again for each step made plan quadratic.
    let mut read: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for other in rb.all_steps() {
        for text in step_texts(other) {
            for r in template::references(&text) {
                let parts: Vec<&str> = r.path.split('.').collect();
                if parts.len() >= 4 && parts[0] == "steps" && parts[2] == "outputs" {
                    put_placeholder(read.entry(parts[1].to_string()).or_default(), &parts, 3);
                }
            }
        }
    }
    for step in rb.all_steps() {
        let outputs = read.remove(&step.id).unwrap_or_default();
        scope.set_outputs(&step.id, &outputs);
    }
    let ctx = PlanCtx {
        platform,
        base_dir: base_dir(&rb.source.path),
    };
    let mut diags = Vec::new();
    let mut schemas = crate::validate::Schemas::default();
    let mut plan_block = |steps: &[Step], scope: &mut Scope| -> Vec<PlanStep> {
        steps
            .iter()
            .map(|s| {
                let schema = schemas.of(s.action);
                plan_step(s, scope, &ctx, &schema, redactor, &mut diags)
            })
            .collect()
    };
    let steps = plan_block(&rb.steps, &mut scope);
    scope.failed_step = Some(template::placeholder("failed_step"));
    let rollback = plan_block(&rb.rollback, &mut scope);
    let finally_steps = plan_block(&rb.finally, &mut scope);
    let probe = rb.probe.as_ref().map(|p| PlanProbe {
        endpoints: p
            .endpoints
            .iter()
            .map(|e| {
                let url = match scope.render(&e.value.value) {
                    Ok(Value::String(s)) => redactor.redact(&s),
                    _ => e.value.value.as_str().unwrap_or_default().to_string(),
                };
                match &e.name {
                    Some(name) => format!("{name}: {url}"),
                    None => url,
                }
            })
            .collect(),
        clients: p
            .clients
            .iter()
            .map(|c| match &c.from {
                Some(step) => format!("{} from {step}", c.endpoint),
                None => c.endpoint.clone(),
            })
            .collect(),
        interval: crate::duration::format(p.interval),
        timeout: crate::duration::format(p.timeout),
    });
    if !diags.is_empty() {
        // A message may quote a rendered value, and so a secret.
        for d in &mut diags {
            d.message = redactor.redact(&d.message);
        }
        return Err(diags);
    }
    let summary = Summary {
        steps: steps.len(),
        changes: steps.iter().filter(|s| s.effect >= Effect::Changes).count(),
        destructive: steps.iter().filter(|s| s.destructive).count(),
        approvals: steps.iter().filter(|s| s.action == "approve").count(),
        rollback_steps: rollback.len(),
        finally_steps: finally_steps.len(),
    };
    Ok(Plan {
        format_version: FORMAT_VERSION,
        runbook: rb.name.clone(),
        file: rb.source.path.display().to_string(),
        platform: platform.kind(),
        summary,
        params: rb
            .params
            .iter()
            .map(|p| PlanParam {
                name: p.name.clone(),
                value: redacted.get(&p.name).cloned().unwrap_or(Value::Null),
                secret: p.secret,
            })
            .collect(),
        probe,
        steps,
        rollback,
        finally_steps,
    })
}

/// Whether a value reads outputs of steps (or the failed step), unknown before the run.
fn reads_outputs(value: &Value) -> bool {
    template::strings(value).iter().any(|t| {
        template::references(t)
            .iter()
            .any(|r| r.path.starts_with("steps.") || r.path == "failed_step")
    })
}

fn step_texts(step: &Step) -> Vec<String> {
    let mut out: Vec<String> = step
        .with
        .iter()
        .flat_map(|(_, v)| {
            template::strings(&v.value)
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    if let Some(w) = &step.when {
        out.extend(w.value.as_str().map(str::to_string));
    }
    out
}

fn plan_step(
    step: &Step,
    scope: &mut Scope,
    ctx: &PlanCtx<'_>,
    schema: &schemars::Schema,
    redactor: &crate::redact::Redactor,
    diags: &mut Vec<Diagnostic>,
) -> PlanStep {
    let mut depends_on = BTreeSet::new();
    for text in step_texts(step) {
        for r in template::references(&text) {
            let parts: Vec<&str> = r.path.split('.').collect();
            if parts.len() >= 2 && parts[0] == "steps" {
                depends_on.insert(parts[1].to_string());
            }
        }
    }
    let mut rendered = Map::new();
    for (k, v) in &step.with {
        match scope.render(&v.value) {
            // A value computed from outputs not known yet (not merely holding one) is shown
            // as written: `{{ steps.a.outputs.n > 3 }}` must not read as `false`.
            Ok(r) if reads_outputs(&v.value) && !template::value_has_placeholder(&r) => {
                rendered.insert(k.clone(), v.value.clone());
            }
            Ok(r) => {
                rendered.insert(k.clone(), r);
            }
            Err(e) => {
                diags.push(Diagnostic::at(v.loc, format!("step `{}`: {e}", step.id)));
                rendered.insert(k.clone(), v.value.clone());
            }
        }
    }
    let when = step.when.as_ref().map(|w| {
        let text = w.value.as_str().unwrap_or_default();
        match scope.condition(text) {
            Ok(b) => format!("{text} (now {b})"),
            Err(e) if template::contains_placeholder(&e) => format!("{text} (decided at run time)"),
            Err(e) => {
                diags.push(Diagnostic::at(
                    w.loc,
                    format!("step `{}`: `when`: {e}", step.id),
                ));
                text.to_string()
            }
        }
    });
    let coerced = template::coerce(schema, Value::Object(rendered.clone()));
    let inputs = match &coerced {
        Ok(inputs) => inputs.clone(),
        Err(e) => {
            let at = step
                .with
                .iter()
                .find(|(k, _)| k == e.input())
                .map_or(step.loc, |(_, v)| v.loc);
            diags.push(Diagnostic::at(
                at,
                format!(
                    "step `{}`: invalid input for `{}`: {e}",
                    step.id, step.action.name
                ),
            ));
            Value::Object(rendered)
        }
    };
    let (effect, operations, deferred) = match coerced.map(step.action.build) {
        // Already reported, with the input named.
        Err(_) => (Effect::Changes, Vec::new(), None),
        Ok(Ok(action)) => (action.effect(), action.plan(ctx), None),
        // Until those outputs exist the inputs cannot be parsed.
        Ok(Err(_))
            if template::value_has_placeholder(&inputs) || template::has_template(&inputs) =>
        {
            (
                step.action.effect,
                Vec::new(),
                Some("decided at run time: the inputs use outputs of earlier steps".to_string()),
            )
        }
        Ok(Err(e)) => {
            diags.push(Diagnostic::at(
                step.loc,
                format!(
                    "step `{}`: invalid input for `{}`: {e}",
                    step.id, step.action.name
                ),
            ));
            (Effect::Changes, Vec::new(), None)
        }
    };
    let operations: Vec<Operation> = operations
        .into_iter()
        .map(|mut op| {
            op.name = redactor.redact(&op.name);
            op.params = match redactor.redact_json(&Value::Object(op.params)) {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            op
        })
        .collect();
    let destructive = effect == Effect::Destructive || operations.iter().any(|o| o.destructive);
    PlanStep {
        id: step.id.clone(),
        action: step.action.name.to_string(),
        description: step.description.clone(),
        effect,
        destructive,
        when,
        inputs: redactor.redact_json(&inputs),
        depends_on: depends_on.into_iter().collect(),
        operations,
        deferred,
        timeout: step.timeout.map(crate::duration::format),
        attempts: step.retry.attempts,
        on_failure: step.on_failure,
    }
}

impl Plan {
    /// The summary line that opens every format.
    pub fn headline(&self) -> String {
        let s = &self.summary;
        format!(
            "Plan: {} steps, {} change something, {} destructive, {} approval{}; {} rollback step{}, {} finally step{}. Platform: {}.",
            s.steps,
            s.changes,
            s.destructive,
            s.approvals,
            if s.approvals == 1 { "" } else { "s" },
            s.rollback_steps,
            if s.rollback_steps == 1 { "" } else { "s" },
            s.finally_steps,
            if s.finally_steps == 1 { "" } else { "s" },
            self.platform
        )
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}\n", self.headline());
        let _ = writeln!(out, "Runbook {} ({})", self.runbook, self.file);
        if !self.params.is_empty() {
            let _ = writeln!(out, "\nParams:");
            for p in &self.params {
                let _ = writeln!(
                    out,
                    "  {} = {}{}",
                    p.name,
                    show(&p.value),
                    if p.secret { " (secret)" } else { "" }
                );
            }
        }
        if let Some(p) = &self.probe {
            let _ = writeln!(
                out,
                "\nProbe: every {} (timeout {}) on {}",
                p.interval,
                p.timeout,
                p.endpoints.join(", ")
            );
            if !p.clients.is_empty() {
                let _ = writeln!(out, "Clients: {}", p.clients.join(", then "));
            }
        }
        for (title, steps, phase) in [
            ("Steps", &self.steps, Phase::Steps),
            (
                "Rollback (runs if a step fails)",
                &self.rollback,
                Phase::Rollback,
            ),
            (
                "Finally (runs at the end, whatever happened)",
                &self.finally_steps,
                Phase::Finally,
            ),
        ] {
            if steps.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{title}:");
            for (i, s) in steps.iter().enumerate() {
                let tag = if s.destructive {
                    "DESTRUCTIVE"
                } else {
                    match s.effect {
                        Effect::Observes => "observes",
                        Effect::Changes => "changes",
                        Effect::Destructive => "DESTRUCTIVE",
                    }
                };
                let _ = writeln!(out, "  {}. {}  {}  [{tag}]", i + 1, s.id, s.action);
                if let Some(d) = &s.description {
                    let _ = writeln!(out, "       {d}");
                }
                if let Some(w) = &s.when {
                    let _ = writeln!(out, "       when: {w}");
                }
                if let Value::Object(inputs) = &s.inputs {
                    for (k, v) in inputs {
                        let _ = writeln!(out, "       {k}: {}", show(v));
                    }
                }
                for op in &s.operations {
                    let _ = writeln!(
                        out,
                        "       → {}{}",
                        op_text(op),
                        if op.destructive {
                            "  (destructive)"
                        } else {
                            ""
                        }
                    );
                }
                if let Some(d) = &s.deferred {
                    let _ = writeln!(out, "       → {d}");
                }
                let mut extra = Vec::new();
                if let Some(t) = &s.timeout {
                    extra.push(format!("timeout {t}"));
                }
                if s.attempts > 1 {
                    extra.push(format!("up to {} attempts", s.attempts));
                }
                if phase == Phase::Steps && s.on_failure == OnFailure::Continue {
                    extra.push("on failure: continue".into());
                }
                if !s.depends_on.is_empty() {
                    extra.push(format!("uses outputs of {}", s.depends_on.join(", ")));
                }
                if !extra.is_empty() {
                    let _ = writeln!(out, "       ({})", extra.join("; "));
                }
            }
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "**{}**\n", self.headline());
        let _ = writeln!(out, "# Plan: {}\n\nFile: `{}`\n", self.runbook, self.file);
        if !self.params.is_empty() {
            let _ = writeln!(out, "## Params\n\n| name | value |\n|---|---|");
            for p in &self.params {
                let _ = writeln!(
                    out,
                    "| `{}` | {}{} |",
                    p.name,
                    md(&show(&p.value)),
                    if p.secret { " (secret)" } else { "" }
                );
            }
            out.push('\n');
        }
        for (title, steps) in [
            ("Steps", &self.steps),
            ("Rollback", &self.rollback),
            ("Finally", &self.finally_steps),
        ] {
            if steps.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "## {title}\n\n| # | step | action | effect | operations |\n|---|---|---|---|---|"
            );
            for (i, s) in steps.iter().enumerate() {
                let mut ops: Vec<String> = s
                    .operations
                    .iter()
                    .map(|o| {
                        format!(
                            "{}{}",
                            md(&op_text(o)),
                            if o.destructive {
                                " **(destructive)**"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                if let Some(d) = &s.deferred {
                    ops.push(md(d));
                }
                let effect = if s.destructive {
                    "**destructive**".to_string()
                } else {
                    format!("{:?}", s.effect).to_lowercase()
                };
                let _ = writeln!(
                    out,
                    "| {} | `{}` | `{}` | {effect} | {} |",
                    i + 1,
                    s.id,
                    s.action,
                    ops.join("<br>")
                );
            }
            out.push('\n');
        }
        out
    }
}

fn op_text(op: &Operation) -> String {
    if op.params.is_empty() {
        op.name.clone()
    } else {
        let params: Vec<String> = op
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", show(v)))
            .collect();
        format!("{} {}", op.name, params.join(" "))
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(not set)".into(),
        other => other.to_string(),
    }
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
