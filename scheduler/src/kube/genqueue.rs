//! The `GenQueue` custom resource: a genfleet queue managed with
//! `kubectl apply`. Its spec has the fields of `genfleet queue apply`; its
//! status is written by the leader's controller. The CRD in
//! `deploy/base/genqueue-crd.yaml` is generated from these types
//! (`genfleet kube crd`), so the schema Kubernetes validates against and the
//! one the controller reads cannot drift apart; `schema` adds what the
//! types cannot say (bounds, CEL rules), so the API server refuses at
//! admission what the controller would refuse after it.

pub mod schema;

use std::collections::BTreeMap;

use genfleet_proto as pb;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One team's queue: its cohort, fair-share weight, per-flavor quotas and
/// an optional device-hour budget. The object's name is the queue's name.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "genfleet.dev",
    version = "v1alpha1",
    kind = "GenQueue",
    plural = "genqueues",
    shortname = "gq",
    status = "GenQueueStatus",
    category = "genfleet",
    doc = "A genfleet queue: one team's per-flavor quotas, cohort, fair-share weight and budget",
    printcolumn = r#"{"name":"Cohort","type":"string","jsonPath":".spec.cohort"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".spec.weight"}"#,
    printcolumn = r#"{"name":"Usage","type":"string","description":"Devices in use / nominal quota per flavor","jsonPath":".status.usage"}"#,
    printcolumn = r#"{"name":"Pending","type":"integer","jsonPath":".status.pendingJobs"}"#,
    printcolumn = r#"{"name":"Running","type":"integer","jsonPath":".status.runningJobs"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = schema::root_rule()
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = schema::spec)]
pub struct GenQueueSpec {
    /// Queues of one cohort lend each other their unused nominal quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::cohort)]
    pub cohort: Option<String>,
    /// Fair-share weight among the cohort's queues (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::weight)]
    pub weight: Option<u32>,
    /// Devices per flavor (a GPU type such as nvidia-h100-80gb, or cpu; at most 32 flavors).
    #[serde(default)]
    #[schemars(transform = schema::quotas)]
    pub quotas: BTreeMap<String, FlavorQuotaSpec>,
    /// Device-hours the queue may use per period; none: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSpec>,
}

// Queue files write these fields in snake_case, the CRD in camelCase; both
// are read everywhere. Unknown fields are refused: the API server prunes
// fields its schema lacks, so an object never has any. (Plain comments:
// doc comments would become the CRD's descriptions.)
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = schema::flavor_quota)]
pub struct FlavorQuotaSpec {
    /// Devices the queue is guaranteed (at most 1000000).
    #[schemars(transform = schema::device_count)]
    pub nominal: u32,
    /// Most devices it may borrow from its cohort beyond nominal (none: no
    /// limit; at most 1000000).
    #[serde(
        default,
        alias = "borrowing_limit",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(transform = schema::device_count)]
    pub borrowing_limit: Option<u32>,
    /// Most of its nominal devices it lends to its cohort (none: all unused;
    /// at most nominal).
    #[serde(
        default,
        alias = "lending_limit",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(transform = schema::device_count)]
    pub lending_limit: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetSpec {
    /// Device-hours per period, across all flavors (more than 0, at most 1e9).
    #[schemars(transform = schema::device_hours)]
    #[serde(alias = "device_hours")]
    pub device_hours: f64,
    /// The period: 24h, 7d, 30days, 1h 30m ... (whole numbers with units;
    /// 1 minute to 366 days; periods are aligned to the Unix epoch).
    #[schemars(transform = schema::period)]
    pub period: String,
}

/// What the leader last saw of the queue.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenQueueStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::generation)]
    pub observed_generation: Option<i64>,
    /// Devices in use per flavor (running jobs).
    #[serde(default)]
    #[schemars(transform = schema::status_count)]
    pub used: BTreeMap<String, u32>,
    /// Devices in use beyond the nominal quota, per flavor (lent by the cohort).
    #[serde(default)]
    #[schemars(transform = schema::status_count)]
    pub borrowed: BTreeMap<String, u32>,
    /// `kubectl get` at a glance: `cpu 3/2 (1 borrowed), nvidia-h100-80gb 6/8`.
    #[serde(default)]
    pub usage: String,
    #[serde(default)]
    #[schemars(transform = schema::status_count)]
    pub pending_jobs: u32,
    #[serde(default)]
    #[schemars(transform = schema::status_count)]
    pub running_jobs: u32,
    /// Device-hours used this budget period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_used_device_hours: Option<f64>,
    /// Device-hours left this budget period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_left_device_hours: Option<f64>,
    /// One per type (Ready).
    #[serde(default)]
    #[schemars(transform = schema::conditions)]
    pub conditions: Vec<QueueCondition>,
}

/// A status condition in the shape of Kubernetes' metav1.Condition.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueCondition {
    /// `Ready`: the spec is the replicated queue's.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// CamelCase reason: Applied, InvalidSpec, Rejected, DeleteRefused.
    pub reason: String,
    pub message: String,
    /// RFC 3339, when `status` last changed.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::generation)]
    pub observed_generation: Option<i64>,
}

/// A queue spec that names no queue a genfleet queue can be built from.
#[derive(Debug, thiserror::Error)]
pub enum QueueSpecError {
    #[error("budget.period {period:?} is not a duration such as 24h or 7d: {error}")]
    Period {
        period: String,
        error: humantime::DurationError,
    },
}

impl GenQueueSpec {
    /// The genfleet queue `name` with this spec, as the CRD and queue files
    /// both ask for it (checked later, by `state::validate_queue`).
    pub fn to_queue(&self, name: &str) -> Result<pb::Queue, QueueSpecError> {
        let budget = match &self.budget {
            None => None,
            Some(b) => {
                let period = humantime::parse_duration(&b.period).map_err(|error| {
                    QueueSpecError::Period {
                        period: b.period.clone(),
                        error,
                    }
                })?;
                Some(pb::Budget {
                    device_hours: b.device_hours,
                    period_seconds: period.as_secs(),
                })
            }
        };
        Ok(pb::Queue {
            name: name.to_string(),
            cohort: self.cohort.clone().unwrap_or_default(),
            weight: self.weight.unwrap_or(1),
            quotas: self
                .quotas
                .iter()
                .map(|(flavor, q)| pb::FlavorQuota {
                    flavor: flavor.clone(),
                    nominal: q.nominal,
                    borrowing_limit: q.borrowing_limit,
                    lending_limit: q.lending_limit,
                })
                .collect(),
            budget,
        })
    }
}

/// Why a GenQueue cannot become a queue: its spec, or the queue it makes.
#[derive(Debug, thiserror::Error)]
pub enum GenQueueError {
    #[error("spec.{0}")]
    Spec(#[from] QueueSpecError),
    #[error("{0}")]
    Invalid(#[from] crate::state::QueueError),
}

impl GenQueue {
    /// The genfleet queue this object asks for, checked as `genfleet queue
    /// apply` checks it; the error names the field.
    pub fn to_queue(&self) -> Result<pb::Queue, GenQueueError> {
        let name = self.metadata.name.clone().unwrap_or_default();
        let queue = self.spec.to_queue(&name)?;
        Ok(crate::state::validate_queue(queue)?)
    }
}

/// The CRD as Kubernetes takes it (what `genfleet kube crd` prints).
pub fn crd(
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    GenQueue::crd()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(spec: serde_json::Value) -> GenQueue {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "genfleet.dev/v1alpha1",
            "kind": "GenQueue",
            "metadata": { "name": "research" },
            "spec": spec,
        }))
        .expect("a GenQueue")
    }

    #[test]
    fn a_spec_becomes_the_queue_genfleet_queue_apply_would_make() {
        let q = queue(serde_json::json!({
            "cohort": "lab",
            "weight": 2,
            "quotas": {
                "nvidia-h100-80gb": { "nominal": 8, "borrowingLimit": 4, "lendingLimit": 2 },
                "cpu": { "nominal": 2 }
            },
            "budget": { "deviceHours": 500, "period": "24h" }
        }))
        .to_queue()
        .expect("valid");
        assert_eq!(
            (q.name.as_str(), q.cohort.as_str(), q.weight),
            ("research", "lab", 2)
        );
        let flavors: Vec<_> = q.quotas.iter().map(|f| f.flavor.as_str()).collect();
        assert_eq!(flavors, ["cpu", "nvidia-h100-80gb"]);
        assert_eq!(
            (
                q.quotas[1].nominal,
                q.quotas[1].borrowing_limit,
                q.quotas[1].lending_limit
            ),
            (8, Some(4), Some(2))
        );
        assert_eq!(
            q.budget,
            Some(pb::Budget {
                device_hours: 500.0,
                period_seconds: 86_400
            })
        );
    }

    #[test]
    fn a_bad_spec_says_which_field() {
        let bad_period = queue(serde_json::json!({
            "quotas": { "cpu": { "nominal": 1 } },
            "budget": { "deviceHours": 5, "period": "fortnight" }
        }));
        let err = bad_period.to_queue().expect_err("bad period").to_string();
        assert!(
            err.contains("spec.budget.period") && err.contains("fortnight"),
            "{err}"
        );
        let lends_too_much = queue(serde_json::json!({
            "quotas": { "cpu": { "nominal": 1, "lendingLimit": 3 } }
        }));
        let err = lends_too_much
            .to_queue()
            .expect_err("lends more than it has")
            .to_string();
        assert!(err.contains("lends up to 3"), "{err}");
    }

    #[test]
    fn the_crd_is_cluster_scoped_with_validation_and_a_status_subresource() {
        let crd = serde_json::to_value(crd()).expect("serializes");
        assert_eq!(crd["spec"]["scope"], "Cluster");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "gq");
        let version = &crd["spec"]["versions"][0];
        assert!(version["subresources"]["status"].is_object(), "{version}");
        let props = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        let nominal = &props["quotas"]["additionalProperties"]["properties"]["nominal"];
        assert_eq!(
            nominal["minimum"].as_f64(),
            Some(0.0),
            "negative quotas are refused: {nominal}"
        );
        assert_eq!(
            props["weight"]["minimum"].as_f64(),
            Some(1.0),
            "{}",
            props["weight"]
        );
    }
}
