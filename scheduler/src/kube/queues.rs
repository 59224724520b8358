//! The GenQueue controller: makes each GenQueue object a replicated queue
//! (through raft, like `genfleet queue apply`), deletes the queue when the
//! object is deleted (held by a finalizer while unfinished jobs name it),
//! and writes what the queue uses back into the object's status.
//!
//! The object wins: a queue that has a GenQueue is set back to the object's
//! spec at the next reconcile, even if changed with the CLI. Queues without
//! an object are left alone.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use genfleet_proto as pb;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use pb::JobState;

use super::genqueue::{GenQueue, GenQueueStatus, QueueCondition};
use super::KubeError;
use crate::metrics::Metrics;
use crate::policy::DeviceUsage;
use crate::raft::RaftHandle;
use crate::state::{Rejection, State};

/// Held on every GenQueue until its queue is deleted from genfleet.
pub const FINALIZER: &str = "genfleet.dev/queue";
/// Usage changes with every job: the status is refreshed this often.
pub const STATUS_REFRESH: Duration = Duration::from_secs(15);
/// After a failed reconcile (not leader, API error).
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// A delete that waits for jobs asks again this often.
const DELETE_RETRY: Duration = Duration::from_secs(30);
/// Owns the status fields (server-side apply).
const FIELD_MANAGER: &str = "genfleet-scheduler";

pub struct QueueContext {
    pub client: Client,
    pub raft: RaftHandle,
    pub metrics: Metrics,
}

/// Runs the controller until `stop` completes.
pub async fn run(
    ctx: Arc<QueueContext>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<GenQueue> = Api::all(ctx.client.clone());
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((queue, _)) => tracing::debug!(queue = %queue.name, "GenQueue reconciled"),
                Err(e) => tracing::warn!(error = %e, "GenQueue not reconciled"),
            }
        })
        .await;
}

fn error_policy(queue: Arc<GenQueue>, error: &KubeError, ctx: Arc<QueueContext>) -> Action {
    if let KubeError::DeleteRefused { .. } = error {
        // Not a failure: the status says why, and the finalizer waits.
        return Action::requeue(DELETE_RETRY);
    }
    tracing::warn!(queue = %queue.name_any(), %error, "GenQueue reconcile failed; retrying");
    ctx.metrics
        .kube_reconcile_errors
        .with_label_values(&["genqueues"])
        .inc();
    Action::requeue(RETRY_AFTER)
}

/// One pass over one GenQueue (idempotent; the controller calls it on
/// every change of the object and every [`STATUS_REFRESH`]).
pub async fn reconcile(queue: Arc<GenQueue>, ctx: Arc<QueueContext>) -> Result<Action, KubeError> {
    let api: Api<GenQueue> = Api::all(ctx.client.clone());
    finalizer(&api, FINALIZER, queue, |event| async {
        match event {
            finalizer::Event::Apply(queue) => apply(&api, &queue, &ctx).await,
            finalizer::Event::Cleanup(queue) => cleanup(&api, &queue, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => KubeError::Finalizer(Box::new(other)),
    })
}

async fn apply(
    api: &Api<GenQueue>,
    object: &GenQueue,
    ctx: &QueueContext,
) -> Result<Action, KubeError> {
    let name = object.name_any();
    let desired = match object.to_queue() {
        Ok(queue) => queue,
        Err(why) => {
            let ready = condition(object, false, "InvalidSpec", &why.to_string());
            write_status(api, object, &ctx.raft, ready).await?;
            return Ok(Action::await_change());
        }
    };
    if let Some(refused) = ready_condition(object)
        .filter(|c| c.reason == "Rejected" && c.observed_generation == object.metadata.generation)
    {
        // This generation was refused already: say so again, propose nothing
        // until the spec changes.
        let refused = refused.clone();
        write_status(api, object, &ctx.raft, refused).await?;
        return Ok(Action::requeue(STATUS_REFRESH));
    }
    let current = ctx
        .raft
        .read(|state| state.queues().find(|q| q.name == name).cloned());
    let ready = if current.as_ref() == Some(&desired) {
        condition(
            object,
            true,
            "Applied",
            "the queue is replicated as specified",
        )
    } else {
        let command = pb::command::Kind::UpsertQueue(pb::UpsertQueue {
            queue: Some(desired),
        });
        match propose(&ctx.raft, command).await? {
            Ok(()) => {
                tracing::info!(queue = %name, "queue applied from its GenQueue");
                condition(
                    object,
                    true,
                    "Applied",
                    "the queue is replicated as specified",
                )
            }
            Err(rejection) => condition(object, false, "Rejected", &rejection.to_string()),
        }
    };
    write_status(api, object, &ctx.raft, ready).await?;
    Ok(Action::requeue(STATUS_REFRESH))
}

async fn cleanup(
    api: &Api<GenQueue>,
    object: &GenQueue,
    ctx: &QueueContext,
) -> Result<Action, KubeError> {
    let name = object.name_any();
    let exists = ctx
        .raft
        .read(|state| state.queues().any(|q| q.name == name));
    if !exists {
        return Ok(Action::await_change());
    }
    let command = pb::command::Kind::DeleteQueue(pb::DeleteQueue { name: name.clone() });
    match propose(&ctx.raft, command).await? {
        Ok(()) | Err(Rejection::UnknownQueue(_)) => {
            tracing::info!(queue = %name, "queue deleted with its GenQueue");
            Ok(Action::await_change())
        }
        Err(rejection) => {
            // The object stays (its finalizer holds it) and says why.
            let refused = condition(object, false, "DeleteRefused", &rejection.to_string());
            write_status(api, object, &ctx.raft, refused).await?;
            Err(KubeError::DeleteRefused {
                queue: name,
                why: rejection.to_string(),
            })
        }
    }
}

/// Proposes `command`; the outer error is raft's (retry later), the inner
/// the state machine's verdict.
async fn propose(
    raft: &RaftHandle,
    command: pb::command::Kind,
) -> Result<Result<(), Rejection>, KubeError> {
    let applied = raft
        .propose(pb::Command {
            kind: Some(command),
        })
        .await
        .map_err(KubeError::Propose)?;
    Ok(applied.result.map(|_| ()))
}

fn ready_condition(object: &GenQueue) -> Option<&QueueCondition> {
    object
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
}

/// The Ready condition, keeping its transition time while its status holds.
fn condition(object: &GenQueue, ready: bool, reason: &str, message: &str) -> QueueCondition {
    let status = if ready { "True" } else { "False" };
    let since = ready_condition(object)
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(now_rfc3339);
    QueueCondition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: since,
        observed_generation: object.metadata.generation,
    }
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Writes the status subresource, unless nothing changed. Server-side
/// apply, so fields left out (a flavor no longer in use, a budget removed)
/// are removed, where a merge patch would keep them.
async fn write_status(
    api: &Api<GenQueue>,
    object: &GenQueue,
    raft: &RaftHandle,
    ready: QueueCondition,
) -> Result<(), KubeError> {
    let name = object.name_any();
    let mut status = raft.read(|state| usage(state, &name, crate::clock::unix_ms()));
    status.observed_generation = object.metadata.generation;
    status.conditions = vec![ready];
    if object.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": GenQueue::api_version(&()),
        "kind": GenQueue::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&name, &params, &Patch::Apply(&patch))
        .await
        .map_err(KubeError::Api)?;
    Ok(())
}

/// What queue `name` uses now, as the status shows it (conditions empty).
pub fn usage(state: &State, name: &str, now_ms: i64) -> GenQueueStatus {
    let mut status = GenQueueStatus::default();
    let queue = state.queues().find(|q| q.name == name);
    let mut devices = DeviceUsage::default();
    for quota in queue.iter().flat_map(|q| &q.quotas) {
        devices.quota(name, &quota.flavor, quota.nominal);
    }
    for job in state.jobs().filter(|j| j.spec.queue == name) {
        match job.state {
            JobState::Pending => status.pending_jobs += 1,
            JobState::Running => {
                status.running_jobs += 1;
                if let Some(group) = crate::scheduling::job_group(state, job) {
                    devices.add(name, &group.flavor, job.device_ids.len() as u32);
                }
            }
            _ => {}
        }
    }
    let mut parts = Vec::new();
    for (flavor, d) in devices.of_queue(name) {
        let mut part = format!("{flavor} {}/{}", d.used, d.nominal);
        if d.used > 0 {
            status.used.insert(flavor.to_string(), d.used);
        }
        if d.borrowed() > 0 {
            status.borrowed.insert(flavor.to_string(), d.borrowed());
            part.push_str(&format!(" ({} borrowed)", d.borrowed()));
        }
        parts.push(part);
    }
    status.usage = parts.join(", ");
    if let Some(budget) = queue.and_then(|q| q.budget.as_ref()) {
        let used_h = state
            .budget_used_s(now_ms)
            .get(name)
            .copied()
            .unwrap_or(0.0)
            / 3600.0;
        // Rounded so a status patch is not written for every second of use.
        let round = |h: f64| (h * 100.0).round() / 100.0;
        status.budget_used_device_hours = Some(round(used_h));
        status.budget_left_device_hours = Some(round((budget.device_hours - used_h).max(0.0)));
    }
    status
}
