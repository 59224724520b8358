//! Why a pending job waits when no scheduling cycle has judged it yet
//! (just submitted, or no worker connected): a pure function of the
//! replicated state and the workers connected to the leader. The cycle's
//! own verdicts (`scheduling`) take over once it has run.

use std::collections::BTreeSet;

use crate::state::{Job, Node, State};

/// Why a pending job is not running, in words for `genfleet jobs`.
pub fn pending_reason(state: &State, connected: &BTreeSet<String>, job: &Job) -> String {
    let live: Vec<&Node> = state
        .nodes()
        .filter(|n| n.up && connected.contains(&n.name))
        .collect();
    if live.is_empty() {
        return "no worker is connected".into();
    }
    let serving: Vec<&&Node> = live
        .iter()
        .filter(|n| n.serves_model(&job.spec.model))
        .collect();
    if serving.is_empty() {
        return format!("no connected worker serves model {}", job.spec.model);
    }
    let tp = job.spec.tp as usize;
    let big_enough = serving
        .iter()
        .any(|n| n.devices.iter().any(|g| g.count as usize >= tp));
    if !big_enough {
        return format!("no connected worker has {tp} devices of one flavor");
    }
    let ahead = state.jobs_ahead(job);
    if ahead == 0 {
        "waiting for free devices".into()
    } else {
        format!("waiting for free devices ({ahead} jobs ahead)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LOG_ENTRY_VERSION;
    use genfleet_proto as pb;
    use pb::command::Kind;

    fn apply(state: &mut State, kind: Kind) {
        let index = state.applied_index() + 1;
        let entry = pb::LogEntry {
            version: LOG_ENTRY_VERSION,
            at_ms: 1,
            command: Some(pb::Command { kind: Some(kind) }),
        };
        state.apply(index, &entry).expect("command accepted");
    }

    fn node(state: &mut State, name: &str, groups: &[(&str, u32)]) {
        apply(
            state,
            Kind::RegisterNode(pb::RegisterNode {
                node: name.into(),
                instance: "i".into(),
                devices: groups
                    .iter()
                    .map(|(flavor, count)| pb::DeviceGroup {
                        flavor: flavor.to_string(),
                        count: *count,
                        memory_bytes: 0,
                        free_memory_bytes: None,
                        simulated: false,
                    })
                    .collect(),
                models: vec![crate::spec::DEFAULT_MODEL.into()],
            }),
        );
    }

    fn job(state: &mut State, id: &str, tp: u32) {
        job_in(state, id, tp, "");
    }

    /// Submits a one-step job of `tp` devices to `queue` ("" for the default).
    fn job_in(state: &mut State, id: &str, tp: u32, queue: &str) {
        let spec = crate::spec::with_defaults(pb::JobSpec {
            prompt: "p".into(),
            frames: 1,
            width: 16,
            height: 16,
            steps: 1,
            tp,
            queue: queue.into(),
            ..Default::default()
        });
        apply(
            state,
            Kind::SubmitJob(pb::SubmitJob {
                job_id: id.into(),
                spec: Some(spec),
                request_id: String::new(),
                tenant: String::new(),
                unknown_words: Vec::new(),
            }),
        );
    }

    fn all(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// The leader's cycle over `state` (what replaced FIFO placement).
    fn cycle(state: &State, connected: &BTreeSet<String>) -> crate::scheduling::CycleOutcome {
        let policy = crate::policy::PolicyConfig::default();
        let profile = crate::policy::Profile::seeded();
        crate::scheduling::cycle(state, connected, &profile, &policy, 0)
    }

    fn place(state: &State, connected: &BTreeSet<String>) -> Vec<pb::Placement> {
        cycle(state, connected).placements
    }

    fn summary(placements: &[pb::Placement]) -> Vec<(String, String, Vec<u32>)> {
        placements
            .iter()
            .map(|p| (p.job_id.clone(), p.node.clone(), p.device_ids.clone()))
            .collect()
    }

    #[test]
    fn jobs_are_placed_in_submit_order_and_small_ones_backfill() {
        let mut s = State::default();
        node(&mut s, "a", &[("cpu", 2)]);
        job(&mut s, "first", 1);
        job(&mut s, "big", 4);
        job(&mut s, "second", 1);
        job(&mut s, "third", 1);
        let got = summary(&place(&s, &all(&["a"])));
        assert_eq!(
            got,
            vec![
                ("first".into(), "a".into(), vec![0]),
                ("second".into(), "a".into(), vec![1]),
            ]
        );
    }

    #[test]
    fn a_gang_stays_on_one_flavor_of_one_node_the_cheapest_per_step() {
        let mut s = State::default();
        node(&mut s, "a", &[("nvidia-h100-80gb", 8), ("amd-mi300x", 2)]);
        job(&mut s, "pair", 2);
        let got = summary(&place(&s, &all(&["a"])));
        assert_eq!(got, vec![("pair".into(), "a".into(), vec![8, 9])]);
    }

    #[test]
    fn disconnected_or_down_nodes_get_nothing() {
        let mut s = State::default();
        node(&mut s, "a", &[("cpu", 1)]);
        node(&mut s, "b", &[("cpu", 1)]);
        apply(
            &mut s,
            Kind::NodeDown(pb::NodeDown {
                node: "b".into(),
                reason: String::new(),
            }),
        );
        job(&mut s, "j", 1);
        assert!(place(&s, &all(&["b"])).is_empty(), "b is down");
        assert!(place(&s, &all(&[])).is_empty(), "nobody connected");
        let reason = pending_reason(&s, &all(&[]), s.job("j").expect("job"));
        assert_eq!(reason, "no worker is connected");
        assert_eq!(summary(&place(&s, &all(&["a", "b"])))[0].1, "a");
    }

    #[test]
    fn pending_reasons_say_what_is_missing() {
        let mut s = State::default();
        node(&mut s, "a", &[("cpu", 1)]);
        job(&mut s, "wide", 2);
        job(&mut s, "j2", 1);
        job(&mut s, "j3", 1);
        let connected = all(&["a"]);
        let reason = |s: &State, id: &str| pending_reason(s, &connected, s.job(id).expect("job"));
        assert_eq!(
            reason(&s, "wide"),
            "no connected worker has 2 devices of one flavor"
        );
        assert_eq!(reason(&s, "j3"), "waiting for free devices (2 jobs ahead)");
    }

    #[test]
    fn a_cycle_counts_what_each_queue_holds_and_borrows() {
        let mut s = State::default();
        node(&mut s, "a", &[("cpu", 2)]);
        for (name, nominal) in [("lender", 2), ("borrower", 0)] {
            apply(
                &mut s,
                Kind::UpsertQueue(pb::UpsertQueue {
                    queue: Some(pb::Queue {
                        name: name.into(),
                        cohort: "lab".into(),
                        weight: 1,
                        quotas: vec![pb::FlavorQuota {
                            flavor: "cpu".into(),
                            nominal,
                            borrowing_limit: None,
                            lending_limit: None,
                        }],
                        budget: None,
                    }),
                }),
            );
        }
        job_in(&mut s, "b", 2, "borrower");
        let outcome = cycle(&s, &all(&["a"]));
        assert_eq!(
            summary(&outcome.placements),
            vec![("b".into(), "a".into(), vec![0, 1])]
        );
        let borrower = outcome.queue_devices.get("borrower", "cpu");
        assert_eq!(
            (borrower.nominal, borrower.used, borrower.borrowed()),
            (0, 2, 2)
        );
        let lender = outcome.queue_devices.get("lender", "cpu");
        assert_eq!((lender.nominal, lender.used, lender.borrowed()), (2, 0, 0));
    }
}
