//! The state as one message: what raft snapshots carry, what a restarted
//! replica loads, and what the state hash is computed over.

use std::collections::BTreeMap;

use genfleet_proto as pb;
use pb::JobState;
use prost::Message;
use sha2::{Digest, Sha256};

use super::{HistoryRecord, Job, Node, State};

/// Version of [`pb::StateSnapshot`] this code writes and reads.
pub const STATE_SNAPSHOT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("state snapshot is not decodable: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error(
        "state snapshot version {0} is not understood (this build reads {STATE_SNAPSHOT_VERSION})"
    )]
    Version(u32),
    #[error("state snapshot is inconsistent: {0}")]
    Inconsistent(String),
}

impl State {
    /// The whole state, with sorted repeated fields (equal states, equal bytes).
    pub fn to_snapshot(&self) -> pb::StateSnapshot {
        pb::StateSnapshot {
            version: STATE_SNAPSHOT_VERSION,
            applied_index: self.applied_index,
            next_position: self.next_position,
            last_lease_epoch: self.last_lease_epoch,
            jobs: self
                .jobs
                .values()
                .map(|j| pb::StoredJob {
                    job: Some(j.to_proto()),
                    device_ids: j.device_ids.clone(),
                    position: j.position,
                    request_id: j.request_id.clone(),
                })
                .collect(),
            nodes: self
                .nodes
                .values()
                .map(|n| pb::StoredNode {
                    name: n.name.clone(),
                    instance: n.instance.clone(),
                    devices: n.devices.clone(),
                    models: n.models.clone(),
                    up: n.up,
                    busy: n
                        .busy
                        .iter()
                        .map(|(device, job_id)| pb::DeviceHold {
                            device: *device,
                            job_id: job_id.clone(),
                        })
                        .collect(),
                    registered_at_ms: n.registered_at_ms,
                    cordoned: n.cordoned,
                    draining: n.draining,
                    cordon_source: n.cordon_source.clone(),
                })
                .collect(),
            members: self
                .members
                .iter()
                .map(|(id, address)| pb::Member {
                    id: *id,
                    address: address.clone(),
                })
                .collect(),
            queues: self.queues.values().cloned().collect(),
            budget_usage: self.budget_usage.values().cloned().collect(),
            tenants: self.tenants.values().cloned().collect(),
            keys: self.keys.values().cloned().collect(),
            history: self.history.records().map(|r| r.to_proto()).collect(),
        }
    }

    pub fn encode_snapshot(&self) -> Vec<u8> {
        self.to_snapshot().encode_to_vec()
    }

    /// Rebuilds a state from [`State::encode_snapshot`] bytes.
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let snapshot = pb::StateSnapshot::decode(bytes)?;
        if snapshot.version != STATE_SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(snapshot.version));
        }
        let mut state = State {
            next_position: snapshot.next_position,
            last_lease_epoch: snapshot.last_lease_epoch,
            applied_index: snapshot.applied_index,
            ..State::default()
        };
        for stored in snapshot.jobs {
            let job = job_from_stored(stored)?;
            if job.state == JobState::Pending {
                state.pending.insert(job.position, job.id.clone());
            }
            if !job.request_id.is_empty() {
                let key = super::jobs::request_key(&job.tenant, &job.request_id);
                state.requests.insert(key, job.id.clone());
            }
            if !job.tenant.is_empty() && !job.state.is_terminal() {
                *state
                    .unfinished_by_tenant
                    .entry(job.tenant.clone())
                    .or_default() += 1;
            }
            state.jobs.insert(job.id.clone(), job);
        }
        for n in snapshot.nodes {
            let busy: BTreeMap<u32, String> =
                n.busy.into_iter().map(|h| (h.device, h.job_id)).collect();
            let node = Node {
                name: n.name,
                instance: n.instance,
                devices: n.devices,
                models: n.models,
                up: n.up,
                busy,
                registered_at_ms: n.registered_at_ms,
                cordoned: n.cordoned,
                draining: n.draining,
                cordon_source: n.cordon_source,
            };
            state.nodes.insert(node.name.clone(), node);
        }
        state.members = snapshot
            .members
            .into_iter()
            .map(|m| (m.id, m.address))
            .collect();
        state.queues = snapshot
            .queues
            .into_iter()
            .map(|q| (q.name.clone(), q))
            .collect();
        state.budget_usage = snapshot
            .budget_usage
            .into_iter()
            .map(|u| (u.queue.clone(), u))
            .collect();
        state.tenants = snapshot
            .tenants
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        state.keys = snapshot
            .keys
            .into_iter()
            .map(|k| (k.id.clone(), k))
            .collect();
        // Older snapshots have none: the ring starts empty.
        for record in snapshot.history {
            let record = HistoryRecord::from_proto(record).map_err(SnapshotError::Inconsistent)?;
            state.history.push(record);
        }
        Ok(state)
    }

    /// SHA-256 of the state's content (the applied index left out, so
    /// replicas at different indexes with the same content agree), as hex.
    pub fn hash(&self) -> String {
        hash_of(self.to_snapshot())
    }
}

/// [`State::hash`] of the state `snapshot` holds (the raft position left
/// out: replicas compare states, not how far they have applied).
pub fn hash_of(mut snapshot: pb::StateSnapshot) -> String {
    snapshot.applied_index = 0;
    let digest = Sha256::digest(snapshot.encode_to_vec());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn job_from_stored(stored: pb::StoredJob) -> Result<Job, SnapshotError> {
    let job = stored
        .job
        .ok_or_else(|| SnapshotError::Inconsistent("a stored job without its job".into()))?;
    let state = job.state();
    let spec = job
        .spec
        .ok_or_else(|| SnapshotError::Inconsistent(format!("job {} without a spec", job.id)))?;
    Ok(Job {
        id: job.id,
        spec,
        state,
        node: job.node,
        device_ids: stored.device_ids,
        lease_epoch: job.lease_epoch,
        step: job.step,
        created_at_ms: job.created_at_ms,
        started_at_ms: job.started_at_ms,
        finished_at_ms: job.finished_at_ms,
        artifacts: job.artifacts,
        message: job.message,
        requeues: job.requeues,
        position: stored.position,
        request_id: stored.request_id,
        preempting: job.preempting,
        checkpoint: job.checkpoint,
        nominated: job.nominated,
        leased_at_ms: job.leased_at_ms,
        // Written before the field existed: the submission.
        queued_at_ms: if job.queued_at_ms == 0 {
            job.created_at_ms
        } else {
            job.queued_at_ms
        },
        preemptions: job.preemptions,
        preempted_at_ms: job.preempted_at_ms,
        tenant: job.tenant,
        // Empty in snapshots written before the field existed.
        unknown_words: job.unknown_words,
    })
}
