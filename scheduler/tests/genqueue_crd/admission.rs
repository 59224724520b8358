//! What the API server checks of a GenQueue beyond its types, done here on
//! the committed CRD: the bounds (`minimum`, `maximum`, `exclusiveMinimum`,
//! `maxLength`, `maxProperties`) and the CEL rules
//! (`x-kubernetes-validations`), each rule with `self` bound to the value at
//! its schema node and integers as CEL ints, as Kubernetes binds them; and
//! fields the schema does not declare, as strict field validation refuses
//! them. Types and required fields are serde's (and
//! .ci/validate-crd-objects.py's) to refuse.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the scheduler crate is in the workspace")
        .to_path_buf()
}

/// The served version's openAPIV3Schema of deploy/base/genqueue-crd.yaml
/// (the file `genfleet kube crd` writes; a test keeps it the code's).
pub fn crd_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = repo_root().join("deploy/base/genqueue-crd.yaml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let crd: Value = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    })
}

/// The GenQueues of one YAML file (all its documents).
pub fn objects(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        })
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}

pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// Why the API server would refuse an object.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// `spec.quotas.cpu.nominal`; `(object)` for the object itself, as
    /// .ci/validate-crd-objects.py says.
    pub path: String,
    pub message: String,
    /// The CEL rule's text; None for a bound.
    pub rule: Option<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every refusal of `object`.
pub fn refusals(object: &Value) -> Vec<Refusal> {
    let mut out = Vec::new();
    check(crd_schema(), object, &mut Vec::new(), &mut out);
    out
}

fn check(schema: &Value, value: &Value, path: &mut Vec<String>, out: &mut Vec<Refusal>) {
    let at = |path: &[String]| {
        if path.is_empty() {
            "(object)".to_string()
        } else {
            path.join(".")
        }
    };
    for message in bounds(schema, value) {
        out.push(Refusal {
            path: at(path),
            message,
            rule: None,
        });
    }
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = rule["rule"].as_str().expect("a rule has its CEL text");
        let message = rule["message"].as_str().expect("every rule has a message");
        let field = rule["fieldPath"].as_str().unwrap_or_default();
        let message = match evaluate(text, value) {
            Ok(true) => continue,
            Ok(false) => message.to_string(),
            Err(error) => format!("{message} ({error})"),
        };
        out.push(Refusal {
            path: format!("{}{field}", at(path)),
            message,
            rule: Some(text.to_string()),
        });
    }
    match value {
        Value::Object(fields) => {
            for (key, sub) in fields {
                let sub_schema = schema["properties"]
                    .get(key)
                    .or_else(|| schema.get("additionalProperties").filter(|s| s.is_object()));
                match sub_schema {
                    Some(sub_schema) => {
                        path.push(key.clone());
                        check(sub_schema, sub, path, out);
                        path.pop();
                    }
                    // Strict field validation (kubectl's default) refuses
                    // what the schema does not declare; every object has
                    // the first three.
                    None if !(path.is_empty()
                        && ["apiVersion", "kind", "metadata"].contains(&key.as_str())) =>
                    {
                        out.push(Refusal {
                            path: at(path),
                            message: format!(
                                "Additional properties are not allowed ('{key}' was unexpected)"
                            ),
                            rule: None,
                        })
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                check(&schema["items"], item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The bounds `value` breaks, worded as jsonschema words them.
fn bounds(schema: &Value, value: &Value) -> Vec<String> {
    let mut broken = Vec::new();
    if schema["type"] == "integer" && value.is_number() && value.as_i64().is_none() {
        broken.push(format!("{value} is not of type 'integer'"));
    }
    if let Some(n) = value.as_f64() {
        let exclusive = schema["exclusiveMinimum"] == true;
        if let Some(min) = schema["minimum"].as_f64() {
            if n < min || (exclusive && n == min) {
                let or_equal = if exclusive { "or equal to " } else { "" };
                broken.push(format!(
                    "{value} is less than {or_equal}the minimum of {min:?}"
                ));
            }
        }
        if let Some(max) = schema["maximum"].as_f64().filter(|max| n > *max) {
            broken.push(format!("{value} is greater than the maximum of {max:?}"));
        }
    }
    if let (Some(s), Some(max)) = (value.as_str(), schema["maxLength"].as_u64()) {
        if s.chars().count() as u64 > max {
            broken.push(format!("{value} is too long"));
        }
    }
    if let (Some(map), Some(max)) = (value.as_object(), schema["maxProperties"].as_u64()) {
        if map.len() as u64 > max {
            broken.push(format!("{value} has too many properties"));
        }
    }
    broken
}

/// `rule` with `self` bound to `value`: true admits, false refuses; an
/// error (no such key, no such overload) refuses too on the API server.
pub fn evaluate(rule: &str, value: &Value) -> Result<bool, String> {
    let program = compiled(rule)?;
    let mut context = cel::Context::with_env(env().clone());
    context.add_variable_from_value("self", to_cel(value));
    match program.execute(&context) {
        Ok(cel::Value::Bool(verdict)) => Ok(verdict),
        Ok(other) => Err(format!("the rule gave {other:?}, not a bool")),
        Err(error) => Err(error.to_string()),
    }
}

/// CEL's standard environment (the Kubernetes extension libraries are not
/// in it: the rules do not use them).
fn env() -> &'static Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(cel::Env::stdlib()))
}

/// Each rule parsed once (proptest evaluates some many times).
fn compiled(rule: &str) -> Result<Arc<cel::Program>, String> {
    static PROGRAMS: OnceLock<std::sync::Mutex<HashMap<String, Arc<cel::Program>>>> =
        OnceLock::new();
    let mut programs = PROGRAMS
        .get_or_init(Default::default)
        .lock()
        .expect("no test panicked while holding the cache");
    if let Some(program) = programs.get(rule) {
        return Ok(program.clone());
    }
    let program = env()
        .compile(rule)
        .map_err(|e| format!("{rule:?} does not parse: {e}"))?;
    let program = Arc::new(program);
    programs.insert(rule.to_string(), program.clone());
    Ok(program)
}

/// JSON as Kubernetes hands it to CEL: integers are `int`, other numbers
/// `double`, objects maps with string keys.
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), to_cel(v)))
            .collect::<HashMap<String, cel::Value>>()
            .into(),
    }
}
