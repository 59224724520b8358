//! genfleet's scheduler: the single source of truth for which generation job
//! runs where. Every change goes through a raft log and a deterministic
//! `apply`; the leader places pending jobs on worker nodes.
//!
//! # Layout
//! - `spec`: what a job may ask for, checked at submit and at apply.
//! - `node_pattern`: which nodes a worker credential may register.
//! - `queue_file`: queues as YAML documents (`genfleet queue apply -f`).
//! - `auth/`: who is calling each port: keys, the cluster secret's credentials, certificates.
//! - `state/`: the replicated state machine (jobs, nodes) and its commands.
//! - `raft/`: the raft-rs node, its log on disk (raft-engine), the thread that drives it.
//! - `pending_reason`: why a job waits before the first scheduling cycle has judged it.
//! - `policy/`: the scheduling policy as a pure function (quotas, QoS, gangs).
//! - `leader`: work only the leader does: scheduling cycles, worker liveness.
//! - `scheduling`: the policy's view of the state, and the last cycle's verdicts.
//! - `api/`: gRPC services: jobs (clients), worker sessions, raft transport.
//! - `kube/`: Kubernetes, on the leader: Nodes mirrored, GenQueues reconciled.
//! - `metrics`: the scheduler's Prometheus metrics.
//! - `http`: `/metrics`, `/healthz` and `/readyz` (a worker process serves its own through it too).
//! - `grpc_health`: the standard gRPC health service, following the replica's readiness.
//! - `http_fronts`: the replica's HTTP listeners (metrics, REST), bound and served with gRPC.
//! - `rest/`: the OpenAI-compatible Videos API in front of this replica's gRPC API,
//!   reading videos from the artifact store (`genfleet-artifacts`, no candle).
//! - `files`: folders only their owner may read.
//! - `connections`: how many connections a listener keeps, and for how long a silent one.
//! - `server`: [`Scheduler`], which binds the ports and runs all of the above.

pub mod api;
pub mod auth;
mod clock;
pub mod connections;
mod error;
pub mod files;
pub mod grpc_health;
pub mod http;
pub mod http_fronts;
pub mod kube;
mod leader;
pub mod listening;
pub mod metrics;
pub mod node_pattern;
pub mod pending_reason;
pub mod policy;
pub mod qos;
pub mod queue_file;
pub mod raft;
pub mod rest;
pub mod scheduling;
mod server;
pub mod spec;
pub mod state;

pub use error::Error;
pub use http_fronts::RestConfig;
pub use leader::Sessions;
pub use listening::{stopped, Exposure, StatusReader};
pub use server::{Scheduler, SchedulerConfig};
