use std::net::SocketAddr;
use std::path::PathBuf;

use crate::raft::storage::StorageFailure;

/// Why the scheduler could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid scheduler configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("raft replica: {0}")]
    Raft(#[from] crate::raft::DriverError),
    #[error("the raft replica stopped: {0}; restart this replica once that is fixed (its log on disk is intact)")]
    Halted(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("the REST API's artifact store: {0}")]
    Artifacts(#[from] genfleet_artifacts::ArtifactError),
    #[error("{0} (--kubernetes off runs without Kubernetes)")]
    Kube(#[from] crate::kube::KubeError),
}

impl From<StorageFailure> for Error {
    fn from(e: StorageFailure) -> Self {
        Error::Raft(e.into())
    }
}
