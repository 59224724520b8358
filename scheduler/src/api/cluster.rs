//! Operating the replicas: status, adding and removing replicas, moving
//! leadership.

use std::sync::Arc;
use std::time::Duration;

use genfleet_proto as pb;
use pb::cluster_service_client::ClusterServiceClient;
use pb::cluster_service_server::ClusterService;
use prost::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use tonic::{Request, Response, Status};

use super::route::{forward_to_leader, Router};
use crate::leader::Sessions;
use crate::raft::{RaftHandle, RaftStatus};

/// How long AddReplica waits for the new replica to catch up and vote.
const PROMOTION_WAIT: Duration = Duration::from_secs(60);
const TRANSFER_WAIT: Duration = Duration::from_secs(10);

pub struct ClusterApi {
    raft: RaftHandle,
    router: Arc<Router>,
    sessions: Arc<Sessions>,
}

impl ClusterApi {
    pub fn new(raft: RaftHandle, router: Arc<Router>, sessions: Arc<Sessions>) -> Self {
        Self {
            raft,
            router,
            sessions,
        }
    }

    async fn change(
        &self,
        changes: Vec<ConfChangeSingle>,
        members: Vec<pb::Member>,
    ) -> Result<(), Status> {
        let mut change = ConfChangeV2::default();
        change.set_changes(changes.into());
        change.context = pb::MembershipContext { members }.encode_to_vec().into();
        let applied = self
            .raft
            .propose_conf_change(change)
            .await
            .map_err(|e| self.router.refusal(&e))?;
        applied
            .result
            .map(|_| ())
            .map_err(|r| super::rejection_status(&r))
    }

    /// Waits until the status satisfies `done`.
    async fn wait_for(
        &self,
        wait: Duration,
        what: &str,
        done: impl Fn(&RaftStatus) -> bool,
    ) -> Result<RaftStatus, Status> {
        let mut status = self.raft.watch_status();
        let reached = tokio::time::timeout(wait, async {
            status.wait_for(|s| done(s)).await.map(|s| s.clone())
        });
        match reached.await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(_)) => Err(Status::unavailable("the replica is stopping")),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{what} did not happen within {wait:?}"
            ))),
        }
    }
}

fn single(id: u64, kind: ConfChangeType) -> ConfChangeSingle {
    let mut change = ConfChangeSingle {
        node_id: id,
        ..Default::default()
    };
    change.set_change_type(kind);
    change
}

fn membership(status: &RaftStatus) -> pb::MembershipReply {
    pb::MembershipReply {
        voters: status.voters.clone(),
        learners: status.learners.clone(),
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn status(
        &self,
        _request: Request<pb::ReplicaStatusRequest>,
    ) -> Result<Response<pb::ReplicaStatus>, Status> {
        let s = self.raft.status();
        let (state_hash, members) = self.raft.read(|state| {
            let members = state.members().iter().map(|(id, address)| pb::Member {
                id: *id,
                address: address.clone(),
            });
            (state.hash(), members.collect::<Vec<_>>())
        });
        let mut all = self.router.book().all();
        for m in members {
            all.entry(m.id).or_insert(m.address);
        }
        Ok(Response::new(pb::ReplicaStatus {
            id: s.id,
            address: all.get(&s.id).cloned().unwrap_or_default(),
            role: s.role.label().to_string(),
            leader: s.leader.unwrap_or(0),
            term: s.term,
            commit: s.commit,
            applied: s.applied,
            last_index: s.last_index,
            snapshot_index: s.snapshot_index,
            state_hash,
            voters: s.voters.clone(),
            learners: s.learners.clone(),
            members: all
                .into_iter()
                .map(|(id, address)| pb::Member { id, address })
                .collect(),
            progress: s
                .progress
                .iter()
                .map(|p| pb::PeerProgress {
                    id: p.id,
                    matched: p.matched,
                    next: p.next,
                    state: p.state.to_string(),
                    recent_active: p.recent_active,
                })
                .collect(),
        }))
    }

    async fn add_replica(
        &self,
        request: Request<pb::AddReplicaRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        forward_to_leader!(self.router, request, ClusterServiceClient::add_replica);
        let add = request.into_inner();
        if add.id == 0 {
            return Err(Status::invalid_argument("replica id 0 is not allowed"));
        }
        if !(add.address.starts_with("http://") || add.address.starts_with("https://")) {
            return Err(Status::invalid_argument(format!(
                "replica address {:?} must start with http:// or https://",
                add.address
            )));
        }
        let status = self.raft.status();
        if status.voters.contains(&add.id) {
            return Err(Status::already_exists(format!(
                "replica {} is already a voter",
                add.id
            )));
        }
        if !status.learners.contains(&add.id) {
            // The leader's whole address book travels with the change, so
            // every replica (the new one included) learns where the
            // founding members are, not only the new one.
            let mut members: Vec<pb::Member> = self
                .router
                .book()
                .all()
                .into_iter()
                .filter(|(id, _)| *id != add.id)
                .map(|(id, address)| pb::Member { id, address })
                .collect();
            members.push(pb::Member {
                id: add.id,
                address: add.address.clone(),
            });
            self.change(
                vec![single(add.id, ConfChangeType::AddLearnerNode)],
                members,
            )
            .await?;
        }
        // The leader's membership loop promotes it once it has caught up.
        let id = add.id;
        let status = self
            .wait_for(
                PROMOTION_WAIT,
                &format!("promotion of replica {id} (is it running with --join?)"),
                |s| s.voters.contains(&id),
            )
            .await?;
        Ok(Response::new(membership(&status)))
    }

    async fn remove_replica(
        &self,
        request: Request<pb::RemoveReplicaRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        forward_to_leader!(self.router, request, ClusterServiceClient::remove_replica);
        let id = request.into_inner().id;
        let status = self.raft.status();
        if !status.voters.contains(&id) && !status.learners.contains(&id) {
            return Err(Status::not_found(format!("replica {id} is not a member")));
        }
        if status.voters == [id] {
            return Err(Status::failed_precondition(format!(
                "replica {id} is the only voter"
            )));
        }
        self.change(vec![single(id, ConfChangeType::RemoveNode)], Vec::new())
            .await?;
        Ok(Response::new(membership(&self.raft.status())))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderReply>, Status> {
        forward_to_leader!(self.router, request, ClusterServiceClient::transfer_leader);
        let to = request.into_inner().id;
        if !self.raft.status().voters.contains(&to) {
            return Err(Status::not_found(format!("replica {to} is not a voter")));
        }
        if to != self.raft.id() {
            self.raft
                .transfer_leader(to)
                .map_err(|e| self.router.refusal(&e))?;
            self.wait_for(
                TRANSFER_WAIT,
                &format!("leadership transfer to replica {to}"),
                |s| s.leader == Some(to),
            )
            .await?;
        }
        Ok(Response::new(pb::TransferLeaderReply { leader: to }))
    }

    async fn profile(
        &self,
        request: Request<pb::ProfileRequest>,
    ) -> Result<Response<pb::ProfileReply>, Status> {
        // The profile is learned by the leader from its workers' reports.
        forward_to_leader!(self.router, request, ClusterServiceClient::profile);
        let profile = self.sessions.profile();
        let sizeless = profile
            .rates()
            .map(|(model, flavor, tp, steps_per_s)| (model, flavor, tp, 0, steps_per_s));
        let rates = sizeless
            .chain(profile.sized_rates())
            .map(
                |(model, flavor, tp, pixel_frames, steps_per_s)| pb::ProfileRate {
                    model: model.to_string(),
                    flavor: flavor.to_string(),
                    tp,
                    steps_per_s,
                    pixel_frames,
                },
            )
            .collect();
        Ok(Response::new(pb::ProfileReply { rates }))
    }

    async fn save_snapshot(
        &self,
        _request: Request<pb::SaveSnapshotRequest>,
    ) -> Result<Response<pb::SaveSnapshotReply>, Status> {
        // Any replica answers, after confirming with the leader that its
        // state is current (a linearizable read).
        super::readable(&self.raft, &self.router).await?;
        // Only the copy is made under the state's lock; encoding and
        // hashing a large state happen outside it, off the async threads.
        let snapshot = self.raft.read(|state| state.to_snapshot());
        let reply = tokio::task::spawn_blocking(move || {
            let state_hash = crate::state::hash_of(snapshot.clone());
            pb::SaveSnapshotReply {
                applied_index: snapshot.applied_index,
                state: snapshot.encode_to_vec(),
                state_hash,
            }
        })
        .await
        .map_err(|e| Status::internal(format!("encoding the backup: {e}")))?;
        Ok(Response::new(reply))
    }

    type ExportTraceStream = super::trace::TraceStream;

    async fn export_trace(
        &self,
        request: Request<pb::ExportTraceRequest>,
    ) -> Result<Response<Self::ExportTraceStream>, Status> {
        super::trace::export(&self.raft, &self.router, request.into_inner()).await
    }

    async fn restore_snapshot(
        &self,
        request: Request<pb::RestoreSnapshotRequest>,
    ) -> Result<Response<pb::RestoreSnapshotReply>, Status> {
        forward_to_leader!(self.router, request, ClusterServiceClient::restore_snapshot);
        let state = request.into_inner().state;
        let kind = pb::command::Kind::RestoreState(pb::RestoreState { state });
        let requeued = match super::propose(&self.raft, &self.router, kind).await? {
            crate::state::Outcome::Restored { requeued } => requeued,
            other => return Err(Status::internal(format!("a restore applied as {other:?}"))),
        };
        let reply = self.raft.read(|state| pb::RestoreSnapshotReply {
            state_hash: state.hash(),
            jobs: state.jobs().count() as u64,
            requeued: requeued as u64,
        });
        Ok(Response::new(reply))
    }
}
