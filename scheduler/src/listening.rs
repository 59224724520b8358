//! What every listener of a replica shares: binding a port, the shutdown
//! future, the warning a listener reachable from elsewhere deserves, and
//! reading the replica's readiness from outside it. Below `server` and the
//! HTTP fronts, which both use them.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::raft::{NotReady, RaftStatus};
use crate::Error;

/// Reads a replica's raft status from outside [`Scheduler::run`] (the
/// HTTP fronts' `/readyz`); cheap to clone. Empty until `run` starts the replica.
#[derive(Clone, Default)]
pub struct StatusReader(Arc<OnceLock<watch::Receiver<RaftStatus>>>);

impl StatusReader {
    /// The status now, once the replica has started.
    pub fn status(&self) -> Option<RaftStatus> {
        self.0.get().map(|status| status.borrow().clone())
    }

    /// Set once, when the replica starts: where the status is read from.
    pub(crate) fn start(&self, status: watch::Receiver<RaftStatus>) {
        let _ = self.0.set(status);
    }

    /// Whether the replica should take traffic; see [`RaftStatus::readiness`].
    pub fn readiness(&self) -> Result<(), NotReady> {
        self.status().ok_or(NotReady::NotStarted)?.readiness()
    }
}

pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Completes once `stop` turns true (or its sender is gone): the shutdown
/// future every server and loop here, and the binary's, takes.
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What a listener lacks, for the warning it logs off loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exposure {
    /// No admin key: client calls are not checked.
    pub no_keys: bool,
    /// Nobody is checked: no admin key, no cluster secret, no TLS.
    pub open: bool,
    pub no_tls: bool,
}

impl Exposure {
    /// The warnings a listener on `addr` deserves; none on loopback.
    pub fn warnings(&self, addr: SocketAddr) -> Vec<&'static str> {
        if addr.ip().is_loopback() {
            return Vec::new();
        }
        let mut warnings = Vec::new();
        if self.open {
            warnings.push(
                "OPEN CLUSTER: no admin key, no cluster secret, no TLS: anyone who reaches this \
                 address is an admin, and can register as any worker and speak raft as any \
                 replica; give --admin-key-file and --cluster-secret-file (docs/security.md)",
            );
        } else if self.no_keys {
            warnings.push(
                "NO API KEYS: anyone who reaches this address can submit, read and cancel any \
                 job and change queues, nodes, tenants and keys; give --admin-key-file \
                 (docs/tenants.md)",
            );
        }
        if self.no_tls {
            warnings.push(
                "NO TLS: calls, keys and job data cross the network in the clear; give \
                 --tls-dir (docs/tls.md)",
            );
        }
        warnings
    }
}

/// Logs, loudly, what anyone who reaches `addr` could do.
pub fn warn_if_exposed(what: &str, addr: SocketAddr, exposure: &Exposure) {
    for warning in exposure.warnings(addr) {
        tracing::warn!(listener = what, listen = %addr, "{warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listeners_off_loopback_are_called_out() {
        let open = Exposure {
            no_keys: true,
            open: true,
            no_tls: true,
        };
        let loopback: SocketAddr = "127.0.0.1:7070".parse().expect("addr");
        let everyone: SocketAddr = "0.0.0.0:7070".parse().expect("addr");
        assert!(open.warnings(loopback).is_empty());
        let said = open.warnings(everyone).join(" ");
        assert!(
            said.contains("OPEN CLUSTER") && said.contains("NO TLS"),
            "{said}"
        );
        let keyed = Exposure {
            no_keys: false,
            open: false,
            no_tls: false,
        };
        assert!(keyed.warnings(everyone).is_empty());
        let secret_only = Exposure {
            no_keys: true,
            open: false,
            no_tls: false,
        };
        assert!(secret_only.warnings(everyone)[0].contains("NO API KEYS"));
    }
}
