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

use std::collections::BTreeMap;

use genfleet_proto as pb;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueDoc {
    name: String,
    #[serde(default)]
    cohort: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    quotas: BTreeMap<String, QuotaDoc>,
    #[serde(default)]
    budget: Option<BudgetDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetDoc {
    device_hours: f64,
    /// A duration: `24h`, `7d`, `30days`.
    period: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaDoc {
    nominal: u32,
    #[serde(default)]
    borrowing_limit: Option<u32>,
    #[serde(default)]
    lending_limit: Option<u32>,
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
    #[error("{source_name}, queue {index}: budget period {period:?}: {error}")]
    Period {
        source_name: String,
        index: usize,
        period: String,
        error: humantime::DurationError,
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
        let budget = match doc.budget {
            None => None,
            Some(b) => {
                let period = humantime::parse_duration(&b.period).map_err(|error| {
                    QueueFileError::Period {
                        source_name: source_name.to_string(),
                        index: i + 1,
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
        queues.push(pb::Queue {
            budget,
            name: doc.name,
            cohort: doc.cohort.unwrap_or_default(),
            weight: doc.weight.unwrap_or(1),
            quotas: doc
                .quotas
                .into_iter()
                .map(|(flavor, q)| pb::FlavorQuota {
                    flavor,
                    nominal: q.nominal,
                    borrowing_limit: q.borrowing_limit,
                    lending_limit: q.lending_limit,
                })
                .collect(),
        });
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
