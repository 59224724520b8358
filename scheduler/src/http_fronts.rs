//! The replica's HTTP listeners beside gRPC, bound with the gRPC port and
//! served by [`Scheduler::run`](crate::Scheduler::run) until it stops:
//!
//! - `/metrics`, `/healthz`, `/readyz` (`http`): unauthenticated by design,
//!   for Prometheus and the kubelet; a warning names them when they listen
//!   beyond loopback.
//! - the OpenAI-compatible Videos API (`rest/`): every call becomes a call
//!   of this replica's gRPC API with the caller's key; videos are read from
//!   the artifact store, whose root then binds where workers' files may lie.

use std::net::SocketAddr;
use std::sync::Arc;

use genfleet_artifacts::ArtifactStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::http::Readiness;
use crate::listening::{bind, stopped, warn_if_exposed, Exposure, StatusReader};
use crate::Error;

/// The REST API's listener and the store its videos are read from.
#[derive(Debug, Clone)]
pub struct RestConfig {
    pub listen: SocketAddr,
    /// `file:///...`, a directory, or `s3://bucket/prefix`.
    pub artifacts: String,
}

/// The bound HTTP listeners of one replica.
pub struct HttpFronts {
    metrics: Option<TcpListener>,
    rest: Option<(TcpListener, ArtifactStore)>,
}

/// What the fronts need of the running replica.
pub struct FrontContext {
    /// This replica's gRPC address, as the REST API dials it.
    pub grpc_url: String,
    pub registry: prometheus::Registry,
    pub status: StatusReader,
    pub tls: Option<genfleet_proto::tls::TlsDir>,
    pub exposure: Exposure,
}

impl HttpFronts {
    /// Binds what is configured; opens the REST API's artifact store.
    pub async fn bind(
        metrics: Option<SocketAddr>,
        rest: Option<&RestConfig>,
    ) -> Result<Self, Error> {
        let metrics = match metrics {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let rest = match rest {
            Some(rest) => {
                let store = ArtifactStore::open(&rest.artifacts)?;
                Some((bind(rest.listen).await?, store))
            }
            None => None,
        };
        Ok(Self { metrics, rest })
    }

    /// The artifact store's root, where the REST API reads videos.
    pub fn artifact_root(&self) -> Option<String> {
        self.rest
            .as_ref()
            .map(|(_, store)| store.base_uri().to_string())
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.rest.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves each bound listener until `stop` turns true.
    pub fn spawn(self, context: FrontContext, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(listener) = self.metrics {
            let status = context.status.clone();
            let readiness: Readiness =
                Arc::new(move || status.readiness().map_err(|e| e.to_string()));
            tasks.push(crate::http::spawn(
                listener,
                vec![context.registry.clone()],
                Some(readiness),
                stopped(stop.clone()),
            ));
        }
        if let Some((listener, store)) = self.rest {
            if let Ok(addr) = listener.local_addr() {
                warn_if_exposed("REST API", addr, &context.exposure);
            }
            let (grpc, tls, stop) = (context.grpc_url, context.tls, stopped(stop));
            tasks.push(tokio::spawn(async move {
                if let Err(e) = crate::rest::serve(listener, &grpc, store, tls, stop).await {
                    tracing::error!(error = %e, "REST API server stopped");
                }
            }));
        }
        tasks
    }
}
