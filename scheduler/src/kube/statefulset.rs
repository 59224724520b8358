//! Peer discovery for scheduler replicas run as a Kubernetes StatefulSet:
//! the pod `<statefulset>-<ordinal>` is raft replica `ordinal + 1`, and its
//! peers are the first `initial_replicas` pods, reached at their DNS names
//! under the headless Service (`<pod>.<service>.<namespace>.svc.<domain>`).
//!
//! A pod whose ordinal is at or above `initial_replicas` was added by
//! scaling up: it starts with `--join` and waits for
//! `genfleet cluster add-replica`. The initial replicas bootstrap a new
//! cluster only when their data directory is empty: a restarted pod finds
//! its snapshot and log on its volume and resumes from them, whatever the
//! bootstrap says (`LogStorage::open` in the scheduler's `raft/storage.rs`
//! reads the bootstrap only when there is no snapshot file). So restarts
//! and rescheduling keep the membership; only a pod that lost its volume
//! starts afresh (see `deploy/SCALING.md`).
//!
//! Pure functions: the binary reads the flags and environment, this module
//! derives the membership from them.

use std::collections::BTreeMap;

/// Where peers are reached, before the port: the pod's stable DNS name
/// under the headless Service.
pub const DEFAULT_HOST_TEMPLATE: &str = "{pod}.{service}.{namespace}.svc.{domain}";

const PLACEHOLDERS: &str =
    "{pod}, {statefulset}, {ordinal}, {id}, {service}, {namespace} or {domain}";

/// What a pod knows of itself and its StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// This pod's name, `<statefulset>-<ordinal>`.
    pub pod_name: String,
    /// The headless Service that gives every pod a DNS name.
    pub service: String,
    pub namespace: String,
    /// The Kubernetes cluster's DNS domain (`cluster.local`).
    pub cluster_domain: String,
    /// Replicas the cluster was created with; pods at or above this ordinal join.
    pub initial_replicas: u64,
    /// The gRPC port every replica listens on.
    pub port: u16,
    /// Host name of a peer, with placeholders (see [`DEFAULT_HOST_TEMPLATE`]).
    pub host_template: String,
}

/// What a replica starts with: its raft id, the replicas it knows, and
/// whether it joins a running cluster instead of creating one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub id: u64,
    /// id -> `http://host:port`, this replica included.
    pub peers: BTreeMap<u64, String>,
    pub join: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("--peer-service (GENFLEET_PEER_SERVICE) derives the raft id and the peers from the pod name: drop {flags}, or unset GENFLEET_PEER_SERVICE to give them by hand")]
    ManualMembership { flags: &'static str },
    #[error("--peer-service is empty: give the StatefulSet's headless Service, e.g. genfleet-scheduler-peers")]
    NoService,
    #[error("no pod name: set POD_NAME from the downward API (fieldRef metadata.name), or pass --pod-name")]
    NoPodName,
    #[error("pod name {pod:?} does not end in -<ordinal>: expected <statefulset>-<ordinal>, e.g. genfleet-scheduler-0, as a StatefulSet names its pods")]
    NoOrdinal { pod: String },
    #[error("--initial-replicas (GENFLEET_INITIAL_REPLICAS) is 0: give the number of replicas the cluster was created with, e.g. 3")]
    NoInitialReplicas,
    #[error("--listen has port 0: with --peer-service the peers reach this pod at its --listen port, so give a fixed one, e.g. 0.0.0.0:7070")]
    NoPort,
    #[error(
        "--peer-host-template {template:?}: unknown placeholder {{{name}}}; use {PLACEHOLDERS}"
    )]
    UnknownPlaceholder { template: String, name: String },
    #[error("--peer-host-template {template:?}: a '{{' is not closed")]
    UnclosedPlaceholder { template: String },
}

/// Refuses hand-given membership flags next to `--peer-service`: two
/// sources of the same facts would disagree sooner or later.
pub fn refuse_manual(id_given: bool, peers_given: bool) -> Result<(), DiscoveryError> {
    let flags = match (id_given, peers_given) {
        (true, true) => "--id and --peers",
        (true, false) => "--id",
        (false, true) => "--peers",
        (false, false) => return Ok(()),
    };
    Err(DiscoveryError::ManualMembership { flags })
}

/// Splits `<statefulset>-<ordinal>` at its last `-`.
pub fn split_ordinal(pod_name: &str) -> Result<(&str, u64), DiscoveryError> {
    let no_ordinal = || DiscoveryError::NoOrdinal {
        pod: pod_name.to_string(),
    };
    let (statefulset, ordinal) = pod_name.rsplit_once('-').ok_or_else(no_ordinal)?;
    if statefulset.is_empty() || ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(no_ordinal());
    }
    // Digits only, so the one failure left is a number beyond u64.
    let ordinal: u64 = ordinal.parse().map_err(|_| no_ordinal())?;
    // Raft ids are ordinal + 1 (0 is not an id): the last ordinal has none.
    if ordinal == u64::MAX {
        return Err(no_ordinal());
    }
    Ok((statefulset, ordinal))
}

/// Derives this pod's raft id and peers.
pub fn discover(pod: &Discovery) -> Result<Membership, DiscoveryError> {
    if pod.service.is_empty() {
        return Err(DiscoveryError::NoService);
    }
    if pod.pod_name.is_empty() {
        return Err(DiscoveryError::NoPodName);
    }
    if pod.initial_replicas == 0 {
        return Err(DiscoveryError::NoInitialReplicas);
    }
    let (statefulset, own) = split_ordinal(&pod.pod_name)?;
    if pod.port == 0 {
        return Err(DiscoveryError::NoPort);
    }
    let join = own >= pod.initial_replicas;
    let mut peers = BTreeMap::new();
    let ordinals = (0..pod.initial_replicas).chain(join.then_some(own));
    for ordinal in ordinals {
        let host = render_host(pod, statefulset, ordinal)?;
        peers.insert(ordinal + 1, format!("http://{host}:{}", pod.port));
    }
    Ok(Membership {
        id: own + 1,
        peers,
        join,
    })
}

/// The host name of pod `ordinal` of `statefulset`, from the template.
fn render_host(pod: &Discovery, statefulset: &str, ordinal: u64) -> Result<String, DiscoveryError> {
    let template = &pod.host_template;
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template.as_str();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| DiscoveryError::UnclosedPlaceholder {
                template: template.clone(),
            })?;
        let name = &after[..close];
        // `{pod.{service}`: the first `{` closes only after a second opens.
        if name.contains('{') {
            return Err(DiscoveryError::UnclosedPlaceholder {
                template: template.clone(),
            });
        }
        match name {
            "pod" => out.push_str(&format!("{statefulset}-{ordinal}")),
            "statefulset" => out.push_str(statefulset),
            "ordinal" => out.push_str(&ordinal.to_string()),
            "id" => out.push_str(&(ordinal + 1).to_string()),
            "service" => out.push_str(&pod.service),
            "namespace" => out.push_str(&pod.namespace),
            "domain" => out.push_str(&pod.cluster_domain),
            _ => {
                return Err(DiscoveryError::UnknownPlaceholder {
                    template: template.clone(),
                    name: name.to_string(),
                })
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Discovery {
        Discovery {
            pod_name: name.into(),
            service: "genfleet-scheduler-peers".into(),
            namespace: "genfleet".into(),
            cluster_domain: "cluster.local".into(),
            initial_replicas: 3,
            port: 7070,
            host_template: DEFAULT_HOST_TEMPLATE.into(),
        }
    }

    fn dns(ordinal: u64) -> String {
        format!(
            "http://genfleet-scheduler-{ordinal}.genfleet-scheduler-peers.genfleet.svc.cluster.local:7070"
        )
    }

    fn peers(ordinals: &[u64]) -> BTreeMap<u64, String> {
        ordinals.iter().map(|o| (o + 1, dns(*o))).collect()
    }

    #[test]
    fn pods_get_ids_from_their_ordinals_and_late_ones_join() {
        let cases = [
            (
                "the first pod bootstraps",
                "genfleet-scheduler-0",
                1,
                &[0, 1, 2][..],
                false,
            ),
            (
                "the last initial pod bootstraps",
                "genfleet-scheduler-2",
                3,
                &[0, 1, 2],
                false,
            ),
            (
                "a fourth pod joins",
                "genfleet-scheduler-3",
                4,
                &[0, 1, 2, 3],
                true,
            ),
            (
                "a fifth pod joins",
                "genfleet-scheduler-4",
                5,
                &[0, 1, 2, 4],
                true,
            ),
        ];
        for (scenario, name, id, ordinals, join) in cases {
            let expected = Membership {
                id,
                peers: peers(ordinals),
                join,
            };
            assert_eq!(discover(&pod(name)), Ok(expected), "{scenario}");
        }
    }

    #[test]
    fn a_statefulset_named_with_dashes_and_digits_keeps_its_name() {
        let cases = [
            ("gen-fleet-2-7", ("gen-fleet-2", 7)),
            ("a-0", ("a", 0)),
            ("genfleet-scheduler-12", ("genfleet-scheduler", 12)),
        ];
        for (name, expected) in cases {
            assert_eq!(split_ordinal(name), Ok(expected), "{name}");
        }
    }

    #[test]
    fn pod_names_without_an_ordinal_are_refused_by_name() {
        for name in [
            "genfleet-scheduler",
            "scheduler",
            "genfleet-scheduler-",
            "-3",
            "genfleet-scheduler-x1",
            "genfleet-scheduler-+1",
            "genfleet-scheduler-99999999999999999999999",
            "genfleet-scheduler-18446744073709551615",
        ] {
            let err = discover(&pod(name)).expect_err(name);
            assert_eq!(err, DiscoveryError::NoOrdinal { pod: name.into() });
            let text = err.to_string();
            assert!(
                text.contains(name) && text.contains("<statefulset>-<ordinal>"),
                "{text}"
            );
        }
    }

    /// A scenario, the change that breaks a good pod, the error, a hint the message must give.
    type BadSetting = (
        &'static str,
        fn(&mut Discovery),
        DiscoveryError,
        &'static str,
    );

    #[test]
    fn bad_settings_are_refused_with_what_to_change() {
        let cases: [BadSetting; 6] = [
            (
                "no initial replicas",
                |p| p.initial_replicas = 0,
                DiscoveryError::NoInitialReplicas,
                "GENFLEET_INITIAL_REPLICAS",
            ),
            (
                "no pod name",
                |p| p.pod_name.clear(),
                DiscoveryError::NoPodName,
                "POD_NAME",
            ),
            (
                "no service",
                |p| p.service.clear(),
                DiscoveryError::NoService,
                "headless Service",
            ),
            (
                "a port picked at random",
                |p| p.port = 0,
                DiscoveryError::NoPort,
                "fixed one",
            ),
            (
                "a misspelt placeholder",
                |p| p.host_template = "{pods}.{service}".into(),
                DiscoveryError::UnknownPlaceholder {
                    template: "{pods}.{service}".into(),
                    name: "pods".into(),
                },
                "{pods}",
            ),
            (
                "an unclosed placeholder",
                |p| p.host_template = "{pod.{service}".into(),
                DiscoveryError::UnclosedPlaceholder {
                    template: "{pod.{service}".into(),
                },
                "not closed",
            ),
        ];
        for (scenario, change, expected, hint) in cases {
            let mut p = pod("genfleet-scheduler-0");
            change(&mut p);
            let err = discover(&p).expect_err(scenario);
            assert_eq!(err, expected, "{scenario}");
            assert!(err.to_string().contains(hint), "{scenario}: {err}");
        }
    }

    #[test]
    fn templates_place_every_placeholder() {
        let cases = [
            ("127.0.0.{id}", "http://127.0.0.2:7070"),
            (
                "{statefulset}-{ordinal}.{namespace}",
                "http://genfleet-scheduler-1.genfleet:7070",
            ),
            (
                "{pod}.{service}",
                "http://genfleet-scheduler-1.genfleet-scheduler-peers:7070",
            ),
            (
                "{pod}.{domain}",
                "http://genfleet-scheduler-1.cluster.local:7070",
            ),
            ("fixed-host", "http://fixed-host:7070"),
        ];
        for (template, expected) in cases {
            let mut p = pod("genfleet-scheduler-0");
            p.host_template = template.into();
            let membership = discover(&p).expect(template);
            assert_eq!(membership.peers[&2], expected, "{template}");
        }
    }

    #[test]
    fn manual_membership_flags_are_refused_naming_each() {
        let cases = [
            (false, false, None),
            (true, false, Some("drop --id,")),
            (false, true, Some("drop --peers,")),
            (true, true, Some("drop --id and --peers,")),
        ];
        for (id, peers, hint) in cases {
            let result = refuse_manual(id, peers);
            match hint {
                None => assert_eq!(result, Ok(()), "id {id} peers {peers}"),
                Some(hint) => {
                    let text = result.expect_err(hint).to_string();
                    assert!(text.contains(hint), "{text}");
                }
            }
        }
    }
}
