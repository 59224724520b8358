//! Queue files for `genfleet queue apply -f`: YAML, one queue per document.
//!
//! ```yaml
//! name: research
//! cohort: lab            # optional: queues of a cohort lend each other
//! weight: 2              # optional fair-share weight, default 1
//! quotas:
//!   nvidia-h100-80gb: { nominal: 8, borrowing_limit: 4, lending_limit: 2 }
//!   cpu: { nominal: 2 }
//! budget: { device_hours: 500, period: 24h }   # optional
//! ---
//! name: product
//! cohort: lab
//! quotas:
//!   nvidia-h100-80gb: { nominal: 8 }
//! ```
//!
//! A document is a GenQueue's spec plus its name, made a queue by the same
//! rule (`GenQueueSpec::to_queue`); the CRD's camelCase names
//! (`borrowingLimit`, `deviceHours`) are read too, so a spec can be pasted.

use std::collections::BTreeMap;

use genfleet_proto as pb;
use serde::Deserialize;

use crate::kube::genqueue::{BudgetSpec, FlavorQuotaSpec, GenQueueSpec, QueueSpecError};

/// One document: a queue's name and a GenQueue's spec, so that what a file
/// says and what `kubectl apply` says become a queue by one rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueDoc {
    name: String,
    #[serde(default)]
    cohort: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    quotas: BTreeMap<String, FlavorQuotaSpec>,
    #[serde(default)]
    budget: Option<BudgetSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueFileError {
    #[error("{source_name}, queue {index}: {error}")]
    Yaml {
        source_name: String,
        index: usize,
        error: serde_yaml_ng::Error,
    },
    #[error("{0} holds no queue")]
    Empty(String),
    #[error("{source_name}, queue {index}: {error}")]
    Spec {
        source_name: String,
        index: usize,
        error: QueueSpecError,
    },
}

/// The queues in `text` (read from `source_name`, named in errors).
pub fn parse(source_name: &str, text: &str) -> Result<Vec<pb::Queue>, QueueFileError> {
    let mut queues = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc = QueueDoc::deserialize(document).map_err(|error| QueueFileError::Yaml {
            source_name: source_name.to_string(),
            index: i + 1,
            error,
        })?;
        let spec = GenQueueSpec {
            cohort: doc.cohort,
            weight: doc.weight,
            quotas: doc.quotas,
            budget: doc.budget,
        };
        let queue = spec
            .to_queue(&doc.name)
            .map_err(|error| QueueFileError::Spec {
                source_name: source_name.to_string(),
                index: i + 1,
                error,
            })?;
        queues.push(queue);
    }
    if queues.is_empty() {
        return Err(QueueFileError::Empty(source_name.to_string()));
    }
    Ok(queues)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_queues_in_one_file() {
        let text = "name: research\ncohort: lab\nweight: 2\nquotas:\n  nvidia-h100-80gb: { nominal: 8, borrowing_limit: 4, lending_limit: 2 }\n  cpu: { nominal: 2 }\n---\nname: product\nquotas:\n  cpu: { nominal: 1 }\n";
        let queues = parse("queues.yaml", text).expect("parses");
        assert_eq!(queues.len(), 2);
        assert_eq!(queues[0].name, "research");
        assert_eq!(queues[0].cohort, "lab");
        assert_eq!(queues[0].weight, 2);
        let h100 = &queues[0].quotas[1];
        assert_eq!(
            (
                h100.flavor.as_str(),
                h100.nominal,
                h100.borrowing_limit,
                h100.lending_limit
            ),
            ("nvidia-h100-80gb", 8, Some(4), Some(2))
        );
        assert_eq!((queues[1].cohort.as_str(), queues[1].weight), ("", 1));
        assert_eq!(queues[1].budget, None);
    }

    #[test]
    fn a_budget_has_device_hours_and_a_period() {
        let text =
            "name: a\nquotas:\n  cpu: { nominal: 1 }\nbudget: { device_hours: 12.5, period: 7d }\n";
        let queues = parse("q.yaml", text).expect("parses");
        assert_eq!(
            queues[0].budget,
            Some(pb::Budget {
                device_hours: 12.5,
                period_seconds: 7 * 86_400
            })
        );
        let bad = "name: a\nbudget: { device_hours: 1, period: fortnight }\n";
        let err = parse("q.yaml", bad).expect_err("bad period").to_string();
        assert!(
            err.contains("queue 1") && err.contains("fortnight"),
            "{err}"
        );
    }

    #[test]
    fn a_genqueue_spec_pasted_into_a_file_makes_the_same_queue() {
        let snake = "name: a\ncohort: lab\nquotas:\n  cpu: { nominal: 2, borrowing_limit: 1, lending_limit: 1 }\nbudget: { device_hours: 3, period: 24h }\n";
        let camel = "name: a\ncohort: lab\nquotas:\n  cpu: { nominal: 2, borrowingLimit: 1, lendingLimit: 1 }\nbudget: { deviceHours: 3, period: 24h }\n";
        assert_eq!(
            parse("a.yaml", snake).expect("snake"),
            parse("b.yaml", camel).expect("camel")
        );
        let typo = "name: a\nquotas:\n  cpu: { nominal: 2, borowing_limit: 1 }\n";
        let err = parse("a.yaml", typo).expect_err("typo").to_string();
        assert!(err.contains("borowing_limit"), "{err}");
    }

    #[test]
    fn mistakes_name_the_file_the_queue_and_the_field() {
        let typo = "name: a\nquotas:\n  cpu: { nominal: 1 }\n---\nname: b\nquota:\n  cpu: { nominal: 1 }\n";
        let err = parse("teams.yaml", typo)
            .expect_err("unknown field")
            .to_string();
        assert!(
            err.contains("teams.yaml, queue 2") && err.contains("quota"),
            "{err}"
        );
        let negative = "name: a\nquotas:\n  cpu: { nominal: -1 }\n";
        let err = parse("teams.yaml", negative)
            .expect_err("negative")
            .to_string();
        assert!(err.contains("nominal") || err.contains("-1"), "{err}");
        assert!(parse("empty.yaml", "").is_err());
    }
}
