//! What the GenQueue CRD says beyond the Rust types, so that the API server
//! refuses at admission what the controller would refuse after it: integer
//! bounds (every integer an int64 with a minimum and a maximum, so nothing
//! admitted is a value kube-rs cannot read back, which would stall the
//! whole GenQueue watch), string lengths, and CEL rules
//! (`x-kubernetes-validations`) restating `state::validate_queue`.
//!
//! The rules use standard CEL only (`size`, `has`, `all`, and `matches` with
//! RE2 syntax, no Kubernetes extension library), so the tests evaluate them
//! as the API server does. The CEL cost estimator needs every string, map
//! and list a rule reads to be bounded: hence `maxLength` on the cohort and
//! the period and `maxProperties` on the quotas. (Flavors are map keys,
//! which a structural schema cannot give a `maxLength`: their rule bounds
//! them itself.)

use genfleet_proto as pb;
use kube::core::{Message, Reason, Rule};
use schemars::Schema;
use serde_json::{json, Map, Value};

// The first four are `state::validate_queue`'s own bounds, so the schema
// admits exactly what the controller accepts.
use crate::state::queues as limits;

/// Devices of one flavor a quota may name.
pub const MAX_DEVICES: i64 = limits::MAX_DEVICES as i64;
/// Highest fair-share weight.
pub const MAX_WEIGHT: i64 = limits::MAX_WEIGHT as i64;
/// Flavors one queue may have quotas for.
pub const MAX_FLAVORS: i64 = limits::MAX_FLAVORS as i64;
/// Device-hours one budget may grant.
pub const MAX_BUDGET_HOURS: f64 = limits::MAX_BUDGET_HOURS;
/// Longest budget period text: room for `1 week 2 days 3 hours 4 minutes`.
pub const MAX_PERIOD_LEN: i64 = 64;
/// Counts in the status are the controller's `u32`s.
pub const MAX_COUNT: i64 = u32::MAX as i64;
/// Generations: the largest integer every JSON reader keeps exact (2^53-1).
pub const MAX_GENERATION: i64 = (1 << 53) - 1;

/// The budget period's units: humantime's spellings from seconds up (its
/// sub-second ones are no period's). With at most 9 digits before each,
/// no span overflows humantime's `u64` seconds.
pub const PERIOD_UNITS: [&str; 31] = [
    "seconds", "second", "secs", "sec", "s", "minutes", "minute", "mins", "min", "m", "hours",
    "hour", "hrs", "hr", "h", "days", "day", "d", "weeks", "week", "wks", "wk", "w", "months",
    "month", "M", "years", "year", "yrs", "yr", "y",
];

/// [`PERIOD_UNITS`] as one RE2 alternation (a test keeps the two equal).
pub const PERIOD_UNIT_PATTERN: &str =
    "(?:s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|wks?|weeks?|M|months?|y|yrs?|years?)";

/// The budget periods the CRD admits: one or more spans of a whole number
/// (1-9 digits) and a unit, with an optional space between number and
/// unit and between spans (`24h`, `7d`, `30days`, `1h 30m`, `1 week`).
/// humantime parses every one of them (a test checks it); what it takes
/// besides (fractions, sub-second units, tabs, leading or trailing spaces,
/// numbers long enough to overflow) no period needs. Whether the period is
/// between 1 minute and 366 days only the controller checks.
pub fn period_pattern() -> String {
    let span = period_span();
    format!("^{span}(?: ?{span})*$")
}

/// One span of a period: a whole number and a unit (`24h`, `30 days`).
pub fn period_span() -> String {
    format!("[0-9]{{1,9}} ?{PERIOD_UNIT_PATTERN}")
}

/// CEL: `var` is a name `pb::is_valid_name` takes (or, `allow_empty`, "").
fn valid_name(var: &str, allow_empty: bool) -> String {
    let min = if allow_empty { 0 } else { 1 };
    let max = pb::MAX_NAME_LEN;
    format!("{var}.matches('^[a-z0-9._-]{{{min},{max}}}$') && {var} != '.' && {var} != '..'")
}

/// One `x-kubernetes-validations` entry.
struct CelRule {
    rule: String,
    message: String,
    field_path: Option<&'static str>,
    reason: &'static str,
}

impl CelRule {
    fn new(rule: String, message: String) -> Self {
        CelRule {
            rule,
            message,
            field_path: None,
            reason: "FieldValueInvalid",
        }
    }

    fn at(mut self, field_path: &'static str) -> Self {
        self.field_path = Some(field_path);
        self
    }

    fn reason(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    fn add_to(self, schema: &mut Schema) {
        let mut rule = json!({ "rule": self.rule, "message": self.message, "reason": self.reason });
        if let Some(path) = self.field_path {
            rule["fieldPath"] = json!(path);
        }
        let rules = schema
            .ensure_object()
            .entry("x-kubernetes-validations")
            .or_insert_with(|| json!([]));
        if let Some(rules) = rules.as_array_mut() {
            rules.push(rule);
        }
    }
}

fn name_message(what: &str) -> String {
    format!(
        "{what} must be 1-{} characters of a-z, 0-9, '-', '_', '.' (not . or ..)",
        pb::MAX_NAME_LEN
    )
}

/// The object's rule: its name is the queue's, so no longer than a genfleet
/// name (Kubernetes already limits its characters to a subset of genfleet's).
/// A root rule may read `metadata.name`; it gets no `fieldPath`, which must
/// name a field of the schema, and the schema has no `metadata`.
pub fn root_rule() -> Rule {
    Rule::new(format!("size(self.metadata.name) <= {}", pb::MAX_NAME_LEN))
        .message(Message::Message(format!(
            "metadata.name must be at most {} characters: it is the queue's name in genfleet",
            pb::MAX_NAME_LEN
        )))
        .reason(Reason::FieldValueInvalid)
}

/// The spec: optional fields are left out rather than null (a null in a
/// field without `nullable` is pruned by the API server, so a rule's `has()`
/// means set), and a borrowing limit needs a cohort to borrow from.
pub fn spec(schema: &mut Schema) {
    not_nullable(schema.ensure_object());
    CelRule::new(
        "(has(self.cohort) && self.cohort != '') || !has(self.quotas) || \
         self.quotas.all(f, !has(self.quotas[f].borrowingLimit))"
            .into(),
        "a borrowingLimit needs a cohort to borrow from: set cohort, or remove borrowingLimit"
            .into(),
    )
    .at(".cohort")
    .reason("FieldValueRequired")
    .add_to(schema);
}

pub fn cohort(schema: &mut Schema) {
    schema.insert("maxLength".into(), json!(pb::MAX_NAME_LEN));
    CelRule::new(
        valid_name("self", true),
        name_message("cohort (empty: none)"),
    )
    .add_to(schema);
}

pub fn quotas(schema: &mut Schema) {
    schema.insert("maxProperties".into(), json!(MAX_FLAVORS));
    CelRule::new(
        format!("self.all(f, {})", valid_name("f", false)),
        name_message("each flavor (a key of quotas, e.g. nvidia-h100-80gb or cpu)"),
    )
    .add_to(schema);
}

pub fn flavor_quota(schema: &mut Schema) {
    CelRule::new(
        "!has(self.lendingLimit) || self.lendingLimit <= self.nominal".into(),
        "lendingLimit must not exceed nominal: a queue lends only devices it is guaranteed".into(),
    )
    .at(".lendingLimit")
    .add_to(schema);
}

pub fn device_hours(schema: &mut Schema) {
    schema.insert("minimum".into(), json!(0.0));
    schema.insert("exclusiveMinimum".into(), json!(true));
    schema.insert("maximum".into(), json!(MAX_BUDGET_HOURS));
}

pub fn period(schema: &mut Schema) {
    schema.insert("maxLength".into(), json!(MAX_PERIOD_LEN));
    CelRule::new(
        format!("self.matches('{}')", period_pattern()),
        "period must be whole numbers with units, such as 24h, 7d, 30days or 1h 30m \
         (units: s, m, h, d, w, M for months, y, or their long forms)"
            .into(),
    )
    .add_to(schema);
}

/// Conditions are keyed by type (one Ready), so server-side apply merges
/// them by type rather than replacing the list.
pub fn conditions(schema: &mut Schema) {
    schema.insert("x-kubernetes-list-type".into(), json!("map"));
    schema.insert("x-kubernetes-list-map-keys".into(), json!(["type"]));
}

/// Every integer in the schema (a field's, or its map's values) becomes an
/// int64 between `min` and `max`: Kubernetes knows no `uint32` format, and
/// without a maximum it admits what the Rust type cannot hold.
pub fn int64(min: i64, max: i64) -> impl FnMut(&mut Schema) {
    move |schema| {
        each_integer(schema.ensure_object(), &mut |node| {
            node.insert("format".into(), json!("int64"));
            node.insert("minimum".into(), json!(min));
            node.insert("maximum".into(), json!(max));
        })
    }
}

pub fn device_count(schema: &mut Schema) {
    int64(0, MAX_DEVICES)(schema)
}

pub fn weight(schema: &mut Schema) {
    int64(1, MAX_WEIGHT)(schema)
}

pub fn status_count(schema: &mut Schema) {
    int64(0, MAX_COUNT)(schema)
}

pub fn generation(schema: &mut Schema) {
    int64(0, MAX_GENERATION)(schema)
}

/// The nodes of a schema below `node` (itself included).
fn each_node(node: &mut Map<String, Value>, f: &mut impl FnMut(&mut Map<String, Value>)) {
    f(node);
    for key in ["additionalProperties", "items"] {
        if let Some(Value::Object(sub)) = node.get_mut(key) {
            each_node(sub, f);
        }
    }
    if let Some(Value::Object(properties)) = node.get_mut("properties") {
        for sub in properties.values_mut().filter_map(Value::as_object_mut) {
            each_node(sub, f);
        }
    }
}

fn each_integer(node: &mut Map<String, Value>, f: &mut impl FnMut(&mut Map<String, Value>)) {
    each_node(node, &mut |n| {
        let integer = match n.get("type") {
            Some(Value::String(t)) => t == "integer",
            Some(Value::Array(types)) => types.iter().any(|t| t == "integer"),
            _ => false,
        };
        if integer {
            f(n)
        }
    })
}

/// Drops `null` from every node's types (schemars adds it for `Option`).
fn not_nullable(node: &mut Map<String, Value>) {
    each_node(node, &mut |n| {
        n.remove("nullable");
        if let Some(Value::Array(types)) = n.get_mut("type") {
            types.retain(|t| t != "null");
            if let [only] = types.as_slice() {
                let only = only.clone();
                n.insert("type".into(), only);
            }
        }
    })
}
