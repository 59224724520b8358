//! The GenQueue controller: makes each GenQueue object a replicated queue
//! (through raft, like `genfleet queue apply`), deletes the queue when the
//! object is deleted (held by a finalizer while unfinished jobs name it),
//! and writes what the queue uses back into the object's status. Each
//! outcome (applied, invalid, rejected, delete refused, deleted) is also an
//! Event on the object, for `kubectl describe` and `kubectl get events`.
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
use kube::runtime::events::{Event, EventType, Recorder};
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
/// Owns the status fields (server-side apply), and reports the Events.
const FIELD_MANAGER: &str = "genfleet-scheduler";
/// An Event's note is at most 1 kB (the Events API's limit).
const MAX_NOTE_BYTES: usize = 1024;
const APPLIED: &str = "the queue is replicated as specified";

pub struct QueueContext {
    pub client: Client,
    pub raft: RaftHandle,
    pub metrics: Metrics,
    /// Publishes the outcomes' Events; one for the controller's life, so
    /// that its cache can count a repeated Event rather than add one.
    pub recorder: Recorder,
}

impl QueueContext {
    /// The Events name the reporting controller `genfleet-scheduler` and,
    /// as its instance, this host (the replica's pod).
    pub fn new(client: Client, raft: RaftHandle, metrics: Metrics) -> Self {
        let recorder = Recorder::new(client.clone(), FIELD_MANAGER.into());
        QueueContext {
            client,
            raft,
            metrics,
            recorder,
        }
    }
}

/// What a reconcile came to: the Ready condition's reason and the Event's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The queue is (now) the object's spec.
    Applied,
    /// The spec names no valid queue (`GenQueue::to_queue`).
    InvalidSpec,
    /// The state machine refused the queue.
    Rejected,
    /// Unfinished jobs still name the queue; the finalizer holds the object.
    DeleteRefused,
    /// The queue was deleted with its object.
    Deleted,
}

impl Outcome {
    fn reason(self) -> &'static str {
        match self {
            Outcome::Applied => "Applied",
            Outcome::InvalidSpec => "InvalidSpec",
            Outcome::Rejected => "Rejected",
            Outcome::DeleteRefused => "DeleteRefused",
            Outcome::Deleted => "Deleted",
        }
    }

    fn event_type(self) -> EventType {
        match self {
            Outcome::Applied | Outcome::Deleted => EventType::Normal,
            Outcome::InvalidSpec | Outcome::Rejected | Outcome::DeleteRefused => EventType::Warning,
        }
    }

    fn action(self) -> &'static str {
        match self {
            Outcome::Applied | Outcome::InvalidSpec | Outcome::Rejected => "Apply",
            Outcome::DeleteRefused | Outcome::Deleted => "Delete",
        }
    }
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
            let why = why.to_string();
            let ready = condition(object, Outcome::InvalidSpec, &why);
            write_status(api, object, &ctx.raft, ready).await?;
            announce(ctx, object, Outcome::InvalidSpec, &why, false).await;
            return Ok(Action::await_change());
        }
    };
    if let Some(refused) = ready_condition(object).filter(|c| {
        c.reason == Outcome::Rejected.reason()
            && c.observed_generation == object.metadata.generation
    }) {
        // This generation was refused already (and its Event recorded): say
        // so again, propose nothing until the spec changes.
        let refused = refused.clone();
        write_status(api, object, &ctx.raft, refused).await?;
        return Ok(Action::requeue(STATUS_REFRESH));
    }
    let current = ctx
        .raft
        .read(|state| state.queues().find(|q| q.name == name).cloned());
    // (outcome, what the Event says, whether the queue changed)
    let (outcome, note, changed) = if current.as_ref() == Some(&desired) {
        (Outcome::Applied, APPLIED.to_string(), false)
    } else {
        let created = current.is_none();
        let command = pb::command::Kind::UpsertQueue(pb::UpsertQueue {
            queue: Some(desired),
        });
        match propose(&ctx.raft, command).await? {
            Ok(()) => {
                tracing::info!(queue = %name, "queue applied from its GenQueue");
                let note = if created {
                    "the queue was created as specified"
                } else {
                    "the queue was set to the spec"
                };
                (Outcome::Applied, note.to_string(), true)
            }
            Err(rejection) => (Outcome::Rejected, rejection.to_string(), false),
        }
    };
    let message = if outcome == Outcome::Applied {
        APPLIED
    } else {
        &note
    };
    let ready = condition(object, outcome, message);
    write_status(api, object, &ctx.raft, ready).await?;
    announce(ctx, object, outcome, &note, changed).await;
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
            let note = "the queue was deleted from genfleet";
            announce(ctx, object, Outcome::Deleted, note, true).await;
            Ok(Action::await_change())
        }
        Err(rejection) => {
            // The object stays (its finalizer holds it) and says why.
            let why = rejection.to_string();
            let refused = condition(object, Outcome::DeleteRefused, &why);
            write_status(api, object, &ctx.raft, refused).await?;
            announce(ctx, object, Outcome::DeleteRefused, &why, false).await;
            Err(KubeError::DeleteRefused { queue: name, why })
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
fn condition(object: &GenQueue, outcome: Outcome, message: &str) -> QueueCondition {
    let status = if outcome == Outcome::Applied {
        "True"
    } else {
        "False"
    };
    let since = ready_condition(object)
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(now_rfc3339);
    QueueCondition {
        type_: "Ready".into(),
        status: status.into(),
        reason: outcome.reason().into(),
        message: message.into(),
        last_transition_time: since,
        observed_generation: object.metadata.generation,
    }
}

/// Records `outcome` as an Event on `object`, unless the object's Ready
/// condition already says so for this generation and nothing `changed`: a
/// resync of an unchanged outcome records nothing (and neither does a new
/// leader taking over). Best effort: an Event that cannot be written is
/// logged, and the reconcile goes on.
async fn announce(
    ctx: &QueueContext,
    object: &GenQueue,
    outcome: Outcome,
    note: &str,
    changed: bool,
) {
    let said = ready_condition(object).is_some_and(|c| {
        c.reason == outcome.reason() && c.observed_generation == object.metadata.generation
    });
    if said && !changed {
        return;
    }
    let event = Event {
        type_: outcome.event_type(),
        reason: outcome.reason().into(),
        note: Some(clip(note, MAX_NOTE_BYTES).into()),
        action: outcome.action().into(),
        secondary: None,
    };
    // A GenQueue is cluster-scoped: its Event goes to the namespace
    // `default` (where the API server wants it; deploy/base/rbac.yaml).
    if let Err(error) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(queue = %object.name_any(), reason = outcome.reason(), %error, "cannot record the GenQueue's Event");
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn clip(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_cut_at_a_character_boundary() {
        assert_eq!(clip("abc", 10), "abc");
        assert_eq!(clip("abc", 2), "ab");
        // 'é' is two bytes: a cut inside it drops all of it.
        assert_eq!(clip("aé", 2), "a");
        let long = "é".repeat(MAX_NOTE_BYTES);
        assert!(clip(&long, MAX_NOTE_BYTES).len() <= MAX_NOTE_BYTES);
    }

    #[test]
    fn only_applied_and_deleted_are_normal() {
        let all = [
            Outcome::Applied,
            Outcome::InvalidSpec,
            Outcome::Rejected,
            Outcome::DeleteRefused,
            Outcome::Deleted,
        ];
        let normal: Vec<_> = all
            .iter()
            .filter(|o| o.event_type() == EventType::Normal)
            .map(|o| o.reason())
            .collect();
        assert_eq!(normal, ["Applied", "Deleted"]);
    }
}
