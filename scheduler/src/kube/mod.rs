//! Kubernetes integration, run by the raft leader only: the node watcher
//! (`nodes`) and the GenQueue controller (`queues`, with the resource in
//! `genqueue`). Both change genfleet only through raft commands, as the CLI
//! does, so every replica sees the same result and a new leader takes over
//! where the old one stopped.
//!
//! Switched on by `--kubernetes on`, or by `auto` (the default) inside a
//! pod (KUBERNETES_SERVICE_HOST is set); a kubeconfig alone never switches
//! it on, so a scheduler started on a laptop does not start managing the
//! GenQueues of whatever cluster the current context points at.
//!
//! `statefulset` is apart from the leader's work: every replica run as a
//! StatefulSet pod derives its raft id and peers from its pod's name there.

pub mod genqueue;
pub mod nodes;
pub mod queues;
pub mod statefulset;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::leader::Sessions;
use crate::listening::stopped;
use crate::metrics::Metrics;
use crate::raft::{ProposeError, RaftHandle};

pub use genqueue::GenQueue;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("Kubernetes API: {0}")]
    Api(#[source] kube::Error),
    #[error("cannot configure a Kubernetes client: {0}")]
    Config(String),
    #[error("raft: {0}")]
    Propose(#[source] ProposeError),
    #[error("queue {queue} cannot be deleted yet: {why}")]
    DeleteRefused { queue: String, why: String },
    #[error("GenQueue finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<KubeError>>),
}

/// Whether to talk to Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KubeMode {
    /// Inside a pod (in-cluster configuration).
    #[default]
    Auto,
    On,
    Off,
}

impl std::str::FromStr for KubeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(format!("{other:?} is not one of auto, on, off")),
        }
    }
}

/// A client for `mode`: None when off, or when `auto` runs outside a pod.
/// `on` takes the in-cluster configuration or a kubeconfig, and without a
/// usable one is an error.
pub async fn client(mode: KubeMode) -> Result<Option<kube::Client>, KubeError> {
    let in_a_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    match mode {
        KubeMode::Off => Ok(None),
        KubeMode::Auto if !in_a_pod => Ok(None),
        KubeMode::Auto | KubeMode::On => match kube::Client::try_default().await {
            Ok(client) => Ok(Some(client)),
            Err(e) if mode == KubeMode::Auto => {
                tracing::warn!(error = %e, "a Kubernetes configuration was found but is unusable; running without Kubernetes (--kubernetes on makes this an error)");
                Ok(None)
            }
            Err(e) => Err(KubeError::Config(e.to_string())),
        },
    }
}

/// Runs the node watcher and the GenQueue controller while this replica
/// leads (with a current state), stops them when it no longer does, and
/// returns when `stop` changes.
pub async fn leader_loop(
    client: kube::Client,
    raft: RaftHandle,
    sessions: Arc<Sessions>,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut status = raft.watch_status();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            leading = status.wait_for(|s| s.leader_ready) => if leading.is_err() { return },
        }
        tracing::info!("leading: watching Kubernetes nodes and GenQueues");
        let (lost_tx, lost) = watch::channel(false);
        let ctx = Arc::new(queues::QueueContext::new(
            client.clone(),
            raft.clone(),
            metrics.clone(),
        ));
        let controllers = futures::future::join(
            nodes::run(
                client.clone(),
                raft.clone(),
                sessions.clone(),
                metrics.clone(),
                stopped(lost.clone()),
            ),
            queues::run(ctx, stopped(lost)),
        );
        tokio::pin!(controllers);
        let ended_by_themselves = tokio::select! {
            _ = &mut controllers => true,
            _ = status.wait_for(|s| !s.leader_ready) => {
                tracing::info!("no longer leading: Kubernetes controllers stop");
                false
            }
            _ = stop.wait_for(|s| *s) => false,
        };
        if ended_by_themselves {
            metrics.kube_node_label_mismatch.reset();
            // Their streams retry API errors, so this is rare: start again
            // after a pause rather than spin.
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        }
        let _ = lost_tx.send(true);
        // Let them finish what they were doing (a graceful controller stop).
        let _ = tokio::time::timeout(Duration::from_secs(5), controllers).await;
        // Only the leader reports mismatches: a follower's would go stale.
        metrics.kube_node_label_mismatch.reset();
    }
}
