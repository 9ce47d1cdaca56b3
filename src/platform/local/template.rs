//! Reading the CloudFormation template the aws target deploys, so a rehearsal builds the
//! same thing.
//!
//! CloudFormation YAML uses short-form tags (`!Ref`, `!GetAtt`, `!Sub`, `!Join`, …). The
//! YAML library the runbook loader uses (marked-yaml) rejects every tag, so templates are
//! read with the event parser of yaml-rust2 (the parser underneath marked-yaml) and each
//! tagged node becomes the long form (`!Ref X` → `{"Ref": "X"}`, `!Sub s` →
//! `{"Fn::Sub": s}`), exactly as CloudFormation itself treats them. The result is plain
//! JSON, which is also how a JSON template reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Why a template could not be read or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read the template {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {why}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        why: String,
    },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
    /// An intrinsic function the local target cannot compute.
    #[error("{context}: {why}")]
    Eval { context: String, why: String },
}

/// A parsed template: the sections the local target uses.
#[derive(Clone, Debug)]
pub struct Template {
    pub path: PathBuf,
    pub parameters: BTreeMap<String, Value>,
    /// `Conditions`, by name, unevaluated.
    pub conditions: BTreeMap<String, Value>,
    pub resources: BTreeMap<String, Resource>,
    pub outputs: BTreeMap<String, Output>,
}

/// One resource: its type, properties and metadata, intrinsics unevaluated.
#[derive(Clone, Debug)]
pub struct Resource {
    pub kind: String,
    pub properties: Map<String, Value>,
    pub metadata: Map<String, Value>,
    /// The condition it is made under, if any.
    pub condition: Option<String>,
}

/// One output: its value, unevaluated, and the condition it is given under, if any.
#[derive(Clone, Debug)]
pub struct Output {
    pub value: Value,
    pub condition: Option<String>,
}

impl Template {
    /// Reads a YAML or JSON template.
    pub fn load(path: &Path) -> Result<Template, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let doc = parse_yaml(&text).map_err(|e| TemplateError::Syntax {
            path: path.to_path_buf(),
            line: e.line,
            column: e.column,
            why: e.why,
        })?;
        Template::from_json(path, doc)
    }

    fn from_json(path: &Path, doc: Value) -> Result<Template, TemplateError> {
        let invalid = |why: String| TemplateError::Invalid {
            path: path.to_path_buf(),
            why,
        };
        let Value::Object(mut doc) = doc else {
            return Err(invalid("the template is not a mapping".into()));
        };
        let mut section = |name: &str| match doc.remove(name) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(invalid(format!("`{name}` is not a mapping"))),
        };
        let parameters = section("Parameters")?
            .into_iter()
            .map(|(name, p)| (name, p.get("Default").cloned().unwrap_or(Value::Null)))
            .collect();
        let conditions = section("Conditions")?.into_iter().collect();
        let condition_of = |v: &Value| {
            v.get("Condition")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let mut resources = BTreeMap::new();
        for (name, r) in section("Resources")? {
            let kind = r
                .get("Type")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("resource `{name}` has no Type")))?
                .to_string();
            let object = |key: &str| {
                r.get(key)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            };
            resources.insert(
                name,
                Resource {
                    kind,
                    properties: object("Properties"),
                    metadata: object("Metadata"),
                    condition: condition_of(&r),
                },
            );
        }
        if resources.is_empty() {
            return Err(invalid("the template has no Resources".into()));
        }
        let outputs = section("Outputs")?
            .into_iter()
            .map(|(name, o)| {
                let output = Output {
                    value: o.get("Value").cloned().unwrap_or(Value::Null),
                    condition: condition_of(&o),
                };
                (name, output)
            })
            .collect();
        Ok(Template {
            path: path.to_path_buf(),
            parameters,
            conditions,
            resources,
            outputs,
        })
    }
}

/// What `Ref` and `Fn::GetAtt` resolve to while evaluating.
#[derive(Debug, Default)]
pub struct Scope {
    /// Parameters and pseudo parameters (`AWS::StackName`, …) by name, and each
    /// resource's `Ref` value by logical id.
    pub refs: BTreeMap<String, Value>,
    /// `(logical id, attribute)` → value.
    pub attrs: BTreeMap<(String, String), Value>,
    /// Resources that are only recorded: their attributes read as placeholders.
    pub simulated: std::collections::BTreeSet<String>,
    /// The template's conditions, evaluated.
    pub conditions: BTreeMap<String, bool>,
}

impl Scope {
    /// Evaluates the template's `Conditions` (which may name each other) over the
    /// parameters already in scope.
    pub fn settle_conditions(
        &mut self,
        defs: &BTreeMap<String, Value>,
    ) -> Result<(), TemplateError> {
        loop {
            let pending: Vec<&String> = defs
                .keys()
                .filter(|k| !self.conditions.contains_key(*k))
                .collect();
            let Some(first) = pending.first() else {
                return Ok(());
            };
            let settled: Vec<(String, bool)> = pending
                .iter()
                .filter_map(|name| {
                    let v = self.eval(&defs[*name], "").ok()?;
                    Some(((*name).clone(), truthy(&v)))
                })
                .collect();
            if settled.is_empty() {
                // None can be computed: report the first one's own error.
                self.eval(&defs[*first], &format!("Conditions.{first}"))?;
                return Err(TemplateError::Eval {
                    context: format!("Conditions.{first}"),
                    why: "the conditions name each other in a circle".into(),
                });
            }
            self.conditions.extend(settled);
        }
    }

    /// Whether a resource or output made under `condition` exists.
    pub fn holds(&self, condition: Option<&str>, context: &str) -> Result<bool, TemplateError> {
        match condition {
            None => Ok(true),
            Some(name) => self.condition(name, context),
        }
    }

    fn condition(&self, name: &str, context: &str) -> Result<bool, TemplateError> {
        self.conditions
            .get(name)
            .copied()
            .ok_or_else(|| TemplateError::Eval {
                context: context.to_string(),
                why: format!("Condition `{name}` is not in Conditions"),
            })
    }

    /// Computes `value`'s intrinsic functions. `context` names the place for errors.
    pub fn eval(&self, value: &Value, context: &str) -> Result<Value, TemplateError> {
        let err = |why: String| TemplateError::Eval {
            context: context.to_string(),
            why,
        };
        match value {
            Value::Array(items) => items.iter().map(|v| self.eval(v, context)).collect(),
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next().expect("one entry");
                match key.as_str() {
                    "Ref" => {
                        let name = arg.as_str().ok_or_else(|| err("Ref takes a name".into()))?;
                        self.refs
                            .get(name)
                            .cloned()
                            .ok_or_else(|| err(format!("Ref to unknown `{name}`")))
                    }
                    "Fn::GetAtt" => {
                        let (id, attr) = match self.eval(arg, context)? {
                            Value::String(s) => match s.split_once('.') {
                                Some((id, attr)) => (id.to_string(), attr.to_string()),
                                None => {
                                    return Err(err(format!(
                                        "GetAtt `{s}` is not Resource.Attribute"
                                    )));
                                }
                            },
                            Value::Array(parts) if parts.len() == 2 => {
                                (text(&parts[0]), text(&parts[1]))
                            }
                            _ => {
                                return Err(err(
                                    "GetAtt takes Resource.Attribute or [Resource, Attribute]"
                                        .into(),
                                ));
                            }
                        };
                        if self.simulated.contains(&id) {
                            return Ok(Value::String(format!("{id}.{attr}(simulated)")));
                        }
                        self.attrs
                            .get(&(id.clone(), attr.clone()))
                            .cloned()
                            .ok_or_else(|| {
                                err(format!(
                                    "GetAtt {id}.{attr} is not known to the local target"
                                ))
                            })
                    }
                    "Fn::Sub" => {
                        let (format, vars) = match arg {
                            Value::String(s) => (s.clone(), Map::new()),
                            Value::Array(parts) if parts.len() == 2 => (
                                text(&parts[0]),
                                parts[1].as_object().cloned().unwrap_or_default(),
                            ),
                            _ => {
                                return Err(
                                    err("Sub takes a string or [string, variables]".into()),
                                );
                            }
                        };
                        self.sub(&format, &vars, context).map(Value::String)
                    }
                    "Fn::Join" => {
                        let parts = arg
                            .as_array()
                            .filter(|p| p.len() == 2)
                            .ok_or_else(|| err("Join takes [delimiter, list]".into()))?;
                        let delimiter = text(&parts[0]);
                        let list = self.eval(&parts[1], context)?;
                        let items = list
                            .as_array()
                            .ok_or_else(|| err("Join's second argument is not a list".into()))?;
                        Ok(Value::String(
                            items.iter().map(text).collect::<Vec<_>>().join(&delimiter),
                        ))
                    }
                    "Fn::Select" => {
                        let parts = arg
                            .as_array()
                            .filter(|p| p.len() == 2)
                            .ok_or_else(|| err("Select takes [index, list]".into()))?;
                        let index: usize = text(&self.eval(&parts[0], context)?)
                            .parse()
                            .map_err(|_| err("Select's index is not a number".into()))?;
                        let list = self.eval(&parts[1], context)?;
                        list.get(index)
                            .cloned()
                            .ok_or_else(|| err(format!("Select index {index} is out of range")))
                    }
                    "Fn::GetAZs" => Ok(Value::Array(vec!["local-a".into(), "local-b".into()])),
                    "Condition" => {
                        let name = arg
                            .as_str()
                            .ok_or_else(|| err("Condition takes a name".into()))?;
                        Ok(Value::Bool(self.condition(name, context)?))
                    }
                    "Fn::If" => {
                        let parts = arg
                            .as_array()
                            .filter(|p| p.len() == 3)
                            .ok_or_else(|| err("If takes [condition, then, else]".into()))?;
                        let name = parts[0]
                            .as_str()
                            .ok_or_else(|| err("If's condition is not a name".into()))?;
                        let branch = if self.condition(name, context)? {
                            &parts[1]
                        } else {
                            &parts[2]
                        };
                        self.eval(branch, context)
                    }
                    "Fn::Equals" => {
                        let parts = arg
                            .as_array()
                            .filter(|p| p.len() == 2)
                            .ok_or_else(|| err("Equals takes [value, value]".into()))?;
                        Ok(Value::Bool(
                            text(&self.eval(&parts[0], context)?)
                                == text(&self.eval(&parts[1], context)?),
                        ))
                    }
                    "Fn::Not" | "Fn::And" | "Fn::Or" => {
                        let parts = arg
                            .as_array()
                            .ok_or_else(|| err(format!("{key} takes a list of conditions")))?;
                        let values = parts
                            .iter()
                            .map(|p| self.eval(p, context).map(|v| truthy(&v)))
                            .collect::<Result<Vec<bool>, _>>()?;
                        Ok(Value::Bool(match key.as_str() {
                            "Fn::Not" => !values.first().copied().unwrap_or(false),
                            "Fn::And" => values.iter().all(|&b| b),
                            _ => values.iter().any(|&b| b),
                        }))
                    }
                    other if other.starts_with("Fn::") => {
                        Err(err(format!("{other} is not supported by the local target")))
                    }
                    _ => Ok(Value::Object(
                        std::iter::once((key.clone(), self.eval(arg, context)?)).collect(),
                    )),
                }
            }
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| Ok((k.clone(), self.eval(v, context)?)))
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object),
            other => Ok(other.clone()),
        }
    }

    /// `Fn::Sub`: `${Name}` and `${Resource.Attribute}` replaced, `${!Literal}` kept as `${Literal}`.
    fn sub(
        &self,
        format: &str,
        vars: &Map<String, Value>,
        context: &str,
    ) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = format;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| TemplateError::Eval {
                context: context.to_string(),
                why: format!("unclosed `${{` in Sub `{format}`"),
            })?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str(&format!("${{{literal}}}"));
            } else if let Some(v) = vars.get(name) {
                out.push_str(&text(&self.eval(v, context)?));
            } else if let Some((id, attr)) = name.split_once('.') {
                let v = self.eval(&serde_json::json!({"Fn::GetAtt": [id, attr]}), context)?;
                out.push_str(&text(&v));
            } else {
                out.push_str(&text(
                    &self.eval(&serde_json::json!({"Ref": name}), context)?,
                ));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// A condition's value: `true` or `"true"`.
fn truthy(value: &Value) -> bool {
    value.as_bool().unwrap_or_else(|| text(value) == "true")
}

/// A scalar as text (numbers and booleans as CloudFormation prints them).
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A YAML syntax error and where it is.
#[derive(Debug)]
struct ParseError {
    line: usize,
    column: usize,
    why: String,
}

impl ParseError {
    fn at(mark: Marker, why: String) -> ParseError {
        ParseError {
            line: mark.line(),
            column: mark.col() + 1,
            why,
        }
    }
}

/// Parses one YAML document into JSON, turning CloudFormation tags into long forms.
fn parse_yaml(text: &str) -> Result<Value, ParseError> {
    // The tree below is built recursively: bound its depth (and refuse NUL bytes and a second
    // document) first, as for runbooks, so a hostile template cannot overflow the stack.
    crate::load::check_shape(text).map_err(|d| {
        let loc = d.loc.unwrap_or_default();
        ParseError {
            line: loc.line,
            column: loc.column,
            why: d.message,
        }
    })?;
    let mut events = Parser::new_from_str(text);
    let mut next = move || -> Result<(Event, Marker), ParseError> {
        events
            .next_token()
            .map_err(|e| ParseError::at(*e.marker(), e.info().to_string()))
    };
    loop {
        let (event, mark) = next()?;
        match event {
            Event::StreamStart | Event::DocumentStart => continue,
            Event::StreamEnd => return Err(ParseError::at(mark, "the template is empty".into())),
            first => return node(first, mark, &mut next),
        }
    }
}

fn node(
    event: Event,
    mark: Marker,
    next: &mut dyn FnMut() -> Result<(Event, Marker), ParseError>,
) -> Result<Value, ParseError> {
    let (value, tag) = match event {
        Event::Scalar(v, style, _, tag) => (scalar(v, style, tag.as_ref()), tag),
        Event::SequenceStart(_, tag) => {
            let mut items = Vec::new();
            loop {
                let (e, m) = next()?;
                if e == Event::SequenceEnd {
                    break;
                }
                items.push(node(e, m, next)?);
            }
            (Value::Array(items), tag)
        }
        Event::MappingStart(_, tag) => {
            let mut map = Map::new();
            loop {
                let (e, m) = next()?;
                if e == Event::MappingEnd {
                    break;
                }
                let key = match node(e, m, next)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let (e, m) = next()?;
                map.insert(key, node(e, m, next)?);
            }
            (Value::Object(map), tag)
        }
        Event::Alias(_) => {
            return Err(ParseError::at(
                mark,
                "YAML aliases are not supported in templates".into(),
            ));
        }
        other => return Err(ParseError::at(mark, format!("unexpected {other:?}"))),
    };
    Ok(match tag {
        Some(tag) if tag.handle == "!" => long_form(&tag.suffix, value),
        _ => value,
    })
}

/// `!Ref x` → `{"Ref": x}`; `!GetAtt A.B` → `{"Fn::GetAtt": ["A", "B"]}`; `!Name x` → `{"Fn::Name": x}`.
fn long_form(name: &str, value: Value) -> Value {
    let (key, value) = match name {
        "Ref" | "Condition" => (name.to_string(), value),
        "GetAtt" => match value {
            Value::String(s) => match s.split_once('.') {
                Some((id, attr)) => ("Fn::GetAtt".to_string(), serde_json::json!([id, attr])),
                None => ("Fn::GetAtt".to_string(), Value::String(s)),
            },
            other => ("Fn::GetAtt".to_string(), other),
        },
        other => (format!("Fn::{other}"), value),
    };
    Value::Object(std::iter::once((key, value)).collect())
}

/// A scalar's JSON value: plain scalars may be null, booleans or numbers; quoted ones and
/// tagged ones are strings.
fn scalar(v: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    if style != TScalarStyle::Plain || tag.is_some_and(|t| t.suffix == "str" || t.handle == "!") {
        return Value::String(v);
    }
    match v.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ => {
            if let Ok(i) = v.parse::<i64>() {
                Value::from(i)
            } else if let Some(f) = v.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Value::Number(f)
            } else {
                Value::String(v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_and_long_forms_read_alike() {
        let short = parse_yaml(
            "A: !Ref X\nB: !GetAtt R.PrimaryEndPoint.Address\nC: !Sub '${X}-1'\nD: !Join [':', [!Ref X, 6379]]\nE: !Select [0, !GetAZs '']\n",
        )
        .unwrap();
        let long = parse_yaml(
            "A: {Ref: X}\nB: {'Fn::GetAtt': [R, PrimaryEndPoint.Address]}\nC: {'Fn::Sub': '${X}-1'}\nD: {'Fn::Join': [':', [{Ref: X}, 6379]]}\nE: {'Fn::Select': [0, {'Fn::GetAZs': ''}]}\n",
        )
        .unwrap();
        assert_eq!(short, long);
        assert_eq!(
            short["B"],
            json!({"Fn::GetAtt": ["R", "PrimaryEndPoint.Address"]})
        );
    }

    #[test]
    fn evaluates_intrinsics() {
        let mut scope = Scope::default();
        scope.refs.insert("AWS::StackName".into(), json!("s1"));
        scope.refs.insert("Port".into(), json!("7001"));
        scope.attrs.insert(
            ("Rg".into(), "PrimaryEndPoint.Address".into()),
            json!("127.0.0.1"),
        );
        let v = parse_yaml(
            "a: !Sub '${Rg.PrimaryEndPoint.Address}:${Port}'\nb: !Join ['-', [!Ref 'AWS::StackName', x]]\nc: !Sub ['${N}!${!Lit}', {N: !Ref Port}]\nd: !GetAtt [Rg, PrimaryEndPoint.Address]\n",
        )
        .unwrap();
        let out = scope.eval(&v, "Outputs").unwrap();
        assert_eq!(
            out,
            json!({"a": "127.0.0.1:7001", "b": "s1-x", "c": "7001!${Lit}", "d": "127.0.0.1"})
        );
        let err = scope
            .eval(&json!({"Ref": "Nope"}), "Outputs.X")
            .unwrap_err();
        assert_eq!(err.to_string(), "Outputs.X: Ref to unknown `Nope`");
        assert_eq!(
            scope
                .eval(&json!({"Fn::If": ["c", 1, 2]}), "o")
                .unwrap_err()
                .to_string(),
            "o: Condition `c` is not in Conditions"
        );
        let conditions = parse_yaml(
            "Sharded: !Not [!Equals [!Ref Port, '6379']]\nBoth: !And [!Condition Sharded, !Equals [a, a]]\n",
        )
        .unwrap();
        let defs = conditions
            .as_object()
            .unwrap()
            .clone()
            .into_iter()
            .collect();
        scope.settle_conditions(&defs).unwrap();
        assert_eq!(
            scope.conditions,
            [("Both".to_string(), true), ("Sharded".to_string(), true)]
                .into_iter()
                .collect()
        );
        assert_eq!(
            scope
                .eval(
                    &json!({"Fn::If": ["Both", 1, {"Ref": "AWS::StackName"}]}),
                    "o"
                )
                .unwrap(),
            json!(1)
        );
    }

    #[test]
    fn the_shipped_templates_read_with_their_servers_marked() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cloudformation");
        for (file, groups) in [
            (
                "online-migration.yaml",
                ["RedisSource", "ValkeyGroup"].as_slice(),
            ),
            ("engine-change.yaml", ["RedisGroup"].as_slice()),
            ("snapshot-restore.yaml", ["RedisGroup"].as_slice()),
        ] {
            let t = Template::load(&dir.join(file)).unwrap();
            for g in groups {
                let r = &t.resources[*g];
                assert!(
                    r.kind == "AWS::ElastiCache::ReplicationGroup"
                        || r.metadata.contains_key("Runbook"),
                    "{file}: {g}"
                );
            }
            assert!(!t.outputs.is_empty(), "{file} has outputs");
        }
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, "Resources:\n  A: [1, 2\n").unwrap();
        let err = Template::load(&path).unwrap_err().to_string();
        assert!(err.contains("t.yaml:"), "{err}");
    }
}
