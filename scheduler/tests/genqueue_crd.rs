//! The GenQueue CRD is admission-safe: every integer is an int64 with a
//! minimum and a maximum (a count kube-rs could not read back is refused,
//! not admitted), and its CEL rules refuse what the controller refuses,
//! evaluated as the API server evaluates them (`genqueue_crd/admission.rs`).
//! The examples in deploy/examples pass every rule; the invalid ones are
//! refused, and a rule's refusal is the controller's too.

#[path = "genqueue_crd/admission.rs"]
mod admission;

use std::collections::BTreeSet;

use admission::{crd_schema, evaluate, objects, refusals, repo_root, yaml_files, Refusal};
use genfleet_proto as pb;
use genfleet_scheduler::kube::genqueue::schema::{
    self, MAX_BUDGET_HOURS, MAX_DEVICES, MAX_FLAVORS, MAX_GENERATION, MAX_WEIGHT, PERIOD_UNITS,
    PERIOD_UNIT_PATTERN,
};
use genfleet_scheduler::kube::GenQueue;
use proptest::prelude::*;
use serde_json::{json, Value};

/// A GenQueue named `name` with `spec`, as `kubectl apply` sends it.
fn named(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "genfleet.dev/v1alpha1",
        "kind": "GenQueue",
        "metadata": { "name": name },
        "spec": spec,
    })
}

fn genqueue(spec: Value) -> Value {
    named("research", spec)
}

/// What the controller makes of `object`: Err when it cannot read it or
/// `GenQueue::to_queue` refuses it.
fn controller(object: &Value) -> Result<pb::Queue, String> {
    let queue: GenQueue = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    queue.to_queue().map_err(|e| e.to_string())
}

fn shown(refused: &[Refusal]) -> Vec<String> {
    refused.iter().map(ToString::to_string).collect()
}

/// Every schema node below `node`, with its path in the schema.
fn nodes<'a>(node: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    out.push((path.clone(), node));
    for (name, sub) in node["properties"].as_object().into_iter().flatten() {
        nodes(sub, format!("{path}.{name}"), out);
    }
    if node["additionalProperties"].is_object() {
        nodes(&node["additionalProperties"], format!("{path}.*"), out);
    }
    if node["items"].is_object() {
        nodes(&node["items"], format!("{path}[]"), out);
    }
}

fn all_rules() -> Vec<(String, &'static Value)> {
    let mut all = Vec::new();
    nodes(crd_schema(), String::new(), &mut all);
    all.into_iter()
        .flat_map(|(path, node)| {
            node["x-kubernetes-validations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |rule| (path.clone(), rule))
        })
        .collect()
}

#[test]
fn every_integer_is_an_int64_with_a_minimum_and_a_maximum() {
    let mut all = Vec::new();
    nodes(crd_schema(), String::new(), &mut all);
    let integers: Vec<_> = all.iter().filter(|(_, n)| n["type"] == "integer").collect();
    // weight, nominal, borrowingLimit, lendingLimit; used, borrowed,
    // pendingJobs, runningJobs and two observedGenerations in the status.
    assert_eq!(
        integers.len(),
        10,
        "{:?}",
        integers.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for (path, node) in integers {
        assert_eq!(
            node["format"], "int64",
            "{path}: Kubernetes formats integers as int32 or int64 only: {node}"
        );
        let min = node["minimum"].as_f64();
        let max = node["maximum"].as_f64();
        assert!(
            min.is_some_and(|m| m >= 0.0) && max.is_some_and(|m| m <= MAX_GENERATION as f64),
            "{path}: an explicit minimum and maximum, none beyond what the Rust type holds: {node}"
        );
        if path.starts_with(".spec") {
            assert!(
                max.is_some_and(|m| m <= f64::from(u32::MAX)),
                "{path}: the spec's integers are u32s: {node}"
            );
        }
    }
    let text = std::fs::read_to_string(repo_root().join("deploy/base/genqueue-crd.yaml"))
        .expect("the committed CRD");
    assert!(!text.contains("uint32"), "no uint32 format is left");
}

#[test]
fn a_count_above_u32_max_is_refused_by_the_schema_rather_than_admitted() {
    let too_big = u64::from(u32::MAX) + 1;
    let object = genqueue(json!({ "quotas": { "cpu": { "nominal": too_big } } }));
    let refused = shown(&refusals(&object));
    assert!(
        refused
            .iter()
            .any(|r| r
                .starts_with("spec.quotas.cpu.nominal: 4294967296 is greater than the maximum")),
        "{refused:?}"
    );
    // What admitting it would do: an object kube-rs cannot read, on which
    // the GenQueue watch stalls.
    assert!(serde_json::from_value::<GenQueue>(object).is_err());

    let mut status = genqueue(json!({ "quotas": {} }));
    status["status"] = json!({ "pendingJobs": too_big, "used": { "cpu": too_big } });
    let refused = shown(&refusals(&status));
    for field in ["status.pendingJobs", "status.used.cpu"] {
        assert!(
            refused
                .iter()
                .any(|r| r.starts_with(&format!("{field}: 4294967296 is greater"))),
            "{field}: {refused:?}"
        );
    }
}

/// At each of the CRD's limits the controller admits what the schema
/// admits and refuses one step beyond it, so the two cannot drift apart.
#[test]
fn the_crds_limits_are_the_controllers() {
    let flavors = |n: i64| -> Value {
        (0..n)
            .map(|i| (format!("flavor-{i}"), json!({ "nominal": 1 })))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let long_name = "q".repeat(pb::MAX_NAME_LEN);
    let too_long = format!("{long_name}q");
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "devices",
            genqueue(json!({ "quotas": { "cpu": { "nominal": MAX_DEVICES } } })),
            genqueue(json!({ "quotas": { "cpu": { "nominal": MAX_DEVICES + 1 } } })),
        ),
        (
            "weight",
            genqueue(json!({ "weight": MAX_WEIGHT, "quotas": {} })),
            genqueue(json!({ "weight": MAX_WEIGHT + 1, "quotas": {} })),
        ),
        (
            "flavors",
            genqueue(json!({ "quotas": flavors(MAX_FLAVORS) })),
            genqueue(json!({ "quotas": flavors(MAX_FLAVORS + 1) })),
        ),
        (
            "name",
            named(&long_name, json!({ "quotas": {} })),
            named(&too_long, json!({ "quotas": {} })),
        ),
        (
            "budget",
            genqueue(json!({ "budget": { "deviceHours": MAX_BUDGET_HOURS, "period": "7d" } })),
            genqueue(
                json!({ "budget": { "deviceHours": MAX_BUDGET_HOURS * 2.0, "period": "7d" } }),
            ),
        ),
        (
            "no budget",
            genqueue(json!({ "budget": { "deviceHours": 0.5, "period": "1h" } })),
            genqueue(json!({ "budget": { "deviceHours": 0, "period": "1h" } })),
        ),
    ];
    for (what, at_limit, beyond) in cases {
        assert_eq!(
            shown(&refusals(&at_limit)),
            Vec::<String>::new(),
            "{what}: the CRD admits its limit"
        );
        controller(&at_limit)
            .unwrap_or_else(|e| panic!("{what}: the controller refuses the CRD's limit: {e}"));
        assert!(
            !refusals(&beyond).is_empty(),
            "{what}: the CRD admits beyond its limit"
        );
        assert!(
            controller(&beyond).is_err(),
            "{what}: the controller admits beyond the CRD's limit"
        );
    }
}

/// One CEL rule: where it is, a fragment of its text that names it, and
/// values for `self` it must admit and refuse.
struct Case {
    pointer: &'static str,
    names: &'static str,
    admits: Vec<Value>,
    refuses: Vec<Value>,
}

fn cases() -> Vec<Case> {
    let name_63 = "n".repeat(pb::MAX_NAME_LEN);
    let name_64 = format!("{name_63}n");
    let quota = json!({ "nominal": 1 });
    vec![
        Case {
            pointer: "",
            names: "self.metadata.name",
            admits: vec![
                json!({ "metadata": { "name": "research" } }),
                json!({ "metadata": { "name": name_63 } }),
            ],
            refuses: vec![json!({ "metadata": { "name": name_64 } })],
        },
        Case {
            pointer: "/properties/spec",
            names: "borrowingLimit",
            admits: vec![
                json!({ "cohort": "lab", "quotas": { "cpu": { "nominal": 1, "borrowingLimit": 4 } } }),
                json!({ "quotas": { "cpu": { "nominal": 1, "lendingLimit": 1 } } }),
                json!({ "quotas": {} }),
                json!({}),
            ],
            refuses: vec![
                json!({ "quotas": { "cpu": { "nominal": 1, "borrowingLimit": 4 } } }),
                json!({ "cohort": "", "quotas": { "cpu": quota, "amd-mi300x": { "nominal": 0, "borrowingLimit": 8 } } }),
            ],
        },
        Case {
            pointer: "/properties/spec/properties/cohort",
            names: "self.matches",
            admits: vec![
                json!("lab"),
                json!(""),
                json!("a.b_c-9"),
                json!("..."),
                json!(name_63),
            ],
            refuses: vec![
                json!("Lab"),
                json!("."),
                json!(".."),
                json!("research lab"),
                json!("lab/a"),
                json!("é"),
                json!(name_64),
            ],
        },
        Case {
            pointer: "/properties/spec/properties/quotas",
            names: "self.all",
            admits: vec![
                json!({ "cpu": quota, "nvidia-h100-80gb": quota }),
                json!({}),
            ],
            refuses: vec![
                json!({ "NVIDIA-H100": quota }),
                json!({ "cpu": quota, "": quota }),
                json!({ "..": quota }),
                json!({ "amd/mi300x": quota }),
                json!({ name_64: quota }),
            ],
        },
        Case {
            pointer: "/properties/spec/properties/quotas/additionalProperties",
            names: "lendingLimit",
            admits: vec![
                json!({ "nominal": 8 }),
                json!({ "nominal": 8, "lendingLimit": 8 }),
                json!({ "nominal": 8, "lendingLimit": 0, "borrowingLimit": 100 }),
            ],
            refuses: vec![
                json!({ "nominal": 2, "lendingLimit": 3 }),
                json!({ "nominal": 0, "lendingLimit": 1 }),
            ],
        },
        Case {
            pointer: "/properties/spec/properties/budget/properties/period",
            names: "self.matches",
            admits: [
                "24h",
                "7d",
                "30days",
                "1h 30m",
                "1h30m",
                "1 week",
                "2 weeks 3 days",
                "12M",
                "1y",
                "90min",
                "3600s",
                "1 hour",
                "999999999s",
            ]
            .map(|p| json!(p))
            .to_vec(),
            refuses: [
                "fortnight",
                "24",
                "h",
                "",
                "1.5h",
                "-1h",
                "24h ",
                " 24h",
                "1h  30m",
                "1ms",
                "24H",
                "1234567890h",
                "1h,30m",
                "1h\t30m",
                "1 h30",
                "7 d ays",
            ]
            .map(|p| json!(p))
            .to_vec(),
        },
    ]
}

fn rule_at(case: &Case) -> &'static Value {
    let node = crd_schema()
        .pointer(case.pointer)
        .unwrap_or_else(|| panic!("the CRD has no node {:?}", case.pointer));
    node["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["rule"].as_str().is_some_and(|t| t.contains(case.names)))
        .unwrap_or_else(|| {
            panic!(
                "no rule naming {:?} at {:?}: {node}",
                case.names, case.pointer
            )
        })
}

#[test]
fn each_rule_is_at_its_node_and_admits_and_refuses_as_it_should() {
    for case in cases() {
        let rule = rule_at(&case);
        let text = rule["rule"].as_str().expect("rule text");
        assert!(
            rule["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty() && !m.contains('\n')),
            "{text}: a one-line message says what is wrong: {rule}"
        );
        assert!(
            ["FieldValueInvalid", "FieldValueRequired"]
                .contains(&rule["reason"].as_str().unwrap_or_default()),
            "{text}: {rule}"
        );
        for good in &case.admits {
            assert_eq!(evaluate(text, good), Ok(true), "{text} must admit {good}");
        }
        for bad in &case.refuses {
            assert_eq!(evaluate(text, bad), Ok(false), "{text} must refuse {bad}");
        }
    }
}

#[test]
fn every_rule_in_the_crd_is_tested() {
    let tested: BTreeSet<&str> = cases()
        .iter()
        .map(|case| rule_at(case)["rule"].as_str().expect("rule text"))
        .collect();
    for (path, rule) in all_rules() {
        let text = rule["rule"].as_str().expect("rule text");
        assert!(
            tested.contains(text),
            "{path}: {text} has no case in cases()"
        );
    }
}

fn rule_text(pointer: &'static str, names: &'static str) -> &'static str {
    let case = Case {
        pointer,
        names,
        admits: vec![],
        refuses: vec![],
    };
    rule_at(&case)["rule"].as_str().expect("rule text")
}

proptest! {
    /// The cohort's and the flavors' rules are `pb::is_valid_name` (the
    /// cohort may also be empty: no cohort).
    #[test]
    fn the_name_rules_are_is_valid_name(name in "[a-zA-Z0-9._/ -]{0,70}") {
        let valid = pb::is_valid_name(&name);
        let cohort = evaluate(rule_text("/properties/spec/properties/cohort", "self.matches"), &json!(name));
        prop_assert_eq!(cohort, Ok(valid || name.is_empty()), "cohort {:?}", name);
        let flavors = json!({ name.clone(): { "nominal": 1 } });
        let flavor = evaluate(rule_text("/properties/spec/properties/quotas", "self.all"), &flavors);
        prop_assert_eq!(flavor, Ok(valid), "flavor {:?}", name);
    }

    /// Every period the rule admits humantime parses: the rule is never
    /// looser than the controller. (Up to 3 spans: more would often pass
    /// maxLength; each span adds the same way.)
    #[test]
    fn every_period_the_crd_admits_humantime_parses(
        period in proptest::string::string_regex(
            &format!("{span}(?: ?{span}){{0,2}}", span = schema::period_span()),
        ).expect("the period pattern is a regex proptest can generate from")
    ) {
        let rule = rule_text("/properties/spec/properties/budget/properties/period", "self.matches");
        prop_assert_eq!(evaluate(rule, &json!(period)), Ok(true), "{:?}", period);
        prop_assert!(humantime::parse_duration(&period).is_ok(), "humantime refuses {:?}", period);
    }

    #[test]
    fn the_unit_pattern_is_the_unit_list(
        unit in proptest::string::string_regex(PERIOD_UNIT_PATTERN).expect("a regex")
    ) {
        prop_assert!(PERIOD_UNITS.contains(&unit.as_str()), "{:?} is not in PERIOD_UNITS", unit);
    }
}

#[test]
fn every_period_unit_is_humantimes_and_the_pattern_names_it() {
    for unit in PERIOD_UNITS {
        let one = humantime::parse_duration(&format!("1{unit}"))
            .unwrap_or_else(|e| panic!("humantime does not know {unit:?}: {e}"));
        assert!(one.as_secs() >= 1, "{unit}: a unit of a second or more");
        let whole = format!("self.matches('^{PERIOD_UNIT_PATTERN}$')");
        assert_eq!(
            evaluate(&whole, &json!(unit)),
            Ok(true),
            "the pattern misses {unit:?}"
        );
    }
}

#[test]
fn every_example_passes_every_rule_and_the_controller_takes_it() {
    let files = yaml_files(&repo_root().join("deploy/examples"));
    assert!(files.len() >= 3, "too few examples: {files:?}");
    for file in files {
        for object in objects(&file) {
            let name = &object["metadata"]["name"];
            assert_eq!(
                shown(&refusals(&object)),
                Vec::<String>::new(),
                "{} ({name}): a valid example is refused",
                file.display()
            );
            controller(&object).unwrap_or_else(|e| panic!("{} ({name}): {e}", file.display()));
        }
    }
}

#[test]
fn every_invalid_example_is_refused_and_a_rules_refusal_is_the_controllers_too() {
    let files = yaml_files(&repo_root().join("deploy/examples/invalid"));
    let mut rules_shown = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read example");
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect-error:"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{}: no `# expect-error:` line", file.display()));
        for object in objects(file) {
            let refused = refusals(&object);
            let by_rule: Vec<_> = refused.iter().filter_map(|r| r.rule.clone()).collect();
            let refused = shown(&refused);
            if !refused.iter().any(|r| r.contains(expected)) {
                // A type error (a list for a map, a negative count, a field
                // it lacks or does not know), which this check leaves to
                // serde (and validate-crd-objects.py): serde refuses it.
                assert!(
                    serde_json::from_value::<GenQueue>(object.clone()).is_err(),
                    "{}: must be refused naming {expected:?}; the CRD's bounds and rules say \
                     {refused:?} and the types take it",
                    file.display()
                );
            }
            if !by_rule.is_empty() {
                assert!(
                    controller(&object).is_err(),
                    "{}: a CEL rule refuses what the controller takes: {refused:?}",
                    file.display()
                );
            }
            rules_shown.extend(by_rule);
        }
    }
    for (path, rule) in all_rules() {
        let text = rule["rule"].as_str().expect("rule text");
        assert!(
            rules_shown.contains(text),
            "{path}: no example in deploy/examples/invalid shows {text}"
        );
    }
}
