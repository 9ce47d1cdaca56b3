//! From YAML nodes to a typed [`Runbook`], with every problem of the file found at once.
//!
//! Checks: known fields (with "did you mean"), required fields, types, unique step ids,
//! known actions and their input fields, durations, and the names templates refer to
//! (`params.x`, `steps.<id>.outputs.<name>`, `run.x`). Values that are templates are
//! checked again when they are rendered (`plan`, `run`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use marked_yaml::Node;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};

use crate::actions::{self, ActionSpec, REGISTRY};
use crate::diagnostic::{Diagnostic, Loc, suggest};
use crate::journal::Phase;
use crate::runbook::{
    ClientsAt, FleetApproval, OnFailure, Param, ProbeEndpoint, ProbeSpec, Retry, Runbook, Source,
    Step, Value,
};
use crate::template;

const TOP_FIELDS: &[&str] = &[
    "version",
    "name",
    "description",
    "params",
    "env",
    "probe",
    "fleet",
    "steps",
    "rollback",
    "finally",
];
const PARAM_FIELDS: &[&str] = &[
    "default",
    "description",
    "required",
    "allow_empty",
    "secret",
];
const PROBE_FIELDS: &[&str] = &["endpoints", "clients", "interval", "timeout", "key_prefix"];
const PROBE_ENDPOINT_FIELDS: &[&str] = &["name", "endpoint"];
const CLIENTS_FIELDS: &[&str] = &["endpoint", "from"];
const FLEET_FIELDS: &[&str] = &["approve"];
const STEP_FIELDS: &[&str] = &[
    "id",
    "action",
    "with",
    "description",
    "timeout",
    "retry",
    "on_failure",
    "when",
];
const RETRY_FIELDS: &[&str] = &["attempts", "backoff"];
/// The most attempts a `retry` may ask for: past that a failure is not transient.
const MAX_ATTEMPTS: u32 = 100;
/// The most steps a runbook may have, its three blocks together: far more than a
/// migration needs, few enough that planning one stays well under a second.
pub const MAX_STEPS: usize = 10_000;
/// The most params a runbook may declare.
pub const MAX_PARAMS: usize = 1_000;
/// The names under `run` in templates.
pub const RUN_FIELDS: &[&str] = &["id", "platform", "started_at", "dir"];

/// Validates a parsed runbook; on failure returns every problem found.
pub fn validate(root: &Node, source: Source) -> Result<Runbook, Vec<Diagnostic>> {
    let mut v = Validator {
        lines: source.text.lines().map(str::to_string).collect(),
        diags: Vec::new(),
        steps_seen: 0,
        schemas: Schemas::default(),
    };
    let runbook = v.runbook(root, source);
    if v.diags.is_empty() {
        Ok(runbook.expect("no diagnostics means a runbook was built"))
    } else {
        v.diags.sort_by_key(|d| d.loc.map(|l| (l.line, l.column)));
        Err(v.diags)
    }
}

struct Validator {
    lines: Vec<String>,
    diags: Vec<Diagnostic>,
    /// Steps met so far, in every block.
    steps_seen: usize,
    schemas: Schemas,
}

/// Each action's input schema, made once: making one costs as much as checking a step.
#[derive(Default)]
pub struct Schemas(HashMap<&'static str, std::rc::Rc<schemars::Schema>>);

impl Schemas {
    pub fn of(&mut self, spec: &ActionSpec) -> std::rc::Rc<schemars::Schema> {
        self.0
            .entry(spec.name)
            .or_insert_with(|| std::rc::Rc::new((spec.schema)()))
            .clone()
    }
}

impl Validator {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Where a node starts; scalars underline their text (quotes included).
    fn loc(&self, node: &Node) -> Loc {
        let Some(m) = node.span().start() else {
            return Loc::default();
        };
        let len = match node {
            Node::Scalar(s) => {
                let quoted = self.quote_at(m.line(), m.column());
                let first_line = s.as_str().lines().next().unwrap_or("").chars().count();
                first_line + if quoted { 2 } else { 0 }
            }
            _ => 1,
        };
        Loc::new(m.line(), m.column(), len)
    }

    fn key_loc(&self, key: &MarkedScalarNode) -> Loc {
        key.span()
            .start()
            .map(|m| Loc::new(m.line(), m.column(), key.as_str().chars().count()))
            .unwrap_or_default()
    }

    fn quote_at(&self, line: usize, column: usize) -> bool {
        self.lines
            .get(line.wrapping_sub(1))
            .and_then(|l| l.chars().nth(column.wrapping_sub(1)))
            .is_some_and(|c| c == '"' || c == '\'')
    }

    /// A mapping node, or an error saying what was expected.
    fn mapping<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n MarkedMappingNode> {
        match node {
            Node::Mapping(m) => Some(m),
            _ => {
                self.err(Diagnostic::at(
                    self.loc(node),
                    format!("{what} must be a mapping (`key: value` lines)"),
                ));
                None
            }
        }
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match node {
            Node::Scalar(s) => Some(s.as_str().to_string()),
            _ => {
                self.err(Diagnostic::at(
                    self.loc(node),
                    format!("{what} must be text"),
                ));
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.as_scalar().and_then(|s| s.as_bool()) {
            Some(b) => Some(b),
            None => {
                self.err(Diagnostic::at(
                    self.loc(node),
                    format!("{what} must be `true` or `false`"),
                ));
                None
            }
        }
    }

    /// A duration that must be more than zero (a timeout, an interval).
    fn positive_duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let d = self.duration(node, what)?;
        if d.is_zero() {
            self.err(
                Diagnostic::at(self.loc(node), format!("{what} must be more than zero"))
                    .help("e.g. `10s`, `500ms`, `40m`"),
            );
            return None;
        }
        Some(d)
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let text = self.string(node, what)?;
        match crate::duration::parse(&text) {
            Ok(d) => Some(d),
            Err(why) => {
                self.err(Diagnostic::at(self.loc(node), format!("{what}: {why}")));
                None
            }
        }
    }

    /// Reports keys of `map` that are not in `known`, with a suggestion.
    fn known_fields(&mut self, map: &MarkedMappingNode, known: &[&str], what: &str) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let d = Diagnostic::at(
                    self.key_loc(key),
                    format!("unknown field `{}` in {what}", key.as_str()),
                );
                let d = match suggest(key.as_str(), known.iter().copied()) {
                    Some(near) => d.help(format!("did you mean `{near}`?")),
                    None => d.help(format!("known fields: {}", known.join(", "))),
                };
                self.err(d);
            }
        }
    }

    fn runbook(&mut self, root: &Node, source: Source) -> Option<Runbook> {
        let map = self.mapping(root, "a runbook")?;
        self.known_fields(map, TOP_FIELDS, "the runbook");
        let whole = Loc::new(1, 1, 1);
        match map.get_node("version") {
            None => self.err(
                Diagnostic::at(whole, "missing field `version`")
                    .help("add `version: 1` at the top"),
            ),
            Some(n) => {
                if n.as_scalar().and_then(|s| s.as_u64()) != Some(1) {
                    self.err(
                        Diagnostic::at(self.loc(n), "unsupported runbook version")
                            .help("this tool reads `version: 1`"),
                    );
                }
            }
        }
        let name = match map.get_node("name") {
            None => {
                self.err(
                    Diagnostic::at(whole, "missing field `name`")
                        .help("add e.g. `name: online-migration`"),
                );
                None
            }
            Some(n) => self.string(n, "`name`"),
        };
        let description = map
            .get_node("description")
            .and_then(|n| self.string(n, "`description`"));
        let params = map
            .get_node("params")
            .map(|n| self.params(n))
            .unwrap_or_default();
        let env = map.get_node("env").map(|n| self.env(n)).unwrap_or_default();
        let probe = map.get_node("probe").and_then(|n| self.probe(n));
        let fleet_approval = map
            .get_node("fleet")
            .map(|n| self.fleet(n))
            .unwrap_or_default();
        let mut seen: BTreeMap<String, Loc> = BTreeMap::new();
        let mut blocks: [Vec<Step>; 3] = Default::default();
        let fields = [
            ("steps", Phase::Steps),
            ("rollback", Phase::Rollback),
            ("finally", Phase::Finally),
        ];
        for (block, (field, phase)) in blocks.iter_mut().zip(fields) {
            if let Some(n) = map.get_node(field) {
                *block = self.steps(n, phase, field, &mut seen);
            } else if field == "steps" {
                self.err(
                    Diagnostic::at(whole, "missing field `steps`").help("add a `steps:` list"),
                );
            }
        }
        let [steps, rollback, finally] = blocks;
        let runbook = Runbook {
            name: name.unwrap_or_default(),
            description,
            params,
            env,
            probe,
            fleet_approval,
            steps,
            rollback,
            finally,
            source,
        };
        self.references(&runbook);
        self.check_clients(&runbook);
        Some(runbook)
    }

    /// `env:`, the environment variables whose values are not secret.
    fn env(&mut self, node: &Node) -> Vec<String> {
        let Node::Sequence(seq) = node else {
            self.err(
                Diagnostic::at(self.loc(node), "`env` must be a list of names").help(
                    "e.g. `env: [AWS_REGION, USER]`: the variables whose values are not secret",
                ),
            );
            return Vec::new();
        };
        seq.iter()
            .filter_map(|n| {
                let name = self.string(n, "a name under `env`")?;
                let fine = !name.is_empty()
                    && !name.starts_with(|c: char| c.is_ascii_digit())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !fine {
                    self.err(
                        Diagnostic::at(self.loc(n), format!("`{name}` is not a variable name"))
                            .help(
                                "names have letters, digits and `_`, and do not start with a digit",
                            ),
                    );
                }
                fine.then_some(name)
            })
            .collect()
    }

    fn params(&mut self, node: &Node) -> Vec<Param> {
        let Some(map) = self.mapping(node, "`params`") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some((first_too_many, _)) = map.iter().nth(MAX_PARAMS) {
            self.err(
                Diagnostic::at(
                    self.key_loc(first_too_many),
                    format!("more than {MAX_PARAMS} params"),
                )
                .help("group related values under one param (a mapping or a list)"),
            );
        }
        for (key, value) in map.iter().take(MAX_PARAMS) {
            let name = key.as_str().to_string();
            if !is_identifier(&name) {
                self.err(
                    Diagnostic::at(
                        self.key_loc(key),
                        format!("`{name}` cannot be a param name"),
                    )
                    .help("use letters, digits and `_` (templates read it as `params.<name>`)"),
                );
            }
            let mut p = Param {
                name,
                default: None,
                description: None,
                required: false,
                allow_empty: false,
                secret: false,
                loc: self.key_loc(key),
            };
            match value {
                Node::Mapping(m) => {
                    self.known_fields(m, PARAM_FIELDS, "a param");
                    p.default = m.get_node("default").map(|n| to_json(n, true));
                    p.description = m
                        .get_node("description")
                        .and_then(|n| self.string(n, "`description`"));
                    p.secret = m
                        .get_node("secret")
                        .and_then(|n| self.boolean(n, "`secret`"))
                        .unwrap_or(false);
                    p.allow_empty = m
                        .get_node("allow_empty")
                        .and_then(|n| self.boolean(n, "`allow_empty`"))
                        .unwrap_or(false);
                    // A param with no default must be given, unless `required: false` says otherwise.
                    p.required = match m.get_node("required") {
                        Some(n) => self.boolean(n, "`required`").unwrap_or(true),
                        None => p.default.is_none(),
                    };
                }
                other => p.default = Some(to_json(other, true)),
            }
            out.push(p);
        }
        out
    }

    /// `fleet:`, how a fleet of runs of this runbook is approved.
    fn fleet(&mut self, node: &Node) -> FleetApproval {
        let Some(map) = self.mapping(node, "`fleet`") else {
            return FleetApproval::Each;
        };
        self.known_fields(map, FLEET_FIELDS, "`fleet`");
        let Some(n) = map.get_node("approve") else {
            return FleetApproval::Each;
        };
        match n.as_scalar().map(|s| s.as_str()) {
            Some("each") => FleetApproval::Each,
            Some("once") => FleetApproval::Once,
            _ => {
                self.err(
                    Diagnostic::at(self.loc(n), "`approve` must be `each` or `once`").help(
                        "`each`: every member of a fleet at its own approve steps; `once`: one approval for the whole fleet",
                    ),
                );
                FleetApproval::Each
            }
        }
    }

    fn probe(&mut self, node: &Node) -> Option<ProbeSpec> {
        let map = self.mapping(node, "`probe`")?;
        self.known_fields(map, PROBE_FIELDS, "`probe`");
        let defaults = crate::probe::ProbeConfig::default();
        let endpoints: Vec<ProbeEndpoint> = match map.get_node("endpoints") {
            Some(Node::Sequence(seq)) => {
                seq.iter().filter_map(|n| self.probe_endpoint(n)).collect()
            }
            Some(n) => {
                self.err(Diagnostic::at(
                    self.loc(n),
                    "`endpoints` must be a list of endpoint URLs or `{ name, endpoint }` entries",
                ));
                Vec::new()
            }
            None => {
                self.err(
                    Diagnostic::at(self.loc(node), "`probe` needs `endpoints`").help(
                        "e.g. `endpoints: [\"{{ steps.deploy.outputs.ValkeyPrimaryEndpoint }}\"]`",
                    ),
                );
                Vec::new()
            }
        };
        let mut names: Vec<&str> = Vec::new();
        for e in &endpoints {
            if let Some(name) = &e.name {
                if names.contains(&name.as_str()) {
                    self.err(
                        Diagnostic::at(
                            e.name_loc,
                            format!("two probe endpoints are named `{name}`"),
                        )
                        .help("give each endpoint its own name"),
                    );
                }
                names.push(name);
            }
        }
        let clients = match map.get_node("clients") {
            Some(Node::Sequence(seq)) => seq
                .iter()
                .filter_map(|n| self.clients_at(n, &names))
                .collect(),
            Some(n) => {
                self.err(Diagnostic::at(
                    self.loc(n),
                    "`clients` must be a list of endpoint names or `{ endpoint, from }` entries",
                ));
                Vec::new()
            }
            None => Vec::new(),
        };
        let interval = map.get_node("interval").and_then(|n| {
            let d = self.positive_duration(n, "`interval`")?;
            if d < Duration::from_millis(1) {
                self.err(
                    Diagnostic::at(self.loc(n), "the probe's `interval` must be at least 1ms")
                        .help("the probe ticks at most once a millisecond"),
                );
                return None;
            }
            Some(d)
        });
        let timeout = map
            .get_node("timeout")
            .and_then(|n| self.positive_duration(n, "`timeout`"));
        let key_prefix = map
            .get_node("key_prefix")
            .and_then(|n| self.string(n, "`key_prefix`"));
        Some(ProbeSpec {
            endpoints,
            clients,
            interval: interval.unwrap_or(defaults.interval),
            timeout: timeout.unwrap_or(defaults.timeout),
            key_prefix: key_prefix.unwrap_or(defaults.key_prefix),
        })
    }

    /// A probe endpoint: a URL (template), or `{ name, endpoint }`.
    fn probe_endpoint(&mut self, node: &Node) -> Option<ProbeEndpoint> {
        let mut name_loc = self.loc(node);
        let (name, value_node) = match node {
            Node::Mapping(m) => {
                self.known_fields(m, PROBE_ENDPOINT_FIELDS, "a probe endpoint");
                let name = match m.get_node("name") {
                    Some(n) => {
                        name_loc = self.loc(n);
                        self.string(n, "`name`")
                    }
                    None => {
                        self.err(
                            Diagnostic::at(self.loc(node), "a probe endpoint entry needs a `name`")
                                .help("e.g. `{ name: source, endpoint: \"{{ steps.deploy.outputs.RedisSourceEndpoint }}\" }`"),
                        );
                        None
                    }
                };
                let Some(value) = m.get_node("endpoint") else {
                    self.err(
                        Diagnostic::at(
                            self.loc(node),
                            "a probe endpoint entry needs an `endpoint`",
                        )
                        .help(
                            "the endpoint's URL or host:port, a template if it comes from a step",
                        ),
                    );
                    return None;
                };
                (name, value)
            }
            _ => (None, node),
        };
        let text = self.string(value_node, "a probe endpoint")?;
        // A template is checked once it is rendered; a literal now.
        if !crate::template::is_template(&text)
            && let Err(e) = crate::endpoint::Endpoint::parse(&text)
        {
            self.err(Diagnostic::at(
                self.loc(value_node),
                format!("probe endpoint: {e}"),
            ));
            return None;
        }
        Some(ProbeEndpoint {
            name,
            name_loc,
            value: Value {
                value: text.into(),
                loc: self.loc(value_node),
            },
        })
    }

    /// A `probe.clients` entry: an endpoint's name, or `{ endpoint: NAME, from: STEP }`.
    fn clients_at(&mut self, node: &Node, names: &[&str]) -> Option<ClientsAt> {
        let (name_node, from) = match node {
            Node::Mapping(m) => {
                self.known_fields(m, CLIENTS_FIELDS, "a `clients` entry");
                let Some(name_node) = m.get_node("endpoint") else {
                    self.err(
                        Diagnostic::at(self.loc(node), "a `clients` entry needs an `endpoint`")
                            .help("the name of one of `probe.endpoints`"),
                    );
                    return None;
                };
                let from = m
                    .get_node("from")
                    .and_then(|n| Some((self.string(n, "`from`")?, self.loc(n))));
                (name_node, from)
            }
            _ => (node, None),
        };
        let endpoint = self.string(name_node, "a `clients` endpoint")?;
        let loc = self.loc(name_node);
        if !names.contains(&endpoint.as_str()) {
            let d = Diagnostic::at(loc, format!("no probe endpoint is named `{endpoint}`"));
            let d = match suggest(&endpoint, names.iter().copied()) {
                Some(near) => d.help(format!("did you mean `{near}`?")),
                None if names.is_empty() => {
                    d.help("name the endpoints: `endpoints: [{ name: source, endpoint: \"...\" }]`")
                }
                None => d.help(format!(
                    "the probe endpoints are named {}",
                    names.join(", ")
                )),
            };
            self.err(d);
        }
        let (from, from_loc) = match from {
            Some((step, at)) => (Some(step), at),
            None => (None, loc),
        };
        Some(ClientsAt {
            endpoint,
            from,
            loc,
            from_loc,
        })
    }

    /// `probe.clients`: the first entry holds from the start, each later one from a main
    /// step after the previous entry's.
    fn check_clients(&mut self, rb: &Runbook) {
        let Some(probe) = &rb.probe else {
            return;
        };
        let ids: Vec<&str> = rb.steps.iter().map(|s| s.id.as_str()).collect();
        let mut previous: Option<usize> = None;
        for (i, c) in probe.clients.iter().enumerate() {
            match (&c.from, i) {
                (None, 0) => {}
                (None, _) => self.err(
                    Diagnostic::at(c.loc, "only the first `clients` entry may leave out `from`")
                        .help(
                            "say from which step the clients use this endpoint: `from: <step id>`",
                        ),
                ),
                (Some(step), _) => match ids.iter().position(|id| id == step) {
                    None => {
                        let d = Diagnostic::at(c.from_loc, format!("no step has the id `{step}`"));
                        let d = match suggest(step, ids.iter().copied()) {
                            Some(near) => d.help(format!("did you mean `{near}`?")),
                            None => {
                                d.help(format!("`from` names one of the steps: {}", ids.join(", ")))
                            }
                        };
                        self.err(d);
                    }
                    Some(_) if i == 0 => self.err(
                        Diagnostic::at(
                            c.from_loc,
                            "the first `clients` entry holds from the start of the run",
                        )
                        .help(
                            "remove its `from`; later entries say from which step the clients move",
                        ),
                    ),
                    Some(at) if previous.is_some_and(|p| at <= p) => self.err(
                        Diagnostic::at(
                            c.from_loc,
                            format!("`{step}` does not come after the previous entry's step"),
                        )
                        .help("list the moves of the clients in the order of the steps"),
                    ),
                    Some(at) => previous = Some(at),
                },
            }
        }
    }

    fn steps(
        &mut self,
        node: &Node,
        phase: Phase,
        field: &str,
        seen: &mut BTreeMap<String, Loc>,
    ) -> Vec<Step> {
        let Node::Sequence(seq) = node else {
            self.err(Diagnostic::at(
                self.loc(node),
                format!("`{field}` must be a list of steps (lines starting with `- `)"),
            ));
            return Vec::new();
        };
        let room = MAX_STEPS.saturating_sub(self.steps_seen);
        self.steps_seen += seq.len();
        if let Some(first_too_many) = seq.get(room) {
            self.err(
                Diagnostic::at(
                    self.loc(first_too_many),
                    format!("more than {MAX_STEPS} steps (with rollback and finally)"),
                )
                .help("split the runbook into several, run one after the other"),
            );
        }
        // Past the limit, steps are not read: checking them would cost as much as it saves.
        seq.iter()
            .take(room)
            .filter_map(|item| self.step(item, phase, seen))
            .collect()
    }

    fn step(
        &mut self,
        node: &Node,
        phase: Phase,
        seen: &mut BTreeMap<String, Loc>,
    ) -> Option<Step> {
        let map = self.mapping(node, "a step")?;
        self.known_fields(map, STEP_FIELDS, "a step");
        let loc = self.loc(node);
        let id = match map.get_node("id") {
            None => {
                self.err(
                    Diagnostic::at(loc, "this step has no `id`")
                        .help("add `id: <name>`, unique in the runbook"),
                );
                None
            }
            Some(n) => {
                let id = self.string(n, "`id`")?;
                let at = self.loc(n);
                if !is_identifier(&id) {
                    self.err(
                        Diagnostic::at(at, format!("`{id}` cannot be a step id")).help(
                            "use letters, digits and `_` (templates read it as `steps.<id>`)",
                        ),
                    );
                }
                if let Some(first) = seen.get(&id) {
                    self.err(
                        Diagnostic::at(at, format!("duplicate step id `{id}`")).help(format!(
                            "the first step with this id is at line {}; ids must be unique",
                            first.line
                        )),
                    );
                } else {
                    seen.insert(id.clone(), at);
                }
                Some(id)
            }
        };
        let action = match map.get_node("action") {
            None => {
                self.err(
                    Diagnostic::at(loc, "this step has no `action`")
                        .help("add e.g. `action: exec`"),
                );
                None
            }
            Some(n) => {
                let name = self.string(n, "`action`")?;
                match actions::lookup(&name) {
                    Some(spec) => Some((spec, self.loc(n))),
                    None => {
                        let d = Diagnostic::at(self.loc(n), format!("unknown action `{name}`"));
                        let d = match suggest(&name, REGISTRY.iter().map(|a| a.name)) {
                            Some(near) => d.help(format!("did you mean `{near}`?")),
                            None => d.help(format!(
                                "known actions: {}",
                                REGISTRY
                                    .iter()
                                    .map(|a| a.name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        };
                        self.err(d);
                        None
                    }
                }
            }
        };
        let with = match (map.get_node("with"), action) {
            (Some(n), Some((spec, _))) => self.inputs(n, spec),
            (None, Some((spec, at))) => {
                self.check_required(spec, &[], at);
                Vec::new()
            }
            _ => Vec::new(),
        };
        let description = map
            .get_node("description")
            .and_then(|n| self.string(n, "`description`"));
        let timeout = map
            .get_node("timeout")
            .and_then(|n| self.positive_duration(n, "`timeout`"));
        let retry = map
            .get_node("retry")
            .and_then(|n| self.retry(n))
            .unwrap_or_default();
        let on_failure = match map.get_node("on_failure") {
            None => OnFailure::Rollback,
            Some(n) => match self.string(n, "`on_failure`").as_deref() {
                Some("rollback") => OnFailure::Rollback,
                Some("continue") => OnFailure::Continue,
                Some(other) => {
                    let d = Diagnostic::at(
                        self.loc(n),
                        format!("`on_failure` is `rollback` or `continue`, not `{other}`"),
                    )
                    .suggest(other, ["rollback", "continue"]);
                    self.err(d);
                    OnFailure::Rollback
                }
                None => OnFailure::Rollback,
            },
        };
        let when = map.get_node("when").and_then(|n| {
            let text = self.string(n, "`when`")?;
            Some(Value {
                value: text.into(),
                loc: self.loc(n),
            })
        });
        let (spec, _) = action?;
        Some(Step {
            id: id?,
            action: spec,
            with,
            description,
            timeout,
            retry,
            on_failure,
            when,
            phase,
            loc,
        })
    }

    fn retry(&mut self, node: &Node) -> Option<Retry> {
        let map = self.mapping(node, "`retry`")?;
        self.known_fields(map, RETRY_FIELDS, "`retry`");
        let attempts = match map.get_node("attempts") {
            None => 1,
            Some(n) => match n
                .as_scalar()
                .and_then(|s| s.as_u32())
                .filter(|a| (1..=MAX_ATTEMPTS).contains(a))
            {
                Some(a) => a,
                None => {
                    self.err(Diagnostic::at(
                        self.loc(n),
                        format!("`attempts` must be a whole number from 1 to {MAX_ATTEMPTS}"),
                    ));
                    1
                }
            },
        };
        let backoff = map
            .get_node("backoff")
            .and_then(|n| self.duration(n, "`backoff`"))
            .unwrap_or(Duration::from_secs(1));
        Some(Retry { attempts, backoff })
    }

    /// A step's `with`: known fields of the action, required ones present, literal values typed.
    fn inputs(&mut self, node: &Node, spec: &'static ActionSpec) -> Vec<(String, Value)> {
        let Some(map) = self.mapping(node, "`with`") else {
            return Vec::new();
        };
        let schema = self.schemas.of(spec);
        let fields = template::schema_fields(&schema);
        let mut out = Vec::new();
        for (key, value) in map.iter() {
            let name = key.as_str();
            if !fields.iter().any(|f| f == name) {
                let d = Diagnostic::at(
                    self.key_loc(key),
                    format!("`{}` has no input `{name}`", spec.name),
                );
                let d = match suggest(name, fields.iter().map(String::as_str)) {
                    Some(near) => d.help(format!("did you mean `{near}`?")),
                    None if fields.is_empty() => d.help(format!("`{}` takes no inputs", spec.name)),
                    None => d.help(format!("`{}` takes: {}", spec.name, fields.join(", "))),
                };
                self.err(d);
                continue;
            }
            out.push((
                name.to_string(),
                Value {
                    value: to_json(value, false),
                    loc: self.loc(value),
                },
            ));
        }
        let names: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        self.check_required(spec, &names, self.loc(node));
        // Literal inputs are parsed now, so a wrong type shows before anything runs.
        let literal = out.iter().all(|(_, v)| !template::has_template(&v.value));
        if literal && self.diags.is_empty() {
            let object = serde_json::Value::Object(
                out.iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect(),
            );
            match template::coerce(&schema, object) {
                Err(e) => {
                    let at = out
                        .iter()
                        .find(|(k, _)| k == e.input())
                        .map_or_else(|| self.loc(node), |(_, v)| v.loc);
                    self.err(Diagnostic::at(
                        at,
                        format!("invalid input for `{}`: {e}", spec.name),
                    ));
                }
                Ok(inputs) => {
                    if let Err(e) = (spec.build)(inputs) {
                        let at =
                            field_of_error(&e.to_string(), &out).unwrap_or_else(|| self.loc(node));
                        self.err(Diagnostic::at(
                            at,
                            format!("invalid input for `{}`: {e}", spec.name),
                        ));
                    }
                }
            }
        }
        out
    }

    fn check_required(&mut self, spec: &ActionSpec, given: &[&str], at: Loc) {
        let schema = self.schemas.of(spec);
        for required in template::schema_required(&schema) {
            if !given.contains(&required.as_str()) {
                self.err(
                    Diagnostic::at(at, format!("`{}` needs the input `{required}`", spec.name))
                        .help(format!("add `{required}:` under `with:`")),
                );
            }
        }
    }

    /// Checks the names every template refers to. A step sees the steps before it in the
    /// file (a rollback or finally step so sees every main step); those that did not run
    /// are an error at run time, with the step named.
    fn references(&mut self, rb: &Runbook) {
        let params: Vec<&str> = rb.params.iter().map(|p| p.name.as_str()).collect();
        let all_ids: Vec<&str> = rb.all_steps().map(|s| s.id.as_str()).collect();
        // Where each step is: looked up once per reference, so checking stays linear.
        let mut index: HashMap<&str, (usize, &Step)> = HashMap::new();
        for (at, step) in rb.all_steps().enumerate() {
            index.entry(step.id.as_str()).or_insert((at, step));
        }
        let steps = Steps {
            index: &index,
            all_ids: &all_ids,
        };
        if let Some(probe) = &rb.probe {
            for e in &probe.endpoints {
                self.check_value(&e.value, &params, &steps, rb.steps.len(), Phase::Finally);
            }
        }
        for (at, step) in rb.all_steps().enumerate() {
            for (_, v) in &step.with {
                self.check_value(v, &params, &steps, at, step.phase);
            }
            if let Some(w) = &step.when {
                self.check_value(w, &params, &steps, at, step.phase);
            }
        }
    }

    /// Checks the templates of `v`, read by a step that sees the first `visible` steps.
    fn check_value(
        &mut self,
        v: &Value,
        params: &[&str],
        steps: &Steps<'_>,
        visible: usize,
        phase: Phase,
    ) {
        for text in template::strings(&v.value) {
            if let Err(e) = template::check_syntax(text) {
                let at = self.loc_in(v.loc, text, e.offset, 1);
                self.err(Diagnostic::at(
                    at,
                    format!("template syntax: {}", e.message),
                ));
                continue;
            }
            for r in template::references(text) {
                let at = self.loc_in(v.loc, text, r.offset, r.path.len());
                let parts: Vec<&str> = r.path.split('.').collect();
                match parts[0] {
                    "params" => match parts.get(1) {
                        Some(name) if !params.contains(name) => {
                            let d = Diagnostic::at(at, format!("unknown param `{name}`"));
                            let d = match suggest(name, params.iter().copied()) {
                                Some(near) => d.help(format!("did you mean `params.{near}`?")),
                                None => d.help("declare it under `params:`"),
                            };
                            self.err(d);
                        }
                        _ => {}
                    },
                    "run" => {
                        if let Some(name) = parts.get(1).filter(|n| !RUN_FIELDS.contains(n)) {
                            let d = Diagnostic::at(at, format!("`run` has no `{name}`"))
                                .help(format!("`run` has: {}", RUN_FIELDS.join(", ")));
                            self.err(d.suggest(name, RUN_FIELDS.iter().copied()));
                        }
                    }
                    "steps" => self.check_step_ref(&parts, at, steps, visible),
                    "failed_step" if phase != Phase::Rollback => {
                        self.err(Diagnostic::at(
                            at,
                            "`failed_step` is only known in `rollback` steps",
                        ));
                    }
                    _ => {}
                }
            }
        }
    }

    fn check_step_ref(&mut self, parts: &[&str], at: Loc, steps: &Steps<'_>, visible: usize) {
        let Some(id) = parts.get(1) else {
            return;
        };
        let all_ids = steps.all_ids;
        let Some(&(position, step)) = steps.index.get(id) else {
            let d = Diagnostic::at(at, format!("no step has the id `{id}`"));
            let d = match suggest(id, all_ids.iter().copied()) {
                Some(near) => d.help(format!("did you mean `steps.{near}`?")),
                None => d.help(format!("step ids: {}", all_ids.join(", "))),
            };
            self.err(d);
            return;
        };
        if position >= visible {
            self.err(
                Diagnostic::at(at, format!("step `{id}` has not run yet at this point"))
                    .help("a step can read the outputs of the steps before it"),
            );
            return;
        }
        match parts.get(2) {
            Some(&"outputs") => {}
            Some(other) => {
                self.err(Diagnostic::at(
                    at,
                    format!("write `steps.{id}.outputs.<name>`, not `steps.{id}.{other}`"),
                ));
                return;
            }
            None => return,
        }
        let declared = step.action.outputs;
        if let Some(name) = parts.get(3)
            && !declared.accepts(name)
        {
            let known = declared.names();
            let d = Diagnostic::at(
                at,
                format!(
                    "`{}` (step `{id}`) has no output `{name}`",
                    step.action.name
                ),
            );
            let d = match suggest(name, known.iter().map(String::as_str)) {
                Some(near) => d.help(format!("did you mean `{near}`?")),
                None if known.is_empty() => {
                    d.help(format!("`{}` has no outputs", step.action.name))
                }
                None => d.help(format!("its outputs: {}", known.join(", "))),
            };
            self.err(d);
        }
    }

    /// The place of `len` characters at `offset` inside a scalar written at `loc`, when the
    /// scalar is on one line; else the scalar's own place.
    fn loc_in(&self, loc: Loc, text: &str, offset: usize, len: usize) -> Loc {
        let one_line = !text.contains('\n');
        let quoted = self.quote_at(loc.line, loc.column);
        let line = self
            .lines
            .get(loc.line.wrapping_sub(1))
            .map(String::as_str)
            .unwrap_or("");
        let start = loc.column - 1 + usize::from(quoted);
        let written = line
            .chars()
            .skip(start)
            .take(text.chars().count())
            .collect::<String>();
        if one_line && written == text {
            loc.shifted(usize::from(quoted) + text[..offset].chars().count(), len)
        } else {
            loc
        }
    }
}

/// The steps of a runbook, for checking references to them.
struct Steps<'a> {
    /// Step id → its position in the file (steps, rollback, finally) and the step.
    index: &'a HashMap<&'a str, (usize, &'a Step)>,
    all_ids: &'a [&'a str],
}

/// The place of the input a serde error message names (`missing field `x``, ...).
fn field_of_error(message: &str, inputs: &[(String, Value)]) -> Option<Loc> {
    inputs
        .iter()
        .find(|(k, _)| message.contains(&format!("`{k}`")))
        .map(|(_, v)| v.loc)
        .or_else(|| (inputs.len() == 1).then(|| inputs[0].1.loc))
}

/// Letters, digits and `_`, not starting with a digit.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A YAML node as JSON. Scalars stay text (typed later against the action's schema) unless
/// `typed`, where unquoted numbers and booleans become JSON numbers and booleans.
pub fn to_json(node: &Node, typed: bool) -> serde_json::Value {
    use serde_json::Value as J;
    match node {
        Node::Scalar(s) => {
            if typed && s.may_coerce() {
                if let Some(b) = s.as_bool() {
                    return J::Bool(b);
                }
                if let Some(i) = s.as_i64() {
                    return J::from(i);
                }
                if matches!(s.as_str(), "~" | "null") {
                    return J::Null;
                }
            }
            J::String(s.as_str().to_string())
        }
        Node::Sequence(seq) => J::Array(seq.iter().map(|n| to_json(n, typed)).collect()),
        Node::Mapping(map) => J::Object(
            map.iter()
                .map(|(k, v)| (k.as_str().to_string(), to_json(v, typed)))
                .collect(),
        ),
    }
}
